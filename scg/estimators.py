"""Gradient estimators for stochastic nodes, and baselines for the score function.

An estimator decides, for one stochastic node, how its value is drawn and what
it adds to the surrogate loss. The compiler (:mod:`scg.graph`) only calls the
hooks below, so a new estimator is a new class here and nothing else:

* ``check(dist, n, name)``: raise ``ValueError`` if the estimator cannot serve.
* ``draw(dist, n, rng) -> Tensor``: the node's value.
* ``log_prob(dist, value) -> Tensor | None``: the log-density the compiler needs
  (for score terms, enumeration weights and DiCE), or None if it needs none.
* ``axis``: ``"sample"`` if ``draw`` puts independent draws on a new leading
  axis (``n=K``), ``"enumerate"`` if it puts the whole support there, else None.
* ``score`` (bool): whether the node's log-probability must be credited with
  its downstream cost; then ``surrogate_term(node, signal)`` returns the term and
  the baseline it used (``signal.q`` is the node's learning signal, see
  :class:`scg.compiler.Signal`).
* ``enumerated`` (bool): costs downstream are weighted by the node's probability.
"""

import numpy as np

from . import ops
from .tensor import Tensor


class Estimator:
    """Base class of the per-node gradient estimators (the hooks are described above)."""

    score = False
    enumerated = False
    color = "#555555"  # how pictures draw the node's outline (subclasses inherit their parent's)

    def check(self, dist, n, name):
        """Raise ValueError (naming node ``name``) if this estimator cannot serve ``dist``."""

    def axis(self, n):
        """"sample" if draws get a new leading axis, "enumerate" for the support, else None."""
        return "sample" if n else None

    def draw(self, dist, n, rng):
        """The node's value: shape (n,) + batch + event (or the support for Enumerate)."""
        raise NotImplementedError

    def log_prob(self, dist, value):
        """The log-density the compiler needs for this node, or None."""
        return None

    def surrogate_term(self, node, signal):
        """(term, baseline): this node's term of the surrogate given its learning signal, or
        (None, None)."""
        return None, None

    def describe(self):
        """A short label for pictures and logs."""
        return type(self).__name__

    def __repr__(self):
        return self.describe()


def _alternatives(dist):
    """The estimators that can serve ``dist`` without a reparameterized sample, as code."""
    names = ["scg.ScoreFunction()"]
    if getattr(dist, "has_enumerate_support", False):
        names.append("scg.Enumerate()")
    try:
        dist.relaxed(1.0)
        names.append("scg.GumbelSoftmax(temperature)")
    except NotImplementedError:
        pass
    return ", ".join(names)


class Reparam(Estimator):
    """Pathwise gradient: the value is ``dist.rsample()`` and gradients flow through it."""

    color = "#3b7dd8"

    def check(self, dist, n, name):
        if not dist.has_rsample:
            raise ValueError(
                f"Reparam for '{name}': {type(dist).__name__} has no reparameterized sample; "
                f"use {_alternatives(dist)}"
            )

    def draw(self, dist, n, rng):
        return dist.rsample((n,) if n else (), rng=rng)


class ScoreFunction(Estimator):
    """REINFORCE: surrogate term ``sum(log p(w) * stop_gradient(Q_w - b_w))`` where Q_w
    is the node's downstream cost; unbiased for any baseline b independent of w."""

    score = True
    color = "#e07b00"

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
        term = ops.sum(node.log_prob * (signal.q - b))
        return (term if extra is None else term + extra), b

    def describe(self):
        return "ScoreFunction" + (f"({self.baseline.describe()})" if self.baseline is not None else "")


class Enumerate(Estimator):
    """Exact expectation over a finite support: the value is every support point on a
    new leading axis, and downstream costs are weighted by their probabilities."""

    enumerated = True
    color = "#2e9e4f"

    def check(self, dist, n, name):
        if not getattr(dist, "has_enumerate_support", False):
            raise ValueError(
                f"Enumerate for '{name}': {type(dist).__name__} has no finite support to enumerate; "
                f"use scg.Reparam() or scg.ScoreFunction()"
            )
        if n:
            raise ValueError(f"Enumerate for '{name}': n={n} makes no sense, the whole support is used")

    def axis(self, n):
        return "enumerate"

    def draw(self, dist, n, rng):
        return dist.enumerate_support(expand=True)

    def log_prob(self, dist, value):
        return dist.log_prob(value)


class GumbelSoftmax(Estimator):
    """Continuous relaxation (Jang et al. 2017; Maddison et al. 2017): the value is a
    RelaxedBernoulli / RelaxedOneHotCategorical draw at ``temperature``, with pathwise
    gradients (biased; the bias shrinks as the temperature falls). With
    ``straight_through`` the forward value is the hard sample (0/1 or one-hot) and the
    gradient is the relaxed one. Categorical nodes take one-hot values. The relaxation is
    ``dist.relaxed(temperature)``, so any family that defines one can be relaxed."""

    color = "#8e44ad"

    def __init__(self, temperature, straight_through=False):
        if not temperature > 0:
            raise ValueError(f"GumbelSoftmax: temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.straight_through = straight_through

    def _relaxed(self, dist):
        return dist.relaxed(self.temperature)

    def check(self, dist, n, name):
        try:
            self._relaxed(dist)
        except NotImplementedError as e:
            raise ValueError(f"GumbelSoftmax for '{name}': {e}; use {_alternatives(dist)}") from None

    def draw(self, dist, n, rng):
        relaxed = self._relaxed(dist)
        soft = relaxed.rsample((n,) if n else (), rng=rng)
        if not self.straight_through:
            return soft
        if soft.shape[-1:] == relaxed.event_shape and relaxed.event_shape:
            hard = np.eye(soft.shape[-1], dtype=soft.dtype)[soft.data.argmax(-1)]
        else:
            hard = (soft.data > 0.5).astype(soft.dtype)
        return soft + (hard - ops.stop_gradient(soft))

    def describe(self):
        st = ", straight_through" if self.straight_through else ""
        return f"GumbelSoftmax(T={self.temperature:g}{st})"


# ---- baselines --------------------------------------------------------------------


class Baseline:
    """``__call__(node, signal) -> (b, extra)``: the baseline (array, broadcastable to
    ``signal.q``, independent of the node's value) and an optional extra surrogate term."""

    def check(self, n, name):
        """Raise ValueError if the baseline cannot serve a node drawn with ``n`` samples."""

    def describe(self):
        """A short label for pictures and logs."""
        return type(self).__name__


class MovingAverageBaseline(Baseline):
    """b = exponential moving average (``decay``) of the node's mean downstream cost over
    previous steps (bias-corrected; 0 on the first step). One object per model, reused
    across steps; state is kept per node name."""

    def __init__(self, decay=0.9):
        if not 0 <= decay < 1:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.state = {}  # node name -> (average, number of updates)

    def __call__(self, node, signal):
        avg, count = self.state.get(node.name, (0.0, 0))
        b = avg / (1 - self.decay**count) if count else 0.0
        self.state[node.name] = (self.decay * avg + (1 - self.decay) * float(np.mean(signal.q)), count + 1)
        return b, None

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
    module's output must broadcast against the node's log-prob (e.g. (B,) in a plate)."""

    def __init__(self, module, center=0.9):
        if center is not None and not 0 <= center < 1:
            raise ValueError(f"LearnedBaseline: center must be None or a decay in [0, 1), got {center}")
        self.module = module
        self.center = MovingAverageBaseline(center) if center is not None else None

    def __call__(self, node, signal):
        q = signal.q
        context = node.context if node.context is not None else ()
        b = self.module(*(context if isinstance(context, (tuple, list)) else (context,)))
        b = b if isinstance(b, Tensor) else Tensor(np.asarray(b))
        if self.center is not None:
            c, _ = self.center(node, signal)
            b = b + np.asarray(c, dtype=b.dtype)
        fit = ops.sum((b - q) ** 2)
        return ops.stop_gradient(b).data, fit - ops.stop_gradient(fit)

    def describe(self):
        return f"Learned({type(self.module).__name__})"
