"""Where a job of a Server with ppservers runs: the queue every node pulls from, by load.

pp sends a job to the local workers first and only spills over to remote nodes, which starves
them. Here each node (the local pool, each remote server) takes jobs from one Pending queue
while it has a free slot (its workers times its pipelining depth), and a node may take the
next job only if no other node with a free slot is less loaded (jobs in flight per worker).
The depth keeps a remote worker busy across a network round trip: the next job is already on
its server when the current one ends."""
import collections
import logging
import threading
import time

from . import _serialize

log = logging.getLogger("ppmpi")

LOCAL_DEPTH = 2
REMOTE_DEPTH = 3
# With jobs waiting and no node (local or remote) usable this long, they fail with NoWorkers
# instead of waiting for a server that may never come back.
NO_NODE_LIMIT_S = 60.0


def end_job(pool, tid, code, message):
    """Ends a job in the Server's job table with an outcome made here (no worker ran it);
    False if it was over already."""
    return pool.finish(tid, code, b"", message, "", 0.0, [])


class Entry:
    """One job on its way: what a node needs to run it, kept until it is over so that the
    jobs of a server that is lost can run elsewhere."""

    __slots__ = ("tid", "key", "bundle", "data", "buffers", "limit", "attempts")

    def __init__(self, tid, key, bundle, data, buffers, limit):
        self.tid, self.key, self.bundle, self.data = tid, key, bundle, data
        self.buffers, self.limit, self.attempts = buffers, limit, 0


class Node:
    """What Pending needs to know of a node. Its fields are guarded by Pending's lock."""

    depth = LOCAL_DEPTH

    def __init__(self, name):
        self.name = name
        self.usable = False
        self.workers = 0
        self.inflight = {}  # tid -> Entry
        self.wake = False  # the node's thread has something else to do (a cancel to send)
        self.jobs, self.seconds = 0, 0.0

    def free(self):
        return self.usable and len(self.inflight) < self.workers * self.depth

    def load(self):
        return len(self.inflight) / max(1, self.workers)


class Pending:
    """The jobs no node has taken yet, and which node holds which job."""

    def __init__(self, pool):
        self._pool = pool
        self.cond = threading.Condition()
        self.queue = collections.deque()
        self.nodes = []
        self.closed = False
        self._no_node_since = None

    def add_node(self, node):
        with self.cond:
            self.nodes.append(node)

    def add(self, entry):
        with self.cond:
            self.queue.append(entry)
            self.cond.notify_all()

    def changed(self):
        with self.cond:
            self.cond.notify_all()

    def _best(self, node):
        load = node.load()
        return not any(other is not node and other.free() and other.load() < load
                       for other in self.nodes)

    def take(self, node, timeout):
        """The next job for `node` (None after `timeout` s, on close or when node.wake)."""
        def ready():
            return (self.closed or node.wake or
                    (self.queue and node.free() and self._best(node)))

        with self.cond:
            if not self.cond.wait_for(ready, timeout) or self.closed or not self.queue:
                return None
            if not (node.free() and self._best(node)):
                return None
            entry = self.queue.popleft()
            node.inflight[entry.tid] = entry
            self.cond.notify_all()  # the next node in line may take the next job now
            return entry

    def release(self, node, tid, seconds=0.0):
        """The job is over on `node`; returns its Entry (None if the node no longer holds it)."""
        with self.cond:
            entry = node.inflight.pop(tid, None)
            if entry is not None:
                node.jobs += 1
                node.seconds += seconds
            self.cond.notify_all()
            return entry

    def lost(self, node, reason, max_retries):
        """`node` is gone: its jobs go back to the front of the queue (in their order), except
        those it took down too often, which fail with WorkerLost."""
        with self.cond:
            node.usable = False
            entries = sorted(node.inflight.values(), key=lambda e: e.tid)
            node.inflight.clear()
            again = []
            for entry in entries:
                entry.attempts += 1
                if entry.attempts > max_retries:
                    end_job(self._pool, entry.tid, _serialize.WORKER_LOST,
                               f"its server {node.name} was lost {entry.attempts} times "
                               f"while it ran ({reason})")
                else:
                    again.append(entry)
            self.queue.extendleft(reversed(again))
            self.cond.notify_all()
        if again and not self.closed:
            log.warning("ppmpi: %d job(s) of the lost server %s run elsewhere", len(again),
                        node.name)

    def remove(self, tid):
        """Takes a job nobody holds yet out of the queue; its Entry, or None."""
        with self.cond:
            for entry in self.queue:
                if entry.tid == tid:
                    self.queue.remove(entry)
                    return entry
        return None

    def holder(self, tid):
        with self.cond:
            for node in self.nodes:
                if tid in node.inflight:
                    return node
        return None

    def expire_if_no_node(self):
        """Fails the waiting jobs once no node has been usable for NO_NODE_LIMIT_S."""
        with self.cond:
            if any(node.usable and node.workers for node in self.nodes) or not self.queue:
                self._no_node_since = None
                return
            now = time.monotonic()
            if self._no_node_since is None:
                self._no_node_since = now
            if now - self._no_node_since < NO_NODE_LIMIT_S:
                return
            names = ", ".join(node.name for node in self.nodes)
            while self.queue:
                end_job(self._pool, self.queue.popleft().tid, _serialize.NO_WORKERS,
                           f"no worker, local or remote, was usable for {NO_NODE_LIMIT_S:.0f} s "
                           f"(nodes: {names}); start a ppmpi-server or call set_ncpus(n)")

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class LocalNode(Node):
    """The server's own MPI workers: jobs go to its dispatcher under the id they already have."""

    def __init__(self, pending, pool, ncpus):
        super().__init__("local")
        self._pending, self._pool, self._ncpus = pending, pool, ncpus
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ppmpi-local-node", daemon=True)

    def _run(self):
        pending = self._pending
        while not pending.closed:
            with pending.cond:
                self.workers = self._ncpus()
                self.usable = self.workers > 0
            self._reap()
            pending.expire_if_no_node()
            if not self.workers and not self.inflight:
                # Nothing to take: sleep apart from the queue's condition, which every submit
                # and result notifies (a wake-up per job for nothing: 4.2k -> 5k remote jobs/s).
                self.stopping.wait(0.2)
                continue
            # While jobs run here, look at them every 5 ms: the job table has no "any of these
            # is done" wait, and a slot must be freed soon after its job ends.
            entry = pending.take(self, 0.005 if self.inflight else 0.2)
            if entry is None:
                continue
            try:
                self._pool.dispatch(entry.tid, entry.key, entry.bundle, entry.data,
                                    entry.buffers, entry.limit)
            except Exception as exc:  # the pool is being destroyed
                end_job(self._pool, entry.tid, _serialize.DESTROYED, str(exc))
            entry.bundle = entry.data = entry.buffers = None  # the dispatcher has them now

    def _reap(self):
        for tid in list(self.inflight):
            try:
                done = self._pool.done(tid)
            except KeyError:  # taken already: done
                done = True
            if done:
                self._pending.release(self, tid)
