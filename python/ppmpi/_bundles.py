"""The master's cache of pickled function bundles: cloudpickling a function on every submit
costs more than everything else a small job needs, so each bundle is pickled once and reused
while it would pickle the same.

- A bundle that plain pickle can make names its function by reference (``module.name``): it
  pickles the same as long as the objects are the same, so it is reused as it is.
- A ``__main__`` function (or a lambda, a closure) travels by value, with a snapshot of the
  globals it names (cloudpickle). Its bundle is reused while its code, defaults, closure cells
  and the objects its global names are bound to are the same objects; rebinding any of them
  pickles it anew. Changing a global object *in place* (appending to a list) is not seen, as
  with multiprocessing and mpi4py, whose workers never see the master's later changes.

The cache holds no strong reference to what it pickled (the function, depfuncs, the
Executor's initializer and its arguments): an entry is found by the identities (id) of those
objects, checked against weak references, and goes away as soon as one of them is freed. A
driver that submits many short-lived functions (lambdas, closures over large data, bound
methods of objects it then drops) keeps only the bundles' bytes, and not even those once the
objects are gone. An object that cannot be weakly referenced is not cached (pickled anew at
each submit)."""
import hashlib
import pickle
import types
import weakref

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


def _identify(obj, ids, held):
    """Appends what tells obj apart to `ids` (identities) and the objects to hold weakly to
    `held`. A bound method is told by its instance and function (``obj.method`` makes a new
    method object each time it is read; both are the same ones)."""
    if type(obj) is types.MethodType:
        owner = obj.__self__
        if type(owner).__weakrefoffset__:
            ids.append(-1)  # not an id: marks a method, so (self, func) differs from (a, b)
            ids.append(id(owner))
            held.append(owner)
            obj = obj.__func__
    ids.append(id(obj))
    held.append(obj)


class BundleCache:
    """(func, depfuncs, modules, fresh, init, protocol) -> (key, bundle bytes), holding the
    objects only weakly (module docstring)."""

    def __init__(self):
        # (ids, modules, fresh, protocol) -> (key, data, names, guard, refs): refs are the weak
        # references to the objects whose ids are in the key, in the same order.
        self._entries = {}

    def get(self, func, depfuncs, modules, fresh, init, protocol):
        """(key, bundle bytes) of the bundle (func, depfuncs, modules, fresh, init): cached, or
        pickled (dump) and remembered."""
        bundle = (func, depfuncs, modules, fresh, None if init is None else tuple(init))
        ids, held = [], []
        _identify(func, ids, held)
        for dep in depfuncs:
            _identify(dep, ids, held)
        if init is not None:
            ids.append(id(init))
            held.append(init)
        try:
            ident = (tuple(ids), modules, fresh, protocol)
            entry = self._entries.get(ident)
        except TypeError:  # something unhashable in modules: no caching
            return dump(bundle, protocol)[:2]
        if entry is not None:
            key, data, names, guard, refs = entry
            if all(ref() is obj for ref, obj in zip(refs, held)) and (
                    names is None or guard == _guard(func, names)):
                return key, data
        key, data, by_reference = dump(bundle, protocol)
        names = guard = None
        if not by_reference:
            if depfuncs or init is not None or not isinstance(func, types.FunctionType):
                return key, data  # by value and more than one plain function: not cached
            names = tuple(sorted(_names(func.__code__)))
            guard = _guard(func, names)
        try:
            forget = self._forgetter(ident)
            refs = tuple(weakref.ref(obj, forget) for obj in held)
        except TypeError:  # an object without weak references: pickled at every submit
            return key, data
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[ident] = (key, data, names, guard, refs)
        return key, data

    def _forgetter(self, ident):
        """The weak references' callback: the entry goes when one of its objects is freed
        (unless the entry was replaced meanwhile, by one holding other references)."""
        entries = self._entries

        def forget(ref):
            entry = entries.get(ident)
            if entry is not None and any(r is ref for r in entry[4]):
                entries.pop(ident, None)
        return forget


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
