"""Large arrays travel out-of-band (pickle protocol 5): sent from their own memory, received into
memory the rebuilt array uses, never copied in Python on either side."""
import numpy as np
import ppmpi
import pytest

BIG = 1 << 17  # float64 elements: 1 MiB, well over the out-of-band threshold (64 KiB)


def buffer_owner(array):
    """What the memory of `array` belongs to: the end of its .base chain (through memoryview)."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return f"{type(base).__module__}.{type(base).__qualname__}"


def describe(array):
    return buffer_owner(array), array.flags.writeable, array.dtype.str, array.shape


def echo(x):
    return x


def test_large_array_argument_arrives_without_a_copy(server):
    a = np.arange(BIG, dtype=np.float64)
    owner, writeable, dtype, shape = server.submit(describe, (a,))()
    assert owner == "ppmpi._buffers.Buffer"  # a view of what MPI received, not a copy
    assert writeable and dtype == a.dtype.str and shape == a.shape


def test_large_array_result_arrives_without_a_copy(server):
    a = np.random.default_rng(1).random((256, 1024))
    r = server.submit(echo, (a,))()
    assert np.array_equal(r, a)
    assert buffer_owner(r) == "ppmpi._buffers.Buffer"
    r += 1  # writable: the master owns this memory now
    assert np.array_equal(r, a + 1)


@pytest.mark.parametrize("make", [
    lambda: np.asfortranarray(np.arange(BIG, dtype=np.int32).reshape(512, -1)),
    lambda: np.arange(2 * BIG, dtype=np.float32)[::2],  # not contiguous: pickled in-band
    lambda: np.zeros(BIG, dtype=[("x", "<i4"), ("y", "<f8")]),
    lambda: np.arange(10, dtype=np.int16),  # small: in-band
    lambda: np.empty((0, 5)),
], ids=["fortran", "strided", "structured", "small", "empty"])
def test_arrays_of_every_layout_round_trip(server, make):
    a = make()
    r = server.submit(echo, (a,))()
    assert r.dtype == a.dtype and r.shape == a.shape and np.array_equal(r, a)
    assert r.flags.f_contiguous == a.flags.f_contiguous or a.ndim < 2


def test_many_buffers_mixed_with_small_values(server):
    arrays = [np.full(70_000, i, dtype=np.float64) for i in range(6)]
    blob = bytearray(b"\x07" * 300_000)
    out = server.submit(lambda xs, b, n: ([x.sum() for x in xs], len(b), b[:2], n),
                        (arrays, blob, 42))()
    assert out == ([70_000.0 * i for i in range(6)], 300_000, bytearray(b"\x07\x07"), 42)


def test_kwargs_and_executor_map_carry_arrays():
    a = np.arange(BIG, dtype=np.float64)
    with ppmpi.Executor(max_workers=2) as pool:
        assert pool.submit(lambda x, scale: x * scale, a, scale=3.0).result()[1] == 3.0
        sums = list(pool.map(np.sum, [a, a + 1, a + 2], chunksize=2))
    assert sums == [a.sum(), (a + 1).sum(), (a + 2).sum()]


_kept = None


def refill_kept(k):
    """Returns the same module-level array every call, changed each time: each result must still
    hold the value it had when its job returned."""
    global _kept
    if _kept is None:
        _kept = np.empty(BIG)
    _kept[:] = k
    return _kept


def test_a_result_is_what_the_job_returned_even_if_a_later_job_changes_it():
    s = ppmpi.Server(1)
    try:
        for _ in range(20):  # short jobs: the dispatcher pipelines the next ones
            s.submit(echo, (0,))()
        jobs = [s.submit(refill_kept, (k,)) for k in range(300)]  # the pipeline deepens
        for k, job in enumerate(jobs):
            r = job()
            assert r.min() == r.max() == k
    finally:
        s.destroy()


def test_protocol_4_server_sends_arrays_in_band():
    s = ppmpi.Server(1, proto=4)
    try:
        a = np.arange(BIG, dtype=np.float64)
        owner, _, _, _ = s.submit(describe, (a,))()
        assert owner != "ppmpi._buffers.Buffer"
        assert np.array_equal(s.submit(echo, (a,))(), a)
    finally:
        s.destroy()


def test_an_error_in_a_job_with_a_large_argument(server):
    a = np.arange(BIG, dtype=np.float64)
    job = server.submit(lambda x: x.reshape(7, -1), (a,))
    with pytest.raises(ValueError):
        job()
    assert server.submit(np.sum, (a,))() == a.sum()
