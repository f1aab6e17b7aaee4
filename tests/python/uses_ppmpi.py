"""A user's module that imports ppmpi's public names at its top and defines a job function:
a worker imports it by name to run the job, inside a process whose ppmpi package is serving
from its first line (_launch.serve_if_worker_rank)."""
from ppmpi import NoWorkers, Server


def names_seen():
    return Server.__name__, NoWorkers.__name__
