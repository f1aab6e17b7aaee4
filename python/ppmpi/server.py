"""pp's Server, on MPI ranks (see ../shared/docs/pp-reference.md for pp's own semantics).

Server is pp's facade: it checks and submits jobs, waits, resizes, reports and destroys. What
happens when jobs complete (callbacks, futures, their end at destroy()) is its
_completions.Completions, which is also every Job's owner (job.JobOwner)."""
import logging
import os
import sys
import threading
import time

from . import _launch, _parallel, _progress, _runtime, _serialize, _stats
from .remote import DEFAULT_PORT
from .remote.servers import ServerLinks, check_ppservers
from ._checks import check_ncpus, check_proto, check_retries, check_seconds, check_submit
from ._stats import Statistics
from .errors import DestroyedServerError
from ._tunables import (CONTROL_TIMEOUT_S, CREATE_TIMEOUT_S, FIRST_CONTACT_WAIT_S, PIPELINE_MAX,
                        START_WAIT_S, WAIT_SLICE_S)
from ._completions import Completions
from .job import Job

log = logging.getLogger("ppmpi")


class Server:
    """A pp job server whose workers are MPI ranks.

    ``Server(ncpus="autodetect", ppservers=(), secret=None, restart=False, proto=None,
    socket_timeout=3600, *, worker_timeout=5.0, max_retries=3, job_timeout=None)``: ncpus
    workers (autodetect: the worker ranks of an mpirun world, else the CPUs online). Alone,
    workers are spawned (ppmpi-worker); under mpirun, ranks 1..N-1 serve first and more are
    spawned if ncpus asks for more.

    restart: pp restarts the worker process after every job; ppmpi instead gives every job a
    fresh namespace: its function, depfuncs and modules are unpickled and injected anew for
    each job, so nothing a job defines or changes in that namespace is seen by the next one
    (a process restart would cost a ~0.25 s MPI_Comm_spawn per job). Modules already imported
    stay imported (sys.modules), as in any Python process.
    worker_timeout: a worker silent this long is lost (workers send heartbeats every 0.5 s from
    a thread of their own, even during a long job); its jobs run again elsewhere. Shorter finds
    a hung worker sooner; too short declares a CPU-starved worker lost and re-runs its jobs.
    max_retries: a job running on a worker when it was lost this many times fails with
    WorkerLost instead of taking down more workers. job_timeout: default limit in seconds for
    each job (submit's timeout= overrides); an over-time job fails with JobTimeout and its
    worker is replaced.
    ppservers: ppmpi-server processes ("host:port", "host" for port 60000, or pp's "*" /
    "10.1.2.*:port" for auto-discovery), used next to the ncpus local workers (ncpus=0: only
    them), balanced by load. secret: what they were started with (-s); none is needed only
    for a server listening on a loopback address. A server that cannot be used is logged as a
    warning at once, naming it and why; with ncpus=0 and none usable, Server() raises
    NoWorkers (within ~16 s). A lost server's jobs run elsewhere; it is reconnected when it
    comes back (README "Remote servers")."""

    default_port = DEFAULT_PORT  # pp has a public default secret too; ppmpi has none

    def __init__(self, ncpus="autodetect", ppservers=(), secret=None, restart=False, proto=None,
                 socket_timeout=3600, *, worker_timeout=5.0, max_retries=3, job_timeout=None):
        check_ppservers(ppservers, secret)
        wanted = check_ncpus(ncpus)
        self.worker_timeout = check_seconds("worker_timeout", worker_timeout, False)
        self.max_retries = check_retries(max_retries)
        self.job_timeout = check_seconds("job_timeout", job_timeout)
        self.proto = check_proto(proto)
        self.restart = bool(restart)
        self.socket_timeout = socket_timeout
        self.ppservers, self.secret = ppservers, secret
        if wanted is None:
            wanted = _runtime.world_workers() or _launch.detect_ncpus()
        self._created = time.time()
        self._links = None  # with ppservers: the connectors to them (remote.servers.ServerLinks)
        self._lock = threading.Lock()  # for _groups
        self._groups = {}
        self._ncpus = wanted
        try:
            self._pool = _runtime.master().create_pool(
                wanted, PIPELINE_MAX, list(sys.path), os.getcwd(), self.worker_timeout,
                self.max_retries, CREATE_TIMEOUT_S)
        except RuntimeError as exc:
            raise RuntimeError(f"ppmpi could not start {wanted} workers: {exc}") from exc
        self._completions = Completions(self._pool, self)
        _runtime.register(self)
        _serialize.warm_up()
        try:
            self._await_started(START_WAIT_S, 0)
        except RuntimeError as exc:
            self.destroy()
            raise RuntimeError(f"ppmpi could not start {wanted} workers: {exc}") from None
        if ppservers:
            self._connect_servers(ppservers, secret)
        _stats.install_sigusr1(_runtime.live_servers)

    def _connect_servers(self, ppservers, secret):
        """Local and remote workers as one (remote/servers.py); with ncpus=0 a usable server is
        required now (bounded wait), not found out by a job that never runs."""
        try:
            self._links = ServerLinks(self._pool, ppservers, b"" if secret is None else secret)
            if self._ncpus == 0:
                self._links.require_a_server()
            else:
                self._links.await_first_attempts(FIRST_CONTACT_WAIT_S)
        except Exception:
            self.destroy()  # its workers do not outlive the failed Server()
            raise

    # -- submitting -------------------------------------------------------------------------
    def submit(self, func, args=(), depfuncs=(), modules=(), callback=None, callbackargs=(),
               group="default", globals=None, *, timeout=None, nranks=None):
        """Submits ``func(*args)``; returns a Job. depfuncs are callable by name on the worker
        and modules are imported there first (``"math"`` or ``"from x import y"``).
        callback: called on the master as ``callback(*callbackargs, result)`` once the job
        succeeded, one callback at a time. timeout: seconds the job may run (default: the
        server's job_timeout); past it the job fails with JobTimeout and its worker is
        replaced. nranks=k: a parallel job, func(*args) on k workers at once, where
        ppmpi.comm() is an mpi4py communicator of those k; the result is the list of the k
        return values in rank order (ARCHITECTURE.md, "Parallel jobs")."""
        if self._completions.closed:
            raise DestroyedServerError("Cannot submit jobs: server instance has been destroyed")
        modules, depfuncs, timeout = check_submit(args, depfuncs, modules, callback,
                                                  callbackargs, globals, timeout)
        return self._submit(func, args, depfuncs, modules, callback, callbackargs, group, timeout,
                            nranks=nranks)

    def _submit(self, func, payload, depfuncs=(), modules=(), callback=None, callbackargs=(),
                group="default", timeout=None, init=None, nranks=None):
        """Queues one job whose checked arguments are `payload` (a tuple, KwCall or Batch):
        ppmpi's own entry (submit(), Executor). init: (key, initializer, initargs) run once per
        worker before its first such job. nranks: a parallel job's, checked here."""
        if not callable(func):
            raise TypeError(f"func must be callable, not {type(func).__name__}")
        if nranks is not None:
            nranks = _parallel.check_nranks(nranks, self._ncpus, self._links is not None)
        if self._ncpus == 0 and self._links is None:
            log.warning("ppmpi: this server has no workers (ncpus=0); the job waits until "
                        "set_ncpus(n) with n > 0")
        key, bundle = _serialize.dump_bundle(func, depfuncs, modules, self.restart, self.proto,
                                             init)
        data, buffers = _serialize.dump_args(func, payload, self.proto)
        if len(data) + len(bundle) > _serialize.MAX_PAYLOAD_BYTES:
            name = _serialize.describe(func)
            _serialize.check_size(f"the arguments of {name}()", data)
            _serialize.check_size(f"the function {name!r}", bundle)
        group_id = self._groups.get(group)
        if group_id is None:
            group_id = self._group_id(group)
        limit = timeout or self.job_timeout or 0.0
        place, owner = self._pool.submit, self._completions
        ranks = nranks or 0  # 0: an ordinary job
        if callback is None:
            job_id = place(key, bundle, data, buffers, group_id, False, limit, ranks)
            return Job(owner, job_id, func, group, callback, callbackargs, nranks)
        return owner.submit_notified(
            lambda: Job(owner, place(key, bundle, data, buffers, group_id, True, limit, ranks),
                        func, group, callback, callbackargs, nranks))

    def _group_id(self, group):
        with self._lock:
            return self._groups.setdefault(group, len(self._groups))

    # -- waiting and control ----------------------------------------------------------------
    def wait(self, group=None, progress=False):
        """Waits for every job (of ``group``, if given) to finish. progress=True shows a
        progress bar (tqdm) of the jobs finished while waiting."""
        if group is None:
            gid = -1
        else:
            with self._lock:
                gid = self._groups.get(group)
            if gid is None:
                return
        bar = _progress.Countdown(self._pool.unfinished(gid), "jobs") if progress else None
        try:
            while not self._pool.wait_group(gid, 0.1 if bar else WAIT_SLICE_S):
                if bar:
                    bar.left(self._pool.unfinished(gid))
        finally:
            if bar:
                bar.close(self._pool.unfinished(gid))

    def get_ncpus(self):
        """The number of workers serving this server now."""
        if self._completions.closed:
            return 0
        return self._pool.size(CONTROL_TIMEOUT_S)

    def set_ncpus(self, ncpus="autodetect"):
        """Grows (spawning workers) or shrinks (retiring idle workers) the pool."""
        wanted = check_ncpus(ncpus)
        if wanted is None:
            wanted = _launch.detect_ncpus()
        if self._completions.closed:
            raise DestroyedServerError("Cannot set ncpus: server instance has been destroyed")
        failed_before = self._stats()["start_failures"]
        try:
            self._pool.resize(wanted, CREATE_TIMEOUT_S)
        except RuntimeError as exc:
            raise RuntimeError(f"ppmpi could not resize to {wanted} workers: {exc}") from exc
        self._ncpus = wanted
        try:
            self._await_started(START_WAIT_S, failed_before)
        except RuntimeError as exc:
            self._ncpus = self._pool.size(CONTROL_TIMEOUT_S)
            raise RuntimeError(f"ppmpi could not resize to {wanted} workers: {exc}") from None

    def _await_started(self, limit, failed_before):
        """Waits up to `limit` seconds until every worker of the pool has said Hello (or was
        lost); raises RuntimeError naming why if a worker's launch failed meanwhile. Polled:
        starting takes tens of milliseconds and happens once. A launch that hangs inside MPI is
        retried in the background (the log says so); past `limit` the jobs wait for it.
        Backing off to 10 ms: at 1 kHz these calls slowed the spawns beside them (~60 ms)."""
        deadline = time.monotonic() + limit
        pause = 0.001
        while True:
            stats = self._stats()
            if stats["start_failures"] > failed_before:
                raise RuntimeError(stats["start_error"])
            if not stats["workers_starting"]:
                return
            if time.monotonic() > deadline:
                log.debug("ppmpi: workers still starting after %.0f s; jobs wait for them", limit)
                return
            time.sleep(pause)
            pause = min(2 * pause, 0.01)

    def get_active_nodes(self):
        """{"local": workers on this host, "<host>": workers on each other host}."""
        import socket

        here = socket.gethostname()
        nodes = {"local": 0}
        for label, _jobs, _seconds in self._stats()["per_worker"]:
            host = label.rsplit(":", 1)[0]
            key = "local" if host == here else host
            nodes[key] = nodes.get(key, 0) + 1
        if nodes["local"] == 0 and len(nodes) == 1:
            nodes["local"] = self.get_ncpus()
        if self._links is not None:
            nodes.update(self._links.nodes())  # "host:port": that server's workers
        return nodes

    def _stats(self):
        return self._pool.stats(CONTROL_TIMEOUT_S)

    def get_stats(self):
        """{"host:rank": Statistics} for every worker that ran jobs for this server, and
        {"host:port": Statistics(its workers, ...)} for each remote server."""
        return _stats.rows(self._stats(), self._remote_rows())

    def print_stats(self):
        """pp's job statistics table, one row per local worker and per remote server, then
        the jobs running now."""
        remote = self._remote_rows()
        _stats.table(self._stats(), self._created,
                     self.get_ncpus() + sum(row[1] for row in remote), remote)

    def _remote_rows(self):
        return self._links.rows() if self._links is not None else []

    def destroy(self):
        """Stops the workers; unfinished jobs fail with DestroyedServerError."""
        self._completions.close(self._stop)

    def _stop(self):
        try:
            self._pool.destroy(CONTROL_TIMEOUT_S)
        except Exception as exc:
            log.warning("ppmpi: destroy: %s", exc)
        if self._links is not None:  # after the pool: its servers' slots said Goodbye first
            self._links.close()  # bounded: each connector within its own bounds

    @property
    def destroyed(self):
        """True once destroy() was called (submit() raises DestroyedServerError)."""
        return self._completions.closed

    # -- for ppmpi-server (remote.cli, remote.session), not pp's API ------------------------
    def serve_client(self, sock, keys, where, job_timeout):
        """Hands a remote client that proved the secret (remote.auth.server_handshake: its socket
        and session keys) to the dispatcher, which relays its jobs into this server's workers
        and their outcomes back (include/ppmpi/master/link_relay.hpp). The dispatcher owns
        the socket from here and closes it, whatever happens. where: the client's address,
        for the log; job_timeout: each job's limit in seconds (None: none). Raises once the
        server is being destroyed."""
        self._pool.serve_link(sock.detach(), keys[0], keys[1], where, job_timeout or 0.0,
                              CONTROL_TIMEOUT_S)

    def client_sessions(self):
        """(how many clients serve_client's dispatcher serves now, [what happened to those
        that left, as log lines])."""
        return self._pool.link_sessions(CONTROL_TIMEOUT_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.destroy()
        return False


class Template:
    """pp's Template: a function with its submit options, submitted with ``.submit(*args)``."""

    def __init__(self, job_server, func, depfuncs=(), modules=(), callback=None,
                 callbackargs=(), group="default", globals=None):
        self.job_server, self.func = job_server, func
        self.depfuncs, self.modules = depfuncs, modules
        self.callback, self.callbackargs = callback, callbackargs
        self.group, self.globals = group, globals

    def submit(self, *args):
        return self.job_server.submit(self.func, args, self.depfuncs, self.modules,
                                      self.callback, self.callbackargs, self.group, self.globals)


__all__ = ["Server", "Template", "Statistics"]
