"""progress=True: a tqdm progress bar (Debian's python3-tqdm), imported only when asked for."""


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise ImportError("progress=True needs tqdm (Debian package python3-tqdm)") from exc
    return tqdm


class Countdown:
    """A bar over `total` items, fed with how many are still left."""

    def __init__(self, total, unit):
        self.total = total
        self.bar = _tqdm()(total=total, unit=unit)

    def left(self, remaining):
        done = self.total - min(remaining, self.total)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self, remaining):
        self.left(remaining)
        self.bar.close()


def counting(iterable, total, unit):
    """Yields from iterable, advancing a bar by one per item as it is taken. No local name
    holds an item across the yield: an item the caller dropped is freed at once."""
    bar = _tqdm()(total=total, unit=unit)

    def tick(item):
        bar.update(1)
        return item

    try:
        yield from map(tick, iterable)
    finally:
        bar.close()
