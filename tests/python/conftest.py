"""Shared fixtures. `import ppmpi` comes first: under mpirun, ranks 1..N-1 become workers in it
and never run pytest. Only launch_mode comes before it: those worker ranks stay inside this
module's import for good, and a job that unpickles a test module (which imports launch_mode
from here) must find the name in the half-imported module."""
import os


def launch_mode():
    """'alone', 'mpirun' (python3 worker ranks) or 'mpmd' (ppmpi-worker ranks)."""
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    if size <= 1:
        return "alone"
    return os.environ.get("PPMPI_TEST_MODE", "mpirun")


import ppmpi  # noqa: E402  (before everything else that runs pytest)
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def server():
    """One server for the read-only tests (workers start once: ~0.3 s per spawn)."""
    s = ppmpi.Server(2)
    yield s
    s.destroy()


@pytest.fixture
def fresh_server():
    """A server a test may destroy or resize."""
    s = ppmpi.Server(2)
    yield s
    s.destroy()
