"""LogNormal, Laplace, StudentT, Cauchy and HalfNormal against scipy.stats.

Expected values come from ``scipy.stats`` / ``scipy.special`` or closed forms written
out here, never from the code under test. Statistical checks use fixed seeds and allow
``Z = 4`` standard errors: empirical CDFs at scipy's quantiles (sqrt(q(1-q)/n), which
works for the heavy-tailed families too), sample means (sd/sqrt(n)) and variances
(sqrt((mu4 - sigma^4)/n), mu4 from scipy's kurtosis) where they exist.

float32 tolerances as in test_continuous.py: ``8 eps32 (1 + sum |term|)`` over the
magnitudes a float32 evaluation sums, with scipy evaluated at the float32-rounded
parameters and values.
"""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import scg
import scg.distributions as D

EPS32 = float(np.finfo(np.float32).eps)
Z = 4.0


def rng(seed=0):
    return np.random.default_rng(seed)


def f32_tol(*terms):
    return 8 * EPS32 * (1 + sum(np.abs(np.asarray(t, dtype=np.float64)) for t in terms))


GRIDS = {
    "LogNormal": dict(loc=[0.0, -1.0, 2.0, 0.3, 5.0], scale=[1.0, 0.1, 2.0, 0.5, 0.05]),
    "Laplace": dict(loc=[0.0, -3.0, 10.0, 1e3, 0.5], scale=[1.0, 0.1, 4.0, 2.0, 1e-3]),
    "StudentT": dict(df=[0.5, 1.0, 2.5, 5.0, 30.0, 300.0], loc=[0.0, -2.0, 1.0, 0.5, 10.0, -1.0],
                     scale=[1.0, 0.5, 3.0, 0.1, 2.0, 1.0]),
    "Cauchy": dict(loc=[0.0, -3.0, 10.0, 0.5], scale=[1.0, 0.1, 4.0, 1e-3]),
    "HalfNormal": dict(scale=[1.0, 0.1, 4.0, 1e3]),
}
FAMILIES = list(GRIDS)


def scipy_ref(name, p):
    if name == "LogNormal":
        return st.lognorm(s=p["scale"], scale=np.exp(p["loc"]))
    if name == "Laplace":
        return st.laplace(p["loc"], p["scale"])
    if name == "StudentT":
        return st.t(p["df"], p["loc"], p["scale"])
    if name == "Cauchy":
        return st.cauchy(p["loc"], p["scale"])
    return st.halfnorm(scale=p["scale"])


def grid_values(name, p):
    """Points inside the support for each parameter setting: shape (Q, P)."""
    u = np.array([-6.0, -1.5, -0.2, 0.0, 0.7, 3.0, 25.0])[:, None]
    if name == "LogNormal":
        return np.exp(p["loc"] + p["scale"] * u)
    if name == "HalfNormal":
        return p["scale"] * np.abs(u) + p["scale"] * 1e-3
    return p["loc"] + p["scale"] * u


def log_prob_terms(name, p, x):
    """Magnitudes summed in a float32 evaluation (including rounding carried through z)."""
    if name == "LogNormal":
        ly = np.log(x)
        z = (ly - p["loc"]) / p["scale"]
        return [ly, z * z, np.abs(z) * (np.abs(ly) + np.abs(p["loc"])) / p["scale"], np.log(p["scale"])]
    if name == "HalfNormal":
        return [(x / p["scale"]) ** 2, np.log(p["scale"])]
    z = (x - p["loc"]) / p["scale"]
    spread = (np.abs(x) + np.abs(p["loc"])) / p["scale"]
    if name == "Laplace":
        return [z, spread, np.log(p["scale"])]
    if name == "Cauchy":
        return [np.log1p(z * z), spread, np.log(p["scale"])]
    nu = p["df"]
    return [sp.gammaln((nu + 1) / 2), sp.gammaln(nu / 2), np.log(nu), np.log(p["scale"]),
            (nu + 1) / 2 * np.log1p(z * z / nu), (nu + 1) * spread]


def entropy_terms(name, p):
    terms = [np.log(p["scale"]), 2.0]
    if name == "LogNormal":
        terms.append(p["loc"])
    if name == "StudentT":
        nu = p["df"]
        terms += [sp.gammaln(nu / 2), sp.gammaln((nu + 1) / 2), np.log(nu),
                  (nu + 1) / 2 * sp.digamma((nu + 1) / 2), (nu + 1) / 2 * sp.digamma(nu / 2)]
    return terms


def grid_params(name, dtype):
    p = {k: np.asarray(v, dtype=dtype) for k, v in GRIDS[name].items()}
    return p, {k: v.astype(np.float64) for k, v in p.items()}


def make(name, **params):
    return getattr(D, name)(**params)


# ---- values against scipy --------------------------------------------------------------------


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
def test_entropy_mean_variance_match_scipy(name, dtype):
    p, p64 = grid_params(name, dtype)
    d = make(name, **p)
    ref = scipy_ref(name, p64)
    for got in (d.entropy(), d.mean, d.variance):
        assert got.dtype == dtype and got.shape == d.batch_shape
    mean, var = ref.mean(), ref.var()
    if name == "Cauchy":  # scipy says NaN for both; torch (and scg) an infinite variance
        assert np.isnan(mean).all() and np.isnan(d.mean.data).all()
        assert (d.variance.data == np.inf).all()
        mean, var = d.mean.data, d.variance.data
    keep = p64["df"] > 1 if name == "StudentT" else slice(None)  # df <= 1: see the test below
    mean, var = np.asarray(mean)[keep], np.asarray(var)[keep]
    if dtype == np.float64:
        np.testing.assert_allclose(d.entropy().data, ref.entropy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.mean.data[keep], mean, rtol=1e-12)
        np.testing.assert_allclose(d.variance.data[keep], var, rtol=1e-12)
    else:
        tol = f32_tol(*entropy_terms(name, p64))
        assert (np.abs(d.entropy().data - ref.entropy()) <= tol).all()
        np.testing.assert_allclose(d.mean.data[keep], mean, rtol=4e-6)
        np.testing.assert_allclose(d.variance.data[keep], var, rtol=4e-6)


def test_student_t_mean_and_variance_where_they_do_not_exist():
    d = D.StudentT(np.array([0.5, 1.0, 1.5, 2.0, 2.5]), 3.0, 2.0)
    ref = st.t(np.array([0.5, 1.0, 1.5, 2.0, 2.5]), 3.0, 2.0)
    np.testing.assert_array_equal(np.isnan(d.mean.data), [True, True, False, False, False])
    np.testing.assert_allclose(d.mean.data[2:], 3.0)
    np.testing.assert_array_equal(d.variance.data[2:4], [np.inf, np.inf])
    np.testing.assert_allclose(d.variance.data[4], 4.0 * 2.5 / 0.5)
    np.testing.assert_allclose(d.variance.data[2:], ref.var()[2:])
    assert np.isnan(d.variance.data[:2]).all()


def test_half_normal_and_log_normal_outside_the_support():
    assert (D.HalfNormal(2.0).log_prob(np.array([-1e-300, -3.0, -np.inf])).data == -np.inf).all()
    np.testing.assert_allclose(D.HalfNormal(2.0).log_prob(0.0).data, st.halfnorm(scale=2.0).logpdf(0.0))
    lp = D.LogNormal(0.5, 1.5).log_prob(np.array([-1.0, 0.0, -np.inf]))
    assert (lp.data == -np.inf).all()
    for d in (D.HalfNormal(2.0, validate_args=True), D.LogNormal(0.5, 1.5, validate_args=True)):
        with pytest.raises(ValueError, match="outside the support"):
            d.log_prob(-1.0)
        assert np.isfinite(d.log_prob(1.0).data)


# ---- samples ---------------------------------------------------------------------------------

SAMPLE_PARAMS = {
    "LogNormal": dict(loc=[0.3, -1.0], scale=[0.4, 0.2]),
    "Laplace": dict(loc=[0.3, -4.0], scale=[2.0, 0.1]),
    "StudentT": dict(df=[1.5, 7.0], loc=[0.3, -4.0], scale=[2.0, 0.5]),
    "Cauchy": dict(loc=[0.3, -4.0], scale=[2.0, 0.1]),
    "HalfNormal": dict(scale=[0.5, 3.0]),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", FAMILIES)
def test_sample_distribution_and_moments(name, dtype):
    n = 40_000
    p = {k: np.asarray(v, dtype=dtype) for k, v in SAMPLE_PARAMS[name].items()}
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    ref = scipy_ref(name, p64)
    x = make(name, **p).sample((n,), rng=rng(11)).data
    assert x.shape == (n, 2) and x.dtype == dtype
    x = x.astype(np.float64)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        ecdf = (x <= ref.ppf(q)).mean(axis=0)
        assert (np.abs(ecdf - q) <= Z * np.sqrt(q * (1 - q) / n)).all(), (q, ecdf)
    m, v, _, k = (np.asarray(a) for a in ref.stats(moments="mvsk"))
    for j in range(2):
        if name == "Cauchy" or (name == "StudentT" and p64["df"][j] <= 4):
            continue  # no finite variance (or fourth moment) to set the standard error
        assert abs(x[:, j].mean() - m[j]) <= Z * np.sqrt(v[j] / n)
        mu4 = (k[j] + 3) * v[j] ** 2
        assert abs(x[:, j].var(ddof=1) - v[j]) <= Z * np.sqrt((mu4 - v[j] ** 2) / n)


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_rsample_and_reproducibility(name):
    p = {k: np.asarray(v)[:, None] * np.ones(3) for k, v in SAMPLE_PARAMS[name].items()}  # batch (2, 3)
    d = make(name, **p)
    assert d.batch_shape == (2, 3) and d.event_shape == () and d.has_rsample
    assert not d.has_enumerate_support
    x = d.rsample((4, 5), rng=rng(1))
    assert x.shape == (4, 5, 2, 3)
    assert d.log_prob(x).shape == (4, 5, 2, 3)
    np.testing.assert_array_equal(d.sample((4, 5), rng=rng(1)).data, x.data)
    expected = scipy_ref(name, {k: np.broadcast_to(v, (2, 3)) for k, v in p.items()}).logpdf(x.data)
    np.testing.assert_allclose(d.log_prob(x).data, expected, rtol=1e-10)


@pytest.mark.parametrize("name", FAMILIES)
def test_float32_parameters_give_float32_everything(name):
    params = {k: scg.tensor(np.float32(v[0]), requires_grad=True) for k, v in SAMPLE_PARAMS[name].items()}
    d = make(name, **params)
    x = d.rsample((4,), rng=rng())
    assert x.dtype == np.float32 and d.sample(rng=rng()).dtype == np.float32
    for t in (d.log_prob(x), d.entropy(), d.mean, d.variance):
        assert t.dtype == np.float32
    grads = scg.grad(scg.sum(x * x) + scg.sum(d.log_prob(x.detach())), list(params.values()))
    for g in grads:
        assert g.dtype == np.float32 and np.isfinite(g.data).all()
    # Python-number parameters follow a float32 value
    plain = make(name, **{k: float(v[0]) for k, v in SAMPLE_PARAMS[name].items()})
    assert plain.log_prob(x.detach()).dtype == np.float32


# ---- gradients: log_prob and rsample at first and second order --------------------------------

GRAD_PARAMS = {
    "LogNormal": (dict(loc=[0.3, -1.0], scale=[0.7, 1.4]), [0.5, 2.5]),
    "Laplace": (dict(loc=[0.3, -1.0], scale=[0.7, 1.4]), [1.5, -2.0]),
    "StudentT": (dict(df=[1.5, 7.0], loc=[0.3, -1.0], scale=[0.7, 1.4]), [1.5, -2.0]),
    "Cauchy": (dict(loc=[0.3, -1.0], scale=[0.7, 1.4]), [1.5, -2.0]),
    "HalfNormal": (dict(scale=[0.7, 1.4]), [0.5, 2.5]),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_gradcheck_second_order(name):
    p, x = GRAD_PARAMS[name]
    names = list(p)

    def f(*args):
        return make(name, **dict(zip(names, args[:-1]))).log_prob(args[-1])

    assert scg.gradcheck(f, [np.array(v) for v in p.values()] + [np.array(x)], order=2)


@pytest.mark.parametrize("name", FAMILIES)
def test_rsample_gradcheck_second_order(name):
    """Location and scale parameters (df separately below): the draw is a smooth
    function of them at fixed noise, so finite differences at a fixed seed apply."""
    p, _ = GRAD_PARAMS[name]
    fixed = {k: np.array(v) for k, v in p.items() if k == "df"}
    names = [k for k in p if k != "df"]

    def f(*args):
        d = make(name, **fixed, **dict(zip(names, args)))
        x = d.rsample((3,), rng=rng(2))
        return x * x if name != "LogNormal" else scg.log(x) ** 2  # nonlinear, so order 2 means something

    assert scg.gradcheck(f, [np.array(p[k]) for k in names], order=2)


def _student_t_df_derivatives(df, loc, scale, z, g):
    """dt/d df and d2t/d df2 at fixed Z = z and fixed u = P(df/2, g): central differences
    (Richardson-extrapolated) of scipy's gammaincinv."""
    u = sp.gammainc(df / 2, g)

    def t_of(nu):
        return loc + scale * z * np.sqrt(nu / (2 * sp.gammaincinv(nu / 2, u)))

    np.testing.assert_allclose(t_of(df), loc + scale * z * np.sqrt(df / (2 * g)), rtol=1e-12)
    h = 1e-3 * df
    d1 = lambda h: (t_of(df + h) - t_of(df - h)) / (2 * h)  # noqa: E731
    d2 = lambda h: (t_of(df + h) - 2 * t_of(df) + t_of(df - h)) / h**2  # noqa: E731
    return (4 * d1(h / 2) - d1(h)) / 3, (4 * d2(h / 2) - d2(h)) / 3


@pytest.mark.parametrize("df", [5.0, 30.0])
def test_student_t_df_gradient_matches_the_inverse_cdf(df):
    """t = loc + scale Z sqrt(df / (2 G)), G ~ Gamma(df/2, 1): implicit reparameterization
    holds Z and the CDF level u = P(df/2, G) fixed. The (Z, G) pairs are redrawn from the
    same seed (normal draws first, then the Gamma draws, for df/2 >= 1)."""
    m, loc, scale = 40, 0.5, 1.5
    a = scg.tensor(np.full(m, df), requires_grad=True)
    t = D.StudentT(a, loc, scale).rsample(rng=rng(7))
    (g1,) = scg.grad(scg.sum(t), [a], create_graph=True)
    (g2,) = scg.grad(scg.sum(g1), [a])
    r = rng(7)
    z = r.standard_normal(m)
    g = r.standard_gamma(df / 2, size=m)
    np.testing.assert_allclose(t.data, loc + scale * z * np.sqrt(df / (2 * g)), rtol=1e-12)
    ref1, ref2 = _student_t_df_derivatives(df, loc, scale, z, g)
    np.testing.assert_allclose(g1.data, ref1, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(g2.data, ref2, rtol=1e-4, atol=1e-4 * np.median(np.abs(ref2)))


def test_student_t_df_pathwise_gradient_matches_the_expectation():
    """d/d df E[t^2] = d/d df (df / (df - 2)) = -2 / (df - 2)^2 for loc 0, scale 1."""
    n, df = 40_000, 9.0
    a = scg.tensor(np.full(n, df), requires_grad=True)
    t = D.StudentT(a).rsample(rng=rng(3))
    (g,) = scg.grad(scg.sum(t * t), [a])
    se = g.data.std(ddof=1) / np.sqrt(n)
    assert abs(g.data.mean() - (-2 / (df - 2) ** 2)) <= Z * se
    assert np.isfinite(g.data).all()


def test_student_t_df_gradient_float32():
    m, df = 8, 3.0
    a = scg.tensor(np.full(m, df, dtype=np.float32), requires_grad=True)
    t = D.StudentT(a, np.float32(0.0), np.float32(1.0)).rsample(rng=rng(4))
    (g,) = scg.grad(scg.sum(t), [a])
    assert t.dtype == g.dtype == np.float32 and np.isfinite(g.data).all()
    r = rng(4)
    z = r.standard_normal(m, dtype=np.float32).astype(np.float64)
    gam = r.standard_gamma(df / 2, size=m)
    ref1, _ = _student_t_df_derivatives(df, 0.0, 1.0, z, gam)
    np.testing.assert_allclose(g.data, ref1, rtol=1e-5, atol=1e-6)


def test_half_normal_rsample_gradient_is_exact_per_sample():
    s = scg.tensor(np.full(6, 2.0), requires_grad=True)
    y = D.HalfNormal(s).rsample(rng=rng(0))
    np.testing.assert_allclose(y.data, 2.0 * np.abs(rng(0).standard_normal(6)), rtol=1e-15)
    (g,) = scg.grad(scg.sum(y), [s])
    np.testing.assert_allclose(g.data, y.data / 2.0, rtol=1e-15)


# ---- invalid parameters ----------------------------------------------------------------------

INVALID = [
    (lambda: D.LogNormal(0.0, 0.0), ["'scale'"]),
    (lambda: D.LogNormal(np.inf, 1.0), ["'loc'"]),
    (lambda: D.LogNormal(np.zeros(2), np.ones(3)), ["loc", "scale", "(2,)", "(3,)"]),
    (lambda: D.Laplace(0.0, -1.0), ["'scale'", "-1"]),
    (lambda: D.Laplace(np.nan, 1.0), ["'loc'"]),
    (lambda: D.Laplace(0.0, np.inf), ["'scale'"]),
    (lambda: D.StudentT(0.0), ["'df'"]),
    (lambda: D.StudentT(np.array([1.0, -2.0])), ["'df'", "-2"]),
    (lambda: D.StudentT(np.inf), ["'df'"]),
    (lambda: D.StudentT(3.0, 0.0, 0.0), ["'scale'"]),
    (lambda: D.StudentT(3.0, -np.inf, 1.0), ["'loc'"]),
    (lambda: D.StudentT("x"), ["'df'"]),
    (lambda: D.Cauchy(0.0, -2.0), ["'scale'"]),
    (lambda: D.Cauchy(np.inf, 1.0), ["'loc'"]),
    (lambda: D.HalfNormal(0.0), ["'scale'"]),
    (lambda: D.HalfNormal(np.array([1.0, -0.5])), ["'scale'", "-0.5"]),
    (lambda: D.HalfNormal(np.nan), ["'scale'"]),
]


@pytest.mark.parametrize("build,fragments", INVALID)
def test_invalid_parameters_raise_value_error_naming_them(build, fragments):
    with pytest.raises(ValueError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value)
