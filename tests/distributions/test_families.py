"""What every scalar continuous family must do, checked over the table in ``families.py``:
log_prob, entropy, mean, variance and stddev against scipy in float64 and float32, the
support and its outside, invalid parameters, shapes and broadcasting, dtypes, seeds,
sample moments and quantiles (4 standard errors), and pathwise gradients of first and
second order against finite differences of scipy's analytic expectations. The
``Dirichlet`` joins the checks that do not need a scalar scipy reference.

What is particular to one family (an edge of its support, an exact per-sample gradient,
an implicit gradient) is in the module named after it."""

import numpy as np
import pytest
import scipy.stats as st
from families import (
    EXAMPLES,
    FAMILIES,
    INVALID,
    NAMES,
    Z,
    assert_mean_within_se,
    assert_moments,
    f32_tol,
    finite_differences,
    grid_params,
    identity,
    make,
    per_sample_derivatives,
    rng,
    square,
)

import scg

DTYPES = [np.float64, np.float32]


# ---- values against scipy ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_scipy(name, dtype):
    fam = FAMILIES[name]
    p, p64 = grid_params(name, dtype)
    x = fam.values(p64).astype(dtype)
    x64 = x.astype(np.float64)
    lp = make(name, **p).log_prob(x)
    assert lp.dtype == dtype and lp.shape == x.shape
    expected = fam.scipy(p64).logpdf(x64)
    assert np.isfinite(expected).all()
    if dtype == np.float64:
        np.testing.assert_allclose(lp.data, expected, rtol=1e-10, atol=1e-12)
    else:
        tol = f32_tol(*fam.log_prob_terms(p64, x64))
        assert (np.abs(lp.data - expected) <= tol).all(), np.max(np.abs(lp.data - expected) / tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_entropy_mean_variance_stddev_match_scipy(name, dtype):
    fam = FAMILIES[name]
    p, p64 = grid_params(name, dtype)
    d = make(name, **p)
    ref = fam.scipy(p64)
    for got in (d.entropy(), d.mean, d.variance, d.stddev):
        assert got.dtype == dtype and got.shape == d.batch_shape
    mean, var = ref.mean(), ref.var()
    if name == "Cauchy":  # scipy says NaN for both; torch (and scg) an infinite variance
        assert np.isnan(mean).all() and np.isnan(d.mean.data).all()
        assert (d.variance.data == np.inf).all()
        mean, var = d.mean.data, d.variance.data
    # StudentT with df <= 1 has no mean: test_location_scale_families.py checks what is returned there.
    keep = p64["df"] > 1 if name == "StudentT" else slice(None)
    mean, var = np.asarray(mean)[keep], np.asarray(var)[keep]
    rtol = 1e-12 if dtype == np.float64 else fam.f32_moment_rtol  # a handful of roundings, relative
    if dtype == np.float64:
        np.testing.assert_allclose(d.entropy().data, ref.entropy(), rtol=1e-10, atol=1e-12)
    else:
        assert (np.abs(d.entropy().data - ref.entropy()) <= f32_tol(*fam.entropy_terms(p64))).all()
    np.testing.assert_allclose(d.mean.data[keep], mean, rtol=rtol)
    np.testing.assert_allclose(d.variance.data[keep], var, rtol=rtol)
    np.testing.assert_allclose(d.stddev.data[keep], np.sqrt(var), rtol=rtol)


@pytest.mark.parametrize("name", NAMES)
def test_density_at_plus_and_minus_infinity_is_zero(name):
    # (-inf is outside the support of the families on a half-line: validation off)
    lp = make(name, **EXAMPLES[name], validate_args=False).log_prob(np.array([-np.inf, np.inf]))
    np.testing.assert_array_equal(lp.data, -np.inf)


OUTSIDE = [name for name in NAMES if FAMILIES[name].outside is not None]


@pytest.mark.parametrize("name", OUTSIDE)
def test_outside_the_support_gives_minus_inf_or_raises_under_validation(name):
    params, bad, good = FAMILIES[name].outside
    d = make(name, **params, validate_args=False)
    lp = d.log_prob(np.array(bad)[:, None])
    assert lp.shape == (len(bad),) + d.batch_shape and (lp.data == -np.inf).all()
    assert np.isfinite(d.log_prob(good).data).all()
    strict = make(name, **params)  # validation is on by default
    assert np.isfinite(strict.log_prob(good).data).all()
    for v in bad:
        with pytest.raises(ValueError, match="outside the support"):
            strict.log_prob(v)


@pytest.mark.parametrize("build,fragments", INVALID)
def test_invalid_parameters_raise_value_error_naming_them(build, fragments):
    with pytest.raises(ValueError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value)


# ---- shapes, broadcasting, dtypes, seeds -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_broadcasting(name):
    fam = FAMILIES[name]
    d = make(name, **fam.batch)
    p = {k: np.broadcast_to(v, (3, 4)) for k, v in fam.batch.items()}
    assert d.batch_shape == (3, 4) and d.event_shape == ()
    assert d.has_rsample and not d.has_enumerate_support
    x = d.sample((2, 5), rng=rng())
    assert x.shape == (2, 5, 3, 4) and fam.support(p, x.data).all()
    np.testing.assert_array_equal(d.rsample((2, 5), rng=rng()).data, x.data)  # the same draws
    assert d.sample(7, rng=rng()).shape == (7, 3, 4)
    assert d.rsample(rng=rng()).shape == (3, 4)
    assert d.log_prob(x).shape == (2, 5, 3, 4)
    # a (4,) value broadcasts over the batch (outside some elements' supports: validation off)
    assert make(name, **fam.batch, validate_args=False).log_prob(x.data[0, 0, 0]).shape == (3, 4)
    assert d.entropy().shape == d.mean.shape == d.variance.shape == (3, 4)
    # Each batch element is evaluated with its own parameters ...
    np.testing.assert_allclose(d.log_prob(x).data, fam.scipy(p).logpdf(x.data), rtol=1e-10)
    # ... and drawn from them: per-element sample means, where the variance is finite.
    n = 20_000
    many = d.sample((n,), rng=rng(1)).data
    ref = fam.scipy(p)
    with np.errstate(invalid="ignore"):  # scipy's moments of Cauchy and of StudentT(df <= 2)
        mean, sd = ref.mean(), ref.std()
    finite = np.isfinite(sd)  # nowhere for Cauchy; StudentT's df = 1.5 row has none either
    assert (np.abs(many.mean(0) - mean)[finite] <= Z * sd[finite] / np.sqrt(n)).all()


@pytest.mark.parametrize("name", NAMES + ["Dirichlet"])
def test_float32_parameters_give_float32_everything_and_only_rsample_carries_gradient(name):
    params = {k: scg.tensor(np.asarray(v, np.float32), requires_grad=True) for k, v in EXAMPLES[name].items()}
    d = make(name, **params)
    assert d.has_rsample and not d.has_enumerate_support
    x = d.rsample((4,), rng=rng())
    assert x.requires_grad and not d.sample((3,), rng=rng()).requires_grad
    assert x.dtype == np.float32 and d.sample(rng=rng()).dtype == np.float32
    for t in (d.log_prob(x), d.entropy(), d.mean, d.variance):
        assert t.dtype == np.float32
    grads = scg.grad(scg.sum(x * x) + scg.sum(d.log_prob(x.detach())), list(params.values()))
    for g in grads:
        assert g.dtype == np.float32 and np.isfinite(g.data).all()
    # Python-number parameters follow a float32 value
    plain = make(name, **EXAMPLES[name])
    assert plain.log_prob(x.detach()).dtype == np.float32


@pytest.mark.parametrize("name", NAMES + ["Dirichlet"])
def test_samples_are_reproducible_from_the_seed(name):
    def build():
        return make(name, **EXAMPLES[name])

    same = build().sample((5,), rng=rng(3)).data
    np.testing.assert_array_equal(build().sample((5,), rng=rng(3)).data, same)
    scg.manual_seed(11)
    first = build().sample((5,)).data
    scg.manual_seed(11)
    np.testing.assert_array_equal(build().sample((5,)).data, first)
    assert not np.array_equal(build().sample((5,)).data, first)


# ---- samples -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [name for name in NAMES if FAMILIES[name].grid_moments])
def test_sample_moments_over_the_grid(name, dtype):
    fam = FAMILIES[name]
    p, p64 = grid_params(name, dtype)
    x = make(name, **p).sample((100_000,), rng=rng(1)).data
    assert x.dtype == dtype
    mean, var, kurt = fam.scipy(p64).stats(moments="mvk")
    assert_moments(x, mean, var, kurt)
    assert fam.support(p, x).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_sample_quantiles_and_moments(name, dtype):
    """Empirical CDFs at scipy's quantiles (SE sqrt(q(1-q)/n), which works for the
    heavy-tailed families too); means and variances where the fourth moment is finite
    (SE of the variance sqrt((mu4 - sigma^4)/n), mu4 from scipy's kurtosis)."""
    n = 40_000
    fam = FAMILIES[name]
    p = {k: np.asarray(v, dtype=dtype) for k, v in fam.sample.items()}
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    ref = fam.scipy(p64)
    x = make(name, **p).sample((n,), rng=rng(11)).data
    assert x.shape == (n, 2) and x.dtype == dtype and fam.support(p, x).all()
    x = x.astype(np.float64)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        ecdf = (x <= ref.ppf(q)).mean(axis=0)
        assert (np.abs(ecdf - q) <= Z * np.sqrt(q * (1 - q) / n)).all(), (q, ecdf)
    with np.errstate(invalid="ignore"):  # scipy's moments of Cauchy and of StudentT(df <= 4)
        m, v, _, k = (np.broadcast_to(a, (2,)) for a in ref.stats(moments="mvsk"))
    for j in range(2):
        if not np.isfinite(k[j]):
            continue  # no finite fourth moment to set the standard error
        assert abs(x[:, j].mean() - m[j]) <= Z * np.sqrt(v[j] / n)
        mu4 = (k[j] + 3) * v[j] ** 2
        assert abs(x[:, j].var(ddof=1) - v[j]) <= Z * np.sqrt((mu4 - v[j] ** 2) / n)


# ---- gradients -----------------------------------------------------------------------------------


def _normal_moment2(loc, scale):
    return st.norm(loc, scale).moment(2)  # loc^2 + scale^2


def _gamma_mean(concentration, rate):
    return st.gamma(concentration, scale=1 / rate).mean()  # a / b


def _gamma_moment2(concentration, rate):
    return st.gamma(concentration, scale=1 / rate).moment(2)  # a (a + 1) / b^2


def _uniform_mean(low, high):
    return st.uniform(low, high - low).mean()


def _uniform_moment2(low, high):
    return st.uniform(low, high - low).moment(2)


def _beta_mean(concentration1, concentration0):
    return st.beta(concentration1, concentration0).mean()


def _beta_moment2(concentration1, concentration0):
    return st.beta(concentration1, concentration0).moment(2)


# (family, parameters, parameter differentiated, f, E[f(z)] as a function of the parameters)
PATHWISE = [
    ("Normal", dict(loc=0.5, scale=1.5), "scale", square, _normal_moment2),  # 2 sigma; 2
    ("Normal", dict(loc=0.5, scale=1.5), "loc", square, _normal_moment2),  # 2 mu; 2
    ("Gamma", dict(concentration=2.0, rate=3.0), "concentration", identity, _gamma_mean),  # 1/b; 0
    ("Gamma", dict(concentration=2.0, rate=3.0), "rate", identity, _gamma_mean),  # -a/b^2; 2a/b^3
    ("Gamma", dict(concentration=0.3, rate=1.0), "concentration", identity, _gamma_mean),
    ("Gamma", dict(concentration=0.5, rate=1.0), "concentration", square, _gamma_moment2),  # 2a+1; 2
    ("Gamma", dict(concentration=3.0, rate=1.0), "concentration", square, _gamma_moment2),
    ("Gamma", dict(concentration=0.7, rate=2.0), "rate", square, _gamma_moment2),
    ("Exponential", dict(rate=2.5), "rate", identity, lambda rate: st.expon(scale=1 / rate).mean()),
    ("Exponential", dict(rate=0.7), "rate", square, lambda rate: st.expon(scale=1 / rate).moment(2)),
    ("Uniform", dict(low=-1.0, high=2.0), "low", identity, _uniform_mean),
    ("Uniform", dict(low=-1.0, high=2.0), "high", identity, _uniform_mean),
    ("Uniform", dict(low=0.5, high=2.0), "low", square, _uniform_moment2),
    ("Uniform", dict(low=0.5, high=2.0), "high", square, _uniform_moment2),
    ("Beta", dict(concentration1=2.0, concentration0=3.0), "concentration1", identity, _beta_mean),
    ("Beta", dict(concentration1=2.0, concentration0=3.0), "concentration0", identity, _beta_mean),
    ("Beta", dict(concentration1=0.5, concentration0=1.5), "concentration1", identity, _beta_mean),
    ("Beta", dict(concentration1=4.0, concentration0=0.7), "concentration0", square, _beta_moment2),
]
PATHWISE_IDS = [f"{c[0]}-{c[2]}-{list(c[1].values())}-{c[3].__name__}" for c in PATHWISE]


@pytest.mark.parametrize("name,p,wrt,f,expectation", PATHWISE, ids=PATHWISE_IDS)
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
    d1, d2 = finite_differences(lambda rate: st.expon(scale=1 / rate).mean(), dict(rate=2.5), "rate")
    np.testing.assert_allclose([d1, d2], [-1 / 2.5**2, 2 / 2.5**3], rtol=1e-6)
    d1, _ = finite_differences(lambda a, b: st.beta(a, b).mean(), dict(a=2.0, b=3.0), "a")
    np.testing.assert_allclose(d1, 3 / 25, rtol=1e-7)


FLOAT32_PATHWISE = [0, 3, 5, 8, 12, 14]


@pytest.mark.parametrize("index", FLOAT32_PATHWISE, ids=[PATHWISE_IDS[i] for i in FLOAT32_PATHWISE])
def test_float32_pathwise_gradients(index):
    name, p, wrt, f, expectation = PATHWISE[index]
    g1, g2 = per_sample_derivatives(name, p, wrt, f, n=20_000, seed=6, dtype=np.float32)
    assert g1.dtype == g2.dtype == np.float32
    d1, d2 = finite_differences(expectation, p, wrt)
    assert_mean_within_se(g1.astype(np.float64), d1, fd_error=1e-5)
    assert_mean_within_se(g2.astype(np.float64), d2, fd_error=1e-5)


GRADCHECK = [name for name in NAMES if FAMILIES[name].gradcheck is not None]


@pytest.mark.parametrize("name", GRADCHECK)
def test_log_prob_gradcheck_second_order(name):
    p, x = FAMILIES[name].gradcheck
    names = list(p)

    def f(*args):
        return make(name, **dict(zip(names, args[:-1]))).log_prob(args[-1])

    assert scg.gradcheck(f, [np.array(v) for v in p.values()] + [np.array(x)], order=2)


@pytest.mark.parametrize("name", GRADCHECK)
def test_rsample_gradcheck_second_order(name):
    """Location and scale parameters (StudentT's df in test_location_scale_families.py): the draw is a
    smooth function of them at fixed noise, so finite differences at a fixed seed apply."""
    p, _ = FAMILIES[name].gradcheck
    fixed = {k: np.array(v) for k, v in p.items() if k == "df"}
    names = [k for k in p if k != "df"]

    def f(*args):
        d = make(name, **fixed, **dict(zip(names, args)))
        x = d.rsample((3,), rng=rng(2))
        return x * x if name != "LogNormal" else scg.log(x) ** 2  # nonlinear, so order 2 means something

    assert scg.gradcheck(f, [np.array(p[k]) for k in names], order=2)
