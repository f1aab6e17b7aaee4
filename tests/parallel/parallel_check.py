"""Parallel jobs (submit(..., nranks=k)) on one server of 6 workers, in whichever launch mode
this runs in: alone (spawned workers), under mpirun --enable-recovery -np 7, or ppmpirun -np 7.
Each check prints "OK: ..."; the last line is "OK: all parallel checks passed". Every wait is
bounded (job(timeout) via wait_for); a failure raises and the run ends non-zero.

    /usr/bin/python3 tests/parallel/parallel_check.py [--sequential 5000]"""
import argparse
import os
import signal
import sys
import tempfile
import time

import ppmpi  # first: under mpirun, ranks 1.. become workers here

import bounded  # tests/parallel/bounded.py, beside this file

import numpy as np

WORKERS = 6
BOUND_S = 60.0


def wait_for(job, bound=BOUND_S):
    return bounded.wait_for(job, bound)


def ranks_and_sizes(tag):
    from mpi4py import MPI
    comm = ppmpi.comm()
    return (comm.Get_rank(), comm.Get_size(), comm.allreduce(comm.Get_rank()),
            type(comm).__name__, MPI.Query_thread() == MPI.THREAD_MULTIPLE, tag)


def tokens(token, seconds):
    comm = ppmpi.comm()
    seen = comm.allgather(token)
    time.sleep(seconds)
    return seen


def allreduce_array(count):
    from mpi4py import MPI
    comm = ppmpi.comm()
    mine = np.full(count, comm.Get_rank() + 1, dtype=np.float64)
    total = np.empty_like(mine)
    comm.Allreduce(mine, total, op=MPI.SUM)
    return float(total.min()), float(total.max())


def single(seconds):
    time.sleep(seconds)
    return os.getpid()


def started_at():
    ppmpi.comm().Barrier()
    return time.time()


def rank_one_raises():
    comm = ppmpi.comm()
    if comm.Get_rank() == 1:
        raise KeyError("rank one failed")
    comm.Barrier()  # the others wait here for good: ppmpi must stop them
    return comm.Get_rank()


def rank_one_dies(marker):
    comm = ppmpi.comm()
    if comm.Get_rank() == 1 and (marker is None or not os.path.exists(marker)):
        if marker is not None:
            open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return comm.allreduce(1)


def sleeps(seconds):
    ppmpi.comm().Barrier()
    time.sleep(seconds)
    return True


def pid_and_rss():
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return os.getpid(), rss


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def check_ranks(server):
    for k in (2, 3, 4):
        got = wait_for(server.submit(ranks_and_sizes, (k,), nranks=k))
        want = [(r, k, k * (k - 1) // 2, "Intracomm", True, k) for r in range(k)]
        assert got == want, (k, got)
    print("OK: ranks, sizes and allreduce for k = 2, 3, 4 (Intracomm, THREAD_MULTIPLE)")


def check_isolation(server):
    start = time.monotonic()
    a = server.submit(tokens, ("a", 1.0), nranks=2)
    b = server.submit(tokens, ("b", 1.0), nranks=2)
    singles = [server.submit(single, (0.05,)) for _ in range(8)]
    assert wait_for(a) == [["a", "a"], ["a", "a"]], a()
    assert wait_for(b) == [["b", "b"], ["b", "b"]], b()
    for job in singles:
        wait_for(job)
    wall = time.monotonic() - start
    assert wall < 1.9, f"two 1 s parallel jobs side by side took {wall:.2f} s"
    print(f"OK: two 2-rank jobs side by side see only their own messages, singles beside them "
          f"({wall:.2f} s)")


def check_array(server):
    got = wait_for(server.submit(allreduce_array, (1 << 20,), nranks=4))  # 8 MiB per rank
    assert got == [(10.0, 10.0)] * 4, got
    print("OK: numpy Allreduce of 8 MiB per rank")


def check_no_starvation(server):
    stream = [server.submit(single, (0.01,)) for _ in range(20)]
    submitted = time.time()
    gang = server.submit(started_at, (), nranks=4)
    stream += [server.submit(single, (0.01,)) for _ in range(300)]
    began = min(wait_for(gang)) - submitted
    for job in stream:
        wait_for(job)
    assert began < 5.0, f"a 4-rank job waited {began:.2f} s behind 10 ms jobs"
    print(f"OK: a 4-rank job started {began:.3f} s after it was submitted behind a stream of "
          f"10 ms jobs, which all completed")


def check_raise(server):
    start = time.monotonic()
    try:
        wait_for(server.submit(rank_one_raises, (), nranks=4))
        raise AssertionError("a raising rank did not fail its job")
    except KeyError as exc:
        notes = " ".join(getattr(exc, "__notes__", []))
        assert "rank 1" in notes and "did not finish" in notes, notes
    took = time.monotonic() - start
    assert wait_for(server.submit(ranks_and_sizes, ("after",), nranks=4))[3][0] == 3
    print(f"OK: a rank raising while the others wait in Barrier: KeyError in {took:.2f} s, "
          f"the waiting ranks replaced, the next 4-rank job ran")


def check_killed(server):
    marker = os.path.join(tempfile.mkdtemp(), "killed-once")
    assert wait_for(server.submit(rank_one_dies, (marker,), nranks=3)) == [3, 3, 3]
    try:
        wait_for(server.submit(rank_one_dies, (None,), nranks=2))
        raise AssertionError("a rank killed every time did not end in WorkerLost")
    except ppmpi.WorkerLost as exc:
        assert "max_retries=3" in str(exc), exc
    print("OK: a rank SIGKILLed once: the job ran again; every time: WorkerLost")


def check_timeout_and_cancel(server):
    try:
        wait_for(server.submit(sleeps, (60,), nranks=2, timeout=1.0))
        raise AssertionError("a parallel job outlived its timeout")
    except ppmpi.JobTimeout:
        pass
    job = server.submit(sleeps, (60,), nranks=3)
    time.sleep(0.5)
    assert job.cancel()
    try:
        wait_for(job)
        raise AssertionError("a cancelled parallel job returned")
    except Exception as exc:  # concurrent.futures.CancelledError
        assert type(exc).__name__ == "CancelledError", exc
    assert wait_for(server.submit(ranks_and_sizes, ("x",), nranks=3))[0][1] == 3
    print("OK: timeout= and cancel() stop every rank of a parallel job")


def check_bad_input(server):
    for bad, kind in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
                      ("2", TypeError), (WORKERS + 1, ValueError)):
        try:
            server.submit(ranks_and_sizes, (0,), nranks=bad)
            raise AssertionError(f"nranks={bad!r} was accepted")
        except kind as exc:
            assert "nranks" in str(exc), exc
    try:
        ppmpi.comm()
        raise AssertionError("ppmpi.comm() outside a parallel job")
    except RuntimeError:
        pass
    print("OK: bad nranks refused at submit (ValueError/TypeError); comm() outside a job raises")


def check_executor_and_callback(server):
    with ppmpi.Executor(max_workers=4) as ex:
        rank_sum = ppmpi.parallel(lambda a, b=0: (ppmpi.comm().Get_rank(), a + b), nranks=2)
        assert ex.submit(rank_sum, 5, b=2).result(BOUND_S) == [(0, 7), (1, 7)]
        total = ppmpi.parallel(lambda a: ppmpi.comm().allreduce(a), nranks=3)
        assert list(ex.map(total, [1, 2], timeout=BOUND_S)) == [[3, 3, 3], [6, 6, 6]]
    got = []
    wait_for(server.submit(ranks_and_sizes, ("cb",), nranks=2, callback=got.append))
    server.wait()
    assert len(got) == 1 and [r[0] for r in got[0]] == [0, 1], got
    print("OK: ppmpi.parallel with Executor.submit and map; a callback gets the list")


def check_sequential(server, count):
    before = dict(wait_for(server.submit(pid_and_rss, (), nranks=2)))
    start = time.monotonic()
    for _ in range(count):
        wait_for(server.submit(ranks_and_sizes, (0,), nranks=2))
    per_job = (time.monotonic() - start) / count
    after = dict(wait_for(server.submit(pid_and_rss, (), nranks=2)))
    growth = max((after[pid] - before[pid]) / 1024 for pid in after if pid in before)
    assert growth < 20, f"a worker grew by {growth:.1f} MiB over {count} parallel jobs"
    print(f"OK: {count} sequential 2-rank jobs, {per_job * 1e3:.2f} ms each, worker memory "
          f"grew by at most {growth:.1f} MiB")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=5000)
    args = parser.parse_args()
    with ppmpi.Server(WORKERS, max_retries=3) as server:
        assert server.get_ncpus() == WORKERS, server.get_ncpus()
        for check in (check_ranks, check_isolation, check_array, check_no_starvation,
                      check_raise, check_killed, check_timeout_and_cancel, check_bad_input,
                      check_executor_and_callback):
            check(server)
        check_sequential(server, args.sequential)
        pids = {pid for pid, _ in wait_for(server.submit(pid_and_rss, (), nranks=WORKERS))}
        assert server.get_ncpus() == WORKERS
    print("OK: the pool is back to its size after every fault (a 6-rank job ran at the end)")
    if not os.environ.get("OMPI_COMM_WORLD_SIZE"):  # spawned workers end with destroy()
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids), "workers outlived the server"
        print("OK: no worker left running after destroy()")
    print("OK: all parallel checks passed")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
