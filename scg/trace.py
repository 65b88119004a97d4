"""A traced step: record one call of a function as a flat program of numpy calls, replay it.

``step = scg.trace(fn)`` returns a callable. The first calls with a given signature (the
shapes and dtypes of the array arguments, the values of the others) run ``fn`` eagerly
while recording every numpy call it makes on the values it computes:

- each primitive's forward (:func:`scg.autodiff.primitive`), in the forward pass and in
  the backward pass (whose VJPs are primitives too);
- raw numpy that library or user code runs on those values outside a primitive (a
  support check, a baseline's statistic, a gradient accumulated with ``np.add``): during a
  recording the values are :class:`TracedArray` s, an ndarray subclass whose
  ``__array_ufunc__`` / ``__array_function__`` / indexing record the call;
- random draws, through the generator that :func:`scg.random.resolve` hands out;
- effects: a gradient stored in a leaf's ``.grad``, ``optimizer.zero_grad()`` and
  ``optimizer.step()`` (replayed by calling them: their Python bookkeeping is kept);
- guards: a Python branch on a value (``bool()``) or a value leaving as a number
  (``float()``, ``int()``, ``item()``) records the value seen.

Two consecutive recordings that agree (same calls, same wiring, and the same constants:
an array made outside the recording, such as a Python scalar lifted to an array, must have
the same value both times, and a parameter must be the same array, updated in place) make
the program trusted (and after 10, 100, 1000, ... replays a call records again, an audit
that must agree with it); later calls replay it: one loop over the recorded calls, with no graph
building and no autodiff bookkeeping, each ufunc writing into the buffer it wrote last
time (so a step touches no fresh pages).

Right or refused:

- a guard that sees another value stops the replay before any effect, restores the
  generators' state, and the call runs eagerly and records afresh (a branch that flipped);
- a value that keeps changing under a guard (``float(loss)`` used in arithmetic inside the
  step), recordings that keep disagreeing, a constant that differs between two recordings
  (a number computed from a value outside the recording, a generator made inside the step),
  or an array derived from a traced value by a method the recorder does not follow, raise
  :class:`TraceError` naming where;
- a parameter whose array was replaced (``p.data = ...``) since the recording, or a changed
  shape, dtype, or switch (``no_grad``, ``detect_anomaly``, ``validate_args``), records afresh.

Replays draw from the same generators in the same order as eager calls, so a traced run
equals an eager run with the same seed bit for bit (tested). What a replay does not do:
Python side effects of ``fn`` other than the effects above (appending to a list, printing),
and building the graph (a ``Graph`` made inside ``fn`` is not rebuilt: return Tensors).
Returned Tensors are copies of the step's values, without history; a leaf's ``.grad`` is the
step's buffer, rewritten by the next call.
"""

import functools
import traceback
import warnings

import numpy as np

from .context import pop, push, state
from .tensor import Tensor

__all__ = ["trace", "effect", "Traced", "TraceError", "TracedArray"]


class TraceError(RuntimeError):
    """A function cannot be traced (or replayed) correctly; the message says why and where."""


class _Miss(Exception):
    """A guard saw another value than when recorded."""

    def __init__(self, guard):
        self.guard = guard


# ---- the values a recording sees ------------------------------------------------------------


class TracedArray(np.ndarray):
    """An ndarray whose numpy calls are recorded by the recording that made it.

    ``_rec`` is that recording and ``_slot`` the value's index in it; an array numpy
    derives from one by a path the recorder does not follow gets ``_slot = None`` and is
    refused if used (see ``_Recording.slot_of``)."""

    def __array_finalize__(self, obj):
        self._rec = getattr(obj, "_rec", None)
        self._slot = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        fn = ufunc if method == "__call__" else getattr(ufunc, method)
        rec = _recording()
        if rec is None:
            return _plain_call(fn, inputs, kwargs)
        return rec.numpy_call(fn, inputs, kwargs, ufunc=method == "__call__")

    def __array_function__(self, func, types, args, kwargs):
        rec = _recording()
        if rec is None or func in _SHAPE_ONLY:
            return _plain_call(func, args, kwargs)
        return rec.numpy_call(func, args, kwargs)

    # methods that compute without going through a ufunc or an array function
    def _method(name):
        def method(self, *args, **kwargs):
            rec = _recording()
            fn = _METHOD_FNS[name]
            if rec is None:
                return _plain_call(fn, (self,) + args, kwargs)
            return rec.numpy_call(fn, (self,) + args, kwargs)
        method.__name__ = name
        return method

    for _name in ("__getitem__", "copy", "astype", "reshape", "transpose", "ravel", "flatten",
                  "squeeze", "swapaxes", "argmax", "argmin", "argsort", "nonzero",
                  "cumsum", "cumprod", "dot", "round", "take", "repeat", "diagonal", "searchsorted"):
        locals()[_name] = _method(_name)
    del _name, _method

    @property
    def T(self):
        return self.transpose()

    def __setitem__(self, index, value):
        rec = _recording()
        if rec is None:
            np.ndarray.__setitem__(self.view(np.ndarray), _plain(index), _plain(value))
            return
        rec.numpy_call(_setitem, (self, index, value), {})

    def fill(self, value):
        self[...] = value

    # values leaving as Python objects: guards
    def __bool__(self):
        return self._escape(bool, "bool")

    def __float__(self):
        return self._escape(float, "float")

    def __int__(self):
        return self._escape(int, "int")

    def __index__(self):
        return self._escape(lambda a: a.__index__(), "index")

    def item(self, *args):
        return self._escape(lambda a: a.item(*args), "item")

    def tolist(self):
        return self._escape(lambda a: a.tolist(), "tolist")

    def __iter__(self):
        return iter([self[i] for i in range(len(self))])

    def _escape(self, fn, kind):
        rec = _recording()
        plain = self.view(np.ndarray)
        if rec is None:
            return fn(plain)
        return rec.guard(self, fn, kind)

    def __reduce__(self):  # pickling (a checkpoint) stores the value, not the recording
        return np.ndarray.__reduce__(self.view(np.ndarray))


def _setitem(a, index, value):
    a[index] = value
    return a


_METHOD_FNS = {name: getattr(np.ndarray, name) for name in (
    "__getitem__", "reshape", "transpose", "ravel", "flatten", "squeeze",
    "swapaxes", "argmax", "argmin", "argsort", "nonzero", "cumsum", "cumprod", "dot",
    "round", "take", "repeat", "diagonal", "searchsorted")}


def _copy(a, order="C"):
    return a.copy(order)


def _astype(a, dtype, order="K", casting="unsafe", subok=True, copy=True):
    return a.astype(dtype, order=order, casting=casting, subok=subok, copy=copy)


_copy.into = lambda a, order="C", out=None: np.copyto(out, a)
_astype.into = lambda a, dtype, order="K", casting="unsafe", subok=True, copy=True, out=None: \
    np.copyto(out, a, casting=casting)
_METHOD_FNS.update(copy=_copy, astype=_astype)

# numpy functions whose result depends on shapes and dtypes only (part of the signature)
_SHAPE_ONLY = frozenset(f for f in (
    np.shape, np.ndim, np.size, np.result_type, np.iscomplexobj, np.isrealobj, np.may_share_memory,
    np.shares_memory, getattr(np, "can_cast", None), np.broadcast_shapes, np.min_scalar_type)
    if f is not None)


# numpy's converters are C functions that never ask a subclass (no __array_function__, no
# __array__): np.asarray(traced) would hand back a plain view the recorder cannot follow. While
# a recording runs they are replaced by wrappers that record the conversion when a traced
# value is inside their argument (see _Recording.converters).
_CONVERTERS = {name: getattr(np, name) for name in ("array", "asarray", "asanyarray", "ascontiguousarray")}


def _has_traced(x, rec):
    if isinstance(x, TracedArray):
        return x._rec is rec
    if type(x) in (tuple, list):
        return any(_has_traced(v, rec) for v in x)
    return False


def _converter(name, rec):
    original = _CONVERTERS[name]

    def convert(*args, **kwargs):
        if rec.active and args and _has_traced(args[0], rec):
            return rec.numpy_call(original, args, kwargs, name=name)
        return original(*args, **kwargs)
    convert.__name__ = name
    return convert


def _plain(x):
    """``x`` with every TracedArray inside (tuples, lists, dicts) viewed as a plain ndarray."""
    if isinstance(x, TracedArray):
        return x.view(np.ndarray)
    if type(x) in (tuple, list):
        return type(x)(_plain(v) for v in x)
    if type(x) is dict:
        return {k: _plain(v) for k, v in x.items()}
    return x


def _plain_call(fn, args, kwargs):
    return fn(*_plain(args), **_plain(kwargs))


def _recording():
    rec = state.tracer
    return rec if rec is not None and rec.active else None


def _site():
    """Where the recorded call was made: the innermost frame outside numpy and this module
    (a line of scg's, say), and the innermost outside scg (the user's line) when they differ."""
    inner = user = None
    for frame in reversed(traceback.extract_stack()[:-2]):
        f = frame.filename.replace("\\", "/")
        if "/numpy/" in f or f.endswith("/scg/trace.py"):
            continue
        inner = inner or frame
        if "/scg/" not in f:
            user = frame
            break
    where = [fr for fr in (inner, user) if fr is not None]
    if len(where) == 2 and where[0] is where[1]:
        where = where[:1]
    return " via ".join(f"{fr.filename}:{fr.lineno} ({fr.line})" for fr in reversed(where)) or "?"


class _S:
    """A slot in a template: the recorded value number ``i``."""

    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i

    def __eq__(self, other):
        return type(other) is _S and other.i == self.i

    def __hash__(self):
        return hash(("slot", self.i))

    def __repr__(self):
        return f"%{self.i}"


# ---- recording -----------------------------------------------------------------------------


class _Step:
    """One recorded call: ``fn(*args, **kwargs)`` with slots filled in; its result goes to
    slot ``out`` (None: kept nowhere, a tuple: one per element). ``kind`` is "call", "draw",
    "guard", "effect" or "grad"; ``consts`` are the constants the templates hold, and
    ``tensors`` the Tensors the constant inputs of a primitive came from."""

    __slots__ = ("kind", "fn", "args", "kwargs", "out", "consts", "tensors", "name", "site", "ufunc", "extra")

    def __init__(self, kind, fn, args, kwargs, out, consts=(), tensors=(), name="", site=None, ufunc=False,
                 extra=None):
        self.kind, self.fn, self.args, self.kwargs, self.out = kind, fn, args, kwargs, out
        self.consts, self.tensors, self.name, self.site, self.ufunc, self.extra = (
            consts, tensors, name, site, ufunc, extra)


class _Recording:
    """The state of one recording: values by slot, and the steps in order."""

    def __init__(self):
        self.values = []  # slot -> plain ndarray
        self.steps = []
        self.inputs = []  # slots of the arguments, in order
        self.active = True
        self.generators = []  # the explicit generators drawn from
        self.first_states = {}  # id(generator) -> (generator, its state before the first draw)
        self.effects_seen = False

    # slots
    def converters(self):
        """Install the recording's np.array / np.asarray / ... ; returns a function restoring numpy's."""
        for name in _CONVERTERS:
            setattr(np, name, _converter(name, self))

        def restore():
            for name, f in _CONVERTERS.items():
                setattr(np, name, f)
        return restore

    def new_slot(self, plain):
        self.values.append(plain)
        return len(self.values) - 1

    def wrap(self, plain, slot):
        t = plain.view(TracedArray)
        t._rec, t._slot = self, slot
        return t

    def slot_of(self, a):
        """The slot of TracedArray ``a`` of this recording, None for a constant; refuses a
        value derived from a traced one by a path not recorded."""
        if isinstance(a, TracedArray):
            if a._rec is self:
                if a._slot is None:
                    raise TraceError(
                        f"a value computed from a traced array by an operation the tracer does not follow "
                        f"is used at {_site()}; compute it with numpy functions or scg operations")
                return a._slot
            return None
        if isinstance(a, np.ndarray) and a.base is not None:
            base = a
            while isinstance(base, np.ndarray) and not isinstance(base, TracedArray) and base.base is not None:
                base = base.base
            if isinstance(base, TracedArray) and base._rec is self:
                raise TraceError(
                    f"a traced value was converted to a plain array (np.asarray or a view of it) and used "
                    f"at {_site()}: the recording cannot follow it; keep numpy calls on the array itself")
        return None

    def template(self, x, consts):
        """``x`` with each traced value replaced by its slot; constants appended to ``consts``."""
        if isinstance(x, np.ndarray):
            s = self.slot_of(x)
            if s is not None:
                return _S(s)
            consts.append(x)
            return x
        t = type(x)
        if t in (tuple, list):
            return t(self.template(v, consts) for v in x)
        if t is dict:
            return {k: self.template(v, consts) for k, v in x.items()}
        if t is slice:
            return x
        if isinstance(x, (np.generic, float, int, complex, bool, str, type(None), np.dtype, type)):
            consts.append(x)
            return x
        if t is _Proxy:
            return x
        consts.append(x)
        return x

    def fill(self, x, values):
        t = type(x)
        if t is _S:
            return values[x.i]
        if t in (tuple, list):
            return t(self.fill(v, values) for v in x)
        if t is dict:
            return {k: self.fill(v, values) for k, v in x.items()}
        return x

    def register(self, result):
        """Give the result of a recorded call a slot (or slots); returns (out, traced result)."""
        if isinstance(result, tuple):
            pairs = [self.register(r) for r in result]
            return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        if isinstance(result, (np.generic, float, int, bool)) and not isinstance(result, np.ndarray):
            result = _CONVERTERS["asarray"](result)  # a reduction's scalar: keep it traced, as a 0-d array
        if not isinstance(result, np.ndarray):
            return None, result
        if isinstance(result, TracedArray):
            result = result.view(np.ndarray)
        for s in range(len(self.values) - 1, -1, -1):  # an in-place call returns its output array
            if self.values[s] is result:
                return s, self.wrap(result, s)
        s = self.new_slot(result)
        return s, self.wrap(result, s)

    # the kinds of step
    def numpy_call(self, fn, args, kwargs, ufunc=False, name=None, tensors=()):
        consts = []
        targs = self.template(tuple(args), consts)
        tkwargs = self.template(dict(kwargs), consts)
        if "out" in tkwargs and "where" in tkwargs:
            outs = tkwargs["out"] if isinstance(tkwargs["out"], tuple) else (tkwargs["out"],)
            if any(type(o) is not _S for o in outs):
                raise TraceError(f"a masked write (out= with where=) into an array made outside the "
                                 f"recording, at {_site()}, cannot be replayed")
        result = fn(*self.fill(targs, self.values), **self.fill(tkwargs, self.values))
        out, traced = self.register(result)
        if out is None and not isinstance(result, np.ndarray):
            # a Python object computed from values (np.array_equal's bool): a guard on it
            self.steps.append(_Step("guard", fn, targs, tkwargs, None, consts, name=name or _name(fn),
                                    site=_site(), extra=("value", result)))
            return result
        self.steps.append(_Step("call", fn, targs, tkwargs, out, consts, tensors, name=name or _name(fn),
                                ufunc=ufunc and "out" not in kwargs))
        return traced

    def primitive(self, name, forward, xs, static):
        tensors = tuple(x for x in xs if not isinstance(x.data, TracedArray) or x.data._rec is not self)
        args = [x.data for x in xs]
        traced = self.numpy_call(forward, args, static, ufunc=isinstance(forward, np.ufunc), name=name,
                                 tensors=tensors)
        return traced

    def guard(self, a, fn, kind):
        s = self.slot_of(a)
        value = fn(a.view(np.ndarray))
        self.steps.append(_Step("guard", fn, (_S(s),), {}, None, name=kind, site=_site(), extra=(kind, value)))
        return value

    def draw(self, proxy, method, args, kwargs):
        consts = []
        targs = self.template(tuple(args), consts)
        tkwargs = self.template(dict(kwargs), consts)
        gen = proxy.generator
        result = getattr(gen, method)(*self.fill(targs, self.values), **self.fill(tkwargs, self.values))
        out, traced = self.register(result)
        self.steps.append(_Step("draw", method, targs, tkwargs, out, consts, name=f"draw {method}",
                                extra=(proxy.default, None if proxy.default else gen)))
        if not proxy.default and all(g is not gen for g in self.generators):
            self.generators.append(gen)
        return traced

    def effect(self, fn, name, owners=None):
        """Run ``fn()`` outside the recording and record that a replay calls it; ``owners``
        (default: a bound method's object) must be the same objects in the next recording."""
        self.active = False
        try:
            result = fn()
        finally:
            self.active = True
        self.effects_seen = True
        owners = (getattr(fn, "__self__", None),) if owners is None else tuple(owners)
        self.steps.append(_Step("effect", fn, (), {}, None, name=name, site=_site(), extra=owners))
        return result

    # the hooks the library calls while ``state.tracer`` is set
    def generator(self, generator, default):
        """What :func:`scg.random.resolve` hands out: a proxy recording the draws."""
        if not self.active or isinstance(generator, _Proxy):
            return generator
        if id(generator) not in self.first_states:
            self.first_states[id(generator)] = (generator, generator.bit_generator.state)
        return _Proxy(generator, default, self)

    def check_accumulation(self, leaf):
        """Called before a gradient is added to ``leaf.grad``: one made before this call
        would be a constant to the recording."""
        data = leaf.grad.data
        if self.active and not (isinstance(data, TracedArray) and data._rec is self):
            raise TraceError(
                f"the gradient of a Tensor of shape {leaf.shape} accumulates across calls of the traced step "
                f"(its .grad was set when the call began): call optimizer.zero_grad() (or set .grad = None) "
                f"inside the traced step")

    def note_grad(self, leaf):
        """Called by the backward pass after storing ``leaf.grad``."""
        if self.active:
            self.set_grad(leaf)

    def set_grad(self, leaf):
        data = leaf.grad.data
        s = self.slot_of(data) if isinstance(data, np.ndarray) else None
        if s is None:
            return  # a constant gradient: nothing to replay but the assignment of the same array
        self.steps.append(_Step("grad", None, (_S(s),), {}, None, name="grad", extra=leaf))


def effect(fn):
    """Decorator: a call of ``fn`` inside a traced step is an effect: it runs outside the
    recording and every replay calls it again with the same arguments (which must be the
    same objects in two recordings). For Python state a replay must keep up to date, such
    as an optimizer that also updates a baseline after its step."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        rec = state.tracer
        if rec is None or not rec.active:
            return fn(*args, **kwargs)
        return rec.effect(functools.partial(fn, *args, **kwargs), _name(fn),
                          owners=args + tuple(kwargs[k] for k in sorted(kwargs)))
    return wrapper


def _name(fn):
    return getattr(fn, "__name__", type(fn).__name__)


class _Proxy:
    """What :func:`scg.random.resolve` hands out while recording: a generator whose draws
    are recorded (``default``: the library's generator, looked up again at replay)."""

    __slots__ = ("generator", "default", "rec")

    def __init__(self, generator, default, rec):
        self.generator, self.default, self.rec = generator, default, rec

    def __getattr__(self, name):
        attr = getattr(self.generator, name)
        if not callable(attr) or name.startswith("_") or name in ("spawn", "bit_generator"):
            return attr

        def draw(*args, **kwargs):
            if not self.rec.active:
                return getattr(self.generator, name)(*_plain(args), **_plain(kwargs))
            return self.rec.draw(self, name, args, kwargs)
        return draw


# calls that return a view of their first argument (what numpy or a primitive names them)
_VIEWS = frozenset(("reshape", "transpose", "swapaxes", "squeeze", "broadcast_to", "expand_dims", "getitem",
                    "__getitem__", "asarray", "asanyarray", "moveaxis", "T", "_broadcast_to"))


# ---- comparing two recordings ----------------------------------------------------------------


def _same(a, b):
    """Whether constants ``a`` and ``b`` (from two recordings) are interchangeable."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    try:
        return bool(a == b)
    except Exception:
        return False


def _structure(x):
    """A template with constants blanked (for comparing wiring)."""
    t = type(x)
    if t is _S:
        return x
    if t in (tuple, list):
        return t(_structure(v) for v in x)
    if t is dict:
        return {k: _structure(v) for k, v in x.items()}
    return None


_ESCAPES = ("bool", "float", "int", "index", "item", "tolist")


def _differ(old, new):
    """None if recordings ``old`` and ``new`` agree, else a sentence saying where they differ."""
    if len(old.steps) != len(new.steps):
        n = min(len(old.steps), len(new.steps))
        first = next((i for i in range(n) if old.steps[i].name != new.steps[i].name), n)
        where = new.steps[first].name if first < len(new.steps) else "the end"
        return f"the two recordings made different calls ({len(old.steps)} vs {len(new.steps)}; first at call " \
               f"{first}, {where}): a Python branch the recorder cannot see depends on a value"
    for i, (a, b) in enumerate(zip(old.steps, new.steps)):
        escape = a.kind == "guard" and a.name in _ESCAPES  # its fn is a fresh lambda each time
        if a.kind != b.kind or a.name != b.name or (a.kind not in ("draw", "effect") and not escape
                                                     and a.fn is not b.fn and not _same(a.fn, b.fn)):
            return f"call {i} differs ({a.kind} {a.name} vs {b.kind} {b.name}): a Python branch the recorder " \
                   f"cannot see depends on a value"
        if a.out != b.out or _structure(a.args) != _structure(b.args) or _structure(a.kwargs) != _structure(b.kwargs):
            return f"call {i} ({b.name}) is wired differently in two recordings"
        if a.kind == "effect" and (len(a.extra) != len(b.extra) or any(x is not y for x, y in zip(a.extra, b.extra))):
            return f"call {i} ({b.name}) acts on another object each time (an optimizer made inside the step?)"
        if a.kind == "grad" and a.extra is not b.extra:
            return f"call {i} stores a gradient in another Tensor each time (a parameter made inside the step?)"
        if a.kind == "draw" and (a.extra[0] != b.extra[0] or a.extra[1] is not b.extra[1]):
            return f"call {i} ({b.name}) draws from another generator"
        if a.kind == "guard" and not _same(a.extra, b.extra):
            return None if a.extra[0] in ("bool",) else \
                f"a value leaves the step as a Python number ({a.name}) at {b.site} and changes from call " \
                f"to call: keep it an array, or compute it outside the traced function"
        if len(a.consts) != len(b.consts) or not all(_same(x, y) for x, y in zip(a.consts, b.consts)):
            where = b.site or ""
            return (f"call {i} ({b.name}) uses a constant that changed between two calls{' at ' + where if where else ''}: "
                    f"a value computed outside the recording (a number taken from an array, a random draw not "
                    f"made through scg's generator, a parameter replaced rather than updated in place)")
    return None


# ---- the program ----------------------------------------------------------------------------


class _Program:
    """A trusted recording, ready to replay: ``run(arrays)`` -> the values by slot.

    Compiling it (once) makes each step a closure over its buffers, and drops two kinds of
    steps that would redo nothing: a view (reshape, transpose, basic indexing, broadcast) of
    a buffer that every replay rewrites in place is the same view every time, so the one
    made while recording is kept; and the copy the backward pass makes of a gradient before
    storing it in ``.grad`` (so that ``.grad`` aliases nothing) is not needed when nothing
    reads its source afterwards, since the source is the step's own buffer."""

    def __init__(self, rec, out_template, persistent):
        self.rec = rec
        self.values = list(rec.values)
        self.inputs = rec.inputs
        self.out_template = out_template
        self.persistent = persistent  # (Tensor, array) pairs: the Tensor must still hold the array
        self.generators = rec.generators
        self.uses_default = any(s.kind == "draw" and s.extra[0] for s in rec.steps)
        steps = list(rec.steps)
        self.fixed = set()  # slots whose array is the same object, rewritten in place, at every replay
        alias = self._elide_copies(steps, out_template)
        self.calls, self.call_steps = [], []  # the closures, and the step each replays
        for step in steps:
            if step is None:
                continue
            call = self._compile(step, alias)
            if call is not None:
                self.calls.append(call)
                self.call_steps.append(step)

    @staticmethod
    def _slots(template, found):
        t = type(template)
        if t is _S:
            found.append(template.i)
        elif t in (tuple, list):
            for v in template:
                _Program._slots(v, found)
        elif t is dict:
            for v in template.values():
                _Program._slots(v, found)
        return found

    def _elide_copies(self, steps, out_template):
        """Drop each gradient copy whose output only a ``.grad`` store reads and whose source
        nothing reads later; returns {copy's slot: source slot} for the stores."""
        last_use, readers = {}, {}
        for n, step in enumerate(steps):
            for i in self._slots((step.args, step.kwargs), []):
                last_use[i] = n
                readers.setdefault(i, []).append(step.kind)
        for i in self._slots(out_template, []):
            last_use[i] = len(steps)
            readers.setdefault(i, []).append("output")
        alias = {}
        for n, step in enumerate(steps):
            if step.kind == "call" and step.fn is _copy and isinstance(step.out, int):
                (src,) = self._slots(step.args, [])
                if readers.get(step.out) == ["grad"] and last_use.get(src) == n:
                    alias[step.out] = src
                    steps[n] = None
        return alias

    def _own(self, out):
        return isinstance(out, int) and self.values[out].ndim > 0 and self.values[out].base is None

    def _compile(self, step, alias):
        fill, values = self.rec.fill, self.values
        args, kwargs, out = step.args, step.kwargs, step.out
        flat = all(type(a) is not tuple and type(a) is not list and type(a) is not dict for a in args) and not any(
            type(v) in (tuple, list, dict, _S) for v in kwargs.values())
        slots = [a.i for a in args if type(a) is _S] if flat else None
        if flat and len(slots) == len(args) and not kwargs and len(args) in (1, 2):
            if len(args) == 1:
                (i0,) = slots

                def build():
                    return (values[i0],), kwargs
            else:
                i0, i1 = slots

                def build():
                    return (values[i0], values[i1]), kwargs
        elif flat:
            pos = [(j, a.i) for j, a in enumerate(args) if type(a) is _S]
            base = list(args)

            def build():
                a = base[:]
                for j, i in pos:
                    a[j] = values[i]
                return a, kwargs
        else:
            def build():
                return fill(args, values), fill(kwargs, values)

        kind = step.kind
        if kind == "call":
            fn = step.fn
            own = self._own(out)
            into = fn if step.ufunc else getattr(fn, "into", None)
            if own and into is not None:  # write into the buffer of the last call: no fresh pages
                buf = values[out]
                self.fixed.add(out)
                every = flat and not kwargs and len(slots) == len(args)  # all positional, all slots
                if every and len(args) == 1:
                    i0 = slots[0]

                    def call():
                        into(values[i0], out=buf)
                    return call
                if every and len(args) == 2:
                    i0, i1 = slots

                    def call():
                        into(values[i0], values[i1], out=buf)
                    return call

                def call():
                    a, k = build()
                    into(*a, out=buf, **k)
                return call
            if isinstance(out, int) and self._is_fixed_view(step, out):
                self.fixed.add(out)
                return None  # the view made while recording is every replay's view
            if isinstance(out, tuple):
                def call():
                    a, k = build()
                    r = fn(*a, **k)
                    for o, v in zip(out, r):
                        if o is not None:
                            values[o] = np.asarray(v) if not isinstance(v, np.ndarray) else v
                return call
            if out is None:
                def call():
                    a, k = build()
                    fn(*a, **k)
                return call

            def call():
                a, k = build()
                r = fn(*a, **k)
                values[out] = r if type(r) is np.ndarray else np.asarray(r)
            return call
        if kind == "draw":
            method, (default, gen) = step.fn, step.extra

            def call():
                g = state.generator if default else gen
                a, k = build()
                values[out] = getattr(g, method)(*a, **k)
            return call
        if kind == "guard":
            kind_, expected = step.extra
            fn = step.fn

            def call():
                a, k = build()
                v = fn(*a, **k)
                if not _same(v, expected):
                    raise _Miss(step)
            return call
        if kind == "effect":
            fn = step.fn

            def call():
                self.effects_done = True
                fn()
            return call
        if kind == "grad":
            leaf, slot = step.extra, alias.get(args[0].i, args[0].i)

            def call():
                if leaf.grad is not None:
                    raise _Miss(step)  # a gradient left from before the call: the recording did not add to one
                t = Tensor.__new__(Tensor)
                Tensor.__init__(t, values[slot])
                leaf.grad = t
            return call
        raise AssertionError(kind)

    def _is_fixed_view(self, step, out):
        """Whether ``out`` is a view, made by a call that only views, of fixed slots' buffers."""
        if step.name not in _VIEWS:
            return False
        ins = self._slots((step.args, step.kwargs), [])
        if not ins or any(i not in self.fixed for i in ins) or len(step.consts) and any(
                isinstance(c, np.ndarray) for c in step.consts):
            return False
        result, source = self.values[out], self.values[ins[0]]
        return isinstance(result, np.ndarray) and result.base is not None and np.shares_memory(result, source)

    def run(self, arrays):
        for t, arr in self.persistent:
            if t.data is not arr:
                raise _Miss(None)  # a parameter's array was replaced: record afresh
        values = self.values
        for s, a in zip(self.inputs, arrays):
            values[s] = a
        gens = self.generators + ([state.generator] if self.uses_default else [])
        saved = [g.bit_generator.state for g in gens]
        self.effects_done = False
        try:
            for call in self.calls:
                call()
        except Exception as e:
            if self.effects_done:
                if isinstance(e, _Miss):
                    raise TraceError("a guard failed after the step's effects (an optimizer step) had run; "
                                     "move the branch before them") from None
                raise
            for g, st in zip(gens, saved):
                g.bit_generator.state = st
            raise _Miss(None) from e  # the call runs eagerly: its error, if any, is eager's
        return values


# ---- the user-facing wrapper -----------------------------------------------------------------


class Traced:
    """``fn`` recorded and replayed (see the module docstring). ``Traced.stats`` counts
    ``{"eager": calls run eagerly while recording, "replayed": calls replayed}``."""

    def __init__(self, fn, fallback=False, patience=3):
        self.fn = fn
        self.fallback = fallback
        self.patience = patience
        self.entries = {}  # signature -> dict(program=..., last=recording, misses=int)
        self.stats = {"eager": 0, "replayed": 0}
        self.refused = None
        self.__wrapped__ = fn
        self.__doc__ = getattr(fn, "__doc__", None)

    def __repr__(self):
        return f"scg.trace({_name(self.fn)})"

    def _signature(self, args, kwargs):
        sig = []
        for a in list(args) + [kwargs[k] for k in sorted(kwargs)]:
            if isinstance(a, Tensor):
                if a.requires_grad:
                    raise TraceError("a traced function takes arrays or Tensors without requires_grad as "
                                     "arguments; reach parameters through the model (a closure)")
                sig.append(("T", a.shape, a.dtype))
            elif isinstance(a, np.ndarray):
                sig.append(("A", a.shape, a.dtype))
            elif isinstance(a, (int, float, str, bool, type(None), np.generic)):
                sig.append(("V", type(a), a))
            else:
                raise TraceError(f"a traced function takes arrays, Tensors and numbers as arguments; got a "
                                 f"{type(a).__name__} (reach other objects through a closure)")
        return (tuple(sorted(kwargs)), tuple(sig), state.grad_enabled, state.anomaly, state.validate_args,
                state.track, state.graph is not None)

    def __call__(self, *args, **kwargs):
        if self.refused is not None:
            return self.fn(*args, **kwargs)
        if state.tracer is not None:
            return self.fn(*args, **kwargs)  # inside another recording: that one records this call
        key = self._signature(args, kwargs)
        entry = self.entries.setdefault(key, {"program": None, "last": None, "misses": 0, "replays": 0})
        program = entry["program"]
        if program is not None and entry["replays"] + 1 in _AUDITS:
            # An audit: this call records again and must agree with the trusted recording (a
            # constant the first two recordings happened to share is caught when it changes).
            entry["program"], entry["last"], program = None, program.rec, None
            entry["replays"] += 1
        if program is not None:
            arrays = [a.data if isinstance(a, Tensor) else a for a in list(args) + [kwargs[k] for k in sorted(kwargs)]]
            try:
                values = program.run(arrays)
            except _Miss:
                entry["program"], entry["last"] = None, None
                entry["misses"] += 1
            else:
                entry["misses"] = 0
                entry["replays"] += 1
                self.stats["replayed"] += 1
                return _outputs(program.out_template, values)
        try:
            return self._record(entry, args, kwargs)
        except TraceError as e:
            if not self.fallback:
                raise
            self.refused = str(e)
            warnings.warn(f"scg.trace: {_name(self.fn)} runs eagerly from now on: {e}", RuntimeWarning, stacklevel=2)
            if self._last_result is not _NOTHING:  # the recording's own eager call finished
                return self._last_result
            for g, st in self._rec_states:  # it stopped half-way: run the call again, from the same draws
                g.bit_generator.state = st
            return self.fn(*args, **kwargs)

    def _record(self, entry, args, kwargs):
        self._last_result = _NOTHING
        rec = _Recording()
        self._rec_states = rec.first_states.values()
        names = sorted(kwargs)
        traced_args = []
        for a in list(args) + [kwargs[k] for k in names]:
            if isinstance(a, (Tensor, np.ndarray)):
                arr = _CONVERTERS["asarray"](a.data if isinstance(a, Tensor) else a)
                s = rec.new_slot(arr)
                rec.inputs.append(s)
                w = rec.wrap(arr, s)
                traced_args.append(Tensor(w) if isinstance(a, Tensor) else w)
            else:
                traced_args.append(a)
        args2 = traced_args[:len(args)]
        kwargs2 = dict(zip(names, traced_args[len(args):]))
        frame = push("trace", tracer=rec)
        restore = rec.converters()
        try:
            result = self.fn(*args2, **kwargs2)
        finally:
            rec.active = False
            restore()
            pop(frame)
        self.stats["eager"] += 1
        out_template = _out_template(rec, result)
        plain = _outputs(out_template, rec.values)
        _untrace_grads(rec)
        self._last_result = plain
        last = entry["last"]
        if last is not None:
            why = _differ(last, rec)
            if why is None:
                persistent = _persistent(last, rec)
                entry["program"] = _Program(rec, out_template, persistent)
                entry["last"] = None
                return plain
            entry["misses"] += 1
            if entry["misses"] >= self.patience:
                raise TraceError(f"{_name(self.fn)} cannot be traced: {why}")
        entry["last"] = rec
        if entry["misses"] >= self.patience:
            raise TraceError(f"{_name(self.fn)} cannot be traced: its guards keep failing (a value that leaves "
                             f"the step as a Python number changes between calls)")
        return plain


_NOTHING = object()
_AUDITS = frozenset(10 ** k for k in range(1, 10))  # replays after which a call records again


def _persistent(old, new):
    """The (Tensor, array) pairs a replay must find unchanged: the Tensors both recordings
    read as constants (parameters), with the array each held."""
    pairs, seen = [], set()
    for a, b in zip(old.steps, new.steps):
        for t in b.tensors:
            if any(t is u for u in a.tensors) and id(t) not in seen:
                seen.add(id(t))
                pairs.append((t, t.data))
    return pairs


def _out_template(rec, result):
    if isinstance(result, Tensor):
        return ("T", _out_template(rec, result.data)[1])
    if isinstance(result, np.ndarray):
        s = rec.slot_of(result)
        return ("A", _S(s) if s is not None else np.array(result))
    if isinstance(result, (tuple, list)):
        return (type(result), [_out_template(rec, r) for r in result])
    if isinstance(result, dict):
        return (dict, {k: _out_template(rec, v) for k, v in result.items()})
    if result is None:
        return (None, None)
    raise TraceError(f"a traced function returns Tensors, arrays, None, or tuples, lists and dicts of them; "
                     f"got a {type(result).__name__} (a number taken with item()? return the Tensor)")


def _outputs(template, values):
    kind, body = template
    if kind == "T" or kind == "A":
        arr = values[body.i] if type(body) is _S else body
        arr = np.array(arr.view(np.ndarray) if isinstance(arr, TracedArray) else arr)
        return Tensor(arr) if kind == "T" else arr
    if kind in (tuple, list):
        return kind(_outputs(t, values) for t in body)
    if kind is dict:
        return {k: _outputs(t, values) for k, t in body.items()}
    return None


def _untrace_grads(rec):
    """After a recording, the gradients it stored hold plain arrays (no recording behind them)."""
    for s in rec.steps:
        if s.kind == "grad":
            leaf = s.extra
            if leaf.grad is not None and isinstance(leaf.grad.data, TracedArray):
                leaf.grad.data = leaf.grad.data.view(np.ndarray)


def trace(fn=None, *, fallback=False, patience=3):
    """``fn`` as a traced step (a :class:`Traced`); usable as ``@scg.trace`` or
    ``@scg.trace(fallback=True)``.

    ``fallback=True``: a function that cannot be traced warns once (saying why) and runs
    eagerly from then on, instead of raising :class:`TraceError`. ``patience``: how many
    disagreeing recordings (or failed guards in a row) before it is refused.
    """
    if fn is None:
        return lambda f: Traced(f, fallback=fallback, patience=patience)
    return Traced(fn, fallback=fallback, patience=patience)

