"""The replica trick (replicas.py) is exact for every estimator the statistical tests use it
with: replica 0's gradient in a graph of R replicas (a) does not change when every other
replica's draws are redrawn, and (b) equals the gradient of a separate graph without the
replica plate fed replica 0's draws. A baseline that pooled the node's current costs over
the replicas (its sample's own cost diluted by 1/R, so the statistical tests could not see the
bias) fails (a); the non-Rao-Blackwellized surrogate, which credits every cost, is the known
case and must fail, showing the check has the power to."""

from contextlib import nullcontext

import numpy as np
import pytest

import scg
import scg.distributions as D
import test_estimators as te
import test_estimators_discrete as td
import test_estimators_multisample as tm
import test_graph as tg
from replicas import copies, warm_up
from scg import context

R = 7


class Draws:
    """A generator that records its draws ("record"), replays them with every replica but the
    first redrawn ("perturb"), or hands out replica 0's part of each ("slice")."""

    def __init__(self, mode, recorded):
        self.mode, self.recorded, self.i = mode, recorded, 0
        self.base, self.other = np.random.default_rng(0), np.random.default_rng(99)

    def _draw(self, name, shape, **kw):
        shape = tuple(np.atleast_1d(shape)) if shape is not None and shape != () else ()
        if self.mode == "record":
            x = getattr(self.base, name)(size=shape, **kw)
            self.recorded.append(x)
            return x
        x = self.recorded[self.i]
        self.i += 1
        axes = [a for a, s in enumerate(x.shape) if s == R]
        assert len(axes) == 1, x.shape  # the replica axis, and only it, has size R
        if self.mode == "perturb":
            x = x.copy()
            rest = tuple(slice(1, None) if a == axes[0] else slice(None) for a in range(x.ndim))
            x[rest] = getattr(self.other, name)(size=x[rest].shape, **kw)
            return x
        part = np.take(x, 0, axis=axes[0])
        assert part.shape == shape, (x.shape, shape)
        return part

    def random(self, size=None):
        return self._draw("random", size)

    def standard_normal(self, size=None, dtype=np.float64):
        return self._draw("standard_normal", size, dtype=dtype)

    def gumbel(self, loc=0.0, scale=1.0, size=None):
        return self._draw("gumbel", size)


def replicated(v):
    return scg.tensor(copies(v, R), requires_grad=True)


def single(v):
    return scg.tensor(np.array(v, dtype=np.float64), requires_grad=True)


def default_generator(build_for):
    """``build_for(params)`` draws from the default generator (the Draws, see gradients)."""
    def make(params, draws):
        return build_for(params)()
    return make


def warmed(est, build, seed=5):
    """A moving average that has learned from 20 surrogates, as in training (the checks run
    inside a measurement, which records nothing: the warm-up steps out of it)."""
    with context.switched("warm-up", measuring=False, generator=np.random.default_rng(seed)):
        warm_up(build)
        est.update()
    assert est.baseline.average.state  # it has applied statistics
    return est


def cases():
    """name -> (make(params, draws) -> graph, initial values, objective)."""
    out = {}
    for name, make_est, n, off in [
            ("sf", scg.ScoreFunction, None, 0.0),
            ("sf-moving-average", lambda: scg.ScoreFunction(scg.MovingAverageBaseline(0.8)), None, 0.0),
            ("sf-leave-one-out-3", lambda: scg.ScoreFunction(scg.LeaveOneOutBaseline()), 3, 0.0),
            ("sf-leave-one-out-4-offset", lambda: scg.ScoreFunction(scg.LeaveOneOutBaseline()), 4, 10.0),
            ("gumbel-softmax", lambda: scg.GumbelSoftmax(0.5), None, 0.0)]:
        def make(params, draws, make_est=make_est, n=n, off=off, name=name):
            est = make_est()
            if "moving" in name:
                warmed(est, te.bernoulli_graph(replicated(te.L0), est, n, off))
            return default_generator(lambda ps: te.bernoulli_graph(ps[0], est, n, off))(params, draws)
        out[f"bernoulli-{name}"] = (make, [te.L0], None)

    def learned(params, draws):
        c = scg.nn.Parameter(np.array(0.3))
        est = scg.ScoreFunction(scg.LearnedBaseline(lambda: c * 1.0))
        return default_generator(lambda ps: te.bernoulli_graph(ps[0], est))(params, draws)
    out["bernoulli-learned-baseline"] = (learned, [te.L0], None)

    def two_dependent(params, draws):
        l1, l2 = params
        g = scg.Graph()
        with g:
            with g.plate("rep", R) if l1.ndim else nullcontext():
                b1 = g.sample("b1", D.Bernoulli(logits=l1), estimator=scg.ScoreFunction())
                b2 = g.sample("b2", D.Bernoulli(logits=l2 + b1), estimator=scg.ScoreFunction())
                g.cost("f", b1 + 2 * b2)
        return g
    out["two-dependent-bernoullis"] = (two_dependent, [0.3, -0.5], None)

    for name, make_est, n in [("reparam", scg.Reparam, None), ("sf", scg.ScoreFunction, None),
                              ("sf-leave-one-out-4", lambda: scg.ScoreFunction(scg.LeaveOneOutBaseline()), 4),
                              ("sf-4", scg.ScoreFunction, 4)]:
        def make(params, draws, make_est=make_est, n=n):
            est = make_est()
            return default_generator(lambda ps: tg.quadratic_graph(ps[0], ps[1], est, n))(params, draws)
        out[f"quadratic-{name}"] = (make, [1.0, 0.5], None)
    out["two-stage-rao-blackwellized"] = (default_generator(lambda ps: tg.two_stage(ps[0])), [0.7], None)

    offsets = np.array([-3.0, 3.0])
    for name, make_est, n, off in [("disarm", scg.DisARM, 2, offsets), ("arm", scg.ARM, 2, offsets),
                                   ("sf-moving-average", lambda: scg.ScoreFunction(scg.MovingAverageBaseline(0.9)),
                                    2, offsets),
                                   ("relax", lambda: scg.RELAX(td.make_control(5, scale=2.0)), None, 0.0)]:
        def make(params, draws, make_est=make_est, n=n, off=off, name=name):
            est = make_est()
            if "moving" in name:
                warmed(est, td.joint_graph(replicated(td.LOGITS), est, n, rng=np.random.default_rng(5), offset=off))
                assert est.baseline.average.value("z") != 0
            return td.joint_graph(params[0], est, n, rng=draws, offset=off)()
        out[f"joint-{name}"] = (make, [td.LOGITS], None)

    for name, make_est in [("vimco", scg.VIMCO), ("sf-on-bound", scg.ScoreFunction)]:
        def make(params, draws, make_est=make_est):
            return tm.vimco_model(params[0], params[1], make_est(), rng=draws,
                                  replicas=R if params[0].ndim == 2 else None)
        out[f"bound-{name}"] = (make, [tm.PHI0, tm.A0], None)

    def dreg(params, draws):
        theta = scg.tensor(0.9, requires_grad=True)
        return tm.gauss_model(params[0], params[1], theta, 1.3, 5, scg.DReG(), draws,
                              plate=(R,) if params[0].ndim else None)
    out["gauss-dreg-5"] = (dreg, [0.2, 0.1], None)
    out["two-stage-not-rao-blackwellized"] = (default_generator(lambda ps: tg.two_stage(ps[0])), [0.7],
                                              lambda g: g.surrogate(rao_blackwellize=False))
    return out


CASES = cases()


def gradients(name):
    """(replica 0 and the others, recorded draws), (the same with the others redrawn), and
    the unreplicated graph's gradient on replica 0's draws."""
    make, values, objective = CASES[name]
    objective = objective or (lambda g: g.surrogate())
    recorded, out = [], {}
    for mode in ("record", "perturb", "slice"):
        draws = Draws(mode, recorded)
        with context.switched("replicas", measuring=True, generator=draws):
            params = [single(v) if mode == "slice" else replicated(v) for v in values]
            out[mode] = [t.data.copy() for t in scg.grad(objective(make(params, draws)), params)]
        assert mode == "record" or draws.i == len(recorded), (mode, draws.i, len(recorded))
    return out["record"], out["perturb"], out["slice"]


@pytest.mark.parametrize("name", [n for n in CASES if n != "two-stage-not-rao-blackwellized"])
def test_each_replica_is_a_separate_run(name):
    first, redrawn, alone = gradients(name)
    for a, b, c in zip(first, redrawn, alone):
        np.testing.assert_allclose(b[0], a[0], rtol=0, atol=1e-12)  # others redrawn: replica 0 unchanged
        np.testing.assert_allclose(c, a[0], rtol=0, atol=1e-12)  # = the graph without replicas
    assert max(np.max(np.abs(a[1:] - b[1:])) for a, b in zip(first, redrawn)) > 1e-8  # the redraw did something


def test_the_check_sees_credit_that_crosses_replicas():
    first, redrawn, alone = gradients("two-stage-not-rao-blackwellized")
    assert max(np.max(np.abs(a[0] - b[0])) for a, b in zip(first, redrawn)) > 1e-3
