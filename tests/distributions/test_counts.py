"""Poisson, Binomial, Geometric and Multinomial: pmfs, entropies and moments against
scipy.stats in float64 and float32, sample moments within 4 standard errors, gradients
of log_prob at first and second order, closed-form KLs against direct sums over the
support, enumeration, and bad parameters raising ValueError naming the parameter."""

import numpy as np
import pytest
import scipy.stats as st

import scg
import scg.distributions as D

DTYPES = [(np.float64, 1e-10), (np.float32, 2e-5)]
K = np.arange(8.0)[:, None]  # counts 0..7 against a batch on the last axis


def scipy_quiet(fn, *args):
    """scipy at the edges (p = 0 or 1, rate 0) divides by zero on its way to a right answer."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return fn(*args)


@pytest.mark.parametrize("dtype, tol", DTYPES)
def test_poisson_against_scipy(dtype, tol):
    rate = np.array([0.0, 0.3, 2.5, 40.0], dtype=dtype)
    d = D.Poisson(rate, validate_args=False)  # K holds values outside the support: -inf there
    lp = d.log_prob(K.astype(dtype))
    assert lp.dtype == dtype and lp.shape == (8, 4)
    np.testing.assert_allclose(lp.data, scipy_quiet(st.poisson.logpmf, K, rate.astype(np.float64)), rtol=tol)
    np.testing.assert_allclose(d.mean.data, st.poisson.mean(rate), rtol=tol)
    np.testing.assert_allclose(d.variance.data, st.poisson.var(rate), rtol=tol)
    assert d.log_prob(np.array([-1.0, 1.5, np.inf, 2.0], dtype=dtype)).data[:3].tolist() == [-np.inf] * 3
    with pytest.raises(ValueError, match="outside the support"):
        D.Poisson(1.0, validate_args=True).log_prob(0.5)


@pytest.mark.parametrize("dtype, tol", DTYPES)
def test_geometric_against_scipy(dtype, tol):
    # torch's convention counts failures; scipy's geom counts trials (k + 1).
    p = np.array([1.0, 0.3, 0.02], dtype=dtype)
    p64 = p.astype(np.float64)
    logit = np.log(p64[1:] / (1 - p64[1:])).astype(dtype)
    for d, q in ((D.Geometric(probs=p, validate_args=False), p64), (D.Geometric(logits=logit, validate_args=False), p64[1:])):
        lp = d.log_prob(K.astype(dtype))
        assert lp.dtype == dtype
        np.testing.assert_allclose(lp.data, st.geom.logpmf(K + 1, q), rtol=tol, atol=tol)
        h = np.nan_to_num(scipy_quiet(st.geom.entropy, q))  # scipy: NaN for p = 1, a point mass (0)
        np.testing.assert_allclose(d.entropy().data, h, rtol=tol, atol=tol)
        np.testing.assert_allclose(d.mean.data, scipy_quiet(st.geom.mean, q) - 1, rtol=tol, atol=tol)
        np.testing.assert_allclose(d.variance.data, scipy_quiet(st.geom.var, q), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, tol", DTYPES)
def test_binomial_against_scipy(dtype, tol):
    n = np.array([0.0, 3.0, 5.0, 7.0, 7.0], dtype=dtype)
    p = np.array([0.2, 0.0, 1.0, 0.7, 0.45], dtype=dtype)
    n64, p64 = n.astype(np.float64), p.astype(np.float64)
    inner = slice(3, 5)  # 0 < p < 1, where the logits are finite
    logit = np.log(p64[inner] / (1 - p64[inner])).astype(dtype)
    # K holds values outside the support (-inf there): validation off
    for d, (nn, q) in ((D.Binomial(n, probs=p, validate_args=False), (n64, p64)),
                       (D.Binomial(n[inner], logits=logit, validate_args=False), (n64[inner], p64[inner]))):
        lp = d.log_prob(K.astype(dtype))
        assert lp.dtype == dtype
        np.testing.assert_allclose(lp.data, scipy_quiet(st.binom.logpmf, K, nn, q), rtol=tol, atol=tol)
        np.testing.assert_allclose(d.entropy().data, st.binom.entropy(nn, q), rtol=tol, atol=tol)
        np.testing.assert_allclose(d.mean.data, st.binom.mean(nn, q), rtol=tol, atol=tol)
        np.testing.assert_allclose(d.variance.data, st.binom.var(nn, q), rtol=tol, atol=tol)
    assert D.Binomial(3, probs=0.5, validate_args=False).log_prob(np.array([4.0, -1.0, 1.5])).data.tolist() == [-np.inf] * 3
    with pytest.raises(ValueError, match="outside the support"):
        D.Binomial(3, probs=0.5).log_prob(4.0)  # validation is on by default


@pytest.mark.parametrize("dtype, tol", DTYPES)
def test_multinomial_against_scipy(dtype, tol):
    probs = np.array([[0.2, 0.3, 0.5], [0.0, 0.4, 0.6]], dtype=dtype)
    x = np.array([[[1, 1, 2], [0, 2, 2]], [[4, 0, 0], [0, 0, 4]], [[0, 3, 1], [1, 1, 2]]], dtype=dtype)
    p64 = probs.astype(np.float64)
    p64 /= p64.sum(-1, keepdims=True)  # (the float32 rows sum to one only to float32 rounding)
    for d in (D.Multinomial(4, probs=probs), D.Multinomial(4, logits=scipy_quiet(np.log, probs))):
        assert d.batch_shape == (2,) and d.event_shape == (3,)
        lp = d.log_prob(x)
        assert lp.dtype == dtype and lp.shape == (3, 2)
        np.testing.assert_allclose(lp.data, st.multinomial.logpmf(x.astype(np.float64), 4, p64), rtol=tol, atol=tol)
        np.testing.assert_allclose(d.entropy().data, st.multinomial.entropy(4, p64), rtol=tol, atol=tol)
        np.testing.assert_allclose(d.mean.data, 4 * p64, rtol=tol, atol=tol)
        np.testing.assert_allclose(d.variance.data, 4 * p64 * (1 - p64), rtol=tol, atol=tol)
    d = D.Multinomial(4, probs=probs[0], validate_args=False)
    # wrong total, negative, non-integer
    assert d.log_prob(np.array([[1, 1, 1], [-1, 2, 3], [0.5, 1.5, 2]])).data.tolist() == [-np.inf] * 3
    with pytest.raises(ValueError, match="outside the support"):
        D.Multinomial(4, probs=probs[0], validate_args=True).log_prob([1.0, 1.0, 1.0])


@pytest.mark.parametrize("make, mean, var", [
    (lambda: D.Poisson(np.array([0.5, 7.0])), np.array([0.5, 7.0]), np.array([0.5, 7.0])),
    (lambda: D.Geometric(np.array([0.8, 0.15])), 1 / np.array([0.8, 0.15]) - 1, (1 - np.array([0.8, 0.15])) / np.array([0.8, 0.15]) ** 2),
    (lambda: D.Binomial(np.array([3.0, 12.0]), np.array([0.3, 0.9])), np.array([0.9, 10.8]), np.array([0.63, 1.08])),
    (lambda: D.Multinomial(6, np.array([0.1, 0.3, 0.6])), 6 * np.array([0.1, 0.3, 0.6]), 6 * np.array([0.09, 0.21, 0.24])),
])
def test_sample_moments_within_four_standard_errors(make, mean, var):
    d = make()
    n = 40_000
    x = d.sample((n,), rng=np.random.default_rng(5)).data
    assert x.shape == (n,) + d.batch_shape + d.event_shape and x.dtype == d.dtype
    assert np.all(x == np.round(x)) and np.all(x >= 0)
    assert np.all(np.abs(x.mean(0) - mean) <= 4 * np.sqrt(var / n))
    # the sample variance has standard error about sqrt((mu4 - var^2) / n); bound mu4 by the sample's
    mu4 = ((x - x.mean(0)) ** 4).mean(0)
    assert np.all(np.abs(x.var(0) - var) <= 4 * np.sqrt((mu4 - var**2) / n))


def test_multinomial_samples_sum_to_total_count_and_sample_shape():
    d = D.Multinomial(5, logits=np.zeros((2, 4), dtype=np.float32))
    x = d.sample((3,))
    assert x.shape == (3, 2, 4) and x.dtype == np.float32 and np.all(x.data.sum(-1) == 5)


def test_poisson_sample_default_generator_is_seeded():
    scg.manual_seed(11)
    a = D.Poisson(3.0).sample((5,)).data
    scg.manual_seed(11)
    b = D.Poisson(3.0).sample((5,)).data
    assert np.array_equal(a, b) and a.shape == (5,)


# ---- gradients ------------------------------------------------------------------------


def _gradcheck(fn, *inputs):
    assert scg.gradcheck(fn, [np.asarray(x, dtype=np.float64) for x in inputs], order=2)


def test_log_prob_gradients_first_and_second_order():
    k = np.array([0.0, 1.0, 4.0])
    _gradcheck(lambda r: D.Poisson(r).log_prob(k), [0.4, 2.0, 5.0])
    _gradcheck(lambda p: D.Geometric(probs=p).log_prob(k), [0.2, 0.5, 0.9])
    _gradcheck(lambda l: D.Geometric(logits=l).log_prob(k), [-1.0, 0.3, 2.0])
    _gradcheck(lambda p: D.Geometric(probs=p).entropy(), [0.2, 0.5, 0.9])
    _gradcheck(lambda p: D.Binomial(5, probs=p).log_prob(k), [0.2, 0.5, 0.9])
    _gradcheck(lambda l: D.Binomial(np.array([2.0, 4.0, 9.0]), logits=l).log_prob(k), [-1.0, 0.3, 2.0])
    _gradcheck(lambda p: D.Binomial(6, probs=p).entropy(), [0.2, 0.5, 0.9])
    x = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    _gradcheck(lambda l: D.Multinomial(3, logits=l).log_prob(x), [0.1, -0.4, 1.0])
    _gradcheck(lambda l: D.Multinomial(3, logits=l).entropy(), [0.1, -0.4, 1.0])


def test_score_function_gradients_match_the_analytic_derivative():
    # d/dtheta log p(k) by hand: Poisson k/r - 1; Geometric -k/(1-p) + 1/p;
    # Binomial k/p - (n-k)/(1-p); Multinomial (logits) x - n softmax(l).
    k = np.array([0.0, 2.0, 5.0])
    r = scg.tensor([1.5, 1.5, 1.5], requires_grad=True)
    (g,) = scg.grad(D.Poisson(r).log_prob(k).sum(), [r])
    np.testing.assert_allclose(g.data, k / 1.5 - 1)
    p = scg.tensor([0.3, 0.3, 0.3], requires_grad=True)
    (g,) = scg.grad(D.Geometric(p).log_prob(k).sum(), [p])
    np.testing.assert_allclose(g.data, -k / 0.7 + 1 / 0.3)
    (g,) = scg.grad(D.Binomial(5, p).log_prob(k).sum(), [p])
    np.testing.assert_allclose(g.data, k / 0.3 - (5 - k) / 0.7)
    logits = scg.tensor([0.2, -1.0, 0.5], requires_grad=True)
    x = np.array([2.0, 0.0, 1.0])
    (g,) = scg.grad(D.Multinomial(3, logits=logits).log_prob(x), [logits])
    soft = np.exp([0.2, -1.0, 0.5]) / np.exp([0.2, -1.0, 0.5]).sum()
    np.testing.assert_allclose(g.data, x - 3 * soft)


def test_edge_probabilities_give_finite_gradients():
    p = scg.tensor([0.0, 1.0, 0.4], requires_grad=True)
    d = D.Binomial(3, probs=p)
    lp = d.log_prob(np.array([0.0, 3.0, 1.0]))
    np.testing.assert_allclose(lp.data, [0.0, 0.0, st.binom.logpmf(1, 3, 0.4)])
    (g,) = scg.grad(lp.sum() + d.entropy().sum(), [p])
    assert np.all(np.isfinite(g.data))
    q = scg.tensor([0.0, 0.5, 0.5], requires_grad=True)
    m = D.Multinomial(2, probs=q)
    lp = m.log_prob(np.array([0.0, 1.0, 1.0]))
    assert np.isclose(lp.item(), np.log(0.5))
    (g,) = scg.grad(lp + m.entropy(), [q])
    assert np.all(np.isfinite(g.data))


# ---- enumeration -------------------------------------------------------------------


def test_binomial_enumerates_its_support_and_the_others_do_not():
    d = D.Binomial(np.array([4.0, 4.0]), probs=np.array([0.2, 0.7]))
    assert d.has_enumerate_support
    values = d.enumerate_support()
    assert values.shape == (5, 2) and values.data[:, 1].tolist() == [0, 1, 2, 3, 4]
    assert d.enumerate_support(expand=False).shape == (5, 1)
    np.testing.assert_allclose(np.exp(d.log_prob(values).data).sum(0), [1.0, 1.0])
    with pytest.raises(NotImplementedError, match="same total_count"):
        D.Binomial(np.array([2.0, 3.0]), probs=0.5).enumerate_support()
    for d in (D.Poisson(1.0), D.Geometric(0.5), D.Multinomial(2, probs=[0.5, 0.5])):
        assert not d.has_enumerate_support
        with pytest.raises(NotImplementedError):
            d.enumerate_support()


def test_enumerate_estimator_on_binomial_gives_the_exact_gradient():
    # E[(b - 1)^2] = 3p(1 - p) + (3p - 1)^2 for b ~ Binomial(3, p); derivative 3 - 6p + 6(3p - 1).
    p = scg.tensor(0.3, requires_grad=True)
    g = scg.Graph()
    with g:
        b = g.sample("b", D.Binomial(3, probs=p), estimator=scg.Enumerate())
        g.cost("f", (b - 1.0) ** 2)
    loss = g.surrogate()
    loss.backward()
    assert np.isclose(loss.item(), 3 * 0.3 * 0.7 + (0.9 - 1) ** 2)
    assert np.isclose(p.grad.item(), 3 - 6 * 0.3 + 6 * (0.9 - 1))


# ---- KL ---------------------------------------------------------------------------


def test_poisson_kl_against_a_direct_sum():
    r1, r2 = np.array([0.0, 0.7, 3.0, 9.0]), np.array([1.0, 2.0, 2.5, 4.0])
    k = np.arange(200.0)[:, None]
    pk = st.poisson.pmf(k, r1)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.nansum(np.where(pk > 0, pk * (st.poisson.logpmf(k, r1) - st.poisson.logpmf(k, r2)), 0), axis=0)
    kl = D.kl_divergence(D.Poisson(r1), D.Poisson(r2))
    np.testing.assert_allclose(kl.data, direct, rtol=1e-10, atol=1e-12)
    _gradcheck(lambda a, b: D.kl_divergence(D.Poisson(a), D.Poisson(b)), r1[1:], r2[1:])


def test_geometric_kl_against_a_direct_sum():
    p1, p2 = np.array([1.0, 0.6, 0.2, 0.05]), np.array([0.3, 0.9, 0.25, 0.5])
    k = np.arange(2000.0)[:, None]
    pk = st.geom.pmf(k + 1, p1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = st.geom.logpmf(k + 1, p1) - st.geom.logpmf(k + 1, p2)
        direct = np.sum(np.where(pk > 0, pk * log_ratio, 0), axis=0)
    kl = D.kl_divergence(D.Geometric(p1), D.Geometric(p2))
    np.testing.assert_allclose(kl.data, direct, rtol=1e-9, atol=1e-12)
    _gradcheck(lambda a, b: D.kl_divergence(D.Geometric(a), D.Geometric(b)), p1[1:], p2[1:])
    kl32 = D.kl_divergence(D.Geometric(p1.astype(np.float32)), D.Geometric(logits=np.zeros(4, np.float32)))
    assert kl32.dtype == np.float32


# ---- bad parameters -----------------------------------------------------------------


@pytest.mark.parametrize("make, name", [
    (lambda: D.Poisson(-0.5), "rate"),
    (lambda: D.Poisson(np.inf), "rate"),
    (lambda: D.Poisson(np.nan), "rate"),
    (lambda: D.Geometric(probs=0.0), "probs"),
    (lambda: D.Geometric(probs=1.2), "probs"),
    (lambda: D.Geometric(logits=-np.inf), "logits"),
    (lambda: D.Geometric(probs=0.3, logits=0.1), "probs"),
    (lambda: D.Binomial(2.5, probs=0.5), "total_count"),
    (lambda: D.Binomial(-1, probs=0.5), "total_count"),
    (lambda: D.Binomial(3, probs=-0.1), "probs"),
    (lambda: D.Binomial(np.ones(3), probs=np.full(2, 0.5)), "total_count"),
    (lambda: D.Multinomial(2.5, probs=[0.5, 0.5]), "total_count"),
    (lambda: D.Multinomial(np.array([2, 3]), probs=[0.5, 0.5]), "total_count"),
    (lambda: D.Multinomial(3, probs=[0.0, 0.0]), "probs"),  # (weights that do not sum to one are normalised)
    (lambda: D.Multinomial(3, probs=[-0.5, 1.5]), "probs"),
])
def test_bad_parameters_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()
