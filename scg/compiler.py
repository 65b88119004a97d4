"""Compiling a :class:`scg.Graph`: the objective, the credit of each score-function node,
the surrogate loss (Schulman et al. 2015) and the DiCE objective (Foerster et al. 2018).

Objective. A cost's contribution is the sum of its elements, times 1/K for each
sample axis it keeps (an ``n=K`` node's draws are averaged), times N/B for each
subsampled plate it keeps, times the probability of the enumerated values it
carries (``exp`` of their aligned log-probs).

Credit. For a score-function node w, ``Q_w[j]`` is the sum of the cost elements
that may depend on element j of w (Rao-Blackwellization). Along a named axis D
that both carry, the dependence is element by element unless w reaches the cost
through an operation that removed D (``Info.mixed``); along any other axis it is
the whole axis. Credit arrays are kept as *parts*: ``{pattern: array}``, where
``pattern`` is the set of the node's axes along which that part is one number for
all elements (stored as a size-1 axis). Keeping the parts apart is what makes
the recursion exact: a part that is already a total along D is never summed over
D again. ``Q_w`` is computed once per node in reverse order from its children's
parts where the children's downstream costs do not overlap (chains, trees), and
from the costs themselves where they do, so compiling is linear on chains and
trees. The surrogate is ``objective + T - stop_gradient(T)`` with
``T = sum_w sum(log p(w) * stop_gradient(Q_w - b_w))``: its value is the sampled
objective, its gradient the unbiased estimate. Estimators that correct the pathwise
gradient (``corrects``, e.g. STL and DReG) add their terms to T the same way; each
node's :class:`Signal` lists the bounds (``g.bound``) over its sample axis.

DiCE. Each cost is multiplied by ``magic(tau)``, ``magic(x) = exp(x - stop_gradient(x))``,
where ``tau`` sums the log-probs of the score-function nodes upstream of it,
element by element along the axes where the dependence is, summed along the
rest; computed forward with the same parts.
"""

import functools
import gc

import numpy as np

from . import ops
from .axes import AxisError, Info, bit_indices, reduce_unnamed, to_positions
from .nodes import CostNode


class Credit:
    """The learning signal of each score-function node.

    ``q[name]``: ``Q_w`` as an ndarray shaped to broadcast against the node's log-prob;
    ``own_axis_pooled[name]``: True where some credited cost pools the node's own sample
    axis (a leave-one-out baseline would then depend on the sample itself);
    ``costs[name]``: bitset of the indices of the costs credited to the node
    (``credited(name)`` lists their names)."""

    def __init__(self, graph, q, own_axis_pooled, costs):
        self.graph, self.q, self.own_axis_pooled, self.costs = graph, q, own_axis_pooled, costs

    def credited(self, name):
        """Names of the costs credited to score-function node ``name``."""
        by_index = {c.index: c for c in self.graph.effective_costs()}
        return [by_index[j].name for j in bit_indices(self.costs[name])]


class Surrogate:
    """What :meth:`scg.Graph.compile` built: ``loss`` (the surrogate), ``objective``,
    ``credit`` (a :class:`Credit`) and ``baselines`` ({node name: baseline used})."""

    def __init__(self, loss, objective, credit, baselines):
        self.loss, self.objective, self.credit, self.baselines = loss, objective, credit, baselines


class Signal:
    """What an estimator's ``surrogate_term`` receives for one node: ``q`` (ndarray,
    broadcasts against the node's log-prob; None for a node that is not a score-function
    node), ``own_axis_pooled`` (see :class:`Credit`; None likewise) and ``bounds``: the
    costs declared with ``g.bound(..., over=node)`` (kind "bound"), which reduce the node's
    own sample axis and carry the per-sample log-weights (``log_w``, ``log_w_dims``);
    ``graph``: the graph being compiled (None where a signal is made by hand)."""

    def __init__(self, q, own_axis_pooled, bounds=(), graph=None):
        self.q, self.own_axis_pooled, self.bounds = q, own_axis_pooled, list(bounds)
        self.graph = graph


# ---- alignment -------------------------------------------------------------------------


def move(parts, src, dst, full):
    """Carry credit parts over the axes ``src`` to the axes ``dst``: an axis of ``src``
    that ``dst`` lacks, or along which the dependence is whole (``full``), is summed
    (unless the part is already one number along it); axes of ``dst`` that ``src``
    lacks are one number for all their elements."""
    out = {}
    for pattern, a in parts.items():
        axes = tuple(i for i, d in enumerate(src) if d not in pattern and (d in full or d not in dst))
        if axes:
            a = a.sum(axis=axes, keepdims=True)
        kept = [d for d in src if d in dst]
        shape = tuple(n for n, d in zip(a.shape, src) if d in dst)
        if a.shape != shape:
            a = a.reshape(shape)
        a = to_positions(a, kept, dst)
        new = frozenset(d for d in dst if d not in kept or d in pattern or d in full)
        out[new] = out[new] + a if new in out else a
    return out


def _add(acc, parts):
    for k, a in parts.items():
        acc[k] = acc[k] + a if k in acc else a


def _full(y, w):
    """The axes of ``w`` along which ``y`` (a node or cost downstream) depends on all of w."""
    return {d for d in w.dims if w.bit & y.info.mixed_along(d)}


def _total(parts, dims):
    shape = tuple(d.size for d in dims)
    out = np.zeros(shape)
    for a in parts.values():
        out = out + a
    return out


# ---- objective, credit, surrogate, DiCE ---------------------------------------------------------


def _gc_paused(compile_step):
    """Run ``compile_step`` with the cyclic garbage collector paused (and restored after).
    Compiling allocates many small containers that all live until it returns, and each
    full collection scans the whole heap: measured with benchmarks/bench_graph.py, DiCE
    on a 10,000-node chain took 1.35 s with the collector and 0.64 s without, and the
    10k/1k ratio went from linear (~9x) to ~12-24x. Nothing here makes cycles that must
    be collected during a compile."""

    @functools.wraps(compile_step)
    def run(*args, **kwargs):
        if not gc.isenabled():
            return compile_step(*args, **kwargs)
        gc.disable()
        try:
            return compile_step(*args, **kwargs)
        finally:
            gc.enable()

    return run



def weighted_cost(g, c):
    """The cost's value times its scale and the probability of the enumerated values it
    carries (a Tensor shaped like the cost)."""
    value = c.value * c.scale if c.scale != 1.0 else c.value
    log_w = None
    for i in bit_indices(c.info.anc & g.enum_mask):
        e = g.stochastic[i]
        lw = to_positions(reduce_unnamed(e.log_prob, e.lp_dims), e.dims, c.info.dims)
        log_w = lw if log_w is None else log_w + lw
    return value * ops.exp(log_w) if log_w is not None else value


def _laid(factors):
    """The sum of ``factors`` ([(Tensor, named dims in position order)]) laid out on the union
    of their dims, and that union."""
    target = []
    for _, dims in factors:
        target += [d for d in dims if d not in target]
    total = None
    for t, dims in factors:
        a = to_positions(t, list(dims), target)
        total = a if total is None else total + a
    return total, tuple(target)


def marginalize(g):
    """The costs of ``g`` with those that depend on marginalized nodes (:class:`scg.Marginalize`)
    replaced by their marginals. Marginalized nodes that share a cost, or where one depends
    on another, form a group G, summed out by variable elimination over log-factors (each
    node's log-prob, each cost's negative), newest node first: for node z, the factors that
    carry its support axis are first summed over the plates z does not carry (those
    datapoints share z: their likelihoods multiply), then added and reduced by logsumexp over
    z's support. What is left is one cost, ``-sum of the remaining factors``, per element of
    the axes it keeps (z's plates: one marginal per datapoint; sample/support axes of other
    nodes). The new cost depends on what the group's nodes and costs depended on, minus G."""
    marg = g.marg_mask
    dep = [c for c in g.costs if c.info.anc & marg]
    costs = [c for c in g.costs if not c.info.anc & marg]
    for c in dep:
        if c.kind == "bound":
            names = ", ".join(f"'{g.stochastic[i].name}'" for i in bit_indices(c.info.anc & marg))
            raise ValueError(f"bound '{c.name}' depends on the marginalized {names}; a bound over samples "
                             f"cannot be marginalized (declare its terms as costs or observations)")
    group = {i: 1 << i for i in bit_indices(marg)}  # each marginalized node's group, as a bitset

    def join(bits):
        members = 0
        for i in bit_indices(bits):
            members |= group[i]
        for i in bit_indices(members):
            group[i] = members

    for c in dep:
        join(c.info.anc & marg)
    for i in bit_indices(marg):  # a node and the marginalized parents its log-prob depends on
        join((g.tracker.info(g.stochastic[i].log_prob).anc | (1 << i)) & marg)
    index = max((c.index for c in g.costs), default=-1) + 1
    for bits in sorted(set(group.values())):
        nodes = [g.stochastic[i] for i in bit_indices(bits)]
        mine = [c for c in dep if c.info.anc & bits]
        names = ", ".join(f"'{z.name}'" for z in nodes)
        limit = type(nodes[0].estimator).limit
        supports = {z.dim for z in nodes}
        factors = [(reduce_unnamed(z.log_prob, z.lp_dims), z.dims) for z in nodes]
        factors += [(reduce_unnamed(-c.value, c.info.dims), c.dims) for c in mine]
        for z in reversed(nodes):
            carried = set(z.dims)
            here, factors = ([f for f in factors if z.dim in f[1]], [f for f in factors if z.dim not in f[1]])
            summed = []
            for t, dims in here:
                extra = [d for d in dims if d.kind == "plate" and d not in carried]
                for d in extra:
                    if d.size != d.full_size:
                        raise AxisError(
                            f"Marginalize: '{z.name}' is shared by the datapoints of {d.describe()}, a subsample "
                            f"of {d.full_size}: its marginal likelihood couples them (a log of a sum over "
                            f"'{z.name}' of a product over all datapoints), so a minibatch gives no unbiased "
                            f"estimate of it. Use the whole plate, or scg.Enumerate() / a score-function "
                            f"estimator for '{z.name}'"
                        )
                if extra:
                    t = ops.sum(t, axis=tuple(dims.index(d) for d in extra))
                    dims = tuple(d for d in dims if d not in extra)
                summed.append((t, dims))
            axes = sorted({d for _, dims in summed for d in dims}, key=lambda d: d.describe())
            size = int(np.prod([d.size for d in axes], dtype=np.int64))
            if size > limit:
                raise ValueError(
                    f"Marginalize: summing out '{z.name}' (with {names}) needs a table over "
                    f"{' x '.join(str(d.size) for d in axes)} = {size} values, above the limit of {limit} "
                    f"(scg.Marginalize.limit): too many marginalized nodes share one cost. Marginalize fewer "
                    f"nodes, or use scg.Enumerate() or a score-function estimator for some"
                )
            total, target = _laid(summed)
            factors.append((ops.logsumexp(total, axis=target.index(z.dim)),
                            tuple(d for d in target if d is not z.dim)))
        total, kept = _laid(factors)
        value = -total
        anc = direct = 0
        mixed = {}
        for c in mine:
            direct |= c.info.direct
        for z in nodes:
            direct |= z.parents
        for info in [g.tracker.info(z.log_prob) for z in nodes] + [c.info for c in mine]:
            anc |= info.anc
            for d, b in (info.mixed or {}).items():
                if d not in supports:
                    mixed[d] = mixed.get(d, 0) | (b & ~bits)
        scale = 1.0
        for d in kept:
            scale *= 1.0 / d.size if d.kind == "sample" else d.scale
        info = Info(kept, anc & ~bits, direct & ~bits, mixed or None)
        costs.append(CostNode(f"marginal({', '.join(z.name for z in nodes)})", value, index, (), info, scale,
                              kind="marginal"))
        index += 1
    return costs


def _require_costs(g):
    if not g.effective_costs():
        raise ValueError("the graph has no costs: declare at least one with g.cost(name, value)")


def objective(g):
    """The sampled total cost (scalar Tensor)."""
    _require_costs(g)
    total = None
    for c in g.effective_costs():
        s = ops.sum(weighted_cost(g, c))
        total = s if total is None else total + s
    return total


@_gc_paused
def credit(g, rao_blackwellize=True):
    """The :class:`Credit` of every score-function node (no side effects)."""
    _require_costs(g)
    nodes, costs = g.stochastic, g.effective_costs()
    score = [w for w in nodes if w.estimator.score]
    if not score:
        return Credit(g, {}, {}, {})
    reduced = {c.index: reduce_unnamed(weighted_cost(g, c).data, c.info.dims) for c in costs}
    by_index = {c.index: c for c in costs}
    if not rao_blackwellize:
        total = float(sum(r.sum() for r in reduced.values()))
        every = functools.reduce(lambda a, c: a | c.bit, costs, 0)
        q = {w.name: np.full((1,) * w.log_prob.ndim, total, dtype=w.log_prob.dtype) for w in score}
        return Credit(g, q, {w.name: w.dim is not None and w.dim.kind == "sample" for w in score},
                      {w.name: every for w in score})
    child_costs = [[] for _ in nodes]
    child_nodes = [[] for _ in nodes]
    for c in costs:
        for i in bit_indices(c.info.direct):
            child_costs[i].append(c)
    for x in nodes:
        for i in bit_indices(x.parents):
            child_nodes[i].append(x)
    desc = [0] * len(nodes)  # bitset over the costs downstream of each node
    parts = [None] * len(nodes)
    for w in reversed(nodes):
        i = w.index
        bits, count = 0, 0
        for c in child_costs[i]:
            bits |= c.bit
            count += 1
        for x in child_nodes[i]:
            bits |= desc[x.index]
            count += desc[x.index].bit_count()
        desc[i] = bits
        if not w.info.anc & g.score_mask:
            continue  # no score-function node upstream needs this node's credit
        acc = {}
        if bits.bit_count() == count:  # disjoint downstream sets: recurse
            for c in child_costs[i]:
                _add(acc, move({frozenset(): reduced[c.index]}, c.dims, w.dims, _full(c, w)))
            for x in child_nodes[i]:
                if desc[x.index]:
                    _add(acc, move(parts[x.index], x.dims, w.dims, _full(x, w)))
        else:  # overlapping paths: each downstream cost once, with its own view of w
            for j in bit_indices(bits):
                c = by_index[j]
                _add(acc, move({frozenset(): reduced[j]}, c.dims, w.dims, _full(c, w)))
        parts[i] = acc
    q, pooled = {}, {}
    for w in score:
        total = _total(parts[w.index], w.dims)
        q[w.name] = to_positions(total, w.dims, w.lp_dims).astype(w.log_prob.dtype, copy=False)
        pooled[w.name] = w.dim is not None and w.dim.kind == "sample" and any(
            w.dim in k for k in parts[w.index])
    return Credit(g, q, pooled, {w.name: desc[w.index] for w in score})


@_gc_paused
def surrogate(g, rao_blackwellize=True):
    """The :class:`Surrogate` record of graph ``g`` (updates the baselines' running state)."""
    obj = objective(g)
    cr = credit(g, rao_blackwellize)
    terms, baselines = [], {}
    bounds = {}
    for c in g.effective_costs():
        if c.kind == "bound":
            bounds.setdefault(c.over.name, []).append(c)
    for w in g.stochastic:
        if not (w.estimator.score or w.estimator.corrects):
            continue
        signal = Signal(cr.q.get(w.name), cr.own_axis_pooled.get(w.name), bounds.get(w.name, ()), g)
        term, b = w.estimator.surrogate_term(w, signal)
        if b is not None:
            baselines[w.name] = b
        if term is not None:
            terms.append(term)
    if not terms:
        return Surrogate(obj, obj, cr, baselines)
    t = terms[0]
    for x in terms[1:]:
        t = t + x
    return Surrogate(obj + (t - ops.stop_gradient(t)), obj, cr, baselines)


def magic_box(tau):
    """exp(tau - stop_gradient(tau)): value 1, derivative d tau (to every order)."""
    return ops.exp(tau - ops.stop_gradient(tau))


def _upstream_log_probs(g, y, direct, itself, tau, own):
    """Parts of the sum of the score-function log-probs upstream of ``y`` (a node or cost
    whose direct stochastic parents are ``direct``; ``itself`` is its own bit for a node,
    else 0), laid out on ``y.dims``: from its direct parents' sums where their upstream
    sets are disjoint, else from each upstream node."""
    acc = {}
    parents = [g.stochastic[i] for i in bit_indices(direct)]
    union, count = 0, 0
    for p in parents:
        s = p.info.anc & g.score_mask
        union |= s
        count += s.bit_count()
    if union.bit_count() == count:
        for p in parents:
            if tau[p.index]:
                _add(acc, move(tau[p.index], p.dims, y.dims, _full(y, p)))
    else:
        for i in bit_indices(y.info.anc & g.score_mask & ~itself):
            w = g.stochastic[i]
            _add(acc, move({frozenset(): own[i]}, w.dims, y.dims, _full(y, w)))
    return acc


@_gc_paused
def dice(g):
    """The DiCE objective of graph ``g`` (scalar Tensor; value = the objective)."""
    _require_costs(g)
    own = [reduce_unnamed(w.log_prob, w.lp_dims) if w.estimator.score else None for w in g.stochastic]
    tau = [None] * len(g.stochastic)
    for x in g.stochastic:
        acc = _upstream_log_probs(g, x, x.parents, x.bit, tau, own) if x.info.anc & g.score_mask & ~x.bit else {}
        if own[x.index] is not None:
            _add(acc, {frozenset(): own[x.index]})
        tau[x.index] = acc
    total = None
    for c in g.effective_costs():
        value = weighted_cost(g, c)
        if c.info.anc & g.score_mask:
            t = None
            for a in _upstream_log_probs(g, c, c.info.direct, 0, tau, own).values():
                a = to_positions(a, c.dims, c.info.dims)
                t = a if t is None else t + a
            value = value * magic_box(t)
        s = ops.sum(value)
        total = s if total is None else total + s
    return total
