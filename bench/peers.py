"""One small adapter per job server, so every workload is written once and runs the same way on
each: ``peer.submit(func, *args)`` returns a handle, ``peer.result(handle)`` waits for it.

Each peer is created with W workers and nothing else tuned: the benchmark compares the servers
as a user gets them. A peer's modules are imported only when that peer is built, because
ppmpi and mpi4py each start MPI in the process and only one may."""
import os
import pickle

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


class PpmpiPeer:
    name = "ppmpi"

    def __init__(self, workers):
        import ppmpi

        self.server = ppmpi.Server(workers)  # launch mode 1: spawns W worker processes

    def submit(self, func, *args):
        return self.server.submit(func, args)

    def result(self, handle):
        return handle()

    def function_stats(self):
        stats = self.server._pool.stats(60)
        return {k: stats[k] for k in ("tasks_sent", "function_defs_sent", "function_bytes_sent")}

    def close(self):
        self.server.destroy()


class FuturesPeer:
    """Shared by the two concurrent.futures executors."""

    def submit(self, func, *args):
        return self.executor.submit(func, *args)

    def result(self, handle):
        return handle.result()

    def close(self):
        self.executor.shutdown(wait=True)


class Mpi4pyPeer(FuturesPeer):
    name = "mpi4py.futures"

    def __init__(self, workers):
        from mpi4py.futures import MPIPoolExecutor

        # Spawns W workers from this singleton at the first submit (MPI_Comm_spawn), the same
        # launch as ppmpi's mode 1; path= puts the workloads module on the workers' sys.path.
        self.executor = MPIPoolExecutor(max_workers=workers, path=[BENCH_DIR])


class ProcessPoolPeer(FuturesPeer):
    name = "ProcessPoolExecutor"

    def __init__(self, workers):
        from concurrent.futures import ProcessPoolExecutor

        self.executor = ProcessPoolExecutor(max_workers=workers)


class MpPoolPeer:
    name = "multiprocessing.Pool"

    def __init__(self, workers):
        import multiprocessing

        self.pool = multiprocessing.Pool(workers)

    def submit(self, func, *args):
        return self.pool.apply_async(func, args)

    def result(self, handle):
        return handle.get()

    def close(self):
        self.pool.close()
        self.pool.join()


PEERS = {"ppmpi": PpmpiPeer, "mpi4py": Mpi4pyPeer, "mp_pool": MpPoolPeer,
         "process_pool": ProcessPoolPeer}


def reference_bytes(func, tasks):
    """Function bytes a pickle-by-reference peer sends for `tasks` calls: the pickled reference
    (module and name) travels inside every task message. An estimate from pickle itself; those
    servers keep no counter of their own."""
    return len(pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)) * tasks
