"""Server(ppservers=..., secret=...) against ppmpi-server processes on 127.0.0.1."""
import concurrent.futures
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import ppmpi
import pytest
from ppmpi.remote import auth
from ppmpi.remote import servers as ppservers

import helpers
from servers import (SERVER_BIN, descendants, free_port, run_client, server_env,
                     start_client_running_a_long_job)

SEED = '''
import ppmpi as pp
from concurrent.futures import ThreadPoolExecutor, as_completed
import os, sys

def square(n):
    return n * n, os.getpid()

job_server = pp.Server(ppservers=("{address}",), secret="mys", ncpus={ncpus})
def run(n):
    job = job_server.submit(square, (n,))
    return job()
with ThreadPoolExecutor(max_workers=8) as pool:
    futures = [pool.submit(run, n) for n in range(60)]
    results = [f.result() for f in as_completed(futures)]
assert sorted(r[0] for r in results) == [n * n for n in range(60)], results
print("PIDS", sorted({{r[1] for r in results}}))
print("NODES", job_server.get_active_nodes())
job_server.print_stats()
job_server.destroy()
'''


def test_the_seeds_example_runs_unchanged_and_ncpus0_runs_only_on_the_server(start_server):
    remote = start_server(workers=2)
    out = run_client(SEED.format(address=remote.address, ncpus=0))
    assert out.returncode == 0, out.stdout + out.stderr
    pids = eval(out.stdout.split("PIDS", 1)[1].splitlines()[0])
    tree = set(descendants(remote.proc.pid))
    assert pids and set(pids) <= tree, (pids, tree)  # every job ran below the server
    assert f"'{remote.address}': 2" in out.stdout
    assert remote.address in out.stdout.split("Job execution statistics:")[1]


def test_local_and_remote_workers_share_the_load(start_server):
    remote = start_server(workers=1)
    with ppmpi.Server(1, ppservers=(remote.address,), secret="mys") as server:
        wait_connected(server, remote.address)
        jobs = [server.submit(helpers.pid_after, (0.1,)) for _ in range(20)]
        pids = [job() for job in jobs]
        tree = set(descendants(remote.proc.pid))
        on_remote = sum(pid in tree for pid in pids)
        # Equal workers, equal jobs: pp's "local first" would have sent (nearly) all locally.
        assert 6 <= on_remote <= 14, on_remote
        stats = server.get_stats()
        assert stats[remote.address].njobs == on_remote and stats[remote.address].ncpus == 1


def test_a_listed_server_is_in_use_when_Server_returns(start_server):
    remote = start_server(workers=1)
    with ppmpi.Server(1, ppservers=(remote.address,), secret="mys") as server:
        # Server() waited for the first contact: the seed's first jobs are balanced too.
        assert server.get_active_nodes() == {"local": 1, remote.address: 1}
        tree = set(descendants(remote.proc.pid))
        pids = [job() for job in [server.submit(helpers.pid_after, (0.2,)) for _ in range(2)]]
        assert sum(pid in tree for pid in pids) == 1, (pids, tree)


def wait_connected(server, address, bound=15.0):
    deadline = time.monotonic() + bound
    while address not in server.get_active_nodes():
        assert time.monotonic() < deadline, f"{address} never connected"
        time.sleep(0.02)


def test_results_errors_output_and_large_arrays_come_back(start_server, capsys):
    remote = start_server(workers=1)
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        data = np.arange(4 << 20, dtype=np.float64)  # 32 MiB, out-of-band both ways
        back = server.submit(helpers.sleep_and_return, (0, data))()
        assert np.array_equal(back, data)
        assert server.submit(lambda x: x + 1, (41,))() == 42  # by value, defined here
        with pytest.raises(ValueError, match="remote failure: boom") as info:
            server.submit(helpers.fail, (ValueError, "remote failure: boom"))()
        assert "Traceback" in str(info.value.__cause__)
        assert server.submit(helpers.shout, ("boom",))() == 4
        assert "job says boom" in capsys.readouterr().out
        done = []
        job = server.submit(helpers.sleep_and_return, (0, 7), callback=done.append)
        server.wait()
        assert done == [7] and job() == 7
        future = server.submit(helpers.sleep_and_return, (0, 8)).future
        assert future.result(30) == 8


def test_a_remote_job_is_cancelled_and_times_out_on_its_server(start_server):
    remote = start_server("-k", "1", workers=1)
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        slow = server.submit(helpers.pid_after, (30,))
        time.sleep(0.5)
        assert slow.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            slow()
        with pytest.raises(ppmpi.JobTimeout):
            server.submit(helpers.pid_after, (5,))()  # -k 1 on the server
        assert server.submit(helpers.sleep_and_return, (0, 1))() == 1  # its worker was replaced


def test_a_remote_worker_killed_by_pid_mid_run_costs_no_job(start_server, tmp_path):
    remote = start_server(workers=2)
    marker = str(tmp_path / "pid")
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        victim_job = server.submit(helpers.pid_to_file_then_sleep, (marker, 2.0))
        others = [server.submit(helpers.pid_after, (0.2,)) for _ in range(10)]
        deadline = time.monotonic() + 20
        while not os.path.exists(marker):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        victim = int(open(marker).read())
        assert victim in descendants(remote.proc.pid)  # ours to kill
        os.kill(victim, signal.SIGKILL)
        assert victim_job() != victim  # re-ran on another (or a replacement) worker
        assert len([job() for job in others]) == 10


def test_a_wrong_secret_is_a_clear_error_on_both_sides(start_server, caplog):
    remote = start_server(workers=1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ppmpi"):
        with pytest.raises(ppmpi.NoWorkers, match=rf"{remote.address}.*wrong secret"):
            ppmpi.Server(0, ppservers=(remote.address,), secret="not-mys")
    assert time.monotonic() - started < 10
    assert any(remote.address in r.getMessage() and "secret" in r.getMessage()
               for r in caplog.records)
    remote.wait_for("refused .*wrong secret", 10)


def test_no_usable_server_with_ncpus0_raises_within_a_bound():
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ppmpi.NoWorkers, match=rf"127.0.0.1:{port}.*(refused|Connection)"):
        ppmpi.Server(0, ppservers=(f"127.0.0.1:{port}",), secret="x")
    assert time.monotonic() - started < 20


def test_garbage_silence_huge_lengths_and_floods_leave_the_server_serving(start_server):
    remote = start_server(workers=1)
    held = []
    for _ in range(40):  # a flood, each held open and silent
        s = socket.create_connection(("127.0.0.1", remote.port))
        held.append(s)
    with socket.create_connection(("127.0.0.1", remote.port)) as s:
        s.sendall(os.urandom(4096))
    with socket.create_connection(("127.0.0.1", remote.port)) as s:
        s.sendall(b"PPMPIR01" + os.urandom(32) + struct.pack(">I", 0xFFFFFFFF) * 8)
    with socket.create_connection(("127.0.0.1", remote.port)) as s:  # authenticated, then a lie
        link = auth.client_handshake(s, "mys")
        s.sendall(struct.pack(">I", 0xFFFFFFF0))  # a sealed frame's length
        time.sleep(0.2)
    remote.wait_for("exceeds the bound", 10)
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        assert server.submit(helpers.sleep_and_return, (0, 5))() == 5
    for s in held:
        s.close()
    assert remote.proc.poll() is None
    del link


def test_a_client_killed_mid_run_frees_the_servers_workers(start_server, tmp_path):
    remote = start_server(workers=1)
    client = start_client_running_a_long_job(remote.address, tmp_path / "pid")
    client.kill()
    client.wait(10)
    remote.wait_for(r"left .*1 of its jobs cancelled", 20)
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        assert server.submit(helpers.sleep_and_return, (0, 3))() == 3  # its worker is free again


def test_a_server_that_dies_mid_run_has_its_jobs_run_elsewhere_and_comes_back(start_server):
    port = free_port()
    first = start_server(workers=1, port=port)
    with ppmpi.Server(1, ppservers=(first.address,), secret="mys") as server:
        wait_connected(server, first.address)
        jobs = [server.submit(helpers.pid_after, (0.5,)) for _ in range(8)]
        time.sleep(0.3)
        first.stop(signal.SIGKILL)  # and everything below it, by pid
        assert len([job() for job in jobs]) == 8  # ran locally instead
        assert first.address not in server.get_active_nodes()
        again = start_server(workers=1, port=port)
        wait_connected(server, again.address, bound=20)
        tree = set(descendants(again.proc.pid))
        pids = [server.submit(helpers.pid_after, (0.1,))() for _ in range(12)]
        assert any(pid in tree for pid in pids)


def test_idle_exit_pidfile_and_loopback_without_secret(start_server, tmp_path):
    pidfile = tmp_path / "server.pid"
    remote = start_server("-t", "2", "-P", str(pidfile), secret=None, workers=1)
    assert int(pidfile.read_text()) == remote.proc.pid
    with ppmpi.Server(0, ppservers=(remote.address,)) as server:  # loopback: no secret
        assert server.submit(helpers.sleep_and_return, (0, 9))() == 9
    assert remote.proc.wait(15) == 0
    assert not pidfile.exists()
    assert "no client for 2 s" in remote.log()


def test_the_pidfile_is_there_once_the_port_answers(start_server, tmp_path):
    pidfile = tmp_path / "server.pid"
    remote = start_server("-P", str(pidfile), workers=1, wait=False)
    deadline = time.monotonic() + 30
    while True:  # the first moment a client can connect, a script reads the pidfile
        try:
            socket.create_connection(("127.0.0.1", remote.port), timeout=1).close()
            break
        except OSError:
            assert remote.proc.poll() is None and time.monotonic() < deadline, remote.log()
            time.sleep(0.001)
    assert int(pidfile.read_text()) == remote.proc.pid


def test_no_secret_off_loopback_port_in_use_and_bad_options_exit_nonzero(start_server):
    refused = subprocess.run([str(SERVER_BIN), "-i", "0.0.0.0", "-p", str(free_port())],
                             capture_output=True, text=True, timeout=30, env=server_env())
    assert refused.returncode == 2 and "without a secret" in refused.stderr
    busy = start_server(workers=1)
    clash = subprocess.run([str(SERVER_BIN), "-i", "127.0.0.1", "-p", str(busy.port), "-s", "x"],
                           capture_output=True, text=True, timeout=30, env=server_env())
    assert clash.returncode == 1 and "Address already in use" in clash.stderr
    bad = subprocess.run([str(SERVER_BIN), "-w", "many"], capture_output=True, text=True,
                         timeout=30, env=server_env())
    assert bad.returncode == 2 and "-w" in bad.stderr
    no_pidfile = subprocess.run([str(SERVER_BIN), "-i", "127.0.0.1", "-p", str(free_port()),
                                 "-P", "/nonexistent-dir/server.pid"], capture_output=True,
                                text=True, timeout=30, env=server_env())
    assert no_pidfile.returncode == 1, no_pidfile.stderr
    assert "cannot write the pid file /nonexistent-dir/server.pid" in no_pidfile.stderr
    helped = subprocess.run([str(SERVER_BIN), "--help"], capture_output=True, text=True,
                            timeout=30, env=server_env())
    assert helped.returncode == 0
    for option in ("-p", "-i", "-s", "-w", "-t", "-k", "-P", "-d", "-a", "-b"):
        assert f"  {option} " in helped.stdout or f"  {option}," in helped.stdout, option


def test_with_every_server_gone_waiting_jobs_fail_with_no_workers(start_server, monkeypatch):
    monkeypatch.setattr(ppservers, "NO_NODE_LIMIT_S", 2.0)
    remote = start_server(workers=1)
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        assert server.submit(helpers.sleep_and_return, (0, 1))() == 1
        remote.stop(signal.SIGKILL)
        started = time.monotonic()
        job = server.submit(helpers.sleep_and_return, (0, 2))
        with pytest.raises(ppmpi.NoWorkers, match="no worker, local or remote"):
            job()
        assert time.monotonic() - started < 30  # the lost server is noticed, then 2 s
        server.wait()  # returns: nothing is left waiting


def test_several_clients_at_once_and_one_after_another(start_server):
    remote = start_server(workers=2)
    seed = SEED.format(address=remote.address, ncpus=0)
    others = [subprocess.Popen([sys.executable, "-c", seed], env=server_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        jobs = [server.submit(helpers.pid_after, (0.05,)) for _ in range(20)]
        assert len([job() for job in jobs]) == 20
    for proc in others:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "PIDS" in out, out
    assert run_client(seed).returncode == 0  # and one more after them
    assert remote.log().count("connected (") == 4


def test_a_silent_client_is_dropped_and_its_jobs_cancelled(start_server, tmp_path):
    remote = start_server(workers=1)
    client = start_client_running_a_long_job(remote.address, tmp_path / "pid")
    try:
        os.kill(client.pid, signal.SIGSTOP)  # as a network cut: the connection stays, silent
        remote.wait_for(r"left \(LinkError: timed out.*1 of its jobs cancelled", 30)
    finally:
        client.kill()
        client.wait(10)
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        assert server.submit(helpers.sleep_and_return, (0, 4))() == 4


def test_a_hung_server_is_left_and_its_jobs_run_elsewhere(start_server):
    remote = start_server(workers=1)
    with ppmpi.Server(1, ppservers=(remote.address,), secret="mys") as server:
        wait_connected(server, remote.address)
        jobs = [server.submit(helpers.pid_after, (0.3,)) for _ in range(6)]
        time.sleep(0.2)
        os.kill(remote.proc.pid, signal.SIGSTOP)
        try:
            assert len([job() for job in jobs]) == 6  # the silent server's jobs ran locally
            assert remote.address not in server.get_active_nodes()
        finally:
            os.kill(remote.proc.pid, signal.SIGCONT)


def test_a_server_under_mpirun_serves_with_its_world_ranks(start_server):
    remote = start_server(workers=None, prefix=[shutil.which("mpirun"), "--enable-recovery",
                                                "--oversubscribe", "-np", "3"])
    with ppmpi.Server(0, ppservers=(remote.address,), secret="mys") as server:
        assert server.get_active_nodes()[remote.address] == 2  # -w defaults to world ranks
        jobs = [server.submit(helpers.pid_after, (0.3,)) for _ in range(6)]
        pids = {job() for job in jobs}
    assert len(pids) == 2 and pids <= set(descendants(remote.proc.pid))  # its ranks 1 and 2
