"""The estimator protocol, and helpers several estimator families share.

An estimator decides, for one stochastic node, how its value is drawn and what
it adds to the surrogate loss. The compiler (:mod:`scg.graph`) only calls the
hooks below, so a new estimator is one new file in this package (and its name in
``__init__``) and nothing else:

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
* ``update()``: apply running state recorded while surrogates were built (stateful
  baselines); call it after each optimiser step. Building a surrogate changes no state.
* ``corrects`` (bool): call ``surrogate_term(node, signal)`` even though the node is
  not a score-function node (``signal.q`` is then None): for estimators that correct
  a pathwise gradient, such as STL and DReG. The term's value is cancelled by the
  compiler, only its gradient counts.

``signal.bounds`` lists the costs declared with ``g.bound(..., over=node)`` (negative
multi-sample bounds over the node's own sample axis), whose per-sample log-weights
VIMCO, STL and DReG use.
"""

import numpy as np

from ..axes import to_positions


class Estimator:
    """Base class of the per-node gradient estimators (the hooks are described above)."""

    score = False
    enumerated = False
    marginal = False
    corrects = False
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

    def update(self):
        """Apply running statistics recorded while building surrogates (after the step)."""

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

def _sample_axis(bound):
    """Position of the bound's sample axis in ``bound.log_w``."""
    return bound.log_w_dims.index(bound.over.dim)


def _on_node(a, dims, node):
    """``a`` (ndarray, one entry of ``dims`` per axis: the log-weights' layout) summed over
    the axes the node lacks (unnamed ones included) and laid out on ``node.lp_dims``, so
    that it broadcasts against the node's log-prob like ``signal.q``."""

    axes = tuple(i for i, d in enumerate(dims) if d is None or d not in node.lp_dims)
    if axes:
        a = a.sum(axis=axes)
    kept = [d for d in dims if d is not None and d in node.lp_dims]
    return to_positions(a, kept, node.lp_dims)


def _logmeanexp(a, axis):
    """log mean exp of ndarray ``a`` along ``axis`` (stable; -inf where every entry is -inf)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.mean(np.exp(a - m), axis=axis)) + np.squeeze(m, axis)


def _bounds_of(node, signal, who):
    """The bounds over the node's sample axis, refused where the estimator cannot use them."""
    if not signal.bounds:
        raise ValueError(
            f"{who} for '{node.name}': no bound over its sample axis; declare the cost with "
            f"g.bound(name, log_w, over='{node.name}') (log_w: one log-weight per sample)"
        )
    for c in signal.bounds:
        enum = [d for d in c.log_w_dims if d is not None and d.kind == "enumerate"]
        if enum:
            raise ValueError(
                f"{who} for '{node.name}': bound '{c.name}' depends on the enumerated "
                f"{enum[0].describe()}, whose probabilities would weight the per-sample signals; "
                f"use a score-function estimator for that node"
            )
    return signal.bounds
