"""pp's statistics: get_stats() rows, the print_stats() table, and SIGUSR1 on the master.

Each row is one worker (``host:rank``). A job is counted once, by the worker whose result
was used: a job re-run after its worker was lost is not counted twice (pp counts at dispatch
and so does)."""
import signal
import sys
import threading
import time


class Statistics:
    """One row of get_stats(): pp's _Statistics."""

    def __init__(self, ncpus, njobs=0, time=0.0, rworker=None):
        self.ncpus, self.njobs, self.time, self.rworker = ncpus, njobs, time, rworker

    def __repr__(self):
        return f"Statistics(ncpus={self.ncpus}, njobs={self.njobs}, time={self.time:.6f})"


def rows(raw, remote=()):
    """{"host:rank": Statistics} from the dispatcher's stats, and {"host:port":
    Statistics(workers, ...)} for each remote server in `remote` [(name, workers, jobs, s)]."""
    out = {label: Statistics(1, jobs, seconds) for label, jobs, seconds in raw["per_worker"]}
    for name, workers, jobs, seconds in remote:
        out[name] = Statistics(workers, jobs, seconds)
    return out


def table(raw, created, cores, remote=(), out=None):
    """pp's table (same columns and formats), then the jobs running now and on which rank."""
    out = out or sys.stdout
    stats = rows(raw, remote)
    total = sum(s.njobs for s in stats.values())
    lines = ["Job execution statistics:",
             " job count | % of all jobs | job time sum | time per job | job server"]
    for label, s in sorted(stats.items()):
        if s.njobs:
            lines.append("    %6i |        %6.2f |     %8.4f |  %11.6f | %s"
                         % (s.njobs, 100.0 * s.njobs / total, s.time, s.time / s.njobs, label))
    for name, workers, jobs, _seconds in remote:
        if not jobs:
            lines.append(f"         0 |          0.00 |       0.0000 |     0.000000 | {name}")
    for name, workers, _jobs, _seconds in remote:
        lines.append(f"Remote server {name}: {workers} workers")
    lines.append(f"Time elapsed since server creation {time.time() - created}")
    lines.append(f"{raw['pending'] + raw['running']} active tasks, {cores} cores")
    running = sorted(raw.get("running_jobs", ()))
    if running:
        lines.append("Running now:")
        lines += [f"  job {job} on {worker} for {seconds:.3f} s" for job, worker, seconds in running]
    print("\n".join(lines) + "\n", file=out, flush=True)


_installed = False


def install_sigusr1(servers):
    """As pp's ppserver: SIGUSR1 to the master prints every live server's statistics.
    Installed once, from the main thread, and only where nobody else handles SIGUSR1."""
    global _installed
    if _installed or not hasattr(signal, "SIGUSR1"):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None):
        return
    _installed = True

    def on_sigusr1(_signum, _frame):
        for server in list(servers()):
            try:
                server.print_stats()
            except Exception as exc:  # a signal handler must not raise into the driver
                print(f"ppmpi: statistics unavailable: {exc}", file=sys.stderr)

    signal.signal(signal.SIGUSR1, on_sigusr1)
