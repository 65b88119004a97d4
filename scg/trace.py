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
- guards: a Python branch on a value (``bool()``, or the answer of a one-pass validation check,
  ``scg.kernels.has_nan`` and the like) or a value leaving as a number (``float()``, ``int()``,
  ``item()``) records the value seen.

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

import copy
import functools
import sys
import warnings

import numpy as np

from . import ops
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


class _Site:
    """Where a recorded call was made: frames as (file, line), formatted (with the source
    line) only when a message needs it; walking frames is cheap, reading source is not."""

    __slots__ = ("frames",)

    def __init__(self, frames):
        self.frames = frames

    def __str__(self):
        import linecache

        return " via ".join(f"{f}:{n} ({linecache.getline(f, n).strip()})" for f, n in self.frames) or "?"

    def __contains__(self, text):
        return text in str(self)

    __repr__ = __str__


_SKIP = ("/numpy/", "/scg/trace.py", "/scg/autodiff.py", "/scg/tensor.py", "/scg/kernels.py")


_FILE_KIND = {}  # a code object's file name -> "" (skipped), "scg" or "user": a site is asked for per recorded call


def _file_kind(name):
    f = name.replace("\\", "/")
    kind = "" if any(k in f for k in _SKIP) else "scg" if "/scg/" in f else "user"
    _FILE_KIND[name] = kind
    return kind


def _site(user_only=False):
    """The innermost frame outside numpy and the recorder (a line of scg's, say) and the
    innermost outside scg (the user's line), outermost first, as a :class:`_Site`."""
    frame = sys._getframe(1)
    inner = user = None
    while frame is not None:
        kind = _FILE_KIND.get(frame.f_code.co_filename)
        if kind is None:
            kind = _file_kind(frame.f_code.co_filename)
        if kind:
            f = frame.f_code.co_filename.replace("\\", "/")
            if inner is None:
                inner = (f, frame.f_lineno)
            if kind == "user":
                user = (f, frame.f_lineno)
                break
        frame = frame.f_back
    if user_only and user is not None or inner == user:
        return _Site([user] if user is not None else [])
    return _Site([fr for fr in (user, inner) if fr is not None])


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

    __slots__ = ("kind", "fn", "args", "kwargs", "out", "consts", "tensors", "name", "site", "ufunc", "extra",
                 "safe", "err")

    def __init__(self, kind, fn, args, kwargs, out, consts=(), tensors=(), name="", site=None, ufunc=False,
                 extra=None, safe=False):
        self.kind, self.fn, self.args, self.kwargs, self.out = kind, fn, args, kwargs, out
        self.consts, self.tensors, self.name, self.site, self.ufunc, self.extra = (
            consts, tensors, name, site, ufunc, extra)
        self.safe = safe  # an effect that may be run again from the start of the step
        self.err = None  # numpy's error handling when recorded, if not the caller's (np.errstate in the step)


class _Recording:
    """The state of one recording: values by slot, and the steps in order."""

    def __init__(self):
        self.values = []  # slot -> plain ndarray
        self.latest = {}  # id(plain ndarray) -> its latest slot (values holds the arrays, so ids stay valid)
        self.steps = []
        self.inputs = []  # slots of the arguments, in order
        self.active = True
        self.generators = []  # the explicit generators drawn from
        self.first_states = {}  # id(generator) -> (generator, its state before the first draw)
        self.effects_seen = False
        self.written = {}  # id(plain array) -> slot: arrays made outside, written by a recorded call
        self.watched = []  # (object, copy of its hyperparameters when the call began): see effect
        self.reads = {}  # id(Tensor) -> (Tensor, its plain array, the traced view): leaves read
        self.fresh = {}  # id -> Tensor: the Tensors made during the recording
        self.initial = {}  # slot -> a copy of the array of such a Tensor when first read
        self.assigned = []  # Tensors whose .data the step assigned
        self.out_consts = []  # arrays returned that are not values of the recording
        self.base_err = np.geterr()

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
        self.latest[id(plain)] = len(self.values) - 1
        return len(self.values) - 1

    def wrap(self, plain, slot):
        t = plain.view(TracedArray)
        t._rec, t._slot = self, slot
        return t

    def slot_of(self, a):
        """The slot of TracedArray ``a`` of this recording, None for a constant; refuses a
        value derived from a traced one by a path not recorded."""
        if type(a) is np.ndarray and id(a) in self.written:
            s = self.written[id(a)]
            if self.values[s] is a:
                return s
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
        s = self.latest.get(id(result))  # an in-place call returns its output array
        if s is None:
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
        site = _site()
        target = tkwargs.get("out")
        target = target[0] if type(target) is tuple and len(target) == 1 else target
        # written into an array made outside the recording (not one of its values)?
        outside = type(result) is np.ndarray and isinstance(target, np.ndarray) and target is result
        out, traced = self.register(result)
        if out is None and not isinstance(result, np.ndarray):
            # a Python object computed from values (np.array_equal's bool): a guard on it
            self.steps.append(_Step("guard", fn, targs, tkwargs, None, consts, name=name or _name(fn),
                                    site=site, extra=("value", result)))
            return result
        self.steps.append(_Step("call", fn, targs, tkwargs, out, consts, tensors, name=name or _name(fn),
                                site=site, ufunc=ufunc and "out" not in kwargs))
        err = np.geterr()
        if err != self.base_err:
            self.steps[-1].err = err
        if outside:
            # written in place into an array made outside the recording (a parameter updated
            # by hand: ``w.data -= lr * g``): it stays that array, now a value of the recording
            self.written[id(result)] = out
            return result
        return traced

    def primitive(self, name, forward, xs, static):
        return self.numpy_call(forward, [x.data for x in xs], static, ufunc=isinstance(forward, np.ufunc), name=name)

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
        self.steps.append(_Step("draw", method, targs, tkwargs, out, consts, name=f"draw {method}", site=_site(),
                                extra=(proxy.default, None if proxy.default else gen)))
        if not proxy.default and all(g is not gen for g in self.generators):
            self.generators.append(gen)
        return traced

    def effect(self, fn, name, owners=None, redo_safe=False):
        """Run ``fn()`` outside the recording and record that a replay calls it; ``owners``
        (default: a bound method's object) must be the same objects in the next recording.
        ``redo_safe``: calling it again from the start of the step gives the same state
        (``zero_grad``), so a replay stopped by a guard after it can still rerun eagerly."""
        owners = (getattr(fn, "__self__", None),) if owners is None else tuple(owners)
        for obj, before in self.watched:
            if any(obj is o for o in owners) and not _same(getattr(obj, "hyper", None), before):
                changed = [k for k in before if not _same(before[k], obj.hyper.get(k))]
                raise TraceError(
                    f"the step changes the hyperparameters of {type(obj).__name__} ({', '.join(changed)}) before "
                    f"{name} at {_site(user_only=True)}; a replay would not: set them before calling the traced step (a "
                    f"schedule between calls), or inside an @scg.effect")
        self.active = False
        try:
            result = fn()
        finally:
            self.active = True
        self.effects_seen = True
        # what an effect changes, a replay changes too: compare from here on
        self.watched = [(obj, copy.deepcopy(obj.hyper)) for obj, _ in self.watched]
        self.steps.append(_Step("effect", fn, (), {}, None, name=name, site=_site(), extra=owners,
                                safe=redo_safe))
        return result

    # the hooks the library calls while ``state.tracer`` is set
    def note_created(self, t):
        if self.active:
            self.fresh[id(t)] = t

    def tensor_data(self, t, d):
        """``t.data`` read while recording, ``d`` a plain array (a leaf: a parameter, a constant):
        a value of the recording, which a replay reads from ``t`` at the same point."""
        if not self.active:
            return d
        seen = self.reads.get(id(t))
        if seen is not None and seen[1] is d:
            return seen[2]
        s = self.new_slot(d)
        traced = self.wrap(d, s)
        self.reads[id(t)] = (t, d, traced)
        if id(t) in self.fresh:
            self.initial[s] = d.copy()  # (the step may write into it: see _Program.restore)
        self.steps.append(_Step("read", None, (), {}, s, name="read", extra=t, site=_site(),
                                consts=[(d.shape, d.dtype)]))
        return traced

    def note_data(self, t, value):
        """``t.data = value`` while recording: a replay assigns the same."""
        if not self.active:
            return
        if not isinstance(value, np.ndarray):
            raise TraceError(f".data must be a numpy array, got {type(value).__name__}")
        s = self.slot_of(value)
        what = _S(s) if s is not None else value
        self.steps.append(_Step("assign", None, (what,), {}, None, [] if s is not None else [value],
                                name="assign .data", site=_site(), extra=t))
        self.assigned.append(t)
        self.reads.pop(id(t), None)


    def generator(self, generator, default):
        """What :func:`scg.random.resolve` hands out: a proxy recording the draws."""
        if not self.active or isinstance(generator, _Proxy):
            return generator
        if id(generator) not in self.first_states:
            self.first_states[id(generator)] = (generator, generator.bit_generator.state)
        return _Proxy(generator, default, self)

    def check_accumulation(self, leaf):
        """Called by the backward pass before adding a gradient to ``leaf.grad``: a gradient
        from before this call would be a constant to the recording. When there is none, a
        replay checks that there is none then either (a guard)."""
        if not self.active:
            return
        if leaf.grad is None:
            self.steps.append(_Step("guard", _grad_is_none, (), {}, None, name="grad is None", site=_site(),
                                    extra=("grad", True), tensors=(leaf,)))
            return
        data = leaf.grad._data
        if self.slot_of(data) is None:
            raise TraceError(
                f"the gradient of a Tensor of shape {leaf.shape} accumulates across calls of the traced step "
                f"(its .grad was set when the call began), at {_site()}: call optimizer.zero_grad() (or set "
                f".grad = None) inside the traced step")

    def note_grad(self, leaf, value):
        """Called when ``leaf.grad`` is set (by the backward pass or by the user): a replay
        stores the same (the step's value, None, or the same array)."""
        if not self.active:
            return
        if value is None:
            what = None
        elif isinstance(value, Tensor):
            s = self.slot_of(value.data)
            what = _S(s) if s is not None else value.data
        else:
            raise TraceError(f".grad must be a Tensor or None, got {type(value).__name__}")
        consts = [] if type(what) is _S or what is None else [what]
        self.steps.append(_Step("grad", None, (what,), {}, None, consts, name="grad", site=_site(), extra=leaf))


def unreplayable(why):
    """For code whose random draws a replay cannot repeat (rejection sampling: how many numbers
    it draws depends on the numbers drawn): while a traced step is being recorded, refuse it
    with ``why``, so the step runs eagerly (``fallback=True``) or the user is told. A no-op
    outside a recording."""
    rec = state.tracer
    if rec is not None and rec.active:
        raise TraceError(
            f"{why} at {_site(user_only=True)}, so a replay could not draw the same way: run this step eagerly "
            f"(scg.trace(fn, fallback=True) does so by itself), or draw outside the traced function")


def python_state(fn):
    """Decorator: ``fn`` returns a number read from Python state that the step's effects
    change (a moving average's current value). Inside a traced step the number is a
    constant of the recording, so every replay calls ``fn`` again, where the recording did,
    and records afresh if it returns another number."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        rec = state.tracer
        if rec is not None and rec.active:
            rec.steps.append(_Step("guard", functools.partial(fn, *args, **kwargs), (), {}, None, name="state",
                                   site=_site(), extra=("state", result)))
        return result
    return wrapper


def _grad_is_none(leaf):
    return leaf.grad is None


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


_ESCAPES = ("bool", "float", "int", "index", "item", "tolist", "state")


# Constants a folded call may take besides the step's own constants: numbers and the like, which
# nothing can change in place (an array or a function from outside could change between calls).
_IMMUTABLE = (int, float, complex, bool, str, bytes, type(None), slice, type, np.dtype, np.generic)

# The whole-array checks of scg.kernels, as their guards are named, by strength: a value with no
# element outside {0, 1} has none that is infinite or NaN, and a finite one has no NaN.
_CHECK_STRENGTH = {"bool (any_nan)": 1, "bool (any_nonfinite)": 2, "bool (any_nonbinary)": 3}
_SIGN_BLIND = ("bool (any_nan)", "bool (any_nonfinite)")  # the same answer for -x as for x


def _bytes(a):
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _is_branch(step):
    """A guard on a value a Python branch reads: ``bool()``, or the answer of a validation check
    (``scg.kernels.has_nan`` and the like record theirs as "bool (any_nan)"). Either may go the
    other way between two calls: the calls after it decide."""
    return step.kind == "guard" and (step.name == "bool" or step.name.startswith("bool ("))


def _branch_before(old, new, n):
    """The last Python branch before step ``n`` that went different ways in two recordings."""
    for i in range(min(n, len(old.steps), len(new.steps)) - 1, -1, -1):
        a, b = old.steps[i], new.steps[i]
        if _is_branch(a) and _is_branch(b) and not _same(a.extra, b.extra):
            return b
    return None


def _differ(old, new):
    """None if recordings ``old`` and ``new`` agree, else a sentence saying where they differ."""
    n = min(len(old.steps), len(new.steps))
    for i in range(n + 1):
        if i == n:
            if len(old.steps) == len(new.steps):
                break
            a = b = None
        else:
            a, b = old.steps[i], new.steps[i]
            escape = a.kind == "guard" and a.name in _ESCAPES  # its fn is a fresh lambda each time
            if a.kind == b.kind and a.name == b.name and (a.kind in ("draw", "effect", "grad") or escape
                                                          or a.fn is b.fn or _same(a.fn, b.fn)):
                a = None  # the same call: check its wiring and constants below
        if a is not None or i == n:
            branch = _branch_before(old, new, i)
            if branch is not None:
                return f"the Python branch at {branch.site} went different ways in two recordings"
            where = f" at {new.steps[i].site}" if i < len(new.steps) else ""
            return f"the two recordings made different calls from call {i}{where}: a Python branch the " \
                   f"recorder cannot see (on a value copied out of the step, or on Python state) went " \
                   f"different ways"
        a = old.steps[i]
        if a.out != b.out or _structure(a.args) != _structure(b.args) or _structure(a.kwargs) != _structure(b.kwargs):
            return f"call {i} ({b.name}) at {b.site} is wired differently in two recordings"
        if a.kind == "effect" and (len(a.extra) != len(b.extra) or any(x is not y for x, y in zip(a.extra, b.extra))):
            return f"{b.name} at {b.site} acts on another object each time (an optimizer made inside the step?)"
        if a.kind == "grad" and a.extra is not b.extra and not (id(a.extra) in old.fresh and id(b.extra) in new.fresh):
            return f"the .grad store at {b.site} goes to another Tensor each time (a parameter made inside the step?)"
        if a.kind == "read" and a.extra is not b.extra and not _same(old.values[a.out], new.values[b.out]):
            # two Tensors (made in the step, or replaced between calls) are constants: their values must agree
            return _constant_changed(i, b)
        if a.kind == "assign" and a.extra is not b.extra and not (id(a.extra) in old.fresh and id(b.extra) in new.fresh):
            return f"the .data assignment at {b.site} goes to another Tensor each time"
        if a.kind == "guard" and a.fn is _grad_is_none and a.tensors[0] is not b.tensors[0] and not (
                id(a.tensors[0]) in old.fresh and id(b.tensors[0]) in new.fresh):
            return f"the backward pass at {b.site} stores gradients in other Tensors each time"
        if a.kind == "draw" and (a.extra[0] != b.extra[0] or a.extra[1] is not b.extra[1]):
            return f"the draw ({b.name}) at {b.site} uses another generator each time: make the generator once, " \
                   f"outside the traced step"
        if a.kind == "guard" and not _same(a.extra, b.extra):
            if _is_branch(a):
                continue  # a branch that went the other way: the calls after it decide
            inside = "/scg/" in str(b.site or "")
            fix = ("scg takes this number itself (a statistic read as a Python float): run the step with "
                   "scg.trace(fn, fallback=True), or eagerly") if inside else \
                "keep it an array, or compute it outside the traced function"
            return f"a value leaves the step as a Python number ({a.name}) at {b.site} and changes from call " \
                   f"to call: {fix}"
        if len(a.consts) != len(b.consts) or not all(_same(x, y) for x, y in zip(a.consts, b.consts)):
            return _constant_changed(i, b)
    if len(old.out_consts) != len(new.out_consts) or not all(
            _same(x, y) for x, y in zip(old.out_consts, new.out_consts)):
        return ("the step returns an array made outside the recording whose value changed between two calls "
                "(filled from a value by a plain numpy array's indexing, or converted through bytes or a "
                "library the recorder does not follow): return the step's values themselves")
    return None


def _constant_changed(i, b):
    return (f"call {i} ({b.name}) at {b.site} uses a constant that changed between two calls: an array made "
            f"outside the recording from a value of the step. Usual causes: a plain numpy array indexed with "
            f"a value of the step (data[idx]: write scg.tensor(data)[idx], or pass data as an argument); a "
            f"number taken from a value (float(), .item()); a random draw not made through scg's generator; a "
            f"Python number the step reads from an object that changed (a closure's or a global's are seen)")


def _draws_coincide(old, new):
    """Whether some draw gave the same values in both recordings (a constant computed from it
    would then look constant without being so)."""
    for a, b in zip(old.steps, new.steps):
        if a.kind == "draw" and isinstance(a.out, int):
            x, y = old.values[a.out], new.values[b.out]
            if x.shape == y.shape and x.size and np.array_equal(x, y):
                return True
    return False


# ---- the program ----------------------------------------------------------------------------


class _Program:
    """A trusted recording, ready to replay: ``run(arrays)`` -> the values by slot.

    Compiling it (once) makes each step a closure over its buffers, and drops two kinds of
    steps that would redo nothing: a view (reshape, transpose, basic indexing, broadcast) of
    a buffer that every replay rewrites in place is the same view every time, so the one
    made while recording is kept; and the copy the backward pass makes of a gradient before
    storing it in ``.grad`` (so that ``.grad`` aliases nothing) is not needed when nothing
    reads its source afterwards, since the source is the step's own buffer. It then drops calls
    and checks that read only constants the step made itself (``_fold_constants``), fuses pairs
    of calls whose intermediate has no other reader (``_fuse``) and runs repeated validation
    checks on an unchanged value once (``_merge_checks``); each keeps the bits of the calls it
    replaces."""

    def __init__(self, rec, out_template, previous=None):
        self.rec = rec
        self.values = list(rec.values)
        self.inputs = rec.inputs
        self.out_template = out_template
        self.generators = rec.generators
        self.uses_default = any(s.kind == "draw" and s.extra[0] for s in rec.steps)
        steps = list(rec.steps)
        self.fixed = set()  # slots whose array is the same object, rewritten in place, at every replay
        self.persistent = self._persistent_slots(steps)  # slots whose memory outlives the call
        self.grad_saved = []  # (leaf, its .grad before a store of this replay): undone on a miss
        alias = self._elide_copies(steps, out_template)
        self.restore = {}  # read slot -> the value its array must start from at every replay
        if previous is not None:
            made = self._made_by_step(steps, previous)
            self._restore_made_arrays(steps, made)
            self._fold_constants(steps, made)
        self._fuse(steps, out_template, alias)
        self._merge_checks(steps)
        self.calls, self.call_steps = [], []  # the closures, and the step each replays
        for step in steps:
            if step is None:
                continue
            call = self._compile(step, alias)
            if call is not None and step.err is not None:
                call = self._with_errstate(call, step.err)
            if call is not None and self._writes_persistent(step):
                call = self._irreversible(call, step)
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

    def _fold_constants(self, steps, made):
        """Drop what every replay would compute alike. A Tensor made in the step from an array the
        step made (a standard-normal prior's zeros and ones; its read steps are ``made``) is a
        constant: the two agreeing recordings found its values equal, each in an array of its own,
        so no code outside can change it in place (an array from outside, or a view of one, is
        the same memory in both and is not folded: eager calls would see it change). A numpy
        call reading only such constants and numbers (no array or function from outside, which
        could change) then gives the value it gave when recorded, and a Python branch or a check
        on them (the distribution's parameter validation) the same answer. Nothing is folded when
        some call writes into a constant; a call that warns (replayed, it would warn again) stays."""
        const, dropped = set(), []
        for n, step in enumerate(steps):
            if step is None:
                continue
            if step.kind == "read":
                if n in made:
                    const.add(step.out)
                    dropped.append(n)
                continue
            ins = self._slots((step.args, step.kwargs), [])
            if not ins or any(i not in const for i in ins) or not all(isinstance(c, _IMMUTABLE) for c in step.consts):
                continue
            if step.kind == "guard" and step.fn is not _grad_is_none and step.extra[0] != "value":
                dropped.append(n)  # a branch or a number taken: the same every time
            elif step.kind == "call" and type(step.out) is int and step.fn is not _setitem and \
                    "out" not in step.kwargs and self._recomputes(step):
                const.add(step.out)
                dropped.append(n)
        if const and not any(self._writes_into(step, const) for step in steps if step is not None):
            for n in dropped:
                steps[n] = None

    def _restore_made_arrays(self, steps, made):
        """A Tensor made in the step from an array the step made (its read steps are ``made``), and
        written in place by the step (``c = scg.tensor(np.zeros(3)); c.data += x``): every eager
        call starts from a new array of the first value, while a replay reads the same array, which
        the last replay wrote. So its read restores the value the recording first read."""
        for n in made:
            out = steps[n].out
            if any(self._writes_into(w, (out,)) for w in steps if w is not None):
                self.restore[out] = self.rec.initial[out]

    def _made_by_step(self, steps, previous):
        """The read steps of Tensors made during the step, never assigned, from arrays the step made
        itself: the two agreeing recordings (this one and ``previous``) hold distinct memory there."""
        assigned = {id(s.extra) for s in steps if s is not None and s.kind == "assign"}
        made = set()
        for n, step in enumerate(steps):
            if step is not None and step.kind == "read" and id(step.extra) in self.rec.fresh and \
                    id(step.extra) not in assigned:
                old, new = previous.values[previous.steps[n].out], self.values[step.out]
                if old is not new and not np.may_share_memory(old, new):
                    made.add(n)
        return made

    def _writes(self, step):
        """The slots whose arrays ``step`` may write into, its own new output aside."""
        if step.kind == "call":
            ins = self._slots((step.args, step.kwargs), [])
            if step.fn is _setitem or step.out is None:
                return ins
            outs = step.out if type(step.out) is tuple else (step.out,)
            # an output that is one of the inputs: written in place (out= given by position or by
            # name), or returned as it was (np.asarray; counted too, to be safe)
            return [o for o in outs if o in ins]
        if step.kind == "guard" and step.extra[0] == "value":
            # a numpy call that returned no array (np.copyto, np.putmask, ufunc.at): it writes an input
            return self._slots((step.args, step.kwargs), [])
        return []

    def _writes_into(self, step, slots):
        """Whether ``step`` may write into one of ``slots``' arrays (directly or through a view)."""
        return any(t == s or np.may_share_memory(self.values[t], self.values[s])
                   for t in self._writes(step) for s in slots)

    def _recomputes(self, step):
        """Whether ``step``'s call, run again on its recorded inputs, gives its recorded value to
        the bit, with no floating-point error and no warning."""
        try:
            with warnings.catch_warnings(record=True) as seen, np.errstate(all="raise"):
                warnings.simplefilter("always")
                r = step.fn(*self.rec.fill(step.args, self.values), **self.rec.fill(step.kwargs, self.values))
        except Exception:  # noqa: BLE001  (then it is not folded)
            return False
        v = self.values[step.out]
        r = np.asarray(r) if isinstance(r, np.generic) else r  # (a reduction's scalar: a 0-d array when recorded)
        return not seen and isinstance(r, np.ndarray) and r.shape == v.shape and r.dtype == v.dtype and \
            r.dtype.kind in "biuf" and np.array_equal(_bytes(r), _bytes(v))  # (NaN included)

    def _fuse(self, steps, out_template, alias):
        """Run ``add(x, b)`` then ``relu`` of the sum as one call (``ops._bias_relu``: a dense layer
        and its activation, one pass over memory instead of two, the sum never written) where the
        two are consecutive, relu is the sum's only reader, ``x`` is (rows, cols) and ``b`` (cols,),
        all of one float dtype. Each element is rounded as the pair rounds it."""
        reads = {}
        for step in steps:
            if step is not None:
                for i in self._slots((step.args, step.kwargs), []):
                    reads[i] = reads.get(i, 0) + 1
                    if i in alias:  # a .grad store reading a dropped copy reads its source
                        reads[alias[i]] = reads.get(alias[i], 0) + 1
        for i in self._slots(out_template, []):
            reads[i] = reads.get(i, 0) + 1
        live = [n for n, step in enumerate(steps) if step is not None]
        for m, n in zip(live, live[1:]):
            first, second = steps[m], steps[n]
            if not (first.kind == second.kind == "call" and first.fn is np.add and first.ufunc
                    and second.fn is ops._relu and not first.kwargs and not second.kwargs
                    and first.err is None and second.err is None and type(first.out) is int
                    and type(second.out) is int and second.args == (_S(first.out),)
                    and reads.get(first.out) == 1 and first.out not in self.persistent
                    and len(first.args) == 2 and all(type(a) is _S for a in first.args)):
                continue
            x, b, total = (self.values[i] for i in (first.args[0].i, first.args[1].i, first.out))
            if x.ndim == 2 and b.ndim == 1 and b.shape == x.shape[1:] and x.dtype.kind == "f" and (
                    x.dtype == b.dtype == total.dtype == self.values[second.out].dtype):
                steps[m] = None
                steps[n] = _Step("call", ops._bias_relu, first.args, {}, second.out, name="bias_relu",
                                 site=second.site)
        for m in live:
            self._fuse_negation(steps, m, reads)

    def _fuse_negation(self, steps, m, reads):
        """Run ``bernoulli_log_prob`` then its negation (graph.observe's cost) as one call
        (``ops._bernoulli_nll``) where nothing but the negation and sign-blind checks read the
        log-likelihood in between: the checks then read the cost (a value is finite, or NaN,
        exactly when its negation is)."""
        first = steps[m]
        if first is None or first.kind != "call" or first.fn is not ops._bernoulli_log_prob or first.kwargs or \
                type(first.out) is not int or first.out in self.persistent or \
                len(first.args) != 2 or not all(type(a) is _S for a in first.args):
            return
        lp = first.out
        checks = []
        for n in range(m + 1, len(steps)):
            step = steps[n]
            if step is None:
                continue
            if step.kind == "guard" and step.name in _SIGN_BLIND and step.args == (_S(lp),):
                checks.append(n)
                continue
            break
        else:
            return
        neg = steps[n]
        if not (neg.kind == "call" and (neg.fn is ops._negative or neg.fn is np.negative and neg.ufunc) and not neg.kwargs
                and neg.err is None and neg.args == (_S(lp),) and type(neg.out) is int
                and reads.get(lp) == 1 + len(checks)):
            return
        x, l, v, c = (self.values[i] for i in (first.args[0].i, first.args[1].i, lp, neg.out))
        if x.shape == l.shape == v.shape == c.shape and x.ndim and x.dtype == l.dtype == v.dtype == c.dtype:
            steps[m] = _Step("call", ops._bernoulli_nll, first.args, {}, neg.out, name="bernoulli_nll",
                             site=neg.site)
            steps[m].err = first.err  # (numpy's error handling of the log-likelihood: a negation raises none)
            for k in checks:  # the same test, on the cost
                old = steps[k]
                steps[k] = _Step("guard", old.fn, (_S(neg.out),), {}, None, name=old.name, site=old.site,
                                 extra=old.extra)
            steps[n] = None

    def _merge_checks(self, steps):
        """Run each whole-array validation check (``scg.kernels.has_nan``, ``all_finite``,
        ``all_binary``, recorded as guards) on a value at most once while the value is unchanged,
        as the strongest of them: a value found all 0 or 1 is finite, and a finite one has no NaN.
        Observed data is checked three times on its way into a Bernoulli log-likelihood (observe,
        the support check, the 0/1 test), logits twice. Only checks that passed when recorded are
        merged: the stronger one then runs where the first ran, and a value it refuses stops the
        replay there instead of a few calls later (the call runs eagerly, as before)."""
        first = {}  # slot -> the step number of the first check on it still in force
        for n, step in enumerate(steps):
            if step is None:
                continue
            if step.kind == "guard" and step.name in _CHECK_STRENGTH and step.extra[1] is False:
                s = step.args[0].i
                k = first.get(s)
                if k is None:
                    first[s] = n
                    continue
                if _CHECK_STRENGTH[step.name] > _CHECK_STRENGTH[steps[k].name]:
                    steps[k] = step  # the stronger check, where the first one ran
                steps[n] = None
            elif step.kind in ("effect", "assign"):
                first.clear()  # an optimizer's step or a store may write any array
            elif first:
                for s in [s for s in first if self._writes_into(step, (s,))]:
                    del first[s]  # written in place (or through a view): checked afresh

    def _persistent_slots(self, steps):
        """Slots holding memory that outlives the call: a leaf's array (a parameter), an array
        made outside and written by the step, and views of them."""
        slots = set(self.rec.written.values())
        for step in steps:
            if step.kind == "read":
                slots.add(step.out)
            elif step.kind == "call" and step.name in _VIEWS and isinstance(step.out, int):
                ins = self._slots((step.args,), [])
                if ins and ins[0] in slots:
                    slots.add(step.out)
        return slots

    def _writes_persistent(self, step):
        """Whether a call writes into memory that outlives the call (cannot be undone)."""
        if step.kind == "assign":
            return True
        if step.kind != "call":
            return False
        target = step.kwargs.get("out")
        target = target[0] if type(target) is tuple and len(target) == 1 else target
        if type(target) is _S and target.i in self.persistent:
            return True
        if step.fn is _setitem and type(step.args[0]) is _S and step.args[0].i in self.persistent:
            return True
        return False

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
        if kind == "read":
            t, ((shape, dtype),) = step.extra, step.consts

            initial = self.restore.get(out)

            def call():
                d = t._data  # the leaf's array now: updated in place, or replaced
                if d.shape != shape or d.dtype != dtype:
                    raise _Miss(step)
                if initial is not None:
                    np.copyto(d, initial)  # (made by the step and written by it: see _restore_made_arrays)
                values[out] = d
            return call
        if kind == "assign":
            t, what = step.extra, args[0]
            if type(what) is _S:
                i = what.i

                def call():
                    t._data = values[i]
            else:
                def call():
                    t._data = what
            return call
        if kind == "guard" and step.fn is _grad_is_none:
            leaf = step.tensors[0]
            if id(leaf) in self.rec.fresh:  # made by the step: each eager call makes it afresh, without one
                def call():
                    leaf._grad = None
                return call

            def call():
                if leaf.grad is not None:
                    raise _Miss(step)  # a gradient left from before the call: the recording did not add to one
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
            fn, safe = step.fn, step.safe

            def call():
                if not safe:
                    self.effects_done = step
                fn()
            return call
        if kind == "grad":
            leaf, what = step.extra, args[0]
            saved = self.grad_saved
            if what is None:
                def call():
                    saved.append((leaf, leaf._grad))
                    leaf._grad = None
                return call
            if type(what) is not _S:
                def call():
                    saved.append((leaf, leaf._grad))
                    leaf._grad = Tensor(what)
                return call
            slot = alias.get(what.i, what.i)
            saved = self.grad_saved

            def call():
                saved.append((leaf, leaf._grad))
                t = Tensor.__new__(Tensor)
                Tensor.__init__(t, values[slot])
                leaf._grad = t
            return call
        raise AssertionError(kind)

    @staticmethod
    def _with_errstate(call, err):
        def under():
            with np.errstate(**err):
                call()
        return under

    def _irreversible(self, call, step):
        def marked():
            self.effects_done = step  # a miss after this cannot rerun the call eagerly
            call()
        return marked

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
        values = self.values
        for s, a in zip(self.inputs, arrays):
            values[s] = a
        gens = self.generators + ([state.generator] if self.uses_default else [])
        saved = [g.bit_generator.state for g in gens]
        self.effects_done = None
        self.grad_saved.clear()
        try:
            for call in self.calls:
                call()
        except Exception as e:
            for leaf, g in reversed(self.grad_saved):  # .grad stores are undone: the call reruns eagerly
                leaf._grad = g
            done = self.effects_done
            if done is not None:
                if isinstance(e, _Miss):
                    where = e.guard.site if e.guard is not None else "?"
                    raise TraceError(
                        f"the Python branch at {where} went the other way after {done.name} (at {done.site}) "
                        f"had changed state that outlives the call (an optimizer step, a parameter written in "
                        f"place) in this replay, which cannot be undone to run the call eagerly: put the "
                        f"branch before it, or run this step eagerly") from None
                raise
            for g, st in zip(gens, saved):
                g.bit_generator.state = st
            raise _Miss(None) from e  # the call runs eagerly: its error, if any, is eager's
        return values


# ---- the user-facing wrapper -----------------------------------------------------------------


class Traced:
    """``fn`` recorded and replayed (see the module docstring). ``Traced.stats`` counts
    ``{"eager": calls run eagerly (recording, or after a refusal with fallback), "replayed":
    calls replayed}``.

    Per signature it keeps up to ``KEEP`` trusted programs (one per way the step's Python
    branches went) and the last ``KEEP`` recordings not yet matched; it keeps the programs of
    ``SIGNATURES`` signatures, the least recently used dropped first (each holds the step's
    buffers)."""

    KEEP = 4
    SIGNATURES = 8

    def __init__(self, fn, fallback=False, patience=4):
        self.fn = fn
        self.fallback = fallback
        self.patience = patience
        self.entries = {}  # signature -> dict(programs, candidates, misses, replays, coincide), by recency
        self.stats = {"eager": 0, "replayed": 0}
        self.refused = None
        self._variants = {}  # signature without its numbers -> the numbers seen (to warn once)
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
            elif isinstance(a, _NUMBERS):
                sig.append(("V", type(a), a))
            else:
                raise TraceError(f"a traced function takes arrays, Tensors and numbers as arguments; got a "
                                 f"{type(a).__name__} (reach other objects through a closure)")
        return (tuple(sorted(kwargs)), tuple(sig), _captured(self.fn), state.grad_enabled, state.anomaly,
                state.validate_args, state.track, state.graph is not None)

    def _entry(self, key):
        entry = self.entries.pop(key, None)
        if entry is None:
            entry = {"programs": [], "candidates": [], "misses": 0, "replays": 0, "coincide": 0}
            self._note_variant(key)
        self.entries[key] = entry  # the most recently used last
        while len(self.entries) > self.SIGNATURES:
            del self.entries[next(iter(self.entries))]
        return entry

    def _note_variant(self, key):
        """Warn once when numbers in the signature (arguments, captured numbers) keep changing:
        each value gets its own recordings, so nothing is replayed."""
        shape = (key[0], tuple(e if e[0] != "V" else (e[0], e[1]) for e in key[1]), tuple(n for n, _ in key[2])) \
            + key[3:]
        seen = self._variants.setdefault(shape, set())
        seen.add(key)
        if len(seen) == 4:
            warnings.warn(
                f"scg.trace: {_name(self.fn)} has been called with 4 different values of a Python number it "
                f"takes as an argument or reads from a closure or a global; each value is recorded anew and "
                f"nothing is replayed. Pass a number that changes as a 0-d array argument "
                f"(np.asarray(x, dtype=np.float32)): it is then a value of the step", RuntimeWarning, stacklevel=3)

    def __call__(self, *args, **kwargs):
        if self.refused is not None or state.tracer is not None:
            # refused (fallback), or inside another recording, which records this call
            if self.refused is not None:
                self.stats["eager"] += 1
            return self.fn(*args, **kwargs)
        entry = self._entry(self._signature(args, kwargs))
        if entry["programs"] and entry["replays"] + 1 in _AUDITS:
            # An audit: this call records again and must agree with a trusted recording (a
            # constant the first two recordings happened to share is caught when it changes).
            entry["candidates"] = [p.rec for p in entry["programs"]]
            entry["programs"] = []
            entry["replays"] += 1
            entry["audit"] = entry["replays"]
        if entry["programs"]:
            arrays = [a.data if isinstance(a, Tensor) else a for a in list(args) + [kwargs[k] for k in sorted(kwargs)]]
            for program in list(entry["programs"]):
                try:
                    values = program.run(arrays)
                except _Miss:
                    continue  # another way through the step's branches: try the next program
                if program is not entry["programs"][0]:  # the most recently used first
                    entry["programs"].remove(program)
                    entry["programs"].insert(0, program)
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
            self.stats["eager"] += 1
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
        # the optimizers earlier recordings stepped: a step that changes their hyperparameters
        # (a schedule written inside it) would replay the old values
        for cand in entry["candidates"] + [p.rec for p in entry["programs"]]:
            for st in cand.steps:
                for obj in (st.extra if st.kind == "effect" else ()):
                    if isinstance(getattr(obj, "hyper", None), dict) and all(obj is not w for w, _ in rec.watched):
                        rec.watched.append((obj, copy.deepcopy(obj.hyper)))
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
        why = "its recordings disagree"
        for last in entry["candidates"]:
            why = _differ(last, rec)
            if why is None:
                if _draws_coincide(last, rec) and entry["coincide"] < 8:
                    # A draw gave the same values twice: constants computed from it could look
                    # constant without being so. Record again (a handful of times at most).
                    entry["coincide"] += 1
                    entry["candidates"].insert(0, rec)
                    del entry["candidates"][self.KEEP:]
                    return plain
                entry["candidates"].remove(last)
                entry["programs"].insert(0, _Program(rec, out_template, last))
                del entry["programs"][self.KEEP:]
                entry["misses"] = entry["coincide"] = 0
                return plain
        audit = entry.pop("audit", None)
        if audit is not None and entry["candidates"] and not why.startswith("the Python branch"):
            raise TraceError(
                f"{_name(self.fn)}: an audit after {audit - 1} replays recorded the step again and it disagrees "
                f"with the trusted recording: {why}. The replays since the last agreeing recording may have "
                f"used the old value: pass what changes as an argument (a 0-d array for a number), or run "
                f"the step eagerly")
        if entry["candidates"]:
            entry["misses"] += 1
        entry["candidates"].insert(0, rec)
        del entry["candidates"][self.KEEP:]
        if entry["misses"] >= self.patience:
            raise TraceError(f"{_name(self.fn)} cannot be traced: {why}")
        return plain


_NUMBERS = (int, float, complex, str, bool, type(None), np.generic)
_NOTHING = object()
_AUDITS = frozenset(10 ** k for k in range(1, 10))  # replays after which a call records again


def _fingerprint(v, depth=0):
    """What of ``v`` (an object the traced function reads by name) a replay depends on and a
    caller may change between calls: a number's value; the identity of a Tensor, an array or
    a generator (rebound to another object, the recording would use the old one); the
    identities of a module's or an optimizer's parameters; the same, one level into lists,
    tuples and dicts. None: nothing to watch."""
    if isinstance(v, _NUMBERS) and not isinstance(v, (str, type(None))):
        return (type(v), v)
    if isinstance(v, (Tensor, np.ndarray, np.random.Generator)):
        return ("id", id(v))
    params = getattr(v, "params", None) if hasattr(v, "step") else None
    if isinstance(params, list):  # an optimizer
        return ("opt", id(v), tuple(id(p) for p in params))
    if callable(getattr(v, "parameters", None)) and hasattr(v, "forward"):  # a module
        try:
            return ("module", tuple(id(p) for p in v.parameters()))
        except TypeError:
            return None
    if depth == 0 and isinstance(v, (list, tuple)) and len(v) <= 64:
        inner = tuple(_fingerprint(x, 1) for x in v)
        return ("seq", inner) if any(f is not None for f in inner) else None
    if depth == 0 and isinstance(v, dict) and len(v) <= 64:
        inner = tuple((k, _fingerprint(x, 1)) for k, x in v.items())
        return ("dict", inner) if any(f is not None for _, f in inner) else None
    return None


def _captured(fn):
    """What ``fn`` reads from its closure and from globals by name (see :func:`_fingerprint`),
    as ``((name, fingerprint), ...)``: part of the signature, so that a changed number or a
    rebound object records afresh instead of replaying the old one."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ()
    found = []
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            f = _fingerprint(cell.cell_contents)
        except ValueError:  # not yet assigned
            continue
        if f is not None:
            found.append((name, f))
    g = fn.__globals__
    for name in code.co_names:
        v = g.get(name, _NOTHING)
        if v is not _NOTHING:
            f = _fingerprint(v)
            if f is not None:
                found.append((name, f))
    return tuple(found)


def _out_template(rec, result):
    """How a replay builds the returned value: slots of the recording, a leaf Tensor read at
    the end (a parameter returned after its update), or constants, which the next recording
    must return equal (``rec.out_consts``)."""
    if isinstance(result, Tensor):
        d = result._data
        if not isinstance(d, TracedArray) and (id(result) in rec.reads or result.requires_grad):
            return ("leaf", result)
        return ("T", _out_template(rec, d)[1])
    if isinstance(result, np.ndarray):
        s = rec.slot_of(result)
        if s is None:
            const = np.array(result)
            rec.out_consts.append(const)
            return ("A", const)
        return ("A", _S(s))
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
    if kind == "leaf":
        return Tensor(np.array(body._data))
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
    """After a recording, the gradients it stored and the arrays it assigned are plain arrays
    (no recording behind them)."""
    for s in rec.steps:
        if s.kind == "grad":
            leaf = s.extra
            g = leaf._grad
            if g is not None and isinstance(g._data, TracedArray):
                g._data = g._data.view(np.ndarray)
    for t in rec.assigned:
        d = t._data
        if isinstance(d, TracedArray):
            plain = rec.values[d._slot] if d._rec is rec and d._slot is not None else None
            # the array itself when it is the value (a parameter updated in place), not a view of it
            t._data = plain if plain is not None and plain.shape == d.shape and plain.dtype == d.dtype \
                else d.view(np.ndarray)


def trace(fn=None, *, fallback=False, patience=4):
    """``fn`` as a traced step (a :class:`Traced`); usable as ``@scg.trace`` or
    ``@scg.trace(fallback=True)``.

    ``fallback=True``: a function that cannot be traced warns once (saying why) and runs
    eagerly from then on, instead of raising :class:`TraceError`. ``patience``: how many
    disagreeing recordings (or failed guards in a row) before it is refused.
    """
    if fn is None:
        return lambda f: Traced(f, fallback=fallback, patience=patience)
    return Traced(fn, fallback=fallback, patience=patience)

