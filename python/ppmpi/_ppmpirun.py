"""ppmpirun: run a driver under mpirun with C++ worker ranks (launch mode 3, MPMD).

    ppmpirun [-np N] [options] driver.py [driver args...]

runs   mpirun --enable-recovery --oversubscribe -x PYTHONPATH [--hostfile H] [mpirun args]
           -np 1 <python> -m ppmpi._driver STATUS driver.py [args] : -np N-1 <ppmpi-worker>

N counts every process (the driver plus N-1 workers); its default is one more than the CPUs
online, i.e. one worker per CPU. --enable-recovery keeps the job alive when a worker dies,
but then mpirun exits 0 whatever the driver did: ppmpirun exits with the driver's status
instead (ppmpi._driver records it in STATUS). SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed
on to mpirun (SIGUSR1: the driver prints its statistics)."""
import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from . import _launch


def build_parser():
    p = argparse.ArgumentParser(prog="ppmpirun", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("-np", "-n", dest="np", type=int, default=None,
                   help="processes in all: the driver plus N-1 workers (default: CPUs + 1)")
    p.add_argument("--hostfile", "-hostfile", help="mpirun hostfile (see hostfiles/)")
    p.add_argument("--python", default=sys.executable or "/usr/bin/python3",
                   help="interpreter for the driver (default: %(default)s)")
    p.add_argument("--worker", default=_launch.worker_path(),
                   help="ppmpi-worker executable (default: the one in the package)")
    p.add_argument("--mpirun", default=os.environ.get("MPIRUN", "mpirun"),
                   help="the mpirun to use (default: $MPIRUN or mpirun)")
    p.add_argument("--mpirun-arg", action="append", default=[], metavar="ARG",
                   help="pass ARG to mpirun as it is (repeatable), e.g. --mpirun-arg=--bind-to=none")
    p.add_argument("--no-oversubscribe", action="store_true",
                   help="do not pass --oversubscribe (a master plus one worker per CPU needs it)")
    p.add_argument("-d", "--debug", action="store_true",
                   help="debug logging on the master (PPMPI_DEBUG=1, like ppserver -d)")
    p.add_argument("--dry-run", action="store_true", help="print the mpirun command, run nothing")
    p.add_argument("driver", help="the Python driver script")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the driver")
    return p


def build_command(opts, status_file="STATUS"):
    if opts.np is not None and opts.np < 2:
        raise SystemExit(f"ppmpirun: -np must be at least 2 (the driver and one worker), got {opts.np}")
    np_total = opts.np if opts.np is not None else _launch.detect_ncpus() + 1
    if not os.path.isfile(opts.driver):
        raise SystemExit(f"ppmpirun: no such driver script: {opts.driver}")
    if not os.access(opts.worker, os.X_OK):
        raise SystemExit(f"ppmpirun: the worker {opts.worker} is not an executable file")
    mpirun = shutil.which(opts.mpirun)
    if mpirun is None:
        raise SystemExit(f"ppmpirun: {opts.mpirun} not found (install openmpi-bin)")
    cmd = [mpirun, "--enable-recovery", "-x", "PYTHONPATH"]
    if opts.debug:
        cmd += ["-x", "PPMPI_DEBUG=1"]
    if not opts.no_oversubscribe:
        cmd.append("--oversubscribe")
    if opts.hostfile:
        cmd += ["--hostfile", opts.hostfile]
    cmd += opts.mpirun_arg
    cmd += ["-np", "1", opts.python, "-m", "ppmpi._driver", status_file, opts.driver] + opts.args
    cmd += [":", "-np", str(np_total - 1), opts.worker]
    return cmd


def run_with_status(cmd, status_file):
    """Runs mpirun; returns the driver's exit status (or mpirun's own, if the driver left
    none: it never started, or it was killed)."""
    proc = subprocess.Popen(cmd)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    # Ctrl-C reaches mpirun from the terminal (same process group); a second copy from us
    # would make it abort at once instead of ending the job in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mpirun_status = proc.wait()  # no bound: as long as the user's job runs; signals pass on
    try:
        with open(status_file) as f:
            return int(f.read().strip() or 1)
    except (OSError, ValueError):
        if mpirun_status == 0:
            print("ppmpirun: the driver ended without an exit status (killed?)", file=sys.stderr)
            return 1
        return mpirun_status if mpirun_status > 0 else 128 - mpirun_status


def main(argv=None):
    opts = build_parser().parse_args(argv)
    # The driver must import this same ppmpi, on every host.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # mpirun's PMIx server on epoll can miss a new process's connection after another one
    # ended (the fd number is reused), hanging that MPI_Comm_spawn; poll does not (README
    # "Spawns that hang").
    os.environ.setdefault("EVENT_NOEPOLL", "1")
    if opts.dry_run:
        print(shlex.join(build_command(opts)))
        return 0
    # Across hosts the driver may run elsewhere: then the status goes through the working
    # directory, which clusters share; on one host, through /tmp.
    where = os.getcwd() if opts.hostfile else None
    with tempfile.TemporaryDirectory(prefix=".ppmpirun-", dir=where) as scratch:
        status_file = os.path.join(scratch, "status")
        cmd = build_command(opts, status_file)
        sys.stdout.flush()
        return run_with_status(cmd, status_file)


if __name__ == "__main__":
    sys.exit(main())
