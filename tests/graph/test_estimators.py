"""Estimators on discrete nodes against hand-derived gradients: every estimator on a
Bernoulli expectation, enumeration, Gumbel-softmax bias, plates of Bernoulli latents,
DiCE second derivatives and the diagnostics. Fixed seeds; 4 standard errors."""

from contextlib import nullcontext

import numpy as np
import pytest
from scipy.special import expit as sigmoid

import scg
import scg.distributions as D
from scg.diagnostics import exact_gradient

from replicas import REP, copies, replica_stats, warm_up

L0 = 0.4  # logit
F0, F1 = 0.04, 0.64  # f(b) = (b - 0.2)^2 at b = 0 and 1


def exact_dE_dl(l=L0):
    p = sigmoid(l)
    return p * (1 - p) * (F1 - F0)


def bernoulli_graph(logit, estimator, n=None, offset=0.0):
    """With ``logit`` of shape (R,): R independent replicas in a plate (see replicas.py)."""
    def build():
        estimator.update()  # the previous build's baseline statistics, as after a step
        g = scg.Graph()
        with g:
            with g.plate(REP, logit.shape[0]) if logit.ndim else nullcontext():
                b = g.sample("b", D.Bernoulli(logits=logit), estimator=estimator, n=n)
                g.cost("f", (b - 0.2) ** 2 + offset)
        return g

    return build


def replicated_logit(r, value=L0):
    return scg.tensor(copies(value, r), requires_grad=True)


def within(stats, exact, z=4.0):
    m, se = stats.mean[0], stats.stderr[0]
    return np.all(np.abs(m - exact) <= z * se + 1e-12)


@pytest.mark.parametrize(
    "make, n",
    [
        (lambda: scg.ScoreFunction(), None),
        (lambda: scg.ScoreFunction(scg.MovingAverageBaseline(0.8)), None),
        (lambda: scg.ScoreFunction(scg.LeaveOneOutBaseline()), 3),
    ],
)
def test_score_function_estimators_are_unbiased(make, n):
    scg.manual_seed(10)
    logit = replicated_logit(2000)  # 2 graphs x 2000 replicas = 4000 estimates
    est = make()
    build = bernoulli_graph(logit, est, n)
    if isinstance(est.baseline, scg.MovingAverageBaseline):  # learns as in training, then measured fixed
        warm_up(build)
        assert est.baseline.average.value("b") > 0.1  # costs are 0.04 and 0.64: a baseline that is not 0
    stats = replica_stats(build, [logit])
    assert within(stats, exact_dE_dl())


def test_learned_baseline_on_bernoulli_is_unbiased():
    scg.manual_seed(11)
    c = scg.nn.Parameter(np.zeros(()))
    est = scg.ScoreFunction(scg.LearnedBaseline(lambda: c * 1.0))
    logit = replicated_logit(2000)
    stats = replica_stats(bernoulli_graph(logit, est), [logit])
    assert within(stats, exact_dE_dl())


def test_enumerate_is_exact_to_rounding():
    logit = scg.tensor(L0, requires_grad=True)
    g = bernoulli_graph(logit, scg.Enumerate())()
    p = sigmoid(L0)
    assert np.isclose(g.objective().item(), p * F1 + (1 - p) * F0, rtol=1e-12)
    (d,) = scg.grad(g.surrogate(), [logit])
    assert np.isclose(d.item(), exact_dE_dl(), rtol=1e-12)


def test_gumbel_softmax_bias_shrinks_with_temperature():
    scg.manual_seed(12)
    exact = exact_dE_dl()
    logit = replicated_logit(3000)  # 2 graphs x 3000 replicas = 6000 estimates each
    warm = replica_stats(bernoulli_graph(logit, scg.GumbelSoftmax(2.0)), [logit])
    cold = replica_stats(bernoulli_graph(logit, scg.GumbelSoftmax(0.5)), [logit])
    bias_warm = abs(warm.mean[0] - exact)
    bias_cold = abs(cold.mean[0] - exact)
    se = np.hypot(warm.stderr[0], cold.stderr[0])
    assert bias_warm > 4 * warm.stderr[0]  # a relaxation is biased
    assert bias_warm - bias_cold > 4 * se  # and less so when colder


def test_straight_through_values_are_hard():
    scg.manual_seed(13)
    logit = scg.tensor(np.zeros(50), requires_grad=True)
    g = scg.Graph()
    with g:
        b = g.sample("b", D.Bernoulli(logits=logit), estimator=scg.GumbelSoftmax(0.5, straight_through=True))
        g.cost("f", b.sum())
    assert set(np.unique(b.data)) <= {0.0, 1.0}
    (d,) = scg.grad(g.surrogate(), [logit])
    assert np.all(d.data > 0)  # relaxed gradient of a sum of sigmoids is positive


def test_baselines_reduce_variance():
    scg.manual_seed(14)
    logit = scg.tensor(L0, requires_grad=True)
    ma = scg.ScoreFunction(scg.MovingAverageBaseline(0.9))
    warm = bernoulli_graph(logit, ma, offset=10.0)
    for _ in range(100):  # as training does: each step's statistic applied by update()
        warm().surrogate()
    ma.update()
    assert ma.baseline.average.value("b") > 9  # near E[f] ~ 10.3, not the 0 it starts at
    # measured with the baseline fixed (gradient_stats records nothing into it)
    logit = replicated_logit(1500)  # 2 graphs x 1500 replicas = 3000 estimates each
    plain = replica_stats(bernoulli_graph(logit, scg.ScoreFunction(), offset=10.0), [logit])
    avg = replica_stats(bernoulli_graph(logit, ma, offset=10.0), [logit])
    loo = replica_stats(bernoulli_graph(logit, scg.ScoreFunction(scg.LeaveOneOutBaseline()), n=4,
                                        offset=10.0), [logit])
    assert within(plain, exact_dE_dl()) and within(avg, exact_dE_dl()) and within(loo, exact_dE_dl())
    assert avg.variance[0] < 0.05 * plain.variance[0]
    assert loo.variance[0] < 0.05 * plain.variance[0]


def test_plate_of_bernoulli_latents_unbiased_and_lower_variance():
    scg.manual_seed(15)
    r = 2000  # replicas per graph (replicas.py): 2 graphs = 4000 estimates each
    logits = scg.tensor(copies([-1.0, 0.0, 0.5, 2.0], r), requires_grad=True)  # (R, 4)
    targets = np.array([0.1, 0.9, 0.3, 0.6])

    def build(use_plate):
        def b():
            g = scg.Graph()
            with g:
                with g.plate(REP, r):
                    if use_plate:
                        with g.plate("data", 4):
                            z = g.sample("z", D.Bernoulli(logits=logits), estimator=scg.ScoreFunction())
                            g.cost("f", (z - targets) ** 2)
                    else:
                        z = g.sample("z", D.Bernoulli(logits=logits), estimator=scg.ScoreFunction())
                        g.cost("f", (z - targets) ** 2)
            return g

        return b

    p = sigmoid(logits.data[0])
    exact = p * (1 - p) * ((1 - targets) ** 2 - targets**2)
    plated = replica_stats(build(True), [logits])
    flat = replica_stats(build(False), [logits])
    assert within(plated, exact) and within(flat, exact)
    assert np.all(plated.variance[0] < 0.7 * flat.variance[0])


def test_dice_hessian_against_exact():
    # b ~ Bernoulli(sigmoid(l)), f(b, w) = (b - w)^2: E = p (1 - w)^2 + (1 - p) w^2.
    l0, w0 = 0.3, 0.25
    p = sigmoid(l0)
    exact = np.array([
        [p * (1 - p) * (1 - 2 * p) * (1 - 2 * w0), -2 * p * (1 - p)],
        [-2 * p * (1 - p), 2.0],
    ])
    scg.manual_seed(16)
    rows = []
    r = 2000  # 2 graphs of 2000 independent replicas (replicas.py): 4000 Hessian estimates
    for _ in range(2):
        l = scg.tensor(copies(l0, r), requires_grad=True)
        w = scg.tensor(copies(w0, r), requires_grad=True)
        g = scg.Graph()
        with g:
            with g.plate(REP, r):
                b = g.sample("b", D.Bernoulli(logits=l), estimator=scg.ScoreFunction())
                g.cost("f", (b - w) ** 2)
        dice = g.dice()
        assert np.isclose(dice.item(), g.objective().item())
        dl, dw = scg.grad(dice, [l, w], create_graph=True)  # (R,) each: replica r's gradient
        # replica r's derivatives depend on its own (l_r, w_r) only, so the gradient of the sum
        # over replicas is every replica's own second derivative
        h_l = [t.data for t in scg.grad(dl.sum(), [l, w], retain_graph=True)]
        h_w = [t.data for t in scg.grad(dw.sum(), [l, w])]
        rows.append(np.stack(h_l + h_w, axis=1))
    h = np.concatenate(rows).reshape(-1, 2, 2)
    se = h.std(axis=0, ddof=1) / np.sqrt(len(h))
    assert np.all(np.abs(h.mean(axis=0) - exact) <= 4 * se + 1e-12)


def test_exact_gradient_of_two_dependent_bernoullis():
    # b1 ~ Bern(s(l1)), b2 ~ Bern(s(l2 + b1)), cost b1 + 2 b2.
    l1v, l2v = 0.2, -0.5
    s = sigmoid
    p1 = s(l1v)
    d1 = p1 * (1 - p1) * (1 + 2 * (s(l2v + 1) - s(l2v)))
    ds = lambda x: s(x) * (1 - s(x))  # noqa: E731
    d2 = 2 * ((1 - p1) * ds(l2v) + p1 * ds(l2v + 1))
    def builder(l1, l2):
        def build():
            g = scg.Graph()
            with g:
                with g.plate(REP, l1.shape[0]) if l1.ndim else nullcontext():
                    b1 = g.sample("b1", D.Bernoulli(logits=l1), estimator=scg.ScoreFunction())
                    b2 = g.sample("b2", D.Bernoulli(logits=l2 + b1), estimator=scg.ScoreFunction())
                    g.cost("f", b1 + 2 * b2)
            return g

        return build

    l1 = scg.tensor(l1v, requires_grad=True)
    l2 = scg.tensor(l2v, requires_grad=True)
    g1, g2 = exact_gradient(builder(l1, l2), [l1, l2])
    assert np.isclose(g1.item(), d1, rtol=1e-10)
    assert np.isclose(g2.item(), d2, rtol=1e-10)
    # and the sampled estimators agree with it on average
    scg.manual_seed(17)
    l1, l2 = (scg.tensor(copies(v, 2000), requires_grad=True) for v in (l1v, l2v))
    stats = replica_stats(builder(l1, l2), [l1, l2])  # 2 graphs x 2000 replicas
    for m, se, e in zip(stats.mean, stats.stderr, [d1, d2]):
        assert abs(m - e) <= 4 * se


def test_exact_gradient_rejects_continuous_nodes():
    mu = scg.tensor(0.0, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            z = g.sample("z", D.Normal(mu, 1.0))
            g.cost("f", z * z)
        return g

    with pytest.raises(ValueError, match="'z'.*cannot be enumerated"):
        exact_gradient(build, [mu])


def test_enumerate_rejects_unnamed_batch_axes():
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match="Enumerate for 'b'"):
            g.sample("b", D.Bernoulli(logits=np.zeros(3)), estimator=scg.Enumerate())


def test_enumerate_inside_a_plate_is_exact():
    logits = scg.tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    targets = np.array([0.1, 0.9, 0.3])
    g = scg.Graph()
    with g:
        with g.plate("data", 3):
            b = g.sample("b", D.Bernoulli(logits=logits), estimator=scg.Enumerate())
            g.cost("f", (b - targets) ** 2)
    p = sigmoid(logits.data)
    expected = p * (1 - targets) ** 2 + (1 - p) * targets**2
    assert np.isclose(g.objective().item(), expected.sum(), rtol=1e-12)
    (d,) = scg.grad(g.surrogate(), [logits])
    np.testing.assert_allclose(d.data, p * (1 - p) * ((1 - targets) ** 2 - targets**2), rtol=1e-10)


def test_gumbel_softmax_rejects_continuous_distributions():
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match="GumbelSoftmax for 'z'.*Normal"):
            g.sample("z", D.Normal(0.0, 1.0), estimator=scg.GumbelSoftmax(0.5))
