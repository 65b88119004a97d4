"""The global switches, in one place: what is on now, and who turned it on.

A few settings change what operations do everywhere in the process:

==================  ========================================================  ==============
switch              meaning                                                   default
==================  ========================================================  ==============
grad_enabled        primitives are recorded for differentiation               True
anomaly             NaN forward values / NaN or Inf gradients raise           False
track               every operation is recorded (a stochastic graph is built) False
on_escape           called with a Tensor leaving as a Python scalar           None
graph               the innermost stochastic Graph being built                None
forced_estimator    ``choose(dist) -> estimator or None`` overriding models   None
replay              ``{node name: value}`` fixed for stochastic nodes         None
forced_subsamples   ``{plate name: indices}`` fixed for subsampled plates     None
validate_args       distributions check their values (log_prob) by default     True
tracer              the recording of a traced step (:mod:`scg.trace`)         None
measuring           scg.diagnostics measures: baselines record nothing       False
generator           the library's ``numpy.random.Generator``                  unseeded
==================  ========================================================  ==============

``state`` holds the current value of each switch as a plain attribute, because the
hot path (``autodiff.record``, once per operation) reads them. Everything that
changes a switch for a while (``no_grad``, ``detect_anomaly``, ``with graph:``,
``scg.replay``, the backward pass) goes through :func:`push` and :func:`pop`, which
keep one stack of :class:`Frame` s: each names its owner, the values it set and the
values they replaced. Frames come off in the reverse order they went on; anything else
is a bug and raises. :func:`set_default` (``manual_seed``,
``Distribution.set_default_validate_args``) changes the value a switch has once every
frame is popped. :func:`active` lists the values of a switch on the stack (innermost
first), for switches whose outer values still count (every graph being built, every
replay block).

There is one stack per process, shared by all threads: scg is not thread-safe.
"""

import numpy as np

_DEFAULTS = {
    "grad_enabled": True,
    "anomaly": False,
    "track": False,
    "on_escape": None,
    "graph": None,
    "forced_estimator": None,
    "replay": None,
    "forced_subsamples": None,
    "validate_args": True,
    "tracer": None,
    "measuring": False,
}


class State:
    """The current value of every switch, as attributes (see the module docstring)."""

    __slots__ = tuple(_DEFAULTS) + ("generator",)

    def __init__(self):
        for name, value in _DEFAULTS.items():
            setattr(self, name, value)
        self.generator = np.random.default_rng()

    def __repr__(self):
        return "State(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


state = State()


class Frame:
    """One push: ``owner`` (a short description of who pushed it), ``values`` (the
    switches it set) and ``replaced`` (their values before, restored by :func:`pop`)."""

    __slots__ = ("owner", "values", "replaced")

    def __init__(self, owner, values, replaced):
        self.owner, self.values, self.replaced = owner, values, replaced

    def __repr__(self):
        return f"Frame({self.owner!r}, {self.values!r})"


_stack = []


_NAMES = frozenset(State.__slots__)


def _check_names(names):
    for name in names:
        if name not in _NAMES:
            raise ValueError(f"unknown switch {name!r}; the switches are {', '.join(State.__slots__)}")


def push(owner, **values):
    """Set the switches ``values`` (``name=value``) on behalf of ``owner`` (a string
    such as "no_grad"); returns the Frame to hand to :func:`pop`."""
    if not _NAMES.issuperset(values):
        _check_names(values)
    replaced = {}
    for name, value in values.items():
        replaced[name] = getattr(state, name)
        setattr(state, name, value)
    frame = Frame(owner, values, replaced)
    _stack.append(frame)
    return frame


def pop(frame):
    """Undo ``frame``, which must be the innermost one (the last pushed and not popped)."""
    if not _stack or _stack[-1] is not frame:
        inner = f"the innermost is {_stack[-1].owner!r}" if _stack else "the stack is empty"
        raise RuntimeError(
            f"switch frame of {frame.owner!r} popped out of order ({inner}): "
            f"context managers must be exited in the reverse order they were entered"
        )
    _stack.pop()
    for name, value in frame.replaced.items():
        setattr(state, name, value)


class switched:
    """Context manager: ``with switched("owner", name=value):`` pushes on entry, pops on exit.

    Re-entering the same instance while it is active pushes another frame."""

    __slots__ = ("owner", "values", "_frames")

    def __init__(self, owner, **values):
        _check_names(values)
        self.owner, self.values, self._frames = owner, values, []

    def __enter__(self):
        self._frames.append(push(self.owner, **self.values))

    def __exit__(self, *exc):
        pop(self._frames.pop())


def active(name):
    """The values the frames on the stack give switch ``name``, innermost first."""
    return [f.values[name] for f in reversed(_stack) if name in f.values]


def owner(name):
    """Who set the current value of switch ``name``: the owner of the innermost frame
    that set it, or "default"."""
    _check_names((name,))
    for f in reversed(_stack):
        if name in f.values:
            return f.owner
    return "default"


def set_default(name, value):
    """Make ``value`` the value of switch ``name`` once every frame that sets it is popped
    (immediately, if none does)."""
    _check_names((name,))
    for f in _stack:
        if name in f.values:
            f.replaced[name] = value  # the outermost frame restores it when popped
            return
    setattr(state, name, value)


def frames():
    """The stack, outermost first (a copy, for inspection and error messages)."""
    return tuple(_stack)
