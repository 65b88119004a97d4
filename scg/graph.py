"""The stochastic computation graph: the builder (nodes, costs, plates, replay).

A model is ordinary code run inside ``with g:``; ``g.sample`` makes stochastic
nodes, ``g.cost`` declares costs. While a graph is active every operation is
recorded (also under ``no_grad``, through indices, comparisons and ``where``),
so the graph sees which costs depend on which samples even where no gradient
flows. :mod:`scg.axes` follows named axes (plates, sample axes of ``n=K``
nodes, support axes of enumerated nodes) op by op, never by size, and
:mod:`scg.compiler` turns the graph into a surrogate loss, a DiCE objective and
the record of the credit each node received.
"""

import warnings
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from . import context, kernels, ops
from .axes import ANY, AxisError, Dim, Info, Tracker, bit_indices
from .nodes import CostNode, InputNode, StochasticNode
from .estimators import Reparam, ScoreFunction
from .random import resolve
from .tensor import Tensor


def current_graph():
    """The innermost graph being built (``with g:``), or None."""
    return context.state.graph


class Graph:
    """Builder and compiler of one stochastic computation graph (build one per step).

    >>> g = scg.Graph()
    >>> with g:
    ...     z = g.sample("z", D.Normal(mu, 1.0))
    ...     g.cost("f", (z - 3.0) ** 2)
    >>> g.surrogate().backward()

    ``replay`` ({node name: value}) fixes the values of those stochastic nodes.
    """

    def __init__(self, name="model", rng=None, replay=None):
        self.name = name
        self.rng = rng
        self.replay = dict(replay or {})
        self.nodes = OrderedDict()
        self.stochastic = []
        self.costs = []
        self.tracker = Tracker()
        self._plates = []  # active plates, outermost first
        self._plate_dims = {}  # every plate entered so far, by name (re-entering reuses it)
        self._lead_at = {}  # sample/support axis (Dim) of an n=K or enumerated node -> its allocation index
        self._escaped = 0  # nodes whose values left the graph (as Python scalars or arrays)
        self._warned_pathwise = 0  # reparameterized nodes among them already warned of
        self._frames = []  # one context frame per (nested) ``with self:``
        self.enum_mask = self.score_mask = self.marg_mask = 0  # bitsets over stochastic nodes
        self._effective = None  # (number of costs, the costs the compiler sees) once marginalized

    # ---- building ------------------------------------------------------------------
    def __enter__(self):
        # Record every operation (track) and hear of values leaving as scalars (on_escape).
        self._frames.append(context.push(f"Graph {self.name!r}", graph=self, track=True,
                                         on_escape=self._on_escape))
        return self

    def __exit__(self, *exc):
        context.pop(self._frames.pop())

    def axes_refusal(self, xs, message):
        """For an operation whose inputs ``xs`` did not broadcast (numpy's ``message``): an
        :class:`AxisError` naming the axes each input carries and the usual fix, or None when
        no input carries a named axis (the core raises it in place of numpy's error)."""
        parts = []
        for k, x in enumerate(xs):
            try:
                dims = self.tracker.info(x, strict=False).dims
            except (RuntimeError, ValueError):
                continue
            named = [f"{d.describe()} at axis {p}" for p, d in enumerate(dims) if d is not None]
            if named:
                parts.append(f"input {k} carries {', '.join(named)}")
        if not parts:
            return None
        return AxisError(
            f"{message}. In graph {self.name!r}: {'; '.join(parts)}. Sample/support axes sit left of the "
            f"plates (README, 'Named axes'): a value drawn outside a plate meets values inside it only with a "
            f"trailing size-1 axis per plate (z[..., None]); distributions are expanded to plates, arithmetic "
            f"is not")

    def _on_escape(self, t):
        try:
            self._escaped |= self.tracker.info(t).anc
        except (RuntimeError, ValueError):
            self._escaped |= (1 << len(self.stochastic)) - 1

    def _require_active(self, what):
        if not any(g is self for g in context.active("graph")):
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
    def plate(self, name, size, subsample_size=None):
        """Values created inside have an axis of independent datapoints (after any
        leading sample/support axes; nested plates follow, outermost first).

        Yields the indices of the datapoints in this batch: ``arange(size)``, or with
        ``subsample_size=B`` B distinct indices drawn from the graph's generator, and then
        every cost that carries the plate's axis is scaled by ``size / B`` so that its
        expectation is the full-data cost. Entering a plate of the same name again (same
        size) reuses its axis and its indices, as Pyro does."""
        self._require_active("plate")
        if any(p.name == name for p in self._plates):
            raise ValueError(f"plate '{name}' is already active")
        if not (isinstance(size, (int, np.integer)) and size > 0):
            raise ValueError(f"plate '{name}': size must be a positive integer, got {size!r}")
        if subsample_size is not None and not (
            isinstance(subsample_size, (int, np.integer)) and 0 < subsample_size <= size
        ):
            raise ValueError(
                f"plate '{name}': subsample_size must be an integer in [1, size={size}], got {subsample_size!r}"
            )
        dim = self._plate_dims.get(name)
        if dim is None:
            if subsample_size is None or subsample_size == size:
                dim = Dim(name, int(size), "plate", 1.0, np.arange(size))
            else:
                idx = _forced_subsample(name, size, subsample_size)
                if idx is None:
                    idx = resolve(self.rng).choice(size, size=subsample_size, replace=False)
                dim = Dim(name, int(subsample_size), "plate", size / subsample_size, idx, int(size))
            self._plate_dims[name] = dim
        elif dim.full_size != size or (subsample_size or size) != dim.size:
            raise ValueError(
                f"plate '{name}' was entered before with size {dim.full_size}"
                f"{'' if dim.size == dim.full_size else f' and subsample_size {dim.size}'}; "
                f"a plate entered again must have the same sizes"
            )
        self._plates.append(dim)
        try:
            yield dim.indices
        finally:
            self._plates.pop()

    def _lead_length(self, dims, shape):
        """How many axes of a value (``dims``, ``shape``) come before its plates: the block
        of sample/support axes by the allocation rule (scg/axes.py, rule 1), the axis of the
        k-th allocated node at position L - 1 - k with size-1 slots between; for a value laid
        out by hand some other way, its leading named sample/support axes. Returns (L, whether
        the value follows the rule)."""
        at = self._lead_at
        lead = [(p, d) for p, d in enumerate(dims) if d is not None and d.kind != "plate"]
        if not lead:
            return 0, True
        if all(d in at for _, d in lead):
            n = max(at[d] for _, d in lead) + 1
            if (n <= len(dims) and all(p == n - 1 - at[d] for p, d in lead)
                    and all(dims[p] is not None or shape[p] == 1 for p in range(n))):
                return n, True
        i = 0
        while i < len(dims) and dims[i] is not None and dims[i].kind != "plate":
            i += 1
        return i, False

    def _plate_error(self, p, i, dims, shape, start, what, broadcast):
        lead = f" (after {start} sample/support axes)" if start else ""
        found = (dims[i].describe() if i < len(dims) and dims[i] is not None
                 else f"size {shape[i]}" if i < len(dims) else "no axis")
        fix = (f"The plate's axis comes right after the sample/support axes, outermost plate first; a "
               f"distribution whose batch shape lacks it is expanded to it (Pyro's rule), so give the "
               f"parameters size {p.size} or 1 there, or move that axis into the event (.to_event(1))"
               if broadcast else
               "Plate axes come after the sample/support axes, outermost plate first: keep the plate's "
               "axis (compute the value from per-datapoint values, or give it a size-1 axis there)")
        if p.size != p.full_size and i < len(dims) and dims[i] is None and shape[i] == p.full_size:
            fix = (f"Plate '{p.name}' is a subsample of {p.size} of its {p.full_size} datapoints: index the "
                   f"data with the indices the plate yields (`with g.plate(...) as idx:` ... x[idx])")
        return AxisError(
            f"{what} is inside plate '{p.name}' of size {p.size}, so axis {i}{lead} must have size "
            f"{p.size} (found {found}). {fix}"
        )

    def _place_plates(self, dims, shape, start, what, broadcast=False):
        """Name the active plates' axes in ``dims`` (a list, changed in place) from position
        ``start`` (after the sample/support axes), in nesting order: an axis there that is the
        plate, or unnamed of the plate's size, is the plate. With ``broadcast`` (a distribution's
        batch), an unnamed size-1 axis there is grown to the plate and a missing one inserted
        (returns the new shape and where each old axis went); otherwise refused."""
        shape = list(shape)
        where = list(range(len(dims)))
        i = start
        for p in self._plates:
            if i < len(dims) and (dims[i] is p or (dims[i] is None and shape[i] == p.size)):
                dims[i] = p
            elif broadcast and i < len(dims) and dims[i] is None and shape[i] == 1:
                dims[i], shape[i] = p, p.size
            elif broadcast and (i >= len(dims) or (dims[i] is not None and dims[i].kind == "plate")):
                dims.insert(i, p)
                shape.insert(i, p.size)
                where = [w + (w >= i) for w in where]
            else:
                raise self._plate_error(p, i, dims, shape, start, what, broadcast)
            i += 1
        return tuple(shape), tuple(where)

    def _batch_layout(self, dist, dims, new_axis, what):
        """Where a distribution's batch must go (scg/axes.py, rule 1): the batch shape with
        size-1 slots in front for the sample/support axes allocated before a node that adds
        one, and the active plates grown or inserted after the sample/support axes. Returns
        (shape, where, lead): ``where[i]`` is the new position of batch axis i, ``lead`` how
        many axes come before the plates."""
        shape = tuple(dist.batch_shape)
        lead, by_rule = self._lead_length(dims, shape)
        allocated = len(self._lead_at)
        gap = allocated - lead if new_axis and by_rule and allocated > lead else 0
        dims = [None] * gap + list(dims)
        shape = (1,) * gap + shape
        new_shape, where = self._place_plates(dims, shape, gap + lead, what, broadcast=True)
        return new_shape, tuple(w for w in where[gap:]), gap + lead

    def _expanded(self, dist, dims, new_axis, what):
        """``dist`` laid out by :meth:`_batch_layout` (itself when nothing moves), and ``lead``."""
        from .distributions import ExpandedDistribution

        shape, where, lead = self._batch_layout(dist, dims, new_axis, what)
        if shape == tuple(dist.batch_shape):
            return dist, lead
        return ExpandedDistribution(dist, shape, where), lead

    def _batch_dims(self, dist, probe):
        """The named axes of ``dist``'s batch. Read from the parameters where that is
        unambiguous: none carries a named axis, or those that do are laid out as batch +
        their own event (shape starting with the batch shape) and agree. Otherwise from
        ``probe()`` -> (a Tensor whose axes from ``offset`` on are the batch, offset)."""
        m = len(dist.batch_shape)
        dims = self._dims_from_parameters(dist)
        if dims is not None:
            return dims
        out, offset = probe()
        return list(self.tracker.info(out, strict=False).dims[offset: offset + m])

    def _dims_from_parameters(self, dist):
        """The named axes of ``dist``'s batch as its parameters give them, or None where they
        do not say unambiguously (a named parameter not laid out as batch + its own event, or
        two parameters naming one position differently)."""
        batch = tuple(dist.batch_shape)
        dims = [None] * len(batch)
        for t in parameters(dist):
            named = self.tracker.info(t).dims
            if all(d is None for d in named):
                continue
            if t.shape[: len(batch)] != batch:
                return None
            for q, d in enumerate(named[: len(batch)]):
                if d is None:
                    continue
                if dims[q] is not None and dims[q] is not d:
                    return None
                dims[q] = d
        return dims

    def _check_enumerated(self, info, dims, what):
        """A value that depends on an enumerated node must keep its axes, unmixed."""
        for i in bit_indices(info.anc & self.enum_mask):
            e = self.stochastic[i]
            # a marginalized node's factors need its support and its plates only: an axis its
            # log-prob has from a parent is that parent's to sum out (variable elimination)
            required = [d for d in e.dims if d is e.dim or d.kind == "plate"] if e.estimator.marginal else e.dims
            for d in required:
                if d not in dims:
                    raise AxisError(
                        f"{what} depends on the enumerated node '{e.name}' but does not keep "
                        f"{d.describe()}, so it cannot be weighted by the probability of each value. "
                        + (("Keep that axis (declare the cost inside the plate, per datapoint)" +
                            ("" if e.estimator.marginal else ", or use a score-function estimator for the node"))
                           if d.kind == "plate" else
                           "Keep that axis in front (no reduction over it)")
                    )
                if info.mixed_along(d) & e.bit:
                    raise AxisError(
                        f"{what} depends on the enumerated node '{e.name}' through a reduction over "
                        f"{d.describe()} (its elements couple the values along that axis), so enumeration "
                        f"along it is not exact. Use a score-function estimator for '{e.name}', or keep "
                        f"the computation per element"
                    )

    def sample(self, name, dist, estimator=None, n=None, context=None, value=None):
        """Draw a stochastic node ``name`` from ``dist``; returns its value (a Tensor).

        ``estimator`` defaults to ``Reparam()`` where ``dist.has_rsample``, else
        ``ScoreFunction()``. ``n=K`` draws K samples on a new leading axis.
        ``context`` is passed to a ``LearnedBaseline``'s module. ``value`` (or a
        ``replay`` entry of the graph or of an enclosing ``scg.replay``) fixes the value
        instead of drawing it (score-function estimators only: a fixed value has no path).
        """
        self._require_active("sample")
        self._claim(name)
        if n is not None and not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"sample '{name}': n must be a positive integer, got {n!r}")
        if not hasattr(dist, "log_prob") or not hasattr(dist, "batch_shape"):
            raise TypeError(f"sample '{name}': expected a distribution, got {type(dist).__name__}")
        if not getattr(estimator, "marginal", False):  # a marginal is no expectation to force
            estimator = _force_estimator(dist) or estimator
        if estimator is None:
            estimator = Reparam() if dist.has_rsample else ScoreFunction()
        estimator.check(dist, n, name)
        if value is None:
            value = _replayed(self, name)
        index = len(self.stochastic)
        replayed = value is not None
        kind = estimator.axis(n)
        off = 1 if kind is not None else 0
        rng = resolve(self.rng)
        what = f"sample '{name}' (batch_shape {dist.batch_shape})"
        drawn = None

        def probe():  # the batch's named axes, from a draw (kept when nothing moves)
            nonlocal drawn
            if replayed:
                with np.errstate(all="ignore"):
                    return dist.log_prob(dist.sample((), rng=np.random.default_rng(0))), 0
            v = estimator.draw(dist, n, rng)
            drawn = (v, estimator.log_prob(dist, v))
            return (drawn[1] if drawn[1] is not None else v), off

        # The parameters are followed strictly first; inside rsample/log_prob the fresh
        # draw's unnamed axes line up with the parameters' by the distribution's shape rules.
        laid, lead = self._expanded(dist, self._batch_dims(dist, probe), kind is not None, what)
        if off + len(laid.batch_shape) + len(laid.event_shape) > 32:
            raise AxisError(
                f"{what}: its value would have {off + len(laid.batch_shape) + len(laid.event_shape)} axes "
                f"({len(self._lead_at)} sample/support axes allocated before it, each with its own position), "
                f"more than numpy's 32. Use fewer n=K / enumerated / marginalized nodes in one graph, or a "
                f"score-function estimator for some"
            )
        if laid is not dist:
            dist, drawn = laid, None
            estimator.check(dist, n, name)
        if replayed:
            value = self._check_replay(name, dist, estimator, n, value)
            log_prob = estimator.log_prob(dist, value)
        elif drawn is not None:
            value, log_prob = drawn
        else:
            value = estimator.draw(dist, n, rng)
            log_prob = estimator.log_prob(dist, value)
        dim = None
        if kind is not None:
            dim = Dim(name, value.shape[0], kind)
        # The node's axes: from its log-prob (sample + batch axes) or, without one, its value.
        base = self.tracker.info(log_prob if log_prob is not None else value, strict=False)
        dims = list(base.dims)
        if dim is not None:
            if dims[0] is not None:
                raise AxisError(f"sample '{name}': the new axis 0 already carries {dims[0].describe()}")
            dims[0] = dim
        nbatch = off + len(dist.batch_shape)
        shape = (log_prob if log_prob is not None else value).shape
        batch_dims = dims[off:nbatch]
        self._place_plates(batch_dims, shape[off:nbatch], lead, what)
        dims[off:nbatch] = batch_dims
        lp_dims = tuple(dims[: shape_len(log_prob, nbatch)])
        if estimator.enumerated and any(d is None and k != 1 for d, k in zip(lp_dims, shape)):
            raise AxisError(
                f"Enumerate for '{name}': every batch axis of the distribution must be a plate or an "
                f"axis of an enumerated/sampled parent (batch_shape {dist.batch_shape}, named "
                f"{[d for d in lp_dims]}); independent variables on unnamed axes cannot be enumerated "
                f"jointly. Put the axis in a g.plate or use OneHotCategorical over the joint support."
            )
        if base.anc & self.marg_mask and not estimator.marginal:
            names = ", ".join(f"'{self.stochastic[i].name}'" for i in bit_indices(base.anc & self.marg_mask))
            raise ValueError(
                f"sample '{name}' depends on {names}, summed out by scg.Marginalize(): a node drawn "
                f"downstream of a marginalized one would be drawn once per value of it, which no "
                f"marginal likelihood describes. Marginalize '{name}' too (discrete), or use "
                f"scg.Enumerate() (an expectation) for {names}"
            )
        mixed = base.mixed
        if self._escaped:
            mixed = dict(mixed or {})
            mixed[ANY] = mixed.get(ANY, 0) | self._escaped
        anc = base.anc | self._escaped
        self._check_enumerated(Info(tuple(dims), anc, 0, mixed), set(lp_dims), f"sample '{name}'")
        # (a value of size 1 where its log-prob has an axis does not carry that axis)
        value_dims = tuple(d if value.shape[p] == shape[p] else None for p, d in enumerate(lp_dims))
        value_dims += (None,) * (value.ndim - len(lp_dims))
        if estimator.marginal:  # the value is the support itself: it depends on no ancestor
            info = Info(value_dims, 1 << index, 1 << index, None)
        else:
            info = Info(value_dims, anc | (1 << index), 1 << index, mixed)
        node = StochasticNode(name, dist, estimator, value, log_prob, n, index, context,
                              tuple(self._plates), dim, info, lp_dims, base.direct | self._escaped,
                              replayed)
        self.tracker.set(value, info)
        self.nodes[name] = node
        self.stochastic.append(node)
        if dim is not None:
            self._lead_at[dim] = len(self._lead_at)
        if estimator.enumerated:
            self.enum_mask |= node.bit
        if estimator.score:
            self.score_mask |= node.bit
        if estimator.marginal:
            self.marg_mask |= node.bit
        return value

    def _check_replay(self, name, dist, estimator, n, value):
        if not estimator.score:
            raise ValueError(
                f"sample '{name}': a replayed value needs a score-function estimator ({estimator.describe()} "
                f"would lose its gradient path); pass estimator=scg.ScoreFunction()"
            )
        shape = ((n,) if n else ()) + tuple(dist.batch_shape) + tuple(dist.event_shape)
        data = value.data if isinstance(value, Tensor) else np.asarray(value)
        if data.shape != shape and [k for k in data.shape if k != 1] == [k for k in shape if k != 1]:
            data = data.reshape(shape)  # given without the size-1 slots of the axis layout
        if data.shape != shape:
            raise ValueError(f"sample '{name}': replayed value has shape {data.shape}, expected {shape}")
        value = Tensor(data)
        _check_support(f"sample '{name}': a replayed value", dist, value)
        return value

    def observe(self, name, dist, value):
        """Condition on observed data (Pyro's ``obs=``): adds the cost ``-dist.log_prob(value)``
        (its elements summed like any cost) after checking that every observed value is in
        the support; pictures draw it as a shaded circle. Returns the value as a Tensor."""
        self._require_active("observe")
        self._claim(name)
        if not hasattr(dist, "log_prob") or not hasattr(dist, "batch_shape"):
            raise TypeError(f"observe '{name}': expected a distribution, got {type(dist).__name__}")
        data = value if isinstance(value, Tensor) else Tensor(np.asarray(value, dtype=dist.dtype))
        if kernels.has_nan(data.data):
            raise ValueError(f"observe '{name}': the observed value contains NaN")
        what = f"observe '{name}' (batch_shape {dist.batch_shape}, data of shape {data.shape})"
        if self._plates:
            def probe():  # the batch's named axes, from the log-density of one observed event
                event = data.data[(0,) * max(data.ndim - len(dist.event_shape), 0)]
                with np.errstate(all="ignore"):
                    return dist.log_prob(Tensor(np.asarray(event))), 0

            dist, _ = self._expanded(dist, self._batch_dims(dist, probe), False, what)
        try:
            log_prob = _check_support(f"observe '{name}': an observed value", dist, data)
        except ValueError as e:
            if "is outside the support of" in str(e) or not self._plates:
                raise
            for p in self._plates:
                if p.size != p.full_size and p.full_size in data.shape:
                    raise AxisError(
                        f"{what}: the data has an axis of size {p.full_size}, but plate '{p.name}' is a "
                        f"subsample of {p.size} of its {p.full_size} datapoints; index the data with the "
                        f"indices the plate yields (`with g.plate(...) as idx:` ... x[idx])"
                    ) from e
            plates = ", ".join(f"'{p.name}' ({p.size})" for p in self._plates)
            raise AxisError(
                f"{what} does not line up with the distribution inside plates {plates}: its batch is "
                f"{dist.batch_shape} (the sample/support axes, then the plates outermost first, then the "
                f"rest) and its event {dist.event_shape}, so the data needs shape {dist.batch_shape + dist.event_shape} "
                f"or one that broadcasts to it ({e})"
            ) from e
        self._add_cost(name, -log_prob, kind="observed", dist=dist, observed=data)
        return data

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
        self._add_cost(name, value)
        return value

    def bound(self, name, log_w, over):
        """Declare the cost ``-log (1/K) sum_k exp(log_w_k)``: the negative multi-sample
        (importance weighted) bound of Burda et al. 2016 over the K samples of the ``n=K``
        node named ``over`` (K=1 gives the negative ELBO). Returns the cost (a Tensor).

        ``log_w``: Tensor carrying ``over``'s sample axis (plus plates and any other axes),
        its elements computed sample by sample, typically
        ``log p(x, z_k) - log q(z_k)`` of shape (K, B) inside a plate of B datapoints.
        The cost has ``log_w``'s shape without the sample axis; it enters the objective,
        credit and DiCE like any cost, and estimators that use the per-sample weights
        (:class:`scg.VIMCO`, :class:`scg.STL`, :class:`scg.DReG`) find it through it."""
        self._require_active("bound")
        self._claim(name)
        node = self.nodes.get(over) if isinstance(over, str) else None
        if not isinstance(node, StochasticNode):
            known = ", ".join(f"'{s.name}'" for s in self.stochastic) or "none yet"
            raise ValueError(
                f"bound '{name}': over={over!r} must name a stochastic node of this graph (sampled "
                f"before the bound; stochastic nodes: {known})"
            )
        if node.dim is None or node.dim.kind != "sample":
            raise ValueError(
                f"bound '{name}': node '{over}' has no sample axis to average over; draw it with "
                f"g.sample('{over}', ..., n=K) (n=1 gives the ELBO)"
            )
        if not isinstance(log_w, Tensor):
            raise TypeError(f"bound '{name}': log_w must be a Tensor, got {type(log_w).__name__}")
        if log_w.dtype.kind != "f":
            raise TypeError(f"bound '{name}': log_w must be floating point, got dtype {log_w.dtype}")
        info = self.tracker.info(log_w)
        if node.dim not in info.dims:
            raise AxisError(
                f"bound '{name}': log_w (shape {log_w.shape}, axes {list(info.dims)}) does not carry "
                f"{node.dim.describe()}; compute one log-weight per sample of '{over}' (keep its axis)"
            )
        if info.mixed_along(node.dim):
            names = ", ".join(f"'{self.stochastic[i].name}'" for i in bit_indices(info.mixed_along(node.dim)))
            raise AxisError(
                f"bound '{name}': log_w mixes {node.dim.describe()} (it reaches {names} through an "
                f"operation across that axis), so log_w_k is not a function of sample k alone; compute "
                f"the log-weights sample by sample"
            )
        _refuse_repeated(info.dims, f"bound '{name}': log_w (shape {log_w.shape})")
        dims = list(info.dims)
        self._place_plates(dims, log_w.shape, self._lead_length(dims, log_w.shape)[0],
                           f"bound '{name}': log_w (shape {log_w.shape})")
        pos = dims.index(node.dim)
        data = np.moveaxis(log_w.data, pos, 0)
        if np.isnan(data).any() or np.isposinf(data).any():
            raise ValueError(f"bound '{name}': log_w contains NaN or +inf")
        if (data == -np.inf).all(axis=0).any():
            raise ValueError(
                f"bound '{name}': every log-weight along {node.dim.describe()} is -inf for some element "
                f"(zero weight for all samples, an infinite cost)"
            )
        value = -(ops.logsumexp(log_w, axis=pos) - float(np.log(node.dim.size)))
        self._add_cost(name, value, kind="bound", log_w=log_w, log_w_dims=tuple(dims), over=node)
        return value

    def _add_cost(self, name, value, kind="cost", dist=None, observed=None, log_w=None, log_w_dims=None,
                  over=None):
        info = self.tracker.info(value)
        before = (1 << len(self.stochastic)) - 1
        extra = 0
        if value._op is None and not value.requires_grad and not info.anc and self.score_mask & before:
            extra = before  # no history: it may depend on anything sampled so far
            warnings.warn(
                f"cost '{name}' has no recorded history (a numpy array, computed through .data, or a numpy "
                f"array indexed by a sampled value: write scg.tensor(table)[z], not table[z]), so "
                f"scg cannot see which samples it depends on; it is credited to every stochastic node "
                f"sampled before it (unbiased, but noisier). Compute it from the sampled Tensors instead",
                stacklevel=2,
            )
        elif self._escaped & ~info.anc & self.score_mask:
            extra = self._escaped
            names = ", ".join(f"'{self.stochastic[i].name}'" for i in bit_indices(self._escaped & ~info.anc))
            warnings.warn(
                f"cost '{name}' is credited to {names} too: their values left the graph (as Python "
                f"numbers through item(), float(), int(), bool(), or as arrays through numpy(), "
                f"np.asarray() or a new scg.tensor()), so the cost may depend on them in ways scg "
                f"cannot see (unbiased, but noisier). Keep computations on Tensors (scg.where for "
                f"branches) for sharper credit",
                stacklevel=2,
            )
        pathwise = self._escaped & ~info.anc & ~self.score_mask & ~self.enum_mask & ~self._warned_pathwise
        if pathwise:
            self._warned_pathwise |= pathwise
            nodes = [f"'{self.stochastic[i].name}'" for i in bit_indices(pathwise)]
            warnings.warn(
                f"the values of {', '.join(nodes)} left the graph (item(), float(), numpy(), np.asarray(), a "
                f"new scg.tensor(), ...) before cost '{name}' was declared, and "
                f"{'they are' if len(nodes) > 1 else 'it is'} "
                f"reparameterized: if a cost uses the escaped value, no pathwise gradient flows through "
                f"it and that gradient is biased. Keep computations on Tensors",
                stacklevel=2,
            )
        if extra:
            mixed = dict(info.mixed or {})
            mixed[ANY] = mixed.get(ANY, 0) | extra
            info = Info(info.dims, info.anc | extra, info.direct | extra, mixed)
        _refuse_repeated(info.dims, f"cost '{name}' (shape {value.shape})")
        for d in info.mixed or ():
            if d.kind == "plate" and d.size != d.full_size and d not in info.dims:
                # A reduction over a minibatch is no estimate of the one over all the data
                # unless it is a plain sum, which the graph cannot tell from a nonlinear one.
                raise AxisError(
                    f"cost '{name}' reduces {d.describe()}, a subsample of {d.full_size} datapoints, so "
                    f"its value is not an estimate of the full-data cost and cannot be scaled by "
                    f"{d.full_size}/{d.size}. Declare the cost per datapoint inside `with g.plate("
                    f"'{d.name}', ...)` (keeping the plate axis: it is then scaled by {d.full_size}/{d.size} "
                    f"and summed), or use the whole plate (no subsample_size)"
                )
        dims = list(info.dims)
        self._place_plates(dims, value.shape, self._lead_length(dims, value.shape)[0],
                           f"cost '{name}' (shape {value.shape})")
        info = Info(tuple(dims), info.anc, info.direct, info.mixed)
        self._check_enumerated(info, set(dims), f"cost '{name}'")
        scale = 1.0
        for d in dims:
            if d is not None:
                scale *= 1.0 / d.size if d.kind == "sample" else d.scale
        node = CostNode(name, value, len(self.costs), tuple(self._plates), info, scale, kind, dist, observed,
                        log_w, log_w_dims, over)
        self.nodes[name] = node
        self.costs.append(node)

    # ---- compiling (see scg.compiler) -------------------------------------------------
    def effective_costs(self):
        """The costs the compiler sums: the declared ones, except that those depending on
        marginalized nodes are replaced by one marginal cost per group of such nodes (see
        :func:`scg.compiler.marginalize`)."""
        if not self.marg_mask:
            return self.costs
        if self._effective is None or self._effective[0] != len(self.costs):
            from .compiler import marginalize

            self._effective = (len(self.costs), marginalize(self))
        return self._effective[1]

    def objective(self):
        """The sampled total cost (a scalar Tensor): what the expectation is of.
        Enumerated nodes are summed out exactly; sample axes averaged; subsampled plates scaled."""
        from .compiler import objective

        check_replay_names(self)

        return objective(self)

    def credit(self, rao_blackwellize=True):
        """The learning signal of every score-function node (a :class:`scg.compiler.Credit`:
        ``q``, the costs credited to each node, whether its own sample axis was pooled)."""
        from .compiler import credit

        check_replay_names(self)

        return credit(self, rao_blackwellize)

    def downstream_costs(self):
        """{score-function node name: Q_w}: the sum of the costs downstream of it, shaped to
        broadcast against its log-prob (see :func:`scg.compiler.credit`)."""
        return self.credit().q

    def compile(self, rao_blackwellize=True):
        """The surrogate loss with everything that went into it (a
        :class:`scg.compiler.Surrogate` record: ``loss``, ``objective``, ``credit``, ``baselines``)."""
        from .compiler import surrogate

        check_replay_names(self)

        return surrogate(self, rao_blackwellize)

    def surrogate(self, rao_blackwellize=True):
        """Scalar whose gradient is an unbiased estimate of the gradient of the expected
        total cost; its value is the sampled objective.

        ``rao_blackwellize=False`` credits every score-function node with the whole
        objective instead of its downstream costs (still unbiased, higher variance;
        for comparison and teaching)."""
        return self.compile(rao_blackwellize).loss

    def dice(self):
        """The DiCE objective (Foerster et al. 2018): sum over costs of
        ``magic(sum of log p of the score-function nodes upstream) * cost`` with
        ``magic(x) = exp(x - stop_gradient(x))``; its value equals ``objective()``
        and its derivatives of every order are unbiased. Baselines are not used."""
        from .compiler import dice

        check_replay_names(self)

        return dice(self)

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


def shape_len(log_prob, nbatch):
    """How many leading axes the node's log-prob has (sample + batch axes)."""
    return log_prob.ndim if log_prob is not None else nbatch


def _refuse_repeated(dims, what):
    """Refuse a value that carries one named axis at two positions (an outer product of
    the samples, say): its elements pair samples, which credit and bounds cannot split."""
    for i, d in enumerate(dims):
        if d is not None and d in dims[i + 1:]:
            raise AxisError(
                f"{what} carries {d.describe()} at two positions ({i} and {dims.index(d, i + 1)}), so "
                f"its elements pair different samples; compute it sample by sample (or reduce one of "
                f"the two axes first)"
            )


def parameters(dist, depth=3):
    """The Tensors a distribution holds (two levels into wrapped distributions)."""
    found = []
    for value in vars(dist).values():
        if isinstance(value, Tensor):
            found.append(value)
        elif depth > 1 and hasattr(value, "log_prob") and hasattr(value, "batch_shape"):
            found += parameters(value, depth - 1)
    return found


def _check_support(what, dist, value):
    """``dist.log_prob(value)``, refused where a value has probability zero (outside the support)."""
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            log_prob = dist.log_prob(value)
    except ValueError as e:  # the distribution's own validation (on by default): the same refusal
        if "outside the support" not in str(e) and "contains NaN" not in str(e):
            raise
        raise ValueError(
            f"{what} is outside the support of {type(dist).__name__} "
            f"({getattr(dist, 'support', 'its support')}): {e}"
        ) from None
    if not kernels.all_finite(log_prob.data):
        where = np.argwhere(~np.isfinite(np.broadcast_to(log_prob.data, log_prob.shape)))[0]
        raise ValueError(
            f"{what} is outside the support of {type(dist).__name__} "
            f"({getattr(dist, 'support', 'its support')}), e.g. at index {tuple(where.tolist())}"
        )
    return log_prob


def _replayed(graph, name):
    if name in graph.replay:
        return graph.replay[name]
    for values in context.active("replay"):
        if name in values:
            values.used.add(name)
            return values[name]
    return None


class _ReplayValues(dict):
    """The values of one ``scg.replay`` block, and the names a graph took from it."""

    used = None


@contextmanager
def replay(values, strict=True):
    """Within this block, graphs use ``values[name]`` as the value of stochastic node
    ``name`` instead of drawing it (``{name: array}``; the nodes need score-function
    estimators). For conditioning on data and for exact checks by enumeration.

    A name that no stochastic node sampled inside the block took raises ``ValueError`` when
    the block ends (a misspelt name would otherwise leave the node drawn at random);
    ``strict=False`` allows names that some graphs do not have."""
    values = _ReplayValues(values)
    values.used = set()
    with context.switched("scg.replay", replay=values):
        yield
    unused = [k for k in values if k not in values.used]
    if strict and unused:
        raise ValueError(
            f"scg.replay: {', '.join(repr(k) for k in unused)} named no stochastic node sampled inside "
            f"the block, so {'it was' if len(unused) == 1 else 'they were'} not used (misspelt, or "
            f"a cost's or plate's name?)"
        )


def _forced_subsample(name, size, subsample_size):
    """The indices ``force_subsamples`` fixes for plate ``name``, checked; or None."""
    for forced in context.active("forced_subsamples"):
        if name in forced:
            idx = np.asarray(forced[name])
            if (idx.shape != (subsample_size,) or idx.dtype.kind not in "iu" or len(set(idx.tolist())) != idx.size
                    or idx.min() < 0 or idx.max() >= size):
                raise ValueError(
                    f"plate '{name}': forced subsample {forced[name]!r} must be {subsample_size} distinct "
                    f"integers in [0, {size})"
                )
            return idx
    return None


@contextmanager
def force_subsamples(indices):
    """Within this block, a subsampled plate named in ``indices`` ({plate name: B distinct
    indices}) uses those indices instead of drawing them: how
    :func:`scg.diagnostics.outcomes` averages over every minibatch exactly."""
    with context.switched("force_subsamples", forced_subsamples=dict(indices)):
        yield


def check_replay_names(graph):
    """Refuse replay values (``Graph(replay=...)``) that name no stochastic node of ``graph``:
    a misspelt name would otherwise be ignored and the node drawn at random."""
    unknown = [k for k in graph.replay if not isinstance(graph.nodes.get(k), StochasticNode)]
    if unknown:
        known = ", ".join(f"'{s.name}'" for s in graph.stochastic) or "none"
        raise ValueError(
            f"Graph {graph.name!r}: replay names {', '.join(repr(k) for k in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a stochastic node of this graph (stochastic "
            f"nodes: {known})"
        )


# ---- forcing estimators (diagnostics.exact_gradient) -------------------------------------


def _force_estimator(dist):
    choose = context.state.forced_estimator
    return choose(dist) if choose is not None else None


@contextmanager
def force_estimator(choose):
    """Within this block, ``g.sample`` uses ``choose(dist)`` as the node's estimator wherever
    it returns one, overriding the estimator the model passed (or the default); where it
    returns None the model's choice stands. :func:`scg.diagnostics.outcomes` uses it to
    give every discrete node a log-prob to replay."""
    with context.switched("force_estimator", forced_estimator=choose):
        yield
