"""Shared fixtures. `import ppmpi` comes first: under mpirun, ranks 1..N-1 become workers here
and never run pytest."""
import ppmpi  # noqa: F401  (must be the first import)

import os

import pytest


def launch_mode():
    """'alone', 'mpirun' (python3 worker ranks) or 'mpmd' (ppmpi-worker ranks)."""
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    if size <= 1:
        return "alone"
    return os.environ.get("PPMPI_TEST_MODE", "mpirun")


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
