"""The master's cache of pickled function bundles: cloudpickling a function on every submit
costs more than everything else a small job needs, so each bundle is pickled once and reused
while it would pickle the same.

- A bundle that plain pickle can make names its function by reference (``module.name``): it
  pickles the same as long as the objects are the same, so it is reused as it is.
- A ``__main__`` function (or a lambda, a closure) travels by value, with a snapshot of the
  globals it names (cloudpickle). Its bundle is reused while its code, defaults, closure cells
  and the objects its global names are bound to are the same objects; rebinding any of them
  pickles it anew. Changing a global object *in place* (appending to a list) is not seen, as
  with multiprocessing and mpi4py, whose workers never see the master's later changes."""
import hashlib
import pickle
import types

import cloudpickle

MAX_ENTRIES = 512


def _names(code):
    """The global names a code object (and the code nested in it) may look up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _guard(func, names):
    """What a by-value function's pickle depends on, as identities."""
    cells = tuple(id(c.cell_contents) if _filled(c) else None for c in func.__closure__ or ())
    g = func.__globals__
    return (func.__code__, id(func.__defaults__), id(func.__kwdefaults__), cells,
            tuple(id(g.get(name)) for name in names))


def _filled(cell):
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


class BundleCache:
    """(func, depfuncs, modules, fresh, init, protocol) -> (key, bundle bytes)."""

    def __init__(self):
        self._entries = {}

    def get(self, func, depfuncs, modules, fresh, init, protocol):
        """(key, bundle bytes) of the bundle (func, depfuncs, modules, fresh, init): cached, or
        pickled (dump) and remembered."""
        try:
            ident = (func, depfuncs, modules, fresh, init, protocol)
            entry = self._entries.get(ident)
        except TypeError:  # something unhashable (an initarg): no caching
            return dump((func, depfuncs, modules, fresh, init), protocol)[:2]
        if entry is not None:
            key, data, names, guard = entry
            if names is None or guard == _guard(func, names):
                return key, data
        key, data, by_reference = dump((func, depfuncs, modules, fresh, init), protocol)
        names = guard = None
        if not by_reference:
            if depfuncs or init is not None or not isinstance(func, types.FunctionType):
                return key, data  # by value and more than one plain function: not cached
            names = tuple(sorted(_names(func.__code__)))
            guard = _guard(func, names)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[ident] = (key, data, names, guard)
        return key, data


def dump(bundle, protocol):
    """(key, bytes, by_reference) of a bundle tuple: plain pickle when it names everything by
    reference (and nothing in __main__), else cloudpickle."""
    try:
        data = pickle.dumps(bundle, protocol=protocol)
        if data.find(b"__main__") != -1:  # not `in`, which raises and clears a TypeError
            raise pickle.PicklingError("names __main__")
        by_reference = True
    except Exception:
        data = cloudpickle.dumps(bundle, protocol=protocol)
        by_reference = False
    return hashlib.blake2b(data, digest_size=16).hexdigest(), data, by_reference
