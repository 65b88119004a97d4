"""The nodes of a stochastic computation graph, as the builder (:mod:`scg.graph`) records
them and the compiler, pictures and diagnostics read them."""


class StochasticNode:
    """A sampled value: ``value`` (Tensor), ``dist``, ``estimator``, ``log_prob`` (Tensor or
    None), ``dims`` (its named axes, in position order), ``dim`` (the axis it added: its
    samples or its support, or None), ``info`` (:class:`scg.axes.Info` of its value) and
    ``lp_dims`` (per axis of ``log_prob``: a Dim or None), ``parents`` (bitset of the
    stochastic nodes it depends on directly, not through another one)."""

    kind = "stochastic"

    def __init__(self, name, dist, estimator, value, log_prob, n, index, context, plates, dim, info,
                 lp_dims, parents, replayed):
        self.name, self.dist, self.estimator = name, dist, estimator
        self.value, self.log_prob, self.n, self.index = value, log_prob, n, index
        self.context, self.plates, self.dim, self.info = context, plates, dim, info
        self.lp_dims, self.parents, self.replayed = lp_dims, parents, replayed
        self.dims = tuple(d for d in lp_dims if d is not None)
        self.bit = 1 << index

    def __repr__(self):
        return f"StochasticNode({self.name!r}, {type(self.dist).__name__}, {self.estimator.describe()})"


class CostNode:
    """A cost: ``value`` (Tensor) whose elements are summed into the objective; ``info``
    holds its named axes and upstream nodes, ``dims`` the named axes in position order,
    ``scale`` the factor for sample axes (1/K each) and subsampled plates (N/B each).
    ``kind`` is "cost", "observed" for ``g.observe`` (then ``dist`` and ``observed``,
    the data, are set and ``value`` is ``-dist.log_prob(observed)``), or "bound" for
    ``g.bound`` (then ``log_w`` is the Tensor of log-weights, ``log_w_dims`` its named axes
    per position, and ``over`` the :class:`StochasticNode` whose sample axis the bound
    reduces; ``value`` is ``-(logsumexp(log_w) - log K)`` over that axis)."""

    def __init__(self, name, value, index, plates, info, scale, kind="cost", dist=None, observed=None,
                 log_w=None, log_w_dims=None, over=None):
        self.name, self.value, self.index, self.plates = name, value, index, plates
        self.info, self.scale, self.kind, self.dist, self.observed = info, scale, kind, dist, observed
        self.log_w, self.log_w_dims, self.over = log_w, log_w_dims, over
        self.dims = info.named()
        self.bit = 1 << index

    def __repr__(self):
        return f"CostNode({self.name!r}, shape={self.value.shape})"


class InputNode:
    """A named input, parameter or deterministic value (for pictures; no role in the
    surrogate). ``kind`` is "input", "param" or "deterministic"."""

    def __init__(self, name, value, kind, plates=()):
        self.name, self.value, self.kind, self.plates = name, value, kind, plates
