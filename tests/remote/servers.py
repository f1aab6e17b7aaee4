"""ppmpi-server processes for the tests (helpers and the start_server fixture), started and
stopped by pid. Every server listens on 127.0.0.1; nothing else is contacted."""
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import ppmpi  # noqa: F401  (first, as in every ppmpi driver)
import pytest

HERE = pathlib.Path(__file__).resolve().parent
# The jobs these tests send are tests/python/helpers.py's; the servers import it by name too.
JOBS_DIR = HERE.parent / "python"
sys.path.insert(0, str(JOBS_DIR))
BUILD = pathlib.Path(ppmpi.__file__).resolve().parents[2]
SERVER_BIN = BUILD / "bin" / "ppmpi-server"
START_BOUND_S = 30.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """Every process below `pid` (from /proc), children first found first."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def server_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_COMM_WORLD", "PMIX_", "OMPI_MCA_orte_ess"))}
    env["PYTHONPATH"] = os.pathsep.join([str(BUILD / "python"), str(JOBS_DIR)])
    return env


class RemoteServer:
    """One ppmpi-server child process; stop() ends it and everything it started."""

    def __init__(self, tmp_path, *args, port=None, secret="mys", workers=1, wait=True,
                 prefix=(), env=None):
        self.port = port or free_port()
        self.log_path = tmp_path / f"server-{self.port}.log"
        argv = [str(SERVER_BIN), "-p", str(self.port)]
        if workers is not None:  # None: the server's own default
            argv += ["-w", str(workers)]
        if "-i" not in args:
            argv += ["-i", "127.0.0.1"]
        if secret is not None:
            argv += ["-s", secret]
        self.argv = list(prefix) + argv + list(args)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env or server_env())
        self.address = f"127.0.0.1:{self.port}"
        self.tree = []
        if wait:
            self.wait_for("listening on", START_BOUND_S)
            self.tree = descendants(self.proc.pid)

    def log(self):
        return self.log_path.read_text()

    def wait_for(self, pattern, bound):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"ppmpi-server exited ({self.proc.returncode}):\n{self.log()}")
            time.sleep(0.05)
        pytest.fail(f"ppmpi-server did not log {pattern!r} within {bound} s:\n{self.log()}")

    def worker_pids(self):
        return [p for p in descendants(self.proc.pid) if _is_worker(p)]

    def stop(self, sig=signal.SIGTERM, bound=20.0):
        """Ends the server (and, by pid, whatever it started that outlived it)."""
        tree = set(self.tree) | set(descendants(self.proc.pid))
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(bound)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode


def _is_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()
        return b"ppmpi._worker_main" in command or b"ppmpi-worker" in command
    except OSError:
        return False


@pytest.fixture
def start_server(tmp_path):
    """start_server(*args, **kw) -> RemoteServer; all are stopped at the end of the test."""
    made = []

    def start(*args, **kw):
        server = RemoteServer(tmp_path, *args, **kw)
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


def start_client_running_a_long_job(address, marker, bound=30.0):
    """A client process whose one job (600 s) is running on the server at `address` once this
    returns; the caller kills it. `marker`: a file the job writes its pid to."""
    code = f"""
import time, ppmpi, helpers
s = ppmpi.Server(0, ppservers=({address!r},), secret="mys")
j = s.submit(helpers.pid_to_file_then_sleep, ({str(marker)!r}, 600))
time.sleep(600)
"""
    client = subprocess.Popen([sys.executable, "-c", code], env=server_env())
    deadline = time.monotonic() + bound
    while not marker.exists():
        if time.monotonic() > deadline or client.poll() is not None:
            client.kill()
            client.wait(10)
            pytest.fail(f"the client's job did not start within {bound} s")
        time.sleep(0.05)
    return client


def run_client(code, timeout=60):
    """Runs a client driver in a process of its own (a fresh MPI singleton)."""
    env = dict(server_env())
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
