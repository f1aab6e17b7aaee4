"""Rank 0 under ppmpirun: runs the driver script as ``__main__`` and leaves its exit status in
the file ppmpirun names, because ``mpirun --enable-recovery`` (Open MPI 4.1.4) exits 0 even
when rank 0 fails.

    python3 -m ppmpi._driver STATUS_FILE driver.py [args...]"""
import os
import runpy
import sys


def _status_of(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1  # sys.exit("message"): Python prints it and exits 1


def _write(path, status):
    try:
        with open(path, "w") as f:
            f.write(f"{status}\n")
    except OSError as exc:
        print(f"ppmpirun: could not record the exit status in {path}: {exc}", file=sys.stderr)


def main():
    if len(sys.argv) < 3:
        raise SystemExit("usage: python3 -m ppmpi._driver STATUS_FILE driver.py [args...]")
    status_file, driver = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path[0] = os.path.dirname(os.path.abspath(driver))  # as `python3 driver.py` would
    status = 1  # an uncaught exception: Python prints it and exits 1
    try:
        runpy.run_path(driver, run_name="__main__")
        status = 0
    except SystemExit as exc:
        status = _status_of(exc.code)
        raise
    finally:
        _write(status_file, status)


if __name__ == "__main__":
    main()
