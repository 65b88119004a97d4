"""Monte Carlo over independent replicas drawn in one graph, instead of one graph per run.

A model built inside ``g.plate(REP, R)``, with every parameter carrying a leading replica axis
of R equal copies, holds R independent copies of the model: replica r's gradient estimate is
the derivative of the surrogate wrt the r-th copy of each parameter, because a plate gives each
replica only its own costs (the score term of replica r is weighted by replica r's cost alone).
``replica_stats`` runs ``builds`` such graphs through :func:`gradient_stats` (so baselines are
read and not recorded, exactly as in a measurement) and returns the statistics of the
``builds * R`` per-replica estimates, as ``gradient_stats(build, params, builds * R)`` would
for the model without the replica plate.

Not for estimators whose credit crosses the plate on purpose (``surrogate(rao_blackwellize=
False)`` weights every score term by the total cost): those keep one graph per run."""

import numpy as np

from scg.diagnostics import GradientStats, gradient_stats

REP = "rep"


def copies(value, r):
    """R copies of a parameter's value along a new leading axis, as float64."""
    value = np.asarray(value, dtype=np.float64)
    return np.broadcast_to(value, (r,) + value.shape).copy()


def replica_stats(build, params, builds=2, **kw):
    """GradientStats of every replica's gradient over ``builds`` graphs from ``build()``;
    each parameter in ``params`` has the replica axis first."""
    stats = gradient_stats(build, params, builds, **kw)
    return GradientStats([s.reshape((-1,) + s.shape[2:]) for s in stats.samples])


def warm_up(build, steps=20):
    """A stateful baseline learns as in training: ``steps`` surrogates from ``build()`` (which
    applies the previous one's statistic with ``estimator.update()``). Measurements record
    nothing, so a moving average not warmed up would be measured at 0, as plain score function."""
    for _ in range(steps):
        build().surrogate()
