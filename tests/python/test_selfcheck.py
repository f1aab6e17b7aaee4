"""`python -m ppmpi --check` when something is wrong: a named problem and what to do, exit
status 1, within its bound. (The passing check runs in the pip-install test.) The runs start
MPI in a child process of their own, so they are for launch mode "alone" only: under mpirun
that child would take this world's variables for its own."""
import os
import subprocess
import sys
import time

import pytest

from conftest import launch_mode
from ppmpi import _selfcheck

alone_only = pytest.mark.skipif(launch_mode() != "alone",
                                reason="the check's child would join this MPI world")

# What Open MPI 4.1.4's mpirun prints as root (abridged).
OPEN_MPI_AS_ROOT = """mpirun has detected an attempt to run as root.
You can override this protection by adding the --allow-run-as-root option
to the cmd line or by setting two environment variables in the following way:
the variable OMPI_ALLOW_RUN_AS_ROOT=1 to indicate the desire to override this"""


def run_check(**env):
    """(exit status, output lines, seconds) of `python -m ppmpi --check`."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ppmpi", "--check"], env=dict(os.environ, **env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=150)
    return proc.returncode, proc.stdout.rstrip("\n").splitlines(), time.monotonic() - started


def test_known_problems_are_named_with_a_remedy():
    problem, remedy = _selfcheck.advice(OPEN_MPI_AS_ROOT)
    assert "root" in problem
    assert "OMPI_ALLOW_RUN_AS_ROOT=1" in remedy and "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" in remedy
    problem, remedy = _selfcheck.advice("ModuleNotFoundError: No module named 'cloudpickle'")
    assert problem.endswith(": cloudpickle") and "python3-cloudpickle" in remedy
    problem, remedy = _selfcheck.advice("ppmpi's _core cannot be loaded: libmpi.so.40: cannot "
                                        "open shared object file: No such file or directory")
    assert "_core" in problem and "LD_LIBRARY_PATH" in remedy


def test_an_unknown_failure_points_at_the_debug_log():
    problem, remedy = _selfcheck.advice("  a job: FAILED\nFAILED: a job: ValueError: boom\n")
    assert "failed" in problem and "PPMPI_DEBUG=1" in remedy


@alone_only
def test_a_missing_worker_program_fails_the_check_with_what_to_do():
    status, lines, _ = run_check(PPMPI_WORKER="/nonexistent/ppmpi-worker")
    assert status == 1, lines
    assert lines[-2] == "FAILED: the worker program is missing or not executable", lines
    assert lines[-1].startswith("  what to do: ") and "PPMPI_WORKER" in lines[-1]
    assert "OK" not in lines


@alone_only
def test_a_check_that_cannot_finish_in_time_fails_within_its_bound():
    # The self-test's own pauses (jobs of 0.3 s asking which worker runs them) add up to more.
    status, lines, seconds = run_check(PPMPI_CHECK_TIMEOUT="0.5")
    assert status == 1, lines
    assert any(line.startswith("FAILED: the self-test did not finish within 0.5 s")
               for line in lines), lines
    assert seconds < 30
