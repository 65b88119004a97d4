"""Bernoulli, Categorical, OneHotCategorical and the two relaxations: densities against
scipy or direct formulas, the edges of the support, sampling frequencies (4 standard
errors), relaxed densities that integrate to one, pathwise gradients, bad parameters."""

import numpy as np
import pytest
import scipy.stats as st
from scipy.integrate import quad

import scg
import scg.distributions as D


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_bernoulli_against_scipy(dtype, tol):
    p = np.array([0.0, 0.1, 0.5, 0.93, 1.0], dtype=dtype)
    for d in (D.Bernoulli(probs=p), D.Bernoulli(logits=np.array([-3.0, -1.0, 0.0, 2.0, 4.0], dtype=dtype))):
        q = d.probs.data.astype(np.float64)
        for x in (0.0, 1.0):
            lp = d.log_prob(np.full(5, x, dtype=dtype))
            assert lp.dtype == dtype
            np.testing.assert_allclose(lp.data, st.bernoulli.logpmf(x, q), rtol=tol, atol=tol)
        np.testing.assert_allclose(d.entropy().data, st.bernoulli.entropy(q), rtol=tol, atol=tol)
        np.testing.assert_allclose(d.mean.data, q, rtol=tol)
        np.testing.assert_allclose(d.variance.data, q * (1 - q), rtol=tol, atol=tol)


def test_bernoulli_edges_give_no_nan_values_or_gradients():
    p = scg.tensor([0.0, 1.0, 0.4], requires_grad=True)
    d = D.Bernoulli(probs=p)
    lp = d.log_prob([0.0, 1.0, 1.0])
    np.testing.assert_allclose(lp.data, [0.0, 0.0, np.log(0.4)])
    assert d.log_prob([1.0, 0.0, 0.0]).data[:2].tolist() == [-np.inf, -np.inf]
    (g,) = scg.grad(lp.sum() + d.entropy().sum(), [p])
    assert np.all(np.isfinite(g.data))
    assert D.Bernoulli(probs=p, validate_args=False).log_prob(0.5).data.tolist() == [-np.inf] * 3  # outside {0, 1}
    with pytest.raises(ValueError, match="outside the support"):
        D.Bernoulli(probs=0.3).log_prob(2.0)  # validation is on by default


def test_categorical_against_direct_formulas():
    probs = np.array([[0.2, 0.3, 0.5], [0.0, 0.25, 0.75]])
    d = D.Categorical(probs=probs)
    assert d.batch_shape == (2,) and d.event_shape == ()
    np.testing.assert_allclose(d.log_prob(np.array([2, 1])).data, np.log([0.5, 0.25]))
    assert d.log_prob(np.array([0, 0])).data[1] == -np.inf
    expected_h = -np.array([sum(p * np.log(p) for p in row if p > 0) for row in probs])
    np.testing.assert_allclose(d.entropy().data, expected_h)
    np.testing.assert_allclose(D.Categorical(logits=np.log(probs[0])).entropy().data, expected_h[0])
    lenient = D.Categorical(probs=probs, validate_args=False)
    assert lenient.log_prob(np.array([3, 1])).data[0] == -np.inf and lenient.log_prob(np.array([1.5, 1])).data[0] == -np.inf
    with pytest.raises(ValueError, match=r"value np.int64\(3\) is outside the support, the integers 0..2"):
        d.log_prob(np.array([3, 1]))


def test_categorical_with_minus_infinity_logits():
    logits = scg.tensor(np.array([0.0, 1.0, -np.inf]), requires_grad=True)
    d = D.Categorical(logits=logits)
    h = d.entropy()
    p = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    assert np.isclose(h.item(), -(p * np.log(p)).sum())
    (g,) = scg.grad(h + d.log_prob(1), [logits])
    assert np.all(np.isfinite(g.data)) and g.data[2] == 0.0


@pytest.mark.parametrize("make", [lambda p: D.Bernoulli(probs=p[1]), lambda p: D.Categorical(probs=p),
                                  lambda p: D.OneHotCategorical(probs=p)])
def test_sample_frequencies(make):
    probs = np.array([0.15, 0.35, 0.5])
    d = make(probs)
    n = 40_000
    x = d.sample((n,), rng=np.random.default_rng(3)).data
    if isinstance(d, D.Bernoulli):
        freq, target = np.array([1 - x.mean(), x.mean()]), np.array([1 - probs[1], probs[1]])
    elif isinstance(d, D.OneHotCategorical):
        assert x.shape == (n, 3) and np.all(x.sum(-1) == 1)
        freq, target = x.mean(0), probs
    else:
        assert x.dtype == np.int64
        freq, target = np.bincount(x, minlength=3) / n, probs
    se = np.sqrt(target * (1 - target) / n)
    assert np.all(np.abs(freq - target) <= 4 * se)


def test_enumerate_support_shapes():
    b = D.Bernoulli(logits=np.zeros((2, 3)))
    assert b.enumerate_support().shape == (2, 2, 3)
    assert b.enumerate_support(expand=False).shape == (2, 1, 1)
    np.testing.assert_array_equal(b.enumerate_support().data[:, 0, 0], [0.0, 1.0])
    c = D.Categorical(logits=np.zeros((4, 5)))
    assert c.enumerate_support().shape == (5, 4)
    o = D.OneHotCategorical(logits=np.zeros((4, 5)))
    s = o.enumerate_support()
    assert s.shape == (5, 4, 5)
    np.testing.assert_array_equal(s.data[:, 0], np.eye(5))
    # every support point has a log-prob and they sum to one
    np.testing.assert_allclose(np.exp(o.log_prob(s).data).sum(0), 1.0)


def test_one_hot_log_prob_matches_categorical():
    logits = np.array([[0.3, -1.0, 2.0], [0.0, 0.0, 1.0]])
    o, c = D.OneHotCategorical(logits=logits), D.Categorical(logits=logits)
    idx = np.array([2, 0])
    np.testing.assert_allclose(o.log_prob(np.eye(3)[idx]).data, c.log_prob(idx).data)
    off = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    assert D.OneHotCategorical(logits=logits, validate_args=False).log_prob(off).data[0] == -np.inf
    with pytest.raises(ValueError, match="outside the support, one-hot vectors of length 3"):
        o.log_prob(off)
    np.testing.assert_allclose(o.mean.data, c.probs.data)


def test_no_pathwise_sample_for_discrete_families():
    for d in (D.Bernoulli(probs=0.3), D.Categorical(probs=[0.5, 0.5]), D.OneHotCategorical(probs=[0.5, 0.5])):
        assert not d.has_rsample
        with pytest.raises(NotImplementedError, match="ScoreFunction.*Enumerate.*relaxation"):
            d.rsample()


@pytest.mark.parametrize("t, logit", [(0.3, 0.8), (1.0, -1.2), (2.5, 2.0)])
def test_relaxed_bernoulli_density_integrates_to_one(t, logit):
    d = D.RelaxedBernoulli(t, logits=logit)
    total, err = quad(lambda y: np.exp(d.log_prob(y).item()), 0, 1, limit=200, points=[0.5])
    assert abs(total - 1) < 1e-6 + err


def test_relaxed_categorical_with_two_categories_is_the_binary_concrete():
    # y = (y1, 1 - y1) on the simplex; its density in y1 equals RelaxedBernoulli's
    # with logit l1 - l0 (the simplex density is taken w.r.t. the first K-1 coordinates).
    t, l0, l1 = 0.6, 0.2, -0.7
    r = D.RelaxedOneHotCategorical(t, logits=np.array([l1, l0]))
    b = D.RelaxedBernoulli(t, logits=l1 - l0)
    for y1 in (0.05, 0.3, 0.8, 0.97):
        assert np.isclose(r.log_prob(np.array([y1, 1 - y1])).item(), b.log_prob(y1).item(), rtol=1e-10)


def test_relaxed_samples_approach_the_discrete_ones_when_cold():
    logit = 0.8
    y = D.RelaxedBernoulli(0.02, logits=logit).rsample((20_000,), rng=np.random.default_rng(0)).data
    p = 1 / (1 + np.exp(-logit))
    assert abs((y > 0.5).mean() - p) <= 4 * np.sqrt(p * (1 - p) / len(y))
    assert np.mean((y < 0.01) | (y > 0.99)) > 0.95


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relaxed_samples_stay_strictly_inside(dtype):
    for logit in (-50.0, 50.0):
        y = D.RelaxedBernoulli(0.5, logits=np.array(logit, dtype)).rsample((2000,), rng=np.random.default_rng(1))
        assert y.dtype == dtype and np.all(y.data > 0) and np.all(y.data < 1)
    y = D.RelaxedOneHotCategorical(0.1, logits=np.array([60.0, -60.0, 0.0], dtype)).rsample(
        (2000,), rng=np.random.default_rng(2))
    assert y.dtype == dtype and np.all(y.data > 0)
    np.testing.assert_allclose(y.data.sum(-1), 1.0, rtol=1e-5)


def test_relaxed_bernoulli_pathwise_gradient_matches_finite_differences():
    # E[y] as a function of the logit, with common random numbers for the differences.
    def mean_y(l, seed=5):
        return D.RelaxedBernoulli(0.7, logits=l).rsample((4000,), rng=np.random.default_rng(seed)).mean()

    l = scg.tensor(0.3, requires_grad=True)
    (g,) = scg.grad(mean_y(l), [l])
    h = 1e-5
    fd = (mean_y(scg.tensor(0.3 + h)).item() - mean_y(scg.tensor(0.3 - h)).item()) / (2 * h)
    assert np.isclose(g.item(), fd, rtol=1e-5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: D.Bernoulli(probs=1.2), "'probs' must be in \\[0, 1\\]"),
        (lambda: D.Bernoulli(probs=0.2, logits=0.1), "exactly one of 'probs' and 'logits' \\(got both\\)"),
        (lambda: D.Bernoulli(), "\\(got neither\\)"),
        (lambda: D.Categorical(probs=[0.0, 0.0]), "'probs' sums to zero on the last axis"),
        (lambda: D.Categorical(probs=[-0.2, 1.2]), "'probs' must be non-negative and finite"),
        (lambda: D.RelaxedBernoulli(0.0, logits=0.0), "'temperature' must be positive"),
        (lambda: D.RelaxedOneHotCategorical(-1.0, logits=[0.0, 1.0]), "'temperature' must be positive"),
        (lambda: D.RelaxedBernoulli(np.ones(3), logits=np.zeros(2)), "do not broadcast"),
    ],
)
def test_invalid_parameters_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shapes_broadcast_with_sample_shape():
    d = D.RelaxedOneHotCategorical(np.array([0.5, 1.0])[:, None], logits=np.zeros((3, 4)))
    assert d.batch_shape == (2, 3) and d.event_shape == (4,)
    y = d.rsample((5,))
    assert y.shape == (5, 2, 3, 4) and d.log_prob(y).shape == (5, 2, 3)
    b = D.Bernoulli(logits=np.zeros((2, 3)))
    assert b.sample((4, 5)).shape == (4, 5, 2, 3) and b.log_prob(b.sample((4,))).shape == (4, 2, 3)


@pytest.mark.parametrize("make, by_hand", [
    (lambda: D.Bernoulli(probs=np.array([0.2, 0.5, 0.9])),
     lambda t: D.RelaxedBernoulli(t, probs=np.array([0.2, 0.5, 0.9]))),
    (lambda: D.Bernoulli(logits=np.array([-1.5, 0.0, 2.0])),
     lambda t: D.RelaxedBernoulli(t, logits=np.array([-1.5, 0.0, 2.0]))),
    (lambda: D.Categorical(probs=np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])),
     lambda t: D.RelaxedOneHotCategorical(t, probs=np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]))),
    (lambda: D.OneHotCategorical(logits=np.array([1.0, -0.5, 0.3, 0.0])),
     lambda t: D.RelaxedOneHotCategorical(t, logits=np.array([1.0, -0.5, 0.3, 0.0]))),
], ids=["bernoulli-probs", "bernoulli-logits", "categorical", "one-hot"])
def test_relaxed_is_the_relaxed_family_built_by_hand(make, by_hand):
    t = np.array(0.7)
    got, want = make().relaxed(t), by_hand(t)
    assert type(got) is type(want)
    assert (got.batch_shape, got.event_shape, got.dtype) == (want.batch_shape, want.event_shape, want.dtype)
    np.testing.assert_array_equal(got.temperature.data, 0.7)
    np.testing.assert_allclose(got.probs.data, want.probs.data, rtol=1e-15)
    y = want.rsample((5,), rng=np.random.default_rng(3))
    np.testing.assert_allclose(got.rsample((5,), rng=np.random.default_rng(3)).data, y.data, rtol=1e-14)
    np.testing.assert_allclose(got.log_prob(y).data, want.log_prob(y).data, rtol=1e-12)
    assert np.all(np.isfinite(got.log_prob(y).data))


def test_relaxed_draws_carry_gradients_to_the_discrete_parameters():
    l = scg.tensor([0.3, -1.0], requires_grad=True)
    y = D.Bernoulli(logits=l).relaxed(0.5).rsample(rng=np.random.default_rng(4))
    (g,) = scg.grad(y.sum(), [l])
    # y = sigmoid((l + noise) / T): dy/dl = y (1 - y) / T
    np.testing.assert_allclose(g.data, y.data * (1 - y.data) / 0.5, rtol=1e-12)


@pytest.mark.parametrize("dist", [D.Normal(0.0, 1.0), D.Poisson(2.0), D.Dirichlet(np.ones(3)),
                                  D.RelaxedBernoulli(0.5, probs=0.3), D.Binomial(3, probs=0.4)],
                         ids=lambda d: type(d).__name__)
def test_relaxed_is_refused_by_families_without_one(dist):
    name = type(dist).__name__
    with pytest.raises(NotImplementedError, match=rf"^{name} has no continuous relaxation \(relaxed\(\) is defined "
                                                  r"for Bernoulli, Categorical and OneHotCategorical\)$"):
        dist.relaxed(0.5)


def test_relaxed_checks_the_temperature():
    with pytest.raises(ValueError, match="RelaxedBernoulli: parameter 'temperature' must be positive"):
        D.Bernoulli(probs=0.3).relaxed(0.0)
    with pytest.raises(ValueError, match="RelaxedOneHotCategorical: parameter 'temperature' must be positive"):
        D.Categorical(probs=[0.5, 0.5]).relaxed(-1.0)


def test_gumbel_softmax_serves_any_family_that_defines_relaxed():
    class Coin(D.Poisson):  # not a Bernoulli: GumbelSoftmax must go by relaxed(), not by class
        def relaxed(self, temperature):
            return D.RelaxedBernoulli(temperature, logits=self.rate - 1.0)

    rate = scg.tensor([0.5, 2.0], requires_grad=True)
    scg.manual_seed(0)
    g = scg.Graph()
    with g:
        b = g.sample("b", Coin(rate), estimator=scg.GumbelSoftmax(0.4))
        g.cost("f", b)
    # the draw is Coin's relaxation, from the same seeded stream
    y = D.RelaxedBernoulli(0.4, logits=np.array([-0.5, 1.0])).rsample(rng=np.random.default_rng(0))
    np.testing.assert_allclose(b.data, y.data, rtol=1e-14)
    (d,) = scg.grad(g.surrogate(), [rate])
    np.testing.assert_allclose(d.data, b.data * (1 - b.data) / 0.4, rtol=1e-12)  # pathwise through the relaxation


def test_gumbel_softmax_refusal_names_the_family_and_the_alternatives():
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match=r"GumbelSoftmax for 'k': Poisson has no continuous relaxation.*"
                                             r"use scg\.ScoreFunction\(\)$"):
            g.sample("k", D.Poisson(2.0), estimator=scg.GumbelSoftmax(0.5))
        with pytest.raises(ValueError, match=r"Reparam for 'c'.*use scg\.ScoreFunction\(\), scg\.Enumerate\(\), "
                                             r"scg\.GumbelSoftmax\(temperature\)$"):
            g.sample("c", D.Categorical(probs=[0.5, 0.5]), estimator=scg.Reparam())
        with pytest.raises(ValueError, match=r"Reparam for 'p'.*use scg\.ScoreFunction\(\)$"):
            g.sample("p", D.Poisson(2.0), estimator=scg.Reparam())
