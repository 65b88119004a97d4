"""The score-function estimator (REINFORCE) and its baselines: a moving average, the
leave-one-out mean of the other samples (RLOO) and a learned, input-dependent baseline
(NVIL), each with its running state applied by ``update()`` after the optimiser step."""

import warnings
import weakref

import numpy as np

from .. import context, ops
from ..optim import steps_taken
from ..tensor import Tensor
from ..trace import effect, python_state
from .base import Estimator


class ScoreFunction(Estimator):
    """REINFORCE: surrogate term ``sum(log p(w) * stop_gradient(Q_w - b_w))`` where Q_w
    is the node's downstream cost; unbiased for any baseline b independent of w."""

    color = "#e07b00"
    score = True

    def __init__(self, baseline=None):
        self.baseline = baseline

    def check(self, dist, n, name):
        if self.baseline is not None:
            self.baseline.check(n, name)

    def draw(self, dist, n, rng):
        return dist.sample((n,) if n else (), rng=rng)

    def log_prob(self, dist, value):
        return dist.log_prob(value)

    def surrogate_term(self, node, signal):
        """``signal.q``: the downstream cost, shaped to broadcast against ``node.log_prob``."""
        if self.baseline is None:
            return ops.sum(node.log_prob * signal.q), None
        b, extra = self.baseline(node, signal)
        scale = self.baseline.scale(node.name)
        r = signal.q - b if scale == 1.0 else (signal.q - b) / scale
        term = ops.sum(node.log_prob * r)
        return (term if extra is None else term + extra), b

    @effect  # a traced step (scg.trace) calls it again on every replay
    def update(self):
        """Apply the baseline's recorded statistics (call after each optimiser step)."""
        if self.baseline is not None:
            self.baseline.update()

    def describe(self):
        return "ScoreFunction" + (f"({self.baseline.describe()})" if self.baseline is not None else "")

class Baseline:
    """``__call__(node, signal) -> (b, extra)``: the baseline (array, broadcastable to
    ``signal.q``, independent of the node's value) and an optional extra surrogate term.
    ``scale(name)``: a positive number, fixed before this step, that the node's learning
    signal ``Q - b`` is divided by (1 unless normalising). ``update()``: apply the running
    statistics recorded by the latest ``__call__`` of each node (no-op if stateless)."""

    def check(self, n, name):
        """Raise ValueError if the baseline cannot serve a node drawn with ``n`` samples."""

    def scale(self, name):
        """What node ``name``'s signal ``Q - b`` is divided by (from previous steps only)."""
        return 1.0

    @effect  # a traced step (scg.trace) calls it again on every replay
    def update(self):
        """Fold the statistics recorded since the last update into the running state."""

    def describe(self):
        """A short label for pictures and logs."""
        return type(self).__name__


class RunningMean:
    """Bias-corrected exponential moving averages, one per key, updated explicitly:
    ``record(key, x)`` keeps x as pending (replacing an earlier pending x of that key),
    ``update()`` applies every pending x: ``m <- decay m + (1 - decay) x``;
    ``value(key)`` is ``m / (1 - decay^count)`` (``default`` before any update).

    A statistic still pending after an optimiser step (``scg.optim.steps_taken``) was never
    applied: the step used the old average, and without ``update()`` the average never moves
    (stays 0). ``record`` warns when it would drop such a statistic (``update()`` forgotten),
    and when baselines were thrown away holding one (a baseline created inside the step
    function starts from 0 every step). Surrogates built without optimiser steps in between
    (measuring a gradient many times) warn of nothing."""

    def __init__(self, decay, owner="baseline"):
        self.decay = decay
        self.owner = owner
        self.state = {}  # key -> (average, number of updates)
        self.pending = {}  # key -> (statistic recorded since the last update, steps_taken then)
        self._finalizer = None
        self._warned = False

    @python_state  # a traced step checks on every replay that the average it read is still this
    def value(self, key, default=0.0):
        """The bias-corrected average of ``key`` (``default`` before its first update)."""
        avg, count = self.state.get(key, (0.0, 0))
        return avg / (1 - self.decay**count) if count else default

    @effect  # a traced step records the statistic again on every replay
    def record(self, key, x):
        """Keep ``x`` as the statistic ``update()`` will fold in for ``key`` (nothing while
        ``scg.diagnostics`` measures: a measurement moves no baseline)."""
        if context.state.measuring:
            return
        now = steps_taken()
        name = key[0] if isinstance(key, tuple) else key
        old = self.pending.get(key)
        if old is not None and old[1] < now and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.owner} of '{name}': the statistic recorded before the last optimiser step was "
                f"never applied, so this baseline {'is still 0' if not self.state else 'is not moving'}. "
                f"Call baseline.update() (or estimator.update()) after each optimiser step",
                stacklevel=4,
            )
        if _DISCARDED[0] >= 2 and not _DISCARDED[1]:
            _DISCARDED[1] = True
            warnings.warn(
                f"{_DISCARDED[0]} stateful baselines were thrown away holding statistics they never "
                f"applied, so each started from 0 ({self.owner} of '{name}' is one more). Create the "
                f"baseline once, outside the function that builds the graph, reuse it every step and "
                f"call its update() after each optimiser step",
                stacklevel=4,
            )
        self.pending[key] = (x, now)
        if self._finalizer is None:  # watches the dict, not self (which it must not keep alive)
            self._finalizer = weakref.finalize(self, _on_discard, self.pending, self.state)

    @effect  # a traced step (scg.trace) calls it again on every replay
    def update(self):
        """Fold every recorded statistic into its average and forget them."""
        for key, (x, _) in self.pending.items():
            avg, count = self.state.get(key, (0.0, 0))
            self.state[key] = (self.decay * avg + (1 - self.decay) * x, count + 1)
        self.pending.clear()  # in place: the finalizer watches this dict


_DISCARDED = [0, False]  # baselines discarded with a statistic pending across a step; warned yet


def _on_discard(pending, state):
    # Only a baseline that never applied a statistic started from 0: one that was updated and
    # then dropped holding a last measurement (a run that ended, collected later) is no mistake.
    if not state and any(step < steps_taken() for _, step in pending.values()):
        _DISCARDED[0] += 1


class MovingAverageBaseline(Baseline):
    """b = exponential moving average (``decay``) of the node's mean downstream cost over
    previous steps (bias-corrected; 0 before the first update). One object per model,
    reused across steps; state is kept per node name. Building a surrogate records the
    step's mean cost; call ``update()`` (or the estimator's) after each step to apply it."""

    def __init__(self, decay=0.9):
        if not 0 <= decay < 1:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.average = RunningMean(decay, owner="MovingAverageBaseline")

    def __call__(self, node, signal):
        self.average.record(node.name, float(np.mean(signal.q)))
        return self.average.value(node.name), None

    @effect  # a traced step (scg.trace) calls it again on every replay
    def update(self):
        self.average.update()

    def describe(self):
        return f"MovingAverage({self.decay:g})"


class LeaveOneOutBaseline(Baseline):
    """For a node drawn with ``n=K >= 2``: sample k's baseline is the mean downstream cost
    of the other K-1 samples (as in VIMCO / RLOO), independent of sample k."""

    def check(self, n, name):
        if not n or n < 2:
            raise ValueError(
                f"LeaveOneOutBaseline for '{name}' needs n >= 2 samples (g.sample(..., n=K)), got n={n}"
            )

    def __call__(self, node, signal):
        k = node.n
        if signal.own_axis_pooled:
            raise ValueError(
                f"LeaveOneOutBaseline for '{node.name}': the downstream costs do not keep the sample "
                f"axis (they reduce over the {node.n} samples), so a leave-one-out baseline would "
                f"depend on the sample itself; keep per-sample costs or use another baseline"
            )
        q = np.broadcast_to(signal.q, (k,) + signal.q.shape[1:])
        return (q.sum(axis=0, keepdims=True) - q) / (k - 1), None

    def describe(self):
        return "LeaveOneOut"


class LearnedBaseline(Baseline):
    """b = c + ``module(*context)`` where ``context`` is what ``g.sample(..., context=...)``
    passed (nothing by default) and c is a moving average (``center`` decay, bias-corrected,
    from previous steps) of the node's mean downstream cost, so the module only learns the
    input-dependent residual (as in NVIL, Mnih & Gregor 2014); ``center=None`` drops c.
    The module is trained by the same backward pass to predict the downstream cost: the
    surrogate gains ``sum((b - Q)^2)`` (its value cancels out of the reported loss). The
    module's output must broadcast against the node's log-prob (e.g. (B,) in a plate).

    ``normalize`` (a decay in [0, 1), or True for 0.9) adds NVIL's variance normalisation:
    the node's signal becomes ``(Q - b) / max(1, s)`` where ``s^2 = E[r^2] - E[r]^2`` from
    moving averages (bias-corrected) of the per-step means of r = Q - b and r^2 over the
    node's elements. s comes from previous steps only, so the division rescales the node's
    score term by a positive constant: the direction of that term's expected gradient is
    unchanged (it estimates ``grad E[cost] / max(1, s)`` for the parameters reached only
    through this node's log-prob), only its size is tamed. ``update()`` after each step
    applies the recorded statistics (centre and normaliser)."""

    def __init__(self, module, center=0.9, normalize=None):
        if center is not None and not 0 <= center < 1:
            raise ValueError(f"LearnedBaseline: center must be None or a decay in [0, 1), got {center}")
        if normalize is True:
            normalize = 0.9
        if normalize is False:
            normalize = None
        if normalize is not None and not 0 <= normalize < 1:
            raise ValueError(
                f"LearnedBaseline: normalize must be None, True or a decay in [0, 1), got {normalize}")
        self.module = module
        self.center = MovingAverageBaseline(center) if center is not None else None
        self.normalize = normalize
        self.moments = RunningMean(normalize, owner="LearnedBaseline") if normalize is not None else None

    def __call__(self, node, signal):
        q = signal.q
        context = node.context if node.context is not None else ()
        b = self.module(*(context if isinstance(context, (tuple, list)) else (context,)))
        b = b if isinstance(b, Tensor) else Tensor(np.asarray(b))
        if self.center is not None:
            c, _ = self.center(node, signal)
            b = b + np.asarray(c, dtype=b.dtype)
        if self.moments is not None:
            r = np.broadcast_to(q - b.data, np.broadcast_shapes(np.shape(q), b.shape))
            self.moments.record((node.name, 1), float(np.mean(r)))
            self.moments.record((node.name, 2), float(np.mean(r * r)))
        fit = ops.sum((b - q) ** 2)
        return ops.stop_gradient(b).data, fit - ops.stop_gradient(fit)

    def scale(self, name):
        if self.moments is None:
            return 1.0
        mean = self.moments.value((name, 1))
        var = max(self.moments.value((name, 2)) - mean * mean, 0.0)
        return max(1.0, float(np.sqrt(var)))

    @effect  # a traced step (scg.trace) calls it again on every replay
    def update(self):
        if self.center is not None:
            self.center.update()
        if self.moments is not None:
            self.moments.update()

    def describe(self):
        norm = ", normalized" if self.moments is not None else ""
        return f"Learned({type(self.module).__name__}{norm})"
