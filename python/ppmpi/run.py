"""ppmpirun: run a driver under mpirun with C++ worker ranks (launch mode 3, MPMD).

    ppmpirun [-np N] [options] driver.py [driver args...]

runs   mpirun --enable-recovery --oversubscribe -x PYTHONPATH [--hostfile H] [mpirun args]
           -np 1 <python> driver.py [args] : -np N-1 <ppmpi-worker>

N counts every process (the driver plus N-1 workers); its default is one more than the CPUs
online, i.e. one worker per CPU. --enable-recovery keeps the job alive when a worker dies."""
import argparse
import os
import shlex
import shutil
import sys

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
    p.add_argument("--dry-run", action="store_true", help="print the mpirun command, run nothing")
    p.add_argument("driver", help="the Python driver script")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the driver")
    return p


def build_command(opts):
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
    if not opts.no_oversubscribe:
        cmd.append("--oversubscribe")
    if opts.hostfile:
        cmd += ["--hostfile", opts.hostfile]
    cmd += opts.mpirun_arg
    cmd += ["-np", "1", opts.python, opts.driver] + opts.args
    cmd += [":", "-np", str(np_total - 1), opts.worker]
    return cmd


def main(argv=None):
    opts = build_parser().parse_args(argv)
    cmd = build_command(opts)
    # The driver must import this same ppmpi, on every host.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if opts.dry_run:
        print(shlex.join(cmd))
        return 0
    sys.stdout.flush()
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
