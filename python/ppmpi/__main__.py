"""python3 -m ppmpi --check | --version

--check says what ppmpi finds on this node and runs a 2-worker self-test (_selfcheck.py)."""
import argparse
import sys

from . import __version__


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m ppmpi", description="ppmpi, Parallel Python's job server on MPI.")
    parser.add_argument("--version", action="version", version=f"ppmpi {__version__}")
    parser.add_argument("--check", action="store_true",
                        help="print the versions (ppmpi, Python, MPI, Boost) and the launch "
                             "mode, run a 2-worker self-test; exit status 0 only if all is OK")
    opts = parser.parse_args(argv)
    if not opts.check:
        parser.print_help()
        return 0
    from ._selfcheck import check

    return check(lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
