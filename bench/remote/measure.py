"""How should a client process talk to an independently started server process?

Measures two options on this machine and prints the numbers (one command, ~1 min):

    /usr/bin/python3 bench/remote/measure.py            # both options
    /usr/bin/python3 bench/remote/measure.py --json out.json --cycles 200 --only A

Use Debian's /usr/bin/python3 (python3-mpi4py); option B needs only the standard library.
Scratch files (ompi-server URI, port names, child logs) go to /tmp/remote-measure/<run>/.

Option A -- MPI connect/accept through ompi-server:
  `ompi-server --no-daemonize -r URI_FILE` is started, then two separate singleton processes
  (this file with role `mpi-server` and `mpi-client`) with OMPI_MCA_pmix_server_uri=file:URI_FILE
  set before MPI starts. The server does MPI_Open_port once and MPI_Comm_accept in a loop and
  writes the port name to a file; the client does `--cycles` x (MPI_Comm_connect, one 8-byte
  ping-pong, MPI_Comm_disconnect) in one process, then one more connection for the
  measurements: 8-byte round trip (median of 1000 after 100 warm-up) and 64 MiB echo
  (median of 5 after 1 warm-up); bandwidth each way = bytes / (round trip / 2).
Option B -- plain TCP on 127.0.0.1 (TCP_NODELAY both ends), same protocol and sizes:
  `--cycles` x (connect, one 8-byte ping-pong, close), 8-byte round trip, 64 MiB echo with
  sendall(memoryview) / recv_into(preallocated bytearray); plus HMAC-SHA256 over 64 MiB
  (hmac.new(...).digest(), hmac.digest(), bare hashlib.sha256; median of 5 after 1 warm-up).
  Extra: the 8-byte round trip again with both ends busy-polling recv (MSG_DONTWAIT), the way
  MPI's progress engine spins, to separate the wake-up cost from the TCP cost.

Control A0 (skip with --no-control): the same two singletons without ompi-server, one cycle,
to show what it is for (the client's MPI_Comm_connect fails, the server sits in accept).

Every child has a watchdog thread: no progress for 30 s -> it prints the stage (e.g. which
cycle) and os._exit(3). The parent bounds every child with a timeout, starts each in its own
session and, at the end, ends exactly the process groups it started (by PID).
"""
import argparse
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.abspath(__file__)
SCRATCH = "/tmp/remote-measure"
MIB = 1 << 20
BIG = 64 * MIB
HDR = struct.Struct("<qqq")  # op, nbytes, iterations
OP_END, OP_PING, OP_SHUTDOWN, OP_PING_SPIN = 0, 1, 2, 3
RTT_WARM, RTT_N = 100, 1000
BW_WARM, BW_N = 1, 5
STALL_S = 30.0

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "EVENT_NOEPOLL": "1",
}


# ---------------------------------------------------------------- watchdog (children)
class Watchdog:
    """os._exit(3) after STALL_S seconds without progress(); says which stage hung."""

    def __init__(self, who, stall=STALL_S):
        self.who, self.stall = who, stall
        self.stage, self.t = "start", time.monotonic()
        threading.Thread(target=self._run, daemon=True).start()

    def progress(self, stage):
        self.stage, self.t = stage, time.monotonic()

    def _run(self):
        while True:
            time.sleep(0.5)
            if time.monotonic() - self.t > self.stall:
                msg = f"WATCHDOG {self.who}: no progress for {self.stall:.0f} s, hung at: {self.stage}"
                print(msg, file=sys.stderr, flush=True)
                print(json.dumps({"hung": True, "stage": self.stage}), flush=True)
                os._exit(3)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def median_us(xs):
    return statistics.median(xs) * 1e6


def bw_gib(nbytes, rtt):
    return nbytes / (rtt / 2) / (1 << 30)


# ---------------------------------------------------------------- option A: MPI children
def attach_cycles(res, cycles, wd, names, attach, ping_once, detach):
    """`cycles` x (attach, one 8-byte ping-pong, detach), each step timed into `res`;
    `names` = (attach step, detach step) for the watchdog's report."""
    res["cycles_completed"] = 0
    for c in range(cycles):
        wd.progress(f"cycle {c}: {names[0]}")
        t = time.perf_counter()
        link = attach()
        res["connect_s"].append(time.perf_counter() - t)
        res["cycle_rtt_s"].append(ping_once(link, c))
        wd.progress(f"cycle {c}: {names[1]}")
        t = time.perf_counter()
        detach(link)
        res["disconnect_s"].append(time.perf_counter() - t)
        res["cycles_completed"] = c + 1


def mpi_init():
    import mpi4py
    mpi4py.rc.thread_level = "funneled"  # the watchdog thread never calls MPI
    from mpi4py import MPI
    return MPI


def mpi_server(args):
    wd = Watchdog("mpi-server", stall=args.server_stall)
    wd.progress("MPI_Init")
    MPI = mpi_init()
    wd.progress("MPI_Open_port")
    port = MPI.Open_port()
    write_atomic(args.port_file, port)
    hdr = bytearray(HDR.size)
    buf = bytearray(BIG)
    n = 0
    while True:
        wd.progress(f"MPI_Comm_accept #{n}")
        inter = MPI.COMM_SELF.Accept(port, root=0)
        shutdown = False
        while True:
            wd.progress(f"connection #{n}: waiting for a command")
            inter.Recv([hdr, MPI.BYTE], source=0, tag=0)
            op, nbytes, iters = HDR.unpack(hdr)
            if op != OP_PING:
                shutdown = op == OP_SHUTDOWN
                break
            view = memoryview(buf)[:nbytes]
            for i in range(iters):
                inter.Recv([view, MPI.BYTE], source=0, tag=1)
                inter.Send([view, MPI.BYTE], dest=0, tag=1)
                if nbytes >= MIB:
                    wd.progress(f"connection #{n}: echo {nbytes} B #{i}")
        wd.progress(f"MPI_Comm_disconnect #{n}")
        inter.Disconnect()
        n += 1
        if shutdown:
            break
    wd.progress("MPI_Close_port / MPI_Finalize")
    MPI.Close_port(port)
    MPI.Finalize()
    print(json.dumps({"accepted": n}), flush=True)


def mpi_client(args):
    wd = Watchdog("mpi-client")
    wd.progress("MPI_Init")
    t0 = time.perf_counter()
    MPI = mpi_init()
    init_s = time.perf_counter() - t0
    with open(args.port_file) as f:
        port = f.read().strip()
    small = bytearray(8)
    big = bytearray(os.urandom(MIB) * (BIG // MIB))
    back = bytearray(BIG)
    res = {"init_s": init_s, "port": port, "cycles_asked": args.cycles,
           "connect_s": [], "disconnect_s": [], "cycle_rtt_s": []}

    def command(inter, op, nbytes=0, iters=0):
        inter.Send([HDR.pack(op, nbytes, iters), MPI.BYTE], dest=0, tag=0)

    def pingpong(inter, sbuf, rbuf, iters, tag):
        times = []
        for i in range(iters):
            wd.progress(f"{tag} #{i}")
            t = time.perf_counter()
            inter.Send([sbuf, MPI.BYTE], dest=0, tag=1)
            inter.Recv([rbuf, MPI.BYTE], source=0, tag=1)
            times.append(time.perf_counter() - t)
        return times

    def ping_once(inter, c):
        command(inter, OP_PING, 8, 1)
        rtt = pingpong(inter, small, small, 1, f"cycle {c}: 8 B ping-pong")[0]
        command(inter, OP_END)
        return rtt

    attach_cycles(res, args.cycles, wd, ("MPI_Comm_connect", "MPI_Comm_disconnect"),
                  lambda: MPI.COMM_SELF.Connect(port, root=0), ping_once,
                  lambda inter: inter.Disconnect())

    wd.progress("measurement connection: MPI_Comm_connect")
    inter = MPI.COMM_SELF.Connect(port, root=0)
    command(inter, OP_PING, 8, RTT_WARM + RTT_N)
    res["rtt8_s"] = pingpong(inter, small, small, RTT_WARM + RTT_N, "8 B ping-pong")[RTT_WARM:]
    command(inter, OP_PING, BIG, BW_WARM + BW_N)
    res["rtt64m_s"] = pingpong(inter, big, back, BW_WARM + BW_N, "64 MiB echo")[BW_WARM:]
    res["echo_ok"] = back == big
    command(inter, OP_SHUTDOWN)
    wd.progress("measurement connection: MPI_Comm_disconnect")
    inter.Disconnect()
    wd.progress("MPI_Finalize")
    MPI.Finalize()
    print(json.dumps(res), flush=True)


# ---------------------------------------------------------------- option B: TCP children
def recv_exact(sock, view, spin=False):
    """recv_into until view is full; spin=True busy-polls (MSG_DONTWAIT) like MPI's progress
    loop instead of sleeping in the kernel."""
    got, n = 0, len(view)
    while got < n:
        if spin:
            try:
                k = sock.recv_into(view[got:], n - got, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
        else:
            k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("peer closed")
        got += k


def tcp_server(args):
    wd = Watchdog("tcp-server", stall=args.server_stall)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    write_atomic(args.port_file, str(lsock.getsockname()[1]))
    hdr = bytearray(HDR.size)
    buf = bytearray(BIG)
    n, shutdown = 0, False
    while not shutdown:
        wd.progress(f"accept #{n}")
        sock, _ = lsock.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            while True:
                wd.progress(f"connection #{n}: waiting for a command")
                try:
                    recv_exact(sock, memoryview(hdr))
                except ConnectionError:
                    break  # client closed: an ordinary end of a cycle
                op, nbytes, iters = HDR.unpack(hdr)
                if op not in (OP_PING, OP_PING_SPIN):
                    shutdown = op == OP_SHUTDOWN
                    break
                view = memoryview(buf)[:nbytes]
                for i in range(iters):
                    recv_exact(sock, view, spin=op == OP_PING_SPIN)
                    sock.sendall(view)
                    if nbytes >= MIB:
                        wd.progress(f"connection #{n}: echo {nbytes} B #{i}")
        n += 1
    lsock.close()
    print(json.dumps({"accepted": n}), flush=True)


def tcp_client(args):
    wd = Watchdog("tcp-client")
    with open(args.port_file) as f:
        port = int(f.read())
    small = bytearray(8)
    big = bytearray(os.urandom(MIB) * (BIG // MIB))
    back = bytearray(BIG)
    res = {"port": port, "cycles_asked": args.cycles,
           "connect_s": [], "disconnect_s": [], "cycle_rtt_s": []}

    def connect():
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def pingpong(sock, sbuf, rbuf, iters, tag, spin=False):
        times, sv, rv = [], memoryview(sbuf), memoryview(rbuf)
        for i in range(iters):
            wd.progress(f"{tag} #{i}")
            t = time.perf_counter()
            sock.sendall(sv)
            recv_exact(sock, rv, spin)
            times.append(time.perf_counter() - t)
        return times

    def ping_once(sock, c):
        sock.sendall(HDR.pack(OP_PING, 8, 1))
        return pingpong(sock, small, small, 1, f"cycle {c}: 8 B ping-pong")[0]

    # close: the server sees EOF and goes back to accept
    attach_cycles(res, args.cycles, wd, ("connect", "close"), connect, ping_once,
                  lambda sock: sock.close())

    wd.progress("measurement connection: connect")
    sock = connect()
    sock.sendall(HDR.pack(OP_PING, 8, RTT_WARM + RTT_N))
    res["rtt8_s"] = pingpong(sock, small, small, RTT_WARM + RTT_N, "8 B ping-pong")[RTT_WARM:]
    sock.sendall(HDR.pack(OP_PING_SPIN, 8, RTT_WARM + RTT_N))
    res["rtt8_spin_s"] = pingpong(sock, small, small, RTT_WARM + RTT_N, "8 B spin ping-pong",
                                  spin=True)[RTT_WARM:]
    sock.sendall(HDR.pack(OP_PING, BIG, BW_WARM + BW_N))
    res["rtt64m_s"] = pingpong(sock, big, back, BW_WARM + BW_N, "64 MiB echo")[BW_WARM:]
    res["echo_ok"] = back == big
    sock.sendall(HDR.pack(OP_SHUTDOWN, 0, 0))
    sock.close()

    wd.progress("HMAC-SHA256 over 64 MiB")
    key = os.urandom(32)
    res["hmac_new_s"], res["hmac_digest_s"], res["sha256_s"] = [], [], []
    for i in range(1 + BW_N):
        t = time.perf_counter()
        hmac.new(key, big, hashlib.sha256).digest()
        t1 = time.perf_counter()
        hmac.digest(key, big, "sha256")
        t2 = time.perf_counter()
        hashlib.sha256(big).digest()
        t3 = time.perf_counter()
        if i:
            res["hmac_new_s"].append(t1 - t)
            res["hmac_digest_s"].append(t2 - t1)
            res["sha256_s"].append(t3 - t2)
        wd.progress(f"HMAC #{i}")
    print(json.dumps(res), flush=True)


# ---------------------------------------------------------------- parent
class Procs:
    """Children started by this run, each in its own session; stop() ends exactly those."""

    def __init__(self, rundir):
        self.rundir, self.items, self.leftovers = rundir, [], []
        self.marker = os.path.basename(rundir)

    def start(self, name, argv, env):
        out = open(os.path.join(self.rundir, name + ".out"), "w")
        err = open(os.path.join(self.rundir, name + ".err"), "w")
        env = dict(env, REMOTE_MEASURE_RUN=self.marker)
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err, start_new_session=True)
        self.items.append((name, p))
        return p

    def log(self, name, which="err", tail=2000):
        try:
            with open(os.path.join(self.rundir, f"{name}.{which}")) as f:
                return f.read()[-tail:]
        except OSError:
            return ""

    def result(self, name):
        lines = [l for l in self.log(name, "out", 10**9).splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None

    def stop(self, p, grace=5.0):
        """SIGTERM, then SIGKILL, to the process group of this child only (pgid == its pid)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; members of its group (e.g. a singleton's orted) may remain
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)

    def stop_all(self):
        for _, p in reversed(self.items):
            self.stop(p)
        # A singleton forks an orted into its own session; it inherits our marker variable.
        for pid in marked_pids(self.marker):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode()
                os.kill(pid, signal.SIGKILL)
                self.leftovers.append(f"{pid} {cmd}")
            except OSError:
                pass


def marked_pids(marker):
    """PIDs whose environment holds REMOTE_MEASURE_RUN=marker: only processes this run started."""
    want, found = f"REMOTE_MEASURE_RUN={marker}".encode(), []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    found.append(int(d))
        except OSError:
            pass
    return found


def wait_file(path, timeout, procs_alive):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        if not procs_alive():
            return False
        time.sleep(0.05)
    return False


def summarize(res):
    if not res or res.get("hung"):
        return None
    s = {
        "cycles_completed": res["cycles_completed"],
        "connect_ms_median": statistics.median(res["connect_s"]) * 1e3,
        "disconnect_ms_median": statistics.median(res["disconnect_s"]) * 1e3,
        "connect_plus_disconnect_ms_median": statistics.median(
            [a + b for a, b in zip(res["connect_s"], res["disconnect_s"])]) * 1e3,
        "connect_plus_disconnect_ms_max": max(
            [a + b for a, b in zip(res["connect_s"], res["disconnect_s"])]) * 1e3,
        "first_cycle_connect_ms": res["connect_s"][0] * 1e3,
        "rtt8_us_median": median_us(res["rtt8_s"]),
        "rtt8_us_min": min(res["rtt8_s"]) * 1e6,
        "rtt64m_ms_median": statistics.median(res["rtt64m_s"]) * 1e3,
        "bw64m_gib_s_each_way": bw_gib(BIG, statistics.median(res["rtt64m_s"])),
        "bw64m_gib_s_best": bw_gib(BIG, min(res["rtt64m_s"])),
        "echo_ok": res["echo_ok"],
    }
    if "rtt8_spin_s" in res:
        s["rtt8_spin_us_median"] = median_us(res["rtt8_spin_s"])
        s["rtt8_spin_us_min"] = min(res["rtt8_spin_s"]) * 1e6
    if "init_s" in res:
        s["client_mpi_init_s"] = res["init_s"]
    for k, label in (("hmac_new_s", "hmac_new"), ("hmac_digest_s", "hmac_digest"),
                     ("sha256_s", "sha256")):
        if k in res:
            s[label + "_gib_s"] = BIG / statistics.median(res[k]) / (1 << 30)
    return s


def run_option(opt, rundir, cycles):
    """Starts the children of one option, waits bounded, returns a dict of what happened."""
    procs = Procs(rundir)
    py = sys.executable
    port_file = os.path.join(rundir, "port")
    out = {"option": opt, "ok": False, "commands": []}
    try:
        if opt == "A":
            uri = os.path.join(rundir, "uri")
            env = dict(os.environ, **MPI_ENV)
            cmd = ["ompi-server", "--no-daemonize", "-r", uri]
            out["commands"].append(" ".join(cmd) + "   (env: OMPI_MCA_oob_tcp_if_include=lo ...)")
            srv = procs.start("ompi-server", cmd, env)
            if not wait_file(uri, 15, lambda: srv.poll() is None):
                out["error"] = "ompi-server wrote no URI: " + procs.log("ompi-server")
                return out
            with open(uri) as f:
                out["ompi_server_uri"] = f.read().strip()
            env = dict(env, OMPI_MCA_pmix_server_uri="file:" + uri)
            roles = ("mpi-server", "mpi-client")
        elif opt == "A0":  # control: the same singletons with no ompi-server
            env = dict(os.environ, **MPI_ENV)
            env.pop("OMPI_MCA_pmix_server_uri", None)
            roles = ("mpi-server", "mpi-client")
        else:
            env = dict(os.environ)
            roles = ("tcp-server", "tcp-client")
        cmd = [py, HERE, roles[0], "--port-file", port_file]
        out["commands"].append(" ".join(cmd))
        server = procs.start(roles[0], cmd, env)
        if not wait_file(port_file, 30, lambda: server.poll() is None):
            out["error"] = (f"{roles[0]} wrote no port (rc={server.poll()}): "
                            + procs.log(roles[0]))
            return out
        with open(port_file) as f:
            out["port"] = f.read().strip()
        cmd = [py, HERE, roles[1], "--port-file", port_file, "--cycles", str(cycles)]
        out["commands"].append(" ".join(cmd))
        t0 = time.perf_counter()
        client = procs.start(roles[1], cmd, env)
        try:
            client.wait(timeout=120 + cycles * 0.5)
        except subprocess.TimeoutExpired:
            out["error"] = "client exceeded the parent's time limit"
        out["client_wall_s"] = time.perf_counter() - t0
        out["client_rc"] = client.poll()
        try:
            server.wait(timeout=2 if opt == "A0" else 20)
        except subprocess.TimeoutExpired:
            pass
        out["server_rc"] = server.poll()
        raw = procs.result(roles[1])
        out["raw"] = raw
        out["summary"] = summarize(raw)
        out["server_result"] = procs.result(roles[0])
        out["hangs"] = 1 if (raw or {}).get("hung") or out.get("error") else 0
        if raw and raw.get("hung"):
            out["error"] = f"watchdog: client hung at {raw['stage']}"
        out["ok"] = out["client_rc"] == 0 and out["summary"] is not None
        if opt == "A0":
            err = procs.log(roles[1], tail=10**6)
            out["error_lines"] = [l for l in err.splitlines()
                                  if "ompi-server" in l or "Reason:" in l or "Exception" in l]
            out["ok"] = not out["ok"]  # the control is expected to fail
            return out
        if not out["ok"]:
            out.setdefault("error", f"client rc={out['client_rc']}")
            out["client_stderr"] = procs.log(roles[1])
            out["server_stderr"] = procs.log(roles[0])
            if opt == "A":
                out["ompi_server_stderr"] = procs.log("ompi-server")
        return out
    finally:
        procs.stop_all()
        out["leftovers_ended"] = procs.leftovers


def print_option(r):
    name = {"A": "A: MPI connect/accept via ompi-server",
            "A0": "A0 (control): the same MPI singletons without ompi-server, 1 cycle",
            "B": "B: plain TCP on 127.0.0.1"}[r["option"]]
    print(f"\n== Option {name}")
    for c in r["commands"]:
        print("   $", c)
    if r["option"] == "A0":
        print(f"   client rc={r['client_rc']} after {r['client_wall_s']:.2f} s, server still in"
              f" accept: {r['server_rc'] is None} (ended by the parent); expected failure:"
              f" {'yes' if r['ok'] else 'NO'}")
        for line in r.get("error_lines", []):
            print("   |", line.strip())
        return
    if not r["ok"]:
        print("   FAILED:", r.get("error"))
        for k in ("client_stderr", "server_stderr", "ompi_server_stderr"):
            if r.get(k):
                print(f"   --- {k}:\n" + r[k])
    s = r.get("summary")
    if not s:
        return
    print(f"   cycles completed        {s['cycles_completed']} / {r['raw']['cycles_asked']}"
          f"   hangs: {r['hangs']}")
    print(f"   connect+disconnect      median {s['connect_plus_disconnect_ms_median']:.3f} ms"
          f"  (connect {s['connect_ms_median']:.3f}, disconnect {s['disconnect_ms_median']:.3f},"
          f" max {s['connect_plus_disconnect_ms_max']:.3f}, first connect"
          f" {s['first_cycle_connect_ms']:.3f})")
    print(f"   8 B round trip          median {s['rtt8_us_median']:.2f} us"
          f"  (min {s['rtt8_us_min']:.2f}, n={RTT_N})")
    print(f"   64 MiB echo             median {s['rtt64m_ms_median']:.1f} ms per round trip"
          f" -> {s['bw64m_gib_s_each_way']:.3f} GiB/s each way (best"
          f" {s['bw64m_gib_s_best']:.3f}), data ok: {s['echo_ok']}")
    if "rtt8_spin_us_median" in s:
        print(f"   8 B round trip, spin    median {s['rtt8_spin_us_median']:.2f} us"
              f"  (min {s['rtt8_spin_us_min']:.2f}; both ends busy-poll recv, as MPI does)")
    if "client_mpi_init_s" in s:
        print(f"   client MPI_Init         {s['client_mpi_init_s']:.3f} s")
    if "hmac_new_s" in (r["raw"] or {}):
        print(f"   HMAC-SHA256 64 MiB      hmac.new {s['hmac_new_gib_s']:.3f} GiB/s,"
              f" hmac.digest {s['hmac_digest_gib_s']:.3f} GiB/s"
              f" (bare sha256 {s['sha256_gib_s']:.3f} GiB/s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", nargs="?", default="parent",
                    choices=["parent", "mpi-server", "mpi-client", "tcp-server", "tcp-client"])
    ap.add_argument("--port-file")
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--server-stall", type=float, default=STALL_S * 4,
                    help="servers idle between connections; their watchdog is looser")
    ap.add_argument("--only", choices=["A", "A0", "B"])
    ap.add_argument("--no-control", action="store_true",
                    help="skip A0, the connect attempt without ompi-server (~3 s)")
    ap.add_argument("--json", help="also write all numbers (and raw samples) here")
    args = ap.parse_args()
    roles = {"mpi-server": mpi_server, "mpi-client": mpi_client,
             "tcp-server": tcp_server, "tcp-client": tcp_client}
    if args.role in roles:
        return roles[args.role](args)

    os.makedirs(SCRATCH, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "nproc": os.cpu_count(),
            "python": sys.version.split()[0], "executable": sys.executable,
            "cycles": args.cycles}
    try:
        info["ompi"] = subprocess.run(["ompi_info", "--version"], capture_output=True,
                                      text=True, timeout=20).stdout.splitlines()[0]
    except Exception as e:  # noqa: BLE001
        info["ompi"] = repr(e)
    print(f"{info['date']}  nproc={info['nproc']}  python {info['python']}  {info['ompi']}")
    results = {"info": info}
    for opt in ("A", "A0", "B"):
        if (args.only and opt != args.only) or (opt == "A0" and args.no_control):
            continue
        rundir = os.path.join(SCRATCH, f"{stamp}-{opt}")
        os.makedirs(rundir, exist_ok=True)
        r = run_option(opt, rundir, 1 if opt == "A0" else args.cycles)
        r["scratch"] = rundir
        print_option(r)
        if r["leftovers_ended"]:
            print("   leftover processes of this run, ended at cleanup:", r["leftovers_ended"])
        results[opt] = r
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(results[o]["ok"] for o in ("A", "A0", "B") if o in results) else 1


if __name__ == "__main__":
    sys.exit(main())
