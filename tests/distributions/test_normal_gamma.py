"""Normal and Gamma against scipy and analytic formulas, and Gamma's implicit gradient.

Expected values come from ``scipy.stats`` / ``scipy.special`` or closed forms written
out here, never from the code under test. Statistical checks use fixed seeds and
allow ``Z = 4`` standard errors computed from the analytic moments (sample moments)
or from the per-sample pathwise gradients (gradient means); the expectation's
derivatives are central finite differences of scipy's analytic moments.

float32 tolerances: a float32 evaluation of a sum of a handful of terms, each
computed with at most a few rounding errors, is accurate to a few float32 ulps of
the sum of the terms' magnitudes; the tests allow ``8 eps32 (1 + sum |term|)`` and
evaluate scipy at the float32-rounded parameters and values.
"""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import scg
import scg.distributions as D

EPS32 = float(np.finfo(np.float32).eps)
Z = 4.0  # standard errors allowed in statistical checks


@pytest.fixture(autouse=True)
def _seed():
    scg.manual_seed(0)


def rng(seed=0):
    return np.random.default_rng(seed)


def f32_tol(*terms):
    """Absolute tolerance for a float32 result that sums ``terms`` (see module docstring)."""
    return 8 * EPS32 * (1 + sum(np.abs(np.asarray(t, dtype=np.float64)) for t in terms))


GRIDS = {
    "Normal": dict(loc=[0.0, -3.0, 10.0, 1e3, 0.5], scale=[1.0, 0.1, 4.0, 2.0, 1e-3]),
    "Gamma": dict(concentration=[0.1, 0.5, 1.0, 1.0, 3.0, 20.0, 300.0],
                  rate=[1.0, 2.0, 0.5, 1.0, 10.0, 0.3, 50.0]),
}
FAMILIES = list(GRIDS)


def scipy_ref(name, p):
    if name == "Normal":
        return st.norm(p["loc"], p["scale"])
    return st.gamma(p["concentration"], scale=1 / p["rate"])


def grid_values(name, p):
    """Points inside the support for each parameter setting: shape (Q, P)."""
    if name == "Normal":
        return p["loc"] + p["scale"] * np.array([-5.0, -1.0, 0.0, 0.3, 2.0, 8.0])[:, None]
    return np.array([1e-4, 0.1, 0.5, 1.0, 2.0, 5.0])[:, None] * p["concentration"] / p["rate"]


def log_prob_terms(name, p, x):
    """The magnitudes a float32 log_prob evaluation sums (for ``f32_tol``)."""
    if name == "Normal":
        z = (x - p["loc"]) / p["scale"]
        # x - loc is rounded to eps (|x| + |loc|), which moves z^2 / 2 by |z| times that / scale.
        return [z * z / 2, np.log(p["scale"]), 1.0, z * (np.abs(x) + np.abs(p["loc"])) / p["scale"]]
    a, b = p["concentration"], p["rate"]
    return [a * np.log(b), (a - 1) * np.log(x), b * x, sp.gammaln(a)]


def entropy_terms(name, p):
    if name == "Normal":
        return [np.log(p["scale"]), 1.5]
    a, b = p["concentration"], p["rate"]
    return [a, np.log(b), sp.gammaln(a), (1 - a) * sp.digamma(a)]


def grid_params(name, dtype):
    p = {k: np.asarray(v, dtype=dtype) for k, v in GRIDS[name].items()}
    return p, {k: v.astype(np.float64) for k, v in p.items()}


def make(name, **params):
    return getattr(D, name)(**params)


# ---- log_prob, entropy, mean, variance against scipy ----------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_matches_scipy(name, dtype):
    p, p64 = grid_params(name, dtype)
    x = grid_values(name, p64).astype(dtype)
    x64 = x.astype(np.float64)
    lp = make(name, **p).log_prob(x)
    assert lp.dtype == dtype and lp.shape == x.shape
    expected = scipy_ref(name, p64).logpdf(x64)
    assert np.isfinite(expected).all()
    if dtype == np.float64:
        np.testing.assert_allclose(lp.data, expected, rtol=1e-10, atol=1e-12)
    else:
        tol = f32_tol(*log_prob_terms(name, p64, x64))
        assert (np.abs(lp.data - expected) <= tol).all(), np.max(np.abs(lp.data - expected) / tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", FAMILIES)
def test_entropy_mean_variance_stddev_match_scipy(name, dtype):
    p, p64 = grid_params(name, dtype)
    d = make(name, **p)
    ref = scipy_ref(name, p64)
    for got in (d.entropy(), d.mean, d.variance, d.stddev):
        assert got.dtype == dtype and got.shape == d.batch_shape
    rtol = 1e-12 if dtype == np.float64 else 1e-6  # a handful of roundings, relative
    if dtype == np.float64:
        np.testing.assert_allclose(d.entropy().data, ref.entropy(), rtol=1e-10, atol=1e-12)
    else:
        assert (np.abs(d.entropy().data - ref.entropy()) <= f32_tol(*entropy_terms(name, p64))).all()
    np.testing.assert_allclose(d.mean.data, ref.mean(), rtol=rtol)
    np.testing.assert_allclose(d.variance.data, ref.var(), rtol=rtol)
    np.testing.assert_allclose(d.stddev.data, ref.std(), rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
def test_gamma_log_prob_at_zero_matches_scipy(a, dtype):
    lp = D.Gamma(np.asarray(a, dtype), np.asarray(2.0, dtype)).log_prob(np.zeros((), dtype))
    expected = st.gamma(a, scale=0.5).logpdf(0.0)  # +inf, log 2, -inf
    assert not np.isnan(lp.data)
    np.testing.assert_allclose(lp.data, expected, rtol=1e-6)


def test_values_outside_the_support_give_minus_inf_or_raise_under_validation():
    d = D.Gamma(np.array([0.5, 2.0]), 3.0)
    lp = d.log_prob(np.array([-1e-300, -1.0, -np.inf])[:, None])
    assert lp.shape == (3, 2) and (lp.data == -np.inf).all()
    strict = D.Gamma(np.array([0.5, 2.0]), 3.0, validate_args=True)
    assert np.isfinite(strict.log_prob(0.5).data).all()
    for v in (-1e-300, -1.0):
        with pytest.raises(ValueError, match="outside the support"):
            strict.log_prob(v)
    # The Normal's support is the whole line: infinitely far away the density is 0.
    np.testing.assert_array_equal(D.Normal(0.0, 1.0).log_prob(np.array([-np.inf, np.inf])).data, -np.inf)


# ---- invalid parameters ----------------------------------------------------------------------

INVALID = [
    (lambda: D.Normal(0.0, 0.0), ["'scale'"]),
    (lambda: D.Normal(0.0, np.array([1.0, -2.0])), ["'scale'", "-2"]),
    (lambda: D.Normal(np.nan, 1.0), ["'loc'"]),
    (lambda: D.Normal(np.inf, 1.0), ["'loc'"]),
    (lambda: D.Normal(np.zeros(3), np.ones(4)), ["loc", "scale", "(3,)", "(4,)"]),
    (lambda: D.Gamma(0.0, 1.0), ["'concentration'"]),
    (lambda: D.Gamma(-1.0, 1.0), ["'concentration'"]),
    (lambda: D.Gamma(1.0, -1.0), ["'rate'"]),
    (lambda: D.Gamma(1.0, np.inf), ["'rate'"]),
    (lambda: D.Gamma(np.ones((2, 3)), np.ones(2)), ["concentration", "rate", "(2, 3)", "(2,)"]),
]


@pytest.mark.parametrize("build,fragments", INVALID)
def test_invalid_parameters_raise_value_error_naming_them(build, fragments):
    with pytest.raises(ValueError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value)


# ---- shapes, broadcasting, dtypes ------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_and_broadcasting(name):
    first, second = (np.array([[0.5], [1.0], [2.0]]), np.array([0.5, 1.0, 3.0, 9.0]))
    d = make(name, **dict(zip(GRIDS[name], (first, second))))
    assert d.batch_shape == (3, 4) and d.event_shape == ()
    x = d.sample((2, 5), rng=rng())
    assert x.shape == (2, 5, 3, 4)
    assert d.sample(7, rng=rng()).shape == (7, 3, 4)
    assert d.rsample(rng=rng()).shape == (3, 4)
    assert d.log_prob(x).shape == (2, 5, 3, 4)
    assert d.log_prob(x.data[0, 0, 0]).shape == (3, 4)  # a (4,) value broadcasts over the batch
    assert d.entropy().shape == d.mean.shape == d.variance.shape == (3, 4)
    p = {k: np.broadcast_to(v, (3, 4)) for k, v in zip(GRIDS[name], (first, second))}
    np.testing.assert_allclose(d.log_prob(x).data, scipy_ref(name, p).logpdf(x.data), rtol=1e-10)
    # Each batch element is drawn from its own parameters: per-column sample means.
    many = d.sample((20_000,), rng=rng(1)).data
    ref = scipy_ref(name, p)
    assert (np.abs(many.mean(0) - ref.mean()) <= Z * ref.std() / np.sqrt(20_000)).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_float32_parameters_give_float32_everything(name):
    params = {k: scg.tensor(np.asarray(v[2], np.float32), requires_grad=True) for k, v in GRIDS[name].items()}
    d = make(name, **params)
    x = d.rsample((4,), rng=rng())
    assert x.dtype == np.float32 and d.sample(rng=rng()).dtype == np.float32
    for t in (d.log_prob(x), d.entropy(), d.mean, d.variance):
        assert t.dtype == np.float32
    grads = scg.grad(scg.sum(x * x) + scg.sum(d.log_prob(x.detach())), list(params.values()))
    for g in grads:
        assert g.dtype == np.float32 and np.isfinite(g.data).all()


def test_has_rsample_and_sample_carries_no_gradient():
    s = scg.tensor(2.0, requires_grad=True)
    for d in (D.Normal(s, s), D.Gamma(s, s)):
        assert d.has_rsample and not d.has_enumerate_support
        assert not d.sample((3,), rng=rng()).requires_grad
        assert d.rsample((3,), rng=rng()).requires_grad


def test_samples_are_reproducible_from_the_seed():
    for build in (lambda: D.Normal(1.0, 2.0), lambda: D.Gamma(0.5, 2.0)):
        same = build().sample((5,), rng=rng(3)).data
        np.testing.assert_array_equal(build().sample((5,), rng=rng(3)).data, same)
        scg.manual_seed(11)
        first = build().sample((5,)).data
        scg.manual_seed(11)
        np.testing.assert_array_equal(build().sample((5,)).data, first)
        assert not np.array_equal(build().sample((5,)).data, first)


# ---- sample moments --------------------------------------------------------------------------


def assert_moments(x, mean, var, kurtosis_excess):
    """Sample mean and variance (axis 0) within Z standard errors of the analytic ones.

    SE of the mean is sqrt(var / n); SE of the sample variance is
    sqrt((mu4 - var^2) / n) = var sqrt((kurtosis_excess + 2) / n)."""
    n = x.shape[0]
    x = x.astype(np.float64)
    se_mean = np.sqrt(var / n)
    se_var = var * np.sqrt((kurtosis_excess + 2) / n)
    assert (np.abs(x.mean(0) - mean) <= Z * se_mean).all(), (x.mean(0) - mean) / se_mean
    assert (np.abs(x.var(0, ddof=1) - var) <= Z * se_var).all(), (x.var(0, ddof=1) - var) / se_var


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", FAMILIES)
def test_sample_moments(name, dtype):
    p, p64 = grid_params(name, dtype)
    x = make(name, **p).sample((100_000,), rng=rng(1)).data
    assert x.dtype == dtype
    mean, var, kurt = scipy_ref(name, p64).stats(moments="mvk")
    assert_moments(x, mean, var, kurt)
    if name == "Gamma":
        assert (x > 0).all()


# ---- reparameterized gradients against the analytic expectation ------------------------------


def finite_differences(expectation, p, wrt, rel_step=1e-4):
    """First and second central differences of ``expectation(**p)`` in parameter ``wrt``."""
    h = rel_step * abs(p[wrt])

    def e(shift):
        return expectation(**{**p, wrt: p[wrt] + shift})

    return (e(h) - e(-h)) / (2 * h), (e(h) - 2 * e(0.0) + e(-h)) / h**2


def per_sample_derivatives(name, p, wrt, f, n, seed, dtype=np.float64):
    """First and second derivatives of f(z) in ``wrt``, one per sample.

    Every sample gets its own copy of the parameters (a batch of n), so the gradient
    of sum_i f(z_i) with respect to the copies is the vector of per-sample derivatives.
    """
    params = {k: scg.tensor(np.full(n, v, dtype=dtype), requires_grad=True) for k, v in p.items()}
    z = make(name, **params).rsample(rng=rng(seed))
    (g1,) = scg.grad(scg.sum(f(z)), [params[wrt]], create_graph=True)
    (g2,) = scg.grad(scg.sum(g1), [params[wrt]])
    return g1.data, g2.data


def assert_mean_within_se(samples, expected, fd_error=1e-6):
    se = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(samples.mean() - expected) <= Z * se + fd_error * (1 + abs(expected)), (
        samples.mean(), expected, se)


def _square(z):
    return z * z


def _identity(z):
    return z


def _normal_moment2(loc, scale):
    return st.norm(loc, scale).moment(2)  # loc^2 + scale^2


def _gamma_mean(concentration, rate):
    return st.gamma(concentration, scale=1 / rate).mean()  # a / b


def _gamma_moment2(concentration, rate):
    return st.gamma(concentration, scale=1 / rate).moment(2)  # a (a + 1) / b^2


# (family, parameters, parameter differentiated, f, E[f(z)] as a function of the parameters)
PATHWISE = [
    ("Normal", dict(loc=0.5, scale=1.5), "scale", _square, _normal_moment2),  # 2 sigma; 2
    ("Normal", dict(loc=0.5, scale=1.5), "loc", _square, _normal_moment2),  # 2 mu; 2
    ("Gamma", dict(concentration=2.0, rate=3.0), "concentration", _identity, _gamma_mean),  # 1/b; 0
    ("Gamma", dict(concentration=2.0, rate=3.0), "rate", _identity, _gamma_mean),  # -a/b^2; 2a/b^3
    ("Gamma", dict(concentration=0.3, rate=1.0), "concentration", _identity, _gamma_mean),
    ("Gamma", dict(concentration=0.5, rate=1.0), "concentration", _square, _gamma_moment2),  # 2a+1; 2
    ("Gamma", dict(concentration=3.0, rate=1.0), "concentration", _square, _gamma_moment2),
    ("Gamma", dict(concentration=0.7, rate=2.0), "rate", _square, _gamma_moment2),
]


@pytest.mark.parametrize("name,p,wrt,f,expectation", PATHWISE,
                         ids=[f"{c[0]}-{c[2]}-{list(c[1].values())}-{c[3].__name__}" for c in PATHWISE])
def test_pathwise_gradients_match_the_analytic_expectation(name, p, wrt, f, expectation):
    g1, g2 = per_sample_derivatives(name, p, wrt, f, n=20_000, seed=5)
    d1, d2 = finite_differences(expectation, p, wrt)
    assert_mean_within_se(g1, d1)
    assert_mean_within_se(g2, d2)


def test_finite_differences_reproduce_the_closed_forms():
    """The reference derivatives above against the closed forms (guards the helper)."""
    np.testing.assert_allclose(finite_differences(_normal_moment2, dict(loc=0.5, scale=1.5), "scale"),
                               [3.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(finite_differences(_gamma_mean, dict(concentration=2.0, rate=3.0), "rate"),
                               [-2 / 9, 4 / 27], rtol=1e-6)
    np.testing.assert_allclose(finite_differences(_gamma_moment2, dict(concentration=3.0, rate=1.0),
                                                  "concentration"), [7.0, 2.0], rtol=1e-6)


def test_normal_pathwise_gradient_is_exact_per_sample():
    g1, g2 = per_sample_derivatives("Normal", dict(loc=0.5, scale=1.5), "scale", _square, 5, seed=0)
    eps = rng(0).standard_normal(5)  # the draws behind z = loc + scale eps
    np.testing.assert_allclose(g1, 2 * (0.5 + 1.5 * eps) * eps, rtol=1e-12)
    np.testing.assert_allclose(g2, 2 * eps**2, rtol=1e-12)


@pytest.mark.parametrize("index", [0, 3, 5], ids=["Normal", "Gamma-rate", "Gamma-concentration"])
def test_float32_pathwise_gradients(index):
    name, p, wrt, f, expectation = PATHWISE[index]
    g1, g2 = per_sample_derivatives(name, p, wrt, f, n=20_000, seed=6, dtype=np.float32)
    assert g1.dtype == g2.dtype == np.float32
    d1, d2 = finite_differences(expectation, p, wrt)
    assert_mean_within_se(g1.astype(np.float64), d1, fd_error=1e-5)
    assert_mean_within_se(g2.astype(np.float64), d2, fd_error=1e-5)


# ---- Gamma's implicit gradient, sample by sample ---------------------------------------------


def _inverse_cdf_derivatives(alpha, z):
    """dz/dalpha and d2z/dalpha2 at fixed u = P(alpha, z), from scipy's gammaincinv.

    Central differences with Richardson extrapolation; the step shrinks with |log z|
    because derivatives in alpha grow like (log z / alpha)^n for tiny z."""
    u = sp.gammainc(alpha, z)
    h = 1e-2 * alpha / (1 + np.abs(np.log(z)))

    def inv(shift):
        return sp.gammaincinv(alpha + shift, u)

    def d1(h):
        return (inv(h) - inv(-h)) / (2 * h)

    def d2(h):
        return (inv(h) - 2 * inv(0) + inv(-h)) / h**2

    np.testing.assert_allclose(inv(0), z, rtol=1e-12)  # the inversion itself is accurate
    return (4 * d1(h / 2) - d1(h)) / 3, (4 * d2(h / 2) - d2(h)) / 3


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0, 500.0])
def test_gamma_implicit_gradient_matches_the_inverse_cdf(alpha):
    m = 60
    a = scg.tensor(np.full(m, alpha), requires_grad=True)
    z = D.Gamma(a, 1.0).rsample(rng=rng(int(alpha * 10)))
    (g1,) = scg.grad(scg.sum(z), [a], create_graph=True)
    (g2,) = scg.grad(scg.sum(g1), [a])
    d1, d2 = _inverse_cdf_derivatives(alpha, z.data)
    np.testing.assert_allclose(g1.data, d1, rtol=1e-7)
    # The second difference is accurate to ~1e-6 of its typical size; some samples sit
    # near its zero crossing, so the tolerance is relative to the median magnitude.
    np.testing.assert_allclose(g2.data, d2, rtol=1e-5, atol=1e-5 * np.median(np.abs(d2)))


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0, 500.0])
def test_gamma_implicit_gradient_float32(alpha):
    m = 60
    a = scg.tensor(np.full(m, alpha, dtype=np.float32), requires_grad=True)
    z = D.Gamma(a, np.float32(1.0)).rsample(rng=rng(1))
    (g1,) = scg.grad(scg.sum(z), [a])
    assert z.dtype == g1.dtype == np.float32
    d1, _ = _inverse_cdf_derivatives(np.float64(np.float32(alpha)), z.data.astype(np.float64))
    np.testing.assert_allclose(g1.data, d1, rtol=1e-5)  # computed in float64, rounded to float32


def test_gamma_rate_gradient_is_exact_per_sample():
    """z = G / b with G independent of b: dz/db = -z/b and d2z/db2 = 2z/b^2 exactly."""
    g1, g2 = per_sample_derivatives("Gamma", dict(concentration=2.0, rate=3.0), "rate", _identity, 6, seed=0)
    z = rng(0).standard_gamma(2.0, size=6) / 3.0
    np.testing.assert_allclose(g1, -z / 3.0, rtol=1e-12)
    np.testing.assert_allclose(g2, 2 * z / 9.0, rtol=1e-12)
