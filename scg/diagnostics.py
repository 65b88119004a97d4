"""Checking estimators: gradient statistics over repeated runs, and exact gradients
of small discrete graphs by enumerating every stochastic node.

``build`` is a function of no arguments that builds a fresh :class:`scg.Graph`
(inside its ``with`` block) and returns it; ``params`` are the Tensors to
differentiate with respect to.
"""

import contextlib
import itertools
import math

import numpy as np

from . import context, ops
from .autodiff import grad
from .graph import Graph, force_estimator, force_subsamples, parameters, replay
from .random import resolve


class GradientStats:
    """Per parameter: ``mean``, ``variance`` (of a single estimate), ``stderr`` (of the
    mean), ``snr`` = |mean| / sqrt(variance); ``samples`` holds every estimate."""

    def __init__(self, samples):
        self.samples = samples
        self.n = len(samples[0]) if samples else 0
        self.mean = [s.mean(axis=0) for s in samples]
        self.variance = [s.var(axis=0, ddof=1) for s in samples]
        self.stderr = [np.sqrt(v / self.n) for v in self.variance]
        self.snr = [np.abs(m) / np.sqrt(np.maximum(v, np.finfo(float).tiny)) for m, v in zip(self.mean, self.variance)]

    def total_variance(self):
        """Sum of the per-element variances over all parameters (one number to compare)."""
        return float(sum(v.sum() for v in self.variance))

    def __repr__(self):
        return f"GradientStats(n={self.n}, mean={self.mean}, variance={self.variance})"


def _build(build):
    g = build()
    if not isinstance(g, Graph):
        raise TypeError(f"build() must return the scg.Graph it built, got {type(g).__name__}")
    return g


def gradient_stats(build, params, n, objective="surrogate", progress=False, seed=None, executor=None, chunks=None):
    """Mean, variance and signal-to-noise ratio of the gradient estimate of
    ``g.surrogate()`` over ``n`` independent builds. ``objective`` names another
    method of the graph (``"dice"``) or is a function ``graph -> scalar Tensor``.
    Stateful baselines are read as they are and record nothing (a measurement between a
    training step's surrogate and its ``update()`` leaves that step's statistic alone).

    With ``seed`` (an int) or an ``executor`` (a ``concurrent.futures.Executor``, see
    :mod:`scg.executors`), the runs are cut into ``chunks`` jobs (default ``min(n, 8)``), job i
    drawing from the library generator ``default_rng(spawn_seeds(seed, chunks)[i])``, so the
    statistics are the same whichever executor runs them (without a seed, one is drawn from
    the library's generator). ``build`` must then draw from the library's generator (not a
    generator of its own, which every job would copy and replay: refused when detected), and
    for other processes ``build``, ``params`` and ``objective`` must pickle together."""
    if n < 2:
        raise ValueError(f"gradient_stats needs n >= 2 runs to estimate a variance, got {n}")
    params = list(params)
    if seed is None and executor is None:
        return GradientStats(_gradient_runs(build, params, objective, n, None, progress))
    from .executors import InProcess, run_jobs, spawn_seeds

    chunks = min(n, 8) if chunks is None else chunks
    if not 1 <= chunks <= n:
        raise ValueError(f"gradient_stats: chunks must be between 1 and n={n}, got {chunks}")
    if seed is None:
        seed = int(resolve().integers(2**63))
    sizes = [n // chunks + (i < n % chunks) for i in range(chunks)]
    jobs = [(i, (build, params, objective, size, s, False))
            for i, (size, s) in enumerate(zip(sizes, spawn_seeds(seed, chunks)))]
    results, failures = run_jobs(_gradient_runs, jobs, executor or InProcess(), desc="gradient runs",
                                 progress=progress)
    if failures:  # the first chunk's error, as the runs would have raised it unchunked
        first = next(iter(failures.values()))
        if first.unpicklable:
            raise TypeError(f"gradient_stats: {first.error}") from first.exception
        raise first.exception
    parts = [results[i] for i in range(chunks)]
    return GradientStats([np.concatenate([p[j] for p in parts]) for j in range(len(params))])


def _gradient_runs(build, params, objective, n, seed, progress):
    """``n`` gradient estimates, one array (n,) + shape per parameter; with ``seed``, drawn from
    the library generator ``default_rng(seed)`` (restored afterwards)."""
    steps = range(n)
    if progress:
        from tqdm.auto import tqdm  # only here: `import scg` needs no tqdm

        steps = tqdm(steps, desc="gradient runs")
    runs = []
    generator = np.random.default_rng(seed)
    start = generator.bit_generator.state
    # A measurement records nothing into stateful baselines: called between a training step's
    # surrogate and its update(), it must not replace the statistic that step recorded.
    switches = dict(measuring=True) if seed is None else dict(measuring=True, generator=generator)
    with context.switched("gradient_stats", **switches):
        for i in steps:
            g = _build(build)
            loss = objective(g) if callable(objective) else getattr(g, objective)()
            if seed is not None and i == 0:
                _check_reached(loss, params)
            runs.append([r.data.copy() for r in grad(loss, params)])
    stacked = [np.stack([r[i] for r in runs]) for i in range(len(params))]
    if seed is not None and generator.bit_generator.state == start and any(np.any(a != a[:1]) for a in stacked):
        # the runs vary, yet none drew from the seeded generator: build() carries its own, and
        # every chunk would replay a copy of it, so the chunks would not be independent
        raise ValueError(
            "gradient_stats: build() draws its random numbers from a generator of its own (e.g. "
            "scg.Graph(rng=...)), which every chunk of runs would copy; with seed or executor it must draw "
            "from the library's generator (no rng)"
        )
    return stacked


def _check_reached(loss, params):
    """Refuse parameters the loss does not depend on (their gradient would be a silent 0): in
    another process, a ``build`` that reads a module-level parameter differentiates that
    module's copy, not the ``params`` sent with the job."""
    seen, stack, leaves = set(), [loss], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        leaves.add(id(t))
        stack.extend(t._parents)
    missing = [i for i, p in enumerate(params) if id(p) not in leaves]
    if missing:
        raise ValueError(
            f"gradient_stats: params {missing} do not reach the loss build() makes, so their gradient would be 0. "
            f"Pass only parameters the graph uses; and for other processes send the parameters with build, "
            f"e.g. build=functools.partial(make_graph, theta) with params=[theta], not a build() that reads a "
            f"module-level theta (each worker would differentiate its own copy)"
        )


def _joint_values(dist, n):
    """Every joint value of a draw of ``dist`` (with ``n`` samples), as ndarrays: each
    element of the sample and batch axes takes each point of the support."""
    support = dist.enumerate_support(expand=True).data  # (S,) + batch + event
    s, batch, event = support.shape[0], tuple(dist.batch_shape), tuple(dist.event_shape)
    m = int(np.prod(batch, dtype=np.int64))
    flat = support.reshape((s, m) + event)
    k = n or 1
    for combo in itertools.product(range(s), repeat=k * m):
        choice = np.asarray(combo, dtype=np.int64).reshape(k, m)
        value = flat[choice, np.arange(m)]  # (k, m) + event
        yield value.reshape(((n,) if n else ()) + batch + event)


def outcomes(build, max_outcomes=100_000, keep_estimators=False):
    """Every joint outcome of the discrete stochastic nodes of the graph ``build()`` makes:
    yields ``(graph, log_prob)`` where the graph was built with those values replayed and
    ``log_prob`` (a Tensor, differentiable in the parameters) is the log-probability of the
    outcome. Nodes are enumerated element by element (``n=K`` draws and batch axes
    included), so the count is the product of support size ** elements. A subsampled plate
    (N datapoints, batches of B) is enumerated too: each of its C(N, B) minibatches is an
    outcome of probability 1 / C(N, B), so the sum is over the full data. More than
    ``max_outcomes`` raises ValueError.

    Every discrete node is replayed as a score-function node, unless ``keep_estimators``:
    then the model's estimators stand, nodes it enumerates or marginalizes are left to it,
    and every other node must be a score-function node (refused by name otherwise)."""
    from .estimators import ScoreFunction

    def choose(dist):
        return ScoreFunction() if getattr(dist, "has_enumerate_support", False) else None

    # (node values fixed so far, plate subsamples fixed so far, number of outcomes they stand for)
    pending = [({}, {}, 1)]
    while pending:
        values, subsets, total = pending.pop()
        forced = contextlib.nullcontext() if keep_estimators else force_estimator(choose)
        with forced, replay(values, strict=False), force_subsamples(subsets):
            g = _build(build)
        plates = [d for d in g._plate_dims.values() if d.size != d.full_size and d.name not in subsets]
        if plates:
            d = plates[0]
            count = math.comb(d.full_size, d.size)
            if total * count > max_outcomes:
                raise ValueError(
                    f"enumerating the {count} minibatches of plate '{d.name}' ({d.size} of {d.full_size}) makes "
                    f"more than max_outcomes={max_outcomes} joint outcomes; use gradient_stats instead"
                )
            for idx in itertools.combinations(range(d.full_size), d.size):
                pending.append((values, {**subsets, d.name: np.array(idx)}, total * count))
            continue
        # marginalized (and, keeping the model's estimators, enumerated) nodes stay as they
        # are: summed inside their costs
        summed = [s.name for s in g.stochastic if s.estimator.marginal or (keep_estimators and s.estimator.enumerated)]
        free = [s for s in g.stochastic if s.name not in values and s.name not in summed]
        if keep_estimators:
            for s in free:
                _check_replayable(s)
        if not free:
            log_p = None
            for s in g.stochastic:
                if s.name in summed:
                    continue
                lp = s.log_prob.sum()
                log_p = lp if log_p is None else log_p + lp
            log_minibatch = -sum(math.log(math.comb(d.full_size, d.size)) for d in g._plate_dims.values())
            if log_p is None:
                log_p = ops.stop_gradient(np.float64(log_minibatch))
            elif log_minibatch:
                log_p = log_p + log_minibatch
            yield g, log_p
            continue
        s = free[0]
        if not getattr(s.dist, "has_enumerate_support", False):
            raise ValueError(
                f"node '{s.name}' ({type(s.dist).__name__}) cannot be enumerated; every stochastic node "
                f"must be discrete with a finite support"
            )
        size = s.value.size // max(int(np.prod(s.dist.event_shape, dtype=np.int64)), 1)
        count = s.dist.enumerate_support(expand=False).shape[0] ** size
        total *= count
        if total > max_outcomes:
            raise ValueError(
                f"enumerating node '{s.name}' ({size} elements of {count ** (1 / size):.0f} values each) "
                f"makes more than max_outcomes={max_outcomes} joint outcomes; use gradient_stats instead"
            )
        for v in _joint_values(s.dist, s.n):
            pending.append(({**values, s.name: v}, subsets, total))


def _check_replayable(node):
    """Refuse, naming the node, one whose estimator's gradient is not a function of its
    value alone (so the expectation over its outcomes is not the estimator's)."""
    from .estimators import ARM, RELAX, DisARM, GumbelSoftmax, Reparam, ScoreFunction

    est = node.estimator
    if isinstance(est, ScoreFunction) and getattr(node.dist, "has_enumerate_support", False):
        return
    if isinstance(est, (DisARM, ARM)):
        why = "its draws come in antithetic pairs, which are not independent, so no outcome has a product probability"
    elif isinstance(est, RELAX):
        why = "its gradient reads the uniform noise it drew, which a replayed value does not carry"
    elif isinstance(est, (Reparam, GumbelSoftmax)) or not getattr(node.dist, "has_enumerate_support", False):
        why = f"its value is continuous ({type(node.dist).__name__}, {est.describe()}): there are no outcomes to sum"
    else:
        why = f"{est.describe()} is not a score-function estimator"
    raise ValueError(f"bias: node '{node.name}' cannot be replayed outcome by outcome: {why}. The exact check "
                     f"covers score-function nodes (any baseline, n=K draws, VIMCO) and enumerated ones")


class Bias:
    """:func:`bias`'s answer, per parameter: ``expected`` (the exact expectation of the
    estimator's gradient), ``exact`` (the gradient of the expected cost) and ``bias`` =
    expected - exact; ``max_abs`` the largest |bias| over all parameters."""

    def __init__(self, expected, exact):
        self.expected, self.exact = expected, exact
        self.bias = [e - x for e, x in zip(expected, exact)]
        self.max_abs = max((float(np.abs(b).max()) for b in self.bias if b.size), default=0.0)

    def unbiased(self, rtol=1e-6, atol=1e-9):
        """Whether every element of ``expected`` equals ``exact`` within rounding."""
        return all(np.allclose(e, x, rtol=rtol, atol=atol) for e, x in zip(self.expected, self.exact))

    def __repr__(self):
        rows = [f"  param {i}: expected {np.array2string(e, precision=6)}  exact {np.array2string(x, precision=6)}"
                for i, (e, x) in enumerate(zip(self.expected, self.exact))]
        return f"Bias(max |bias| = {self.max_abs:.3g})\n" + "\n".join(rows)


def bias(build, params, max_outcomes=100_000):
    """The exact bias of the estimators the model chose, for a small discrete graph: the sum
    over every joint outcome o of the sampled nodes of p(o) * grad surrogate(o) (what the
    estimator gives on average, baselines and n=K draws included; enumerated and
    marginalized nodes are summed inside the surrogate as in training) beside the exact
    gradient of the expected cost (:func:`exact_gradient`), per parameter. Refused, naming
    the node, where a node cannot be replayed outcome by outcome (continuous, antithetic,
    RELAX). Stateful baselines are read as they are, and record nothing: a check between a
    training step's surrogate and its ``update()`` leaves that step's statistics alone."""
    params = list(params)
    expected = None
    with context.switched("bias", measuring=True):  # stateful baselines record nothing
        for g, log_p in outcomes(build, max_outcomes, keep_estimators=True):
            w = float(np.exp(log_p.data))
            gs = [w * r.data.astype(np.float64) for r in grad(g.surrogate(), params)]
            expected = gs if expected is None else [a + b for a, b in zip(expected, gs)]
    exact = [r.data.astype(np.float64) for r in exact_gradient(build, params, max_outcomes)]
    return Bias(expected, exact)


def exact_gradient(build, params, max_outcomes=100_000):
    """The exact gradient of the expected total cost: the sum over every joint outcome of
    the discrete nodes (see :func:`outcomes`) of grad(p(outcome) * objective(outcome)).
    Works for any graph of discrete nodes, plates and ``n=K`` draws included."""
    params = list(params)
    total = None
    for g, log_p in outcomes(build, max_outcomes):
        gs = grad(ops.exp(log_p) * g.objective(), params)
        total = gs if total is None else [a + b for a, b in zip(total, gs)]
    return total


def node_gradient_stats(build, n, objective="surrogate"):
    """{stochastic node name: total variance} of the gradient of the estimator with
    respect to each node's distribution parameters (loc/scale, logits, ...) over ``n``
    builds: how noisy the signal arriving at each node is. Feed it to
    ``g.to_graphviz(stats=...)`` to colour the picture."""
    if n < 2:
        raise ValueError(f"node_gradient_stats needs n >= 2 runs, got {n}")
    runs = {}
    for _ in range(n):
        g = _build(build)
        loss = objective(g) if callable(objective) else getattr(g, objective)()
        targets = {s.name: [t for t in parameters(s.dist) if t.requires_grad] for s in g.stochastic}
        flat = [t for ts in targets.values() for t in ts]
        grads = grad(loss, flat, retain_graph=True) if flat else []
        i = 0
        for name, ts in targets.items():
            runs.setdefault(name, []).append(np.concatenate([g_.data.ravel() for g_ in grads[i : i + len(ts)]])
                                             if ts else np.zeros(0))
            i += len(ts)
    return {name: float(np.stack(v).var(axis=0, ddof=1).sum()) for name, v in runs.items()}
