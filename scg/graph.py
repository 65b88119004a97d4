"""The stochastic computation graph: builder and surrogate-loss compiler.

A model is ordinary code run inside ``with g:``; ``g.sample`` makes stochastic
nodes, ``g.cost`` declares costs, and the autodiff core records the
deterministic computation between them (while a graph is active every
operation is recorded, so the graph sees which costs depend on which samples
even where no gradient flows).

Axes. A value's leading axes may be *named*: the sample axis of a node drawn
with ``n=K``, the support axis of an enumerated node (both added in front when
the node is drawn) and the axes of the plates the value was created in (in
nesting order). Everything after them is unnamed and summed. A cost's
contribution is the sum of its elements, averaged (not summed) over sample
axes, and weighted by the probabilities of the enumerated values it carries.

Surrogate (Schulman et al. 2015). For a score-function node w with log-prob
``log p(w)``, ``Q_w`` is the sum of the costs downstream of w, element by
element along the plate and sample axes w shares with them (summed over the
rest); the surrogate is ``objective + T - stop_gradient(T)`` with
``T = sum_w sum(log p(w) * stop_gradient(Q_w - b_w))``, so its value is the
sampled objective and its gradient is the unbiased estimate.
"""

import gc
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from . import autodiff, ops
from .estimators import Reparam, ScoreFunction
from .random import resolve
from .tensor import Tensor

_active = []  # stack of graphs being built


def current_graph():
    """The innermost graph being built (``with g:``), or None."""
    return _active[-1] if _active else None


class Dim:
    """A named leading axis: a plate, the sample axis of an ``n=K`` node, or the
    support axis of an enumerated node."""

    __slots__ = ("name", "size", "kind", "owner")

    def __init__(self, name, size, kind, owner=None):
        self.name, self.size, self.kind, self.owner = name, size, kind, owner

    def __repr__(self):
        return f"{self.kind}:{self.name}[{self.size}]"


class StochasticNode:
    """A sampled value: ``value`` (Tensor), ``dist``, ``estimator``, ``log_prob``
    (Tensor or None), ``dims`` (its named leading axes)."""

    kind = "stochastic"

    def __init__(self, name, dist, estimator, value, log_prob, n, dims, index, context, plates):
        self.name, self.dist, self.estimator = name, dist, estimator
        self.value, self.log_prob, self.n, self.dims = value, log_prob, n, dims
        self.index, self.context, self.plates = index, context, plates

    def __repr__(self):
        return f"StochasticNode({self.name!r}, {type(self.dist).__name__}, {self.estimator.describe()})"


class CostNode:
    """A cost: ``value`` (Tensor) whose elements are summed into the objective."""

    kind = "cost"

    def __init__(self, name, value, dims, index, plates):
        self.name, self.value, self.dims, self.index, self.plates = name, value, dims, index, plates

    def __repr__(self):
        return f"CostNode({self.name!r}, shape={self.value.shape})"


class InputNode:
    """A named input, parameter or deterministic value (for pictures; no role in the
    surrogate). ``kind`` is "input", "param" or "deterministic"."""

    def __init__(self, name, value, kind, plates=()):
        self.name, self.value, self.kind, self.plates = name, value, kind, plates


class Graph:
    """Builder and compiler of one stochastic computation graph (build one per step).

    >>> g = scg.Graph()
    >>> with g:
    ...     z = g.sample("z", D.Normal(mu, 1.0))
    ...     g.cost("f", (z - 3.0) ** 2)
    >>> g.surrogate().backward()
    """

    def __init__(self, name="model", rng=None):
        self.name = name
        self.rng = rng
        self.nodes = OrderedDict()
        self.stochastic = []
        self.costs = []
        self._plates = []
        self._anc = {}  # id(tensor) -> bitset of stochastic node indices upstream
        self._keep = []  # tensors whose ids are in _anc (so the ids stay valid)
        self._prev_track = []
        self._axis_mask = self._enum_mask = self._score_mask = 0  # bitsets over stochastic nodes

    # ---- building ------------------------------------------------------------------
    def __enter__(self):
        _active.append(self)
        self._prev_track.append(autodiff.state.track)
        autodiff.state.track = True
        return self

    def __exit__(self, *exc):
        _active.remove(self)
        autodiff.state.track = self._prev_track.pop()

    def _require_active(self, what):
        if self not in _active:
            raise RuntimeError(
                f"Graph.{what} called outside an active graph: build the model inside `with g:`"
            )

    def _claim(self, name):
        if not isinstance(name, str) or not name:
            raise ValueError(f"node names must be non-empty strings, got {name!r}")
        if name in self.nodes:
            raise ValueError(f"a node named '{name}' already exists in this graph; names must be unique")

    def input(self, name, value):
        """Register a named input (data); returns it as a Tensor."""
        self._claim(name)
        value = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
        self.nodes[name] = InputNode(name, value, "input", tuple(self._plates))
        return value

    def param(self, name, value):
        """Register a named parameter (a Tensor that requires grad); returns it."""
        self._claim(name)
        if not isinstance(value, Tensor):
            raise TypeError(f"param '{name}' must be a Tensor, got {type(value).__name__}")
        self.nodes[name] = InputNode(name, value, "param", tuple(self._plates))
        return value

    def deterministic(self, name, value):
        """Name an intermediate value (an encoder's output, say) so pictures show it as
        its own box; returns it unchanged."""
        self._claim(name)
        if not isinstance(value, Tensor):
            raise TypeError(f"deterministic '{name}' must be a Tensor, got {type(value).__name__}")
        self.nodes[name] = InputNode(name, value, "deterministic", tuple(self._plates))
        return value

    @contextmanager
    def plate(self, name, size):
        """Values created inside have a leading axis of ``size`` independent datapoints."""
        self._require_active("plate")
        if any(p.name == name for p in self._plates):
            raise ValueError(f"plate '{name}' is already active")
        if not (isinstance(size, (int, np.integer)) and size > 0):
            raise ValueError(f"plate '{name}': size must be a positive integer, got {size!r}")
        self._plates.append(Dim(name, int(size), "plate"))
        try:
            yield self._plates[-1]
        finally:
            self._plates.pop()

    def sample(self, name, dist, estimator=None, n=None, context=None):
        """Draw a stochastic node ``name`` from ``dist``; returns its value (a Tensor).

        ``estimator`` defaults to ``Reparam()`` where ``dist.has_rsample``, else
        ``ScoreFunction()``. ``n=K`` draws K samples on a new leading axis.
        ``context`` is passed to a ``LearnedBaseline``'s module.
        """
        self._require_active("sample")
        self._claim(name)
        if n is not None and not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"sample '{name}': n must be a positive integer, got {n!r}")
        if not hasattr(dist, "log_prob") or not hasattr(dist, "batch_shape"):
            raise TypeError(f"sample '{name}': expected a distribution, got {type(dist).__name__}")
        estimator = _force_estimator(dist) or estimator
        if estimator is None:
            estimator = Reparam() if dist.has_rsample else ScoreFunction()
        estimator.check(dist, n, name)
        index = len(self.stochastic)
        value = estimator.draw(dist, n, resolve(self.rng))
        log_prob = estimator.log_prob(dist, value)
        # Dims of the distribution's batch, then the node's own new axis in front.
        parents = direct = 0
        for t in (value, log_prob):
            if t is not None:
                a, d = self._ancestry(t)
                parents, direct = parents | a, direct | d
        batch = dist.batch_shape
        dims = self._infer_dims(batch, parents, f"sample '{name}' (batch_shape {batch})")
        kind = estimator.axis(n)
        if kind == "enumerate":
            if len(dims) != len(batch):
                raise ValueError(
                    f"Enumerate for '{name}': every batch axis of the distribution must be a plate or an "
                    f"axis of an enumerated/sampled parent (batch_shape {batch}, named {dims}); "
                    f"independent variables on unnamed axes cannot be enumerated jointly. Put the axis in "
                    f"a g.plate or use OneHotCategorical over the joint support."
                )
            size = value.shape[0]
            dims = (Dim(name, size, "enumerate", name),) + dims
        elif kind == "sample":
            dims = (Dim(name, n, "sample", name),) + dims
        node = StochasticNode(name, dist, estimator, value, log_prob, n, dims, index, context,
                              tuple(self._plates))
        self.nodes[name] = node
        self.stochastic.append(node)
        node.anc, node.direct = parents, direct
        if kind is not None:
            self._axis_mask |= 1 << index
        if estimator.enumerated:
            self._enum_mask |= 1 << index
        if estimator.score:
            self._score_mask |= 1 << index
        # Downstream of this value, ``index`` is an ancestor and the direct parent.
        self._anc[id(value)] = (parents | (1 << index), 1 << index)
        self._keep.append(value)
        return value

    def cost(self, name, value):
        """Declare a cost; its elements are summed into the objective. Returns it."""
        self._require_active("cost")
        self._claim(name)
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = np.asarray(value, dtype=np.float64)
        if isinstance(value, np.ndarray):
            value = Tensor(value)
        if not isinstance(value, Tensor):
            raise TypeError(f"cost '{name}' must be a Tensor or a numpy array, got {type(value).__name__}")
        if value.dtype.kind != "f":
            raise TypeError(f"cost '{name}' must be floating point, got dtype {value.dtype}")
        anc, direct = self._ancestry(value)
        dims = self._infer_dims(value.shape, anc, f"cost '{name}' (shape {value.shape})")
        for i in _bits(anc & self._enum_mask):
            s = self.stochastic[i]
            if s.dims[0] not in dims:
                raise ValueError(
                    f"cost '{name}' depends on the enumerated node '{s.name}' but does not keep its "
                    f"support axis (size {s.dims[0].size}) in front; keep it so it can be weighted"
                )
        node = CostNode(name, value, dims, len(self.costs), tuple(self._plates))
        node.anc, node.direct = anc, direct
        self.nodes[name] = node
        self.costs.append(node)
        return value

    # ---- ancestry and axes -----------------------------------------------------------
    def _ancestry(self, t):
        """(ancestors, direct parents) of tensor ``t`` as bitsets of stochastic node
        indices; a direct parent is reached without passing another stochastic node.
        Memoized and iterative, so building a graph is linear in its size."""
        memo = self._anc
        if id(t) in memo:
            return memo[id(t)]
        stack = [t]
        while stack:
            x = stack[-1]
            if id(x) in memo:
                stack.pop()
                continue
            pending = [p for p in x._parents if id(p) not in memo]
            if pending:
                stack.extend(pending)
                continue
            anc = direct = 0
            for p in x._parents:
                a, d = memo[id(p)]
                anc, direct = anc | a, direct | d
            memo[id(x)] = (anc, direct)
            self._keep.append(x)
            stack.pop()
        return memo[id(t)]

    def _infer_dims(self, shape, anc, what):
        """Named leading axes of a value of ``shape`` with upstream nodes ``anc``: the
        sample/support axes of upstream nodes it still carries (newest first), then
        the active plates (which must be there)."""
        axis_nodes = [self.stochastic[i] for i in sorted(_bits(anc & self._axis_mask), reverse=True)]
        dims, i = [], 0
        for node in axis_nodes:
            d = node.dims[0]
            if d in dims:
                continue
            if i < len(shape) and shape[i] == d.size:
                dims.append(d)
                i += 1
        for p in self._plates:
            if i >= len(shape) or shape[i] != p.size:
                lead = f" after the axes {dims}" if dims else ""
                raise ValueError(
                    f"{what} is inside plate '{p.name}' of size {p.size}, so axis {i}{lead} must have "
                    f"size {p.size}"
                )
            dims.append(p)
            i += 1
        return tuple(dims)

    # ---- compiling ---------------------------------------------------------------------
    def _weighted_cost(self, c):
        """The cost scaled by 1/K per sample axis it carries and weighted by the
        probabilities of the enumerated values it carries (a Tensor)."""
        value = c.value
        scale = 1.0
        for d in c.dims:
            if d.kind == "sample":
                scale /= d.size
        if scale != 1.0:
            value = value * scale
        log_w = None
        for i in _bits(c.anc & self._enum_mask):
            s = self.stochastic[i]
            lw = align(s.log_prob, s.dims, c.dims, value.ndim)
            log_w = lw if log_w is None else log_w + lw
        if log_w is not None:
            value = value * ops.exp(log_w)
        return value

    def objective(self):
        """The sampled total cost (a scalar Tensor): what the expectation is of.
        Enumerated nodes are summed out exactly."""
        if not self.costs:
            raise ValueError("the graph has no costs: declare at least one with g.cost(name, value)")
        total = None
        for c in self.costs:
            s = ops.sum(self._weighted_cost(c))
            total = s if total is None else total + s
        return total

    def downstream_costs(self):
        """For every score-function node w: ``Q_w``, the sum of the costs downstream of w
        (an ndarray shaped like w's named axes followed by size-1 axes, to broadcast
        against its log-prob).

        Credit is element by element along a named axis only where every path from w
        to the cost keeps that axis; otherwise the axis is summed (which is always
        unbiased). Nodes are visited once in reverse order: where the downstream sets
        of a node's children do not overlap (chains, trees), Q_w is its own costs plus
        its children's Q; where they overlap, Q_w is summed from the cost bitset.
        """
        if not self._score_mask:
            return {}
        nodes, costs = self.stochastic, self.costs
        reduced = [reduce_to_dims(self._weighted_cost(c).data, len(c.dims)) for c in costs]
        child_nodes = [[] for _ in nodes]
        child_costs = [[] for _ in nodes]
        for x in nodes:
            for i in _bits(x.direct):
                child_nodes[i].append(x)
        for c in costs:
            for i in _bits(c.direct):
                child_costs[i].append(c)
        desc = [0] * len(nodes)  # bitset over costs downstream of each node
        keep = [None] * len(nodes)  # named axes kept along every path to the costs below
        q = [None] * len(nodes)
        for w in reversed(nodes):
            i = w.index
            bits, total_pop = 0, 0
            kept = set(w.dims)
            for c in child_costs[i]:
                bits |= 1 << c.index
                total_pop += 1
            for x in child_nodes[i]:
                bits |= desc[x.index]
                total_pop += desc[x.index].bit_count()
                kept &= set(x.dims) & keep[x.index]
            desc[i], keep[i] = bits, kept
            shape = tuple(d.size for d in w.dims)
            acc = np.zeros(shape)
            lacks_own_axis = False
            if bits.bit_count() == total_pop:  # no overlap: recurse
                for c in child_costs[i]:
                    acc = acc + align_array(reduced[c.index], c.dims, w.dims, len(w.dims))
                    lacks_own_axis |= bool(w.n) and w.dims[0] not in c.dims
                for x in child_nodes[i]:
                    if desc[x.index]:
                        acc = acc + align_array(q[x.index], x.dims, w.dims, len(w.dims))
                        lacks_own_axis |= bool(w.n) and w.dims[0] not in x.dims
            else:  # overlapping paths: sum each downstream cost once, conservatively aligned
                for j in _bits(bits):
                    c = costs[j]
                    target = tuple(d for d in w.dims if d in kept or c in child_costs[i])
                    part = align_array(reduced[j], c.dims, target, len(target))
                    acc = acc + align_array(part, target, w.dims, len(w.dims))
                    lacks_own_axis |= bool(w.n) and w.dims[0] not in c.dims
            q[i] = acc
            w.q_lacks_own_axis = lacks_own_axis
        self.credited = {w.name: [costs[j].name for j in _bits(desc[w.index])]
                         for w in nodes if w.estimator.score}
        return {
            w.name: q[w.index].reshape(q[w.index].shape + (1,) * (w.log_prob.ndim - len(w.dims)))
            for w in nodes if w.estimator.score
        }

    def surrogate(self, rao_blackwellize=True):
        """Scalar whose gradient is an unbiased estimate of the gradient of the expected
        total cost; its value is the sampled objective.

        ``rao_blackwellize=False`` credits every score-function node with the whole
        objective instead of its downstream costs (still unbiased, higher variance;
        for comparison and teaching)."""
        with _paused_gc():
            return self._surrogate(rao_blackwellize)

    def _surrogate(self, rao_blackwellize):
        objective = self.objective()
        terms = []
        if rao_blackwellize:
            qs = self.downstream_costs()
        else:
            total = objective.data
            qs = {s.name: np.reshape(total, (1,) * s.log_prob.ndim) for s in self.stochastic if s.estimator.score}
            for s in self.stochastic:
                s.q_lacks_own_axis = bool(s.n)
        for s in self.stochastic:
            if s.estimator.score:
                q = np.asarray(qs[s.name], dtype=s.log_prob.dtype)
                term = s.estimator.surrogate_term(s, q)
                if term is not None:
                    terms.append(term)
        if not terms:
            return objective
        t = terms[0]
        for x in terms[1:]:
            t = t + x
        return objective + (t - ops.stop_gradient(t))

    def dice(self):
        """The DiCE objective (Foerster et al. 2018): sum over costs of
        ``magic(sum of log p of the score-function nodes upstream) * cost`` with
        ``magic(x) = exp(x - stop_gradient(x))``; its value equals ``objective()``
        and its derivatives of every order are unbiased. Baselines are not used."""
        with _paused_gc():
            return self._dice()

    def _dice(self):
        if not self.costs:
            raise ValueError("the graph has no costs: declare at least one with g.cost(name, value)")
        total = None
        for c in self.costs:
            value = self._weighted_cost(c)
            tau = None
            for i in _bits(c.anc & self._score_mask):
                s = self.stochastic[i]
                lp = align(s.log_prob, s.dims, c.dims, value.ndim)
                tau = lp if tau is None else tau + lp
            if tau is not None:
                value = value * magic_box(tau)
            s_ = ops.sum(value)
            total = s_ if total is None else total + s_
        return total

    # ---- pictures (see scg.viz) ----------------------------------------------------------
    def to_graphviz(self, detail="nodes", view="model", stats=None, **kwargs):
        """A ``graphviz.Digraph`` of the graph (see :func:`scg.viz.graph_to_dot`)."""
        from .viz import graph_to_dot

        return graph_to_dot(self, detail=detail, view=view, stats=stats, **kwargs)

    def render(self, path, format="svg", **kwargs):
        """Write the picture to ``path`` (svg, png or pdf); needs Graphviz's ``dot``."""
        from .viz import render

        return render(self.to_graphviz(**kwargs), path, format)

    def _repr_mimebundle_(self, include=None, exclude=None):
        from .viz import mimebundle

        return mimebundle(self, include, exclude)

    def __repr__(self):
        return (f"Graph({self.name!r}: {len(self.stochastic)} stochastic, {len(self.costs)} costs, "
                f"{len(self.nodes) - len(self.stochastic) - len(self.costs)} inputs/params)")


# ---- helpers ---------------------------------------------------------------------------


@contextmanager
def _paused_gc():
    """Compiling creates many short-lived, acyclic objects while a large graph is alive;
    the cyclic collector's repeated passes over the live graph would make it superlinear."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _bits(x):
    """Indices of the set bits of a non-negative int, lowest first (one step per set bit)."""
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


def magic_box(tau):
    """exp(tau - stop_gradient(tau)): value 1, derivative d tau (to every order)."""
    return ops.exp(tau - ops.stop_gradient(tau))


def reduce_to_dims(a, n_named):
    """Sum an ndarray over every axis after its first ``n_named``."""
    return a.sum(axis=tuple(range(n_named, a.ndim))) if a.ndim > n_named else a


def _alignment(src_dims, dst_dims):
    src_axes_to_sum = [i for i, d in enumerate(src_dims) if d not in dst_dims]
    kept = [d for d in src_dims if d in dst_dims]
    return src_axes_to_sum, kept


def align_array(a, src_dims, dst_dims, dst_ndim):
    """Move ndarray ``a`` (axes = ``src_dims`` exactly) onto ``dst_dims``: sum its axes
    that ``dst_dims`` lacks, order the rest as in ``dst_dims``, add size-1 axes for
    the missing ones and for the ``dst_ndim - len(dst_dims)`` unnamed trailing axes."""
    sum_axes, kept = _alignment(src_dims, dst_dims)
    if sum_axes:
        a = a.sum(axis=tuple(sum_axes))
    order = sorted(range(len(kept)), key=lambda i: dst_dims.index(kept[i]))
    a = np.transpose(a, order) if order != list(range(len(kept))) else a
    shape = tuple(d.size if d in kept else 1 for d in dst_dims) + (1,) * (dst_ndim - len(dst_dims))
    return a.reshape(shape)


def align(t, src_dims, dst_dims, dst_ndim):
    """Tensor version of ``align_array`` for a Tensor whose leading axes are ``src_dims``
    (its unnamed trailing axes are summed first)."""
    t = ops.sum(t, axis=tuple(range(len(src_dims), t.ndim))) if t.ndim > len(src_dims) else t
    sum_axes, kept = _alignment(src_dims, dst_dims)
    if sum_axes:
        t = ops.sum(t, axis=tuple(sum_axes))
    order = sorted(range(len(kept)), key=lambda i: dst_dims.index(kept[i]))
    if order != list(range(len(kept))):
        t = ops.transpose(t, order)
    shape = tuple(d.size if d in kept else 1 for d in dst_dims) + (1,) * (dst_ndim - len(dst_dims))
    return ops.reshape(t, shape) if t.shape != shape else t


# ---- forcing estimators (diagnostics.exact_gradient) -------------------------------------

_force = []


def _force_estimator(dist):
    return _force[-1](dist) if _force else None


@contextmanager
def force_estimator(choose):
    """Within this block, ``g.sample`` calls without an explicit estimator use
    ``choose(dist)`` (if it returns one)."""
    _force.append(choose)
    try:
        yield
    finally:
        _force.pop()
