"""InverseGamma, Kumaraswamy, ContinuousBernoulli and VonMises: what is particular to them.

InverseGamma and Kumaraswamy also have rows in ``families.py`` (so every shared check runs on
them); here are their cdf, icdf, mode and pathwise gradients. ContinuousBernoulli is checked
against mpmath (its normaliser's removable singularity at p = 1/2 included), VonMises against
scipy.stats.vonmises, mpmath and its circular moments. References are scipy, mpmath or closed
forms written here; statistical checks allow Z = 4 standard errors.
"""

import mpmath as mp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st
from families import Z, assert_mean_within_se, f32_tol, finite_differences, identity, per_sample_derivatives, rng

import scg
import scg.distributions as D
from scg import ops
from scg.distributions.gamma import gammainc, gammaincc
from scg.distributions.von_mises import angle_grad

mp.mp.dps = 40


def _both(make_fn):
    """The distribution under validate_args=False and True."""
    return make_fn(False), make_fn(True)


# ---- InverseGamma --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inverse_gamma_cdf_and_mode(dtype):
    a = np.array([0.5, 2.5, 3.0, 40.0], dtype)
    b = np.array([1.0, 0.5, 4.0, 10.0], dtype)
    x = (np.array([0.05, 0.3, 1.0, 3.0, 30.0])[:, None] * b / a).astype(dtype)
    d = D.InverseGamma(a, b)
    ref = st.invgamma(a.astype(np.float64), scale=b.astype(np.float64))
    cdf = d.cdf(x)
    assert cdf.dtype == dtype and cdf.shape == x.shape
    expected = ref.cdf(x.astype(np.float64))
    if dtype == np.float64:
        np.testing.assert_allclose(cdf.data, expected, rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(d.mode.data, b / (a + 1), rtol=1e-15)
    else:
        assert (np.abs(cdf.data - expected) <= f32_tol(1.0, 30 * expected)).all()
    lenient = D.InverseGamma(a, b, validate_args=False)  # outside the support: 0 without validation
    np.testing.assert_array_equal(lenient.cdf(np.array([-1.0, 0.0])[:, None]).data, 0.0)
    with pytest.raises(ValueError, match="InverseGamma.cdf: value .* is outside the support"):
        d.cdf(-1.0)


def test_inverse_gamma_has_no_icdf_as_torch():
    with pytest.raises(NotImplementedError, match="InverseGamma"):
        D.InverseGamma(2.0, 1.0).icdf(0.5)


def test_gammainc_and_gammaincc_match_scipy_and_gradcheck_to_order_two():
    a, z = np.array([0.3, 1.0, 2.5, 7.0]), np.array([0.2, 1.5, 6.0, 3.0])
    np.testing.assert_allclose(gammainc(a, z).data, sp.gammainc(a, z), rtol=1e-14)
    assert scg.gradcheck(lambda a, z: gammainc(a, z), [a, z], order=2)
    # dP/da against a central difference of scipy's gammainc (a closed-form-free reference)
    at = scg.tensor(a, requires_grad=True)
    (g,) = scg.grad(scg.sum(gammainc(at, z)), [at])
    h = 1e-5
    np.testing.assert_allclose(g.data, (sp.gammainc(a + h, z) - sp.gammainc(a - h, z)) / (2 * h), rtol=1e-7)
    # Q = 1 - P, computed directly: its value and gradient are P's mirrored
    np.testing.assert_allclose(gammaincc(a, z).data, sp.gammaincc(a, z), rtol=1e-14)
    (gq,) = scg.grad(scg.sum(gammaincc(at, z)), [at])
    np.testing.assert_allclose(gq.data, -g.data, rtol=1e-14)
    assert scg.gradcheck(lambda a, z: gammaincc(a, z), [a, z], order=2)


def test_inverse_gamma_log_prob_and_cdf_gradcheck_second_order():
    a, b, x = np.array([1.5, 4.0]), np.array([0.7, 2.0]), np.array([0.5, 2.5])
    assert scg.gradcheck(lambda a, b, x: D.InverseGamma(a, b).log_prob(x), [a, b, x], order=2)
    assert scg.gradcheck(lambda a, b, x: D.InverseGamma(a, b).cdf(x), [a, b, x], order=2)


@pytest.mark.parametrize("wrt", ["concentration", "rate"])
def test_inverse_gamma_pathwise_gradient_of_the_mean(wrt):
    """E[x] = b / (a - 1): dE/da = -b/(a-1)^2, d2E/da2 = 2b/(a-1)^3 (a = 6 keeps the variance
    of the per-sample derivatives finite); dE/db = 1/(a-1), d2E/db2 = 0."""
    p = dict(concentration=6.0, rate=2.0)
    g1, g2 = per_sample_derivatives("InverseGamma", p, wrt, identity, n=20_000, seed=5)
    d1, d2 = finite_differences(lambda concentration, rate: st.invgamma(concentration, scale=rate).mean(), p, wrt)
    assert_mean_within_se(g1, d1)
    assert_mean_within_se(g2, d2)


# ---- Kumaraswamy ----------------------------------------------------------------------------------


def _kumaraswamy_cdf(a, b, x):
    a, b, x = mp.mpf(a), mp.mpf(b), mp.mpf(x)
    return -mp.expm1(b * mp.log1p(-(x**a)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kumaraswamy_cdf_icdf_against_mpmath(dtype):
    a = np.array([0.3, 1.0, 2.0, 5.0, 30.0], dtype)
    b = np.array([0.5, 1.0, 3.0, 0.8, 60.0], dtype)
    d = D.Kumaraswamy(a, b)
    x = np.array([1e-6, 0.1, 0.5, 0.9, 1 - 1e-6])[:, None] * np.ones(5)
    x = x.astype(dtype)
    cdf = np.array([[float(_kumaraswamy_cdf(float(a[j]), float(b[j]), float(x[i, j]))) for j in range(5)]
                    for i in range(5)])
    u = np.array([1e-9, 0.01, 0.5, 0.99, 1 - 1e-9])[:, None] * np.ones(5)
    u = u.astype(dtype)
    inv = np.array([[float((-mp.expm1(mp.log1p(-mp.mpf(float(u[i, j]))) / float(b[j]))) ** (1 / mp.mpf(float(a[j]))))
                     for j in range(5)] for i in range(5)])
    got_cdf, got_inv = d.cdf(x), d.icdf(u)
    assert got_cdf.dtype == got_inv.dtype == dtype
    if dtype == np.float64:
        np.testing.assert_allclose(got_cdf.data, cdf, rtol=1e-12)
        np.testing.assert_allclose(got_inv.data, inv, rtol=1e-12)
    else:
        # a few roundings, each amplified at most by the exponents 1/a, 1/b, a, b and |log x|
        tiny = np.finfo(np.float32).tiny  # values below it underflow
        np.testing.assert_allclose(got_cdf.data, cdf, rtol=2e-4, atol=tiny)
        np.testing.assert_allclose(got_inv.data, inv, rtol=2e-4, atol=tiny)
    lenient = D.Kumaraswamy(a, b, validate_args=False)  # outside the support: clipped without validation
    np.testing.assert_array_equal(lenient.cdf(np.array([-1.0, 2.0])[:, None]).data, [[0.0] * 5, [1.0] * 5])
    with pytest.raises(ValueError, match="Kumaraswamy.cdf: value .* is outside the support"):
        d.cdf(2.0)
    with pytest.raises(ValueError, match="probability"):
        D.Kumaraswamy(2.0, 3.0, validate_args=True).icdf(1.5)


def test_kumaraswamy_mode():
    """((a - 1) / (a b - 1))^(1/a) where a, b >= 1, not both 1; NaN elsewhere, as torch says.
    (torch 2.13 returns NaN for a = 2, b = 3 too: it swaps the parameters in the formula.)"""
    a = np.array([2.0, 5.0, 1.0, 3.0, 0.5, 2.0, 1.0])
    b = np.array([3.0, 1.5, 2.0, 1.0, 2.0, 0.5, 1.0])
    m = D.Kumaraswamy(a, b).mode.data
    np.testing.assert_allclose(m[:4], ((a[:4] - 1) / (a[:4] * b[:4] - 1)) ** (1 / a[:4]), rtol=1e-14)
    # the density's maximum, found by brute force, is there
    x = np.linspace(1e-4, 1 - 1e-4, 200_001)
    for j in (0, 1):
        pdf = a[j] * b[j] * x ** (a[j] - 1) * (1 - x ** a[j]) ** (b[j] - 1)
        assert abs(x[np.argmax(pdf)] - m[j]) < 1e-4
    assert np.isnan(m[4:]).all()


@pytest.mark.parametrize("wrt", ["concentration1", "concentration0"])
def test_kumaraswamy_pathwise_gradient_of_the_second_moment(wrt):
    p = dict(concentration1=2.0, concentration0=3.0)

    def moment2(concentration1, concentration0):  # b B(1 + 2/a, b)
        return concentration0 * sp.beta(1 + 2 / concentration1, concentration0)

    g1, g2 = per_sample_derivatives("Kumaraswamy", p, wrt, lambda z: z * z, n=20_000, seed=5)
    d1, d2 = finite_differences(moment2, p, wrt)
    assert_mean_within_se(g1, d1)
    assert_mean_within_se(g2, d2)


def test_kumaraswamy_log_prob_gradcheck_in_the_value_too():
    a, b, x = np.array([0.8, 3.0]), np.array([2.0, 0.6]), np.array([0.3, 0.8])
    assert scg.gradcheck(lambda a, b, x: D.Kumaraswamy(a, b).log_prob(x), [a, b, x], order=2)
    assert scg.gradcheck(lambda a, b, x: D.Kumaraswamy(a, b).cdf(x), [a, b, x], order=2)
    assert scg.gradcheck(lambda a, b, u: D.Kumaraswamy(a, b).icdf(u), [a, b, x], order=2)


# ---- ContinuousBernoulli --------------------------------------------------------------------------

CB_PROBS = [1e-3, 0.2, 0.499, 0.4999999, 0.5 - 1e-8, 0.5, 0.5 + 1e-8, 0.5005, 0.51, 0.9, 0.999999]


def _cb_normaliser(p):
    p = mp.mpf(p)
    return mp.mpf(2) if p == mp.mpf(0.5) else 2 * mp.atanh(1 - 2 * p) / (1 - 2 * p)


def _cb_pdf(p, x):
    p, x = mp.mpf(p), mp.mpf(x)
    return _cb_normaliser(p) * p**x * (1 - p) ** (1 - x)


def _cb_mean(p):
    return mp.quad(lambda x: x * _cb_pdf(p, x), [0, 1])


def _cb_reference(p):
    """(mean, variance, entropy) of ContinuousBernoulli(p) by mpmath quadrature."""
    m = _cb_mean(p)
    v = mp.quad(lambda x: (x - m) ** 2 * _cb_pdf(p, x), [0, 1])
    h = -mp.quad(lambda x: _cb_pdf(p, x) * mp.log(_cb_pdf(p, x)), [0, 1])
    return float(m), float(v), float(h)


@pytest.fixture(scope="module")
def cb_reference():
    return np.array([_cb_reference(p) for p in CB_PROBS]).T


def test_continuous_bernoulli_values_against_mpmath_near_and_at_one_half(cb_reference):
    p = np.array(CB_PROBS)
    x = np.array([0.0, 0.1, 0.5, 0.9, 1.0])[:, None] * np.ones(len(p))
    for d in (D.ContinuousBernoulli(p), D.ContinuousBernoulli(logits=np.log(p) - np.log1p(-p))):
        lp = np.array([[float(mp.log(_cb_pdf(p[j], x[i, j]))) for j in range(len(p))] for i in range(5)])
        np.testing.assert_allclose(d.log_prob(x).data, lp, rtol=1e-8, atol=1e-14)
        mean, var, ent = cb_reference
        np.testing.assert_allclose(d.mean.data, mean, rtol=1e-8)
        np.testing.assert_allclose(d.variance.data, var, rtol=1e-8)
        np.testing.assert_allclose(d.entropy().data, ent, rtol=1e-8, atol=1e-14)
        xs = x[1:4]
        cdf = np.array([[float(mp.quad(lambda t: _cb_pdf(p[j], t), [0, xs[i, j]])) for j in range(len(p))]
                        for i in range(3)])
        np.testing.assert_allclose(d.cdf(xs).data, cdf, rtol=1e-8)
        np.testing.assert_allclose(d.icdf(cdf).data, xs, rtol=1e-8)
    # exactly at 1/2 the law is Uniform(0, 1)
    half = D.ContinuousBernoulli(0.5)
    assert half.log_prob(0.3).item() == 0.0 and half.mean.item() == 0.5
    np.testing.assert_allclose([half.variance.item(), half.cdf(0.3).item(), half.icdf(0.3).item()], [1 / 12, 0.3, 0.3],
                               rtol=1e-15)


def test_continuous_bernoulli_float32(cb_reference):
    p = np.array([1e-3, 0.2, 0.499, 0.5, 0.5005, 0.51, 0.9], np.float32)
    d = D.ContinuousBernoulli(p)
    x = np.array([0.0, 0.1, 0.5, 0.9, 1.0], np.float32)[:, None] * np.ones(len(p), np.float32)
    lp = np.array([[float(mp.log(_cb_pdf(float(p[j]), float(x[i, j])))) for j in range(len(p))] for i in range(5)])
    got = d.log_prob(x)
    assert got.dtype == np.float32
    l = np.log(p.astype(np.float64)) - np.log1p(-p.astype(np.float64))
    assert (np.abs(got.data - lp) <= f32_tol(l, lp, 1.0)).all()
    for t in (d.mean, d.variance, d.entropy()):
        assert t.dtype == np.float32 and np.isfinite(t.data).all()


def test_continuous_bernoulli_sample_moments():
    p = np.array([0.05, 0.5, 0.7])
    d = D.ContinuousBernoulli(p)
    x = d.sample((100_000,), rng=rng(3)).data
    assert x.shape == (100_000, 3) and ((x > 0) & (x < 1)).all()
    m = np.array([float(_cb_mean(q)) for q in p])
    v = np.array([float(mp.quad(lambda t: (t - m[j]) ** 2 * _cb_pdf(q, t), [0, 1])) for j, q in enumerate(p)])
    mu4 = np.array([float(mp.quad(lambda t: (t - m[j]) ** 4 * _cb_pdf(q, t), [0, 1])) for j, q in enumerate(p)])
    n = x.shape[0]
    assert (np.abs(x.mean(0) - m) <= Z * np.sqrt(v / n)).all()
    assert (np.abs(x.var(0, ddof=1) - v) <= Z * np.sqrt((mu4 - v * v) / n)).all()


@pytest.mark.parametrize("logit", [-2.0, 0.0, 1e-3, 3.0])
def test_continuous_bernoulli_pathwise_gradient_of_the_mean(logit):
    """d/dl E[x] against the derivative of mpmath's mean (by quadrature) in the logit."""
    params = scg.tensor(np.full(20_000, logit), requires_grad=True)
    z = D.ContinuousBernoulli(logits=params).rsample(rng=rng(7))
    (g,) = scg.grad(scg.sum(z), [params])
    expected = float(mp.diff(lambda l: _cb_mean(1 / (1 + mp.exp(-l))), logit))
    assert_mean_within_se(g.data, expected)


def test_continuous_bernoulli_gradcheck_second_order():
    for l in (np.array([-3.0, -0.5, 1e-4, 0.05, 2.0]), np.array([0.0])):
        x = np.full(l.shape, 0.3)
        assert scg.gradcheck(lambda l, x: D.ContinuousBernoulli(logits=l).log_prob(x), [l, x], order=2)
        assert scg.gradcheck(lambda l: D.ContinuousBernoulli(logits=l).entropy(), [l], order=2)
        assert scg.gradcheck(lambda l, x: D.ContinuousBernoulli(logits=l).cdf(x), [l, x], order=2)
        assert scg.gradcheck(lambda l, u: D.ContinuousBernoulli(logits=l).icdf(u), [l, x], order=2)
    p = np.array([0.1, 0.4, 0.8])
    assert scg.gradcheck(lambda p: D.ContinuousBernoulli(p).log_prob(0.3), [p], order=2)


def test_continuous_bernoulli_kl_against_quadrature():
    for p, q in [(0.2, 0.7), (0.5, 0.9), (0.3, 0.5), (0.5, 0.5 + 1e-8)]:
        expected = mp.quad(lambda x: _cb_pdf(p, x) * (mp.log(_cb_pdf(p, x)) - mp.log(_cb_pdf(q, x))), [0, 1])
        got = D.kl_divergence(D.ContinuousBernoulli(p), D.ContinuousBernoulli(q)).item()
        assert abs(got - float(expected)) <= 1e-12 + 1e-9 * abs(float(expected))


def test_continuous_bernoulli_invalid_parameters_and_values():
    for bad, name in [(dict(probs=1.5), "'probs'"), (dict(probs=-0.1), "'probs'"), (dict(logits=np.nan), "'logits'")]:
        with pytest.raises(ValueError, match=name):
            D.ContinuousBernoulli(**bad)
    with pytest.raises(ValueError, match="exactly one"):
        D.ContinuousBernoulli(probs=0.3, logits=0.2)
    loose, strict = _both(lambda v: D.ContinuousBernoulli(0.3, validate_args=v))
    np.testing.assert_array_equal(loose.log_prob(np.array([-0.1, 1.5])).data, -np.inf)
    for v in (-0.1, 1.5):
        with pytest.raises(ValueError, match="outside the support"):
            strict.log_prob(v)
    assert np.isfinite(strict.log_prob(np.array([0.0, 1.0])).data).all()
    # probs 0 and 1 are allowed (clipped to eps as torch does): finite densities inside
    assert np.isfinite(D.ContinuousBernoulli(np.array([0.0, 1.0])).log_prob(0.5).data).all()


# ---- VonMises ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_von_mises_values_against_scipy(dtype):
    loc = np.array([0.0, 0.5, -2.0, 3.0, 1.0], dtype)
    k = np.array([1e-3, 0.3, 2.0, 30.0, 700.0], dtype)
    x = np.array([-3.0, -0.4, 0.0, 1.0, 2.9, 10.0], dtype)[:, None] * np.ones(5, dtype)
    d = D.VonMises(loc, k)
    loc64, k64, x64 = loc.astype(np.float64), k.astype(np.float64), x.astype(np.float64)
    lp = st.vonmises(k64, loc=loc64).logpdf(np.mod(x64 - loc64 + np.pi, 2 * np.pi) - np.pi + loc64)
    got = d.log_prob(x)
    assert got.dtype == dtype and got.shape == x.shape
    a = sp.i1e(k64) / sp.i0e(k64)
    entropy = np.log(2 * np.pi * sp.i0e(k64)) + k64 * (1 - a)
    if dtype == np.float64:
        np.testing.assert_allclose(got.data, lp, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.entropy().data, st.vonmises(k64).entropy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(d.entropy().data, entropy, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(d.variance.data, 1 - a, rtol=1e-12)
    else:
        # k cos(x - loc): the rounding of x - loc (eps (|x| + |loc|)) times k
        tol = f32_tol(k64 * (1 + (np.abs(x64) + np.abs(loc64))), np.log(sp.i0e(k64)), 2.0)
        assert (np.abs(got.data - lp) <= tol).all()
        assert (np.abs(d.entropy().data - entropy) <= f32_tol(entropy, k64)).all()
    np.testing.assert_array_equal(d.mean.data, loc)
    np.testing.assert_array_equal(d.mode.data, loc)


def test_von_mises_outside_and_invalid():
    loose, strict = _both(lambda v: D.VonMises(0.0, 1.0, validate_args=v))
    np.testing.assert_array_equal(loose.log_prob(np.array([np.inf, -np.inf])).data, -np.inf)
    with pytest.raises(ValueError, match="outside the support"):
        strict.log_prob(np.inf)
    assert np.isfinite(strict.log_prob(np.array([-7.0, 0.0, 100.0])).data).all()
    for build, name in [(lambda: D.VonMises(0.0, 0.0), "'concentration'"),
                        (lambda: D.VonMises(0.0, -1.0), "'concentration'"),
                        (lambda: D.VonMises(np.inf, 1.0), "'loc'"),
                        (lambda: D.VonMises(np.nan, 1.0), "'loc'")]:
        with pytest.raises(ValueError, match=name):
            build()


def test_von_mises_sample_circular_moments():
    """E[cos(x - loc)] = I1/I0, E[sin(x - loc)] = 0, E[cos 2(x - loc)] = I2/I0 (4 SE, variances
    of the statistics from the same Bessel ratios), and the empirical cdf at scipy's quantiles."""
    loc = np.array([0.5, -3.0, 2.0, 0.0])
    k = np.array([0.05, 1.0, 8.0, 300.0])
    n = 50_000
    x = D.VonMises(loc, k).sample((n,), rng=rng(2)).data
    assert x.shape == (n, 4) and (x >= -np.pi).all() and (x < np.pi).all()
    t = x - loc
    r1, r2 = sp.iv(1, k) / sp.iv(0, k), sp.iv(2, k) / sp.iv(0, k)
    r4 = sp.iv(4, k) / sp.iv(0, k)
    var_cos, var_sin, var_cos2 = (1 + r2) / 2 - r1**2, (1 - r2) / 2, (1 + r4) / 2 - r2**2
    for stat, mean, var in [(np.cos(t), r1, var_cos), (np.sin(t), 0 * k, var_sin), (np.cos(2 * t), r2, var_cos2)]:
        assert (np.abs(stat.mean(0) - mean) <= Z * np.sqrt(var / n)).all(), (stat.mean(0) - mean) / np.sqrt(var / n)
    wrapped = np.mod(t + np.pi, 2 * np.pi) - np.pi
    for q in (0.1, 0.5, 0.9):
        ecdf = (wrapped <= st.vonmises(k).ppf(q)).mean(0)
        assert (np.abs(ecdf - q) <= Z * np.sqrt(q * (1 - q) / n)).all()


def _angle_grad_reference(k, theta):
    """-(dF/dk) / p at theta for VonMises(0, k), by mpmath quadrature: with A = I1(k) / I0(k),
    dp/dk = p (cos t - A), so dF/dk = int_-pi^theta (cos t - A) p(t) dt."""
    with mp.workdps(25):
        k, theta = mp.mpf(k), mp.mpf(theta)
        a = mp.besseli(1, k) / mp.besseli(0, k)
        # p(t) / p(theta) = exp(k (cos t - cos theta)); splitting at 0 and theta helps the peaks
        d_cdf = mp.quad(lambda t: (mp.cos(t) - a) * mp.exp(k * (mp.cos(t) - mp.cos(theta))),
                        [-mp.pi, 0, theta] if theta > 0 else [-mp.pi, theta])
        return float(-d_cdf)


@pytest.mark.parametrize("k,theta", [(1e-3, 1.0), (0.5, -2.0), (2.0, 0.3), (2.0, 3.0), (50.0, 0.1),
                                     (50.0, -0.5), (1e4, 0.01), (3.0, 0.0)])
def test_von_mises_implicit_gradient_against_mpmath(k, theta):
    got = angle_grad(scg.tensor(np.array(k)), scg.tensor(np.array(theta))).item()
    expected = _angle_grad_reference(k, theta)
    assert abs(got - expected) <= 1e-10 * abs(expected) + 1e-16


def test_von_mises_implicit_gradient_gradcheck_second_order():
    k, theta = np.array([0.7, 4.0, 40.0]), np.array([1.2, -0.4, 0.1])
    assert scg.gradcheck(lambda k, t: angle_grad(k, t), [k, theta], order=2)


@pytest.mark.parametrize("k", [0.5, 4.0])
def test_von_mises_pathwise_gradients_of_the_mean_cosine(k):
    """E[cos x] = cos(loc) A(k): dE/dk = cos(loc) A'(k) with A' = 1 - A/k - A^2, and the
    second derivative by finite differences of it; dE/dloc = -sin(loc) A(k)."""
    loc = 0.4

    def expectation(loc, concentration):
        return np.cos(loc) * sp.i1e(concentration) / sp.i0e(concentration)

    p = dict(loc=loc, concentration=k)
    g1, g2 = per_sample_derivatives("VonMises", p, "concentration", ops.cos, n=20_000, seed=9)
    d1, d2 = finite_differences(expectation, p, "concentration")
    a = sp.i1e(k) / sp.i0e(k)
    np.testing.assert_allclose(d1, np.cos(loc) * (1 - a / k - a * a), rtol=1e-7)
    assert_mean_within_se(g1, d1)
    assert_mean_within_se(g2, d2)
    g_loc, _ = per_sample_derivatives("VonMises", p, "loc", ops.cos, n=20_000, seed=9)
    assert_mean_within_se(g_loc, -np.sin(loc) * a)


def test_von_mises_log_prob_gradcheck_second_order_and_float32_rsample():
    loc, k, x = np.array([0.3, -1.0]), np.array([0.7, 12.0]), np.array([1.5, -2.0])
    assert scg.gradcheck(lambda loc, k, x: D.VonMises(loc, k).log_prob(x), [loc, k, x], order=2)
    kt = scg.tensor(np.float32([0.7, 12.0]), requires_grad=True)
    z = D.VonMises(np.float32(0.3), kt).rsample((5,), rng=rng())
    assert z.dtype == np.float32 and z.requires_grad
    (g,) = scg.grad(scg.sum(ops.cos(z)), [kt])
    assert g.dtype == np.float32 and np.isfinite(g.data).all()


# ---- the new primitives ---------------------------------------------------------------------------


@pytest.mark.parametrize("op,ref", [(ops.cos, np.cos), (ops.sin, np.sin), (ops.i0e, sp.i0e), (ops.i1e, sp.i1e)])
def test_bessel_and_trigonometric_primitives(op, ref):
    x = np.array([-25.0, -2.3, -0.4, 0.3, 1.7, 25.0])
    np.testing.assert_allclose(op(x).data, ref(x), rtol=1e-15)
    assert scg.gradcheck(op, [x], order=2)


def test_i1e_derivative_at_zero_is_one_half():
    x = scg.tensor(np.array(0.0), requires_grad=True)
    (g,) = scg.grad(ops.i1e(x), [x])
    assert g.item() == 0.5


# ---- validation, both settings ---------------------------------------------------------------------


@pytest.mark.parametrize("build,bad,good", [
    (lambda v: D.InverseGamma(2.0, 1.0, validate_args=v), [0.0, -1.0, np.nan], [1e-300, 3.0, np.inf]),
    (lambda v: D.Kumaraswamy(2.0, 3.0, validate_args=v), [-1e-9, 1 + 1e-9, np.nan], [0.0, 0.5, 1.0]),
])
def test_validate_args_false_gives_minus_inf_and_true_raises(build, bad, good):
    loose, strict = _both(build)
    lp = loose.log_prob(np.array(bad[:2]))
    np.testing.assert_array_equal(lp.data, -np.inf)
    for v in bad:
        with pytest.raises(ValueError, match="outside the support|NaN"):
            strict.log_prob(v)
    assert not np.isnan(strict.log_prob(np.array(good)).data).any()


# ---- LKJCholesky -----------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.5, 1.0, 3.0])
def test_lkj_cholesky_density_integrates_to_one(eta):
    """dim 2: L = [[1, 0], [r, sqrt(1 - r^2)]], one free entry r in (-1, 1). dim 3: the free
    entries L21 in (-1, 1) and (L31, L32) in the unit disk (rows are independent)."""
    from scipy import integrate

    def lkj(r_entries, dim):
        L = np.eye(dim)
        k = 0
        for i in range(1, dim):
            L[i, :i] = r_entries[k:k + i]
            L[i, i] = np.sqrt(max(1 - np.sum(L[i, :i] ** 2), 1e-300))
            k += i
        return D.LKJCholesky(dim, eta).log_prob(L).item()

    total, _ = integrate.quad(lambda r: np.exp(lkj([r], 2)), -1, 1)
    assert abs(total - 1) < 1e-8
    # dim 3: the density is a product over rows; integrate row 2 alone with row 3 at a fixed
    # point and row 3 (in polar coordinates) with row 2 fixed, then divide by the double count.
    at = lkj([0.0, 0.0, 0.0], 3)
    row2, _ = integrate.quad(lambda r: np.exp(lkj([r, 0.0, 0.0], 3) - at), -1, 1)
    # (row 3's density depends on its radius only, checked at two angles)
    assert abs(lkj([0.0, 0.3, 0.4], 3) - lkj([0.0, 0.5, 0.0], 3)) < 1e-12
    row3, _ = integrate.quad(lambda rho: 2 * np.pi * rho * np.exp(lkj([0.0, rho, 0.0], 3) - at), 0, 1)
    assert abs(np.exp(at) * row2 * row3 - 1) < 1e-7


def test_lkj_cholesky_samples_are_cholesky_factors_with_lkj_correlations():
    """Each off-diagonal correlation of LKJ(eta) in dim d has (r + 1)/2 ~ Beta(b, b) with
    b = eta - 1 + d/2: mean 0, variance 1/(2b + 1), excess kurtosis -6/(2b + 3)."""
    d, eta = 4, np.array([0.5, 2.0])
    L = D.LKJCholesky(d, eta).sample((40_000,), rng=rng(4)).data
    assert L.shape == (40_000, 2, d, d)
    assert (np.triu(L, 1) == 0).all() and (np.diagonal(L, axis1=-2, axis2=-1) > 0).all()
    np.testing.assert_allclose(np.sum(L * L, axis=-1), 1.0, rtol=1e-12)
    C = L @ np.swapaxes(L, -1, -2)
    b = eta - 1 + d / 2
    for i, j in [(1, 0), (2, 0), (3, 1), (3, 2)]:
        r = C[:, :, i, j]
        var, kurt = 1 / (2 * b + 1), -6 / (2 * b + 3)
        n = r.shape[0]
        assert (np.abs(r.mean(0)) <= Z * np.sqrt(var / n)).all()
        assert (np.abs(r.var(0, ddof=1) - var) <= Z * var * np.sqrt((kurt + 2) / n)).all()


def test_lkj_cholesky_log_prob_shapes_gradcheck_validation_and_invalid_parameters():
    d = D.LKJCholesky(3, np.array([0.5, 2.0]))
    assert d.batch_shape == (2,) and d.event_shape == (3, 3) and not d.has_rsample
    L = d.sample((5,), rng=rng(1))
    assert L.shape == (5, 2, 3, 3) and d.log_prob(L).shape == (5, 2)
    assert scg.gradcheck(lambda eta: D.LKJCholesky(3, eta).log_prob(L.data[0]), [np.array([0.5, 2.0])], order=2)
    bad = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # not lower triangular
    loose, strict = _both(lambda v: D.LKJCholesky(3, 1.5, validate_args=v))
    assert loose.log_prob(bad).item() == -np.inf and loose.log_prob(2 * np.eye(3)).item() == -np.inf
    with pytest.raises(ValueError, match="outside the support"):
        strict.log_prob(bad)
    assert np.isfinite(strict.log_prob(np.eye(3)).item())
    for build, name in [(lambda: D.LKJCholesky(1, 1.0), "'dim'"), (lambda: D.LKJCholesky(2.5, 1.0), "'dim'"),
                        (lambda: D.LKJCholesky(3, 0.0), "'concentration'"),
                        (lambda: D.LKJCholesky(3, -1.0), "'concentration'")]:
        with pytest.raises(ValueError, match=name):
            build()
