"""Checking estimators: gradient statistics over repeated runs, and exact gradients
of small discrete graphs by enumerating every stochastic node.

``build`` is a function of no arguments that builds a fresh :class:`scg.Graph`
(inside its ``with`` block) and returns it; ``params`` are the Tensors to
differentiate with respect to.
"""

import numpy as np
from tqdm.auto import tqdm

from .autodiff import grad
from .estimators import Enumerate
from .graph import Graph, force_estimator


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


def gradient_stats(build, params, n, objective="surrogate", progress=False):
    """Mean, variance and signal-to-noise ratio of the gradient estimate of
    ``g.surrogate()`` over ``n`` independent builds. ``objective`` names another
    method of the graph (``"dice"``) or is a function ``graph -> scalar Tensor``."""
    if n < 2:
        raise ValueError(f"gradient_stats needs n >= 2 runs to estimate a variance, got {n}")
    params = list(params)
    runs = []
    for _ in tqdm(range(n), disable=not progress, desc="gradient runs"):
        g = _build(build)
        loss = objective(g) if callable(objective) else getattr(g, objective)()
        runs.append([r.data.copy() for r in grad(loss, params)])
    return GradientStats([np.stack([r[i] for r in runs]) for i in range(len(params))])


def exact_gradient(build, params):
    """The exact gradient of the expected total cost, by enumerating every stochastic
    node (each must be discrete with a finite support, e.g. Bernoulli, Categorical)."""

    def choose(dist):
        return Enumerate() if getattr(dist, "has_enumerate_support", False) else None

    with force_estimator(choose):
        g = _build(build)
    for s in g.stochastic:
        if not s.estimator.enumerated:
            raise ValueError(
                f"exact_gradient: node '{s.name}' ({type(s.dist).__name__}) cannot be enumerated; "
                f"every stochastic node must be discrete with a finite support"
            )
    return grad(g.surrogate(), list(params))


def _distribution_tensors(dist, depth=2):
    """The Tensors that parametrize ``dist`` and require grad (one level into wrapped ones)."""
    from .tensor import Tensor

    found = []
    for value in vars(dist).values():
        if isinstance(value, Tensor) and value.requires_grad:
            found.append(value)
        elif depth > 1 and hasattr(value, "log_prob") and hasattr(value, "batch_shape"):
            found += _distribution_tensors(value, depth - 1)
    return found


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
        targets = {s.name: _distribution_tensors(s.dist) for s in g.stochastic}
        flat = [t for ts in targets.values() for t in ts]
        grads = grad(loss, flat, retain_graph=True) if flat else []
        i = 0
        for name, ts in targets.items():
            runs.setdefault(name, []).append(np.concatenate([g_.data.ravel() for g_ in grads[i : i + len(ts)]])
                                             if ts else np.zeros(0))
            i += len(ts)
    return {name: float(np.stack(v).var(axis=0, ddof=1).sum()) for name, v in runs.items()}
