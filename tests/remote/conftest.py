"""The remote-server tests' fixtures; the helpers live in servers.py (a name of its own, so
these tests also import right when collected together with tests/python)."""
import ppmpi  # noqa: F401  (first, as in every ppmpi driver)

from servers import start_server  # noqa: F401  (the fixture)
