"""Exponential, Uniform, Beta and Dirichlet against scipy and analytic formulas.

Expected values come from ``scipy.stats`` / ``scipy.special`` or from closed forms
written out here, never from the code under test. Statistical checks use fixed
seeds and allow ``Z = 4`` standard errors, computed from the analytic moments
(sample means, variances) or from the per-sample pathwise gradients (gradient
means). Reparameterized gradients are compared with central finite differences
of the analytic expectation, taken from scipy.

float32 tolerances: a float32 evaluation of a sum of a handful of terms, each
computed with at most a few rounding errors, is accurate to a few float32 ulps
of the sum of the terms' magnitudes; the tests allow ``8 eps32 (1 + sum |term|)``
and evaluate scipy at the float32-rounded parameters and values (so rounding of
the inputs themselves is not counted as error).
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


# ---- the scalar families: parameter grids, scipy references, float32 error scales ----------

# Each family's parameters as equal-length 1-D lists: one batch of parameter settings.
GRIDS = {
    "Exponential": dict(rate=[0.05, 0.5, 1.0, 3.0, 40.0]),
    "Uniform": dict(low=[-3.0, 0.0, 0.25, 1e3, -1e-3], high=[-1.0, 1.0, 0.5, 1e3 + 7, 2.0]),
    "Beta": dict(
        concentration1=[0.1, 0.5, 1.0, 1.0, 2.0, 5.0, 30.0, 0.7],
        concentration0=[0.3, 0.5, 1.0, 3.0, 2.0, 0.8, 60.0, 40.0],
    ),
}
SCALAR_FAMILIES = list(GRIDS)


def scipy_ref(name, p):
    """The scipy.stats frozen distribution with the same parameters (float64 arrays)."""
    if name == "Exponential":
        return st.expon(scale=1 / p["rate"])
    if name == "Uniform":
        return st.uniform(loc=p["low"], scale=p["high"] - p["low"])
    if name == "Beta":
        return st.beta(p["concentration1"], p["concentration0"])
    raise KeyError(name)


def grid_values(name, p):
    """Points inside the support for each parameter setting: shape (Q, P)."""
    if name == "Exponential":
        return np.array([0.0, 1e-3, 0.5, 1.0, 4.0, 30.0])[:, None] / p["rate"]
    if name == "Uniform":
        return p["low"] + (p["high"] - p["low"]) * np.array([0.0, 0.1, 0.5, 0.9, 0.999])[:, None]
    if name == "Beta":
        return np.broadcast_to(np.array([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6])[:, None],
                               (7, len(p["concentration1"])))
    raise KeyError(name)


def log_prob_terms(name, p, x):
    """The magnitudes a float32 log_prob evaluation sums (for ``f32_tol``)."""
    if name == "Exponential":
        return [np.log(p["rate"]), p["rate"] * x]
    if name == "Uniform":
        w = p["high"] - p["low"]
        return [np.log(w), (abs(p["high"]) + abs(p["low"])) / w]  # the subtraction's rounding
    a, b = p["concentration1"], p["concentration0"]
    return [(a - 1) * np.log(x), (b - 1) * np.log1p(-x), b - 1, sp.gammaln(a), sp.gammaln(b),
            sp.gammaln(a + b)]


def entropy_terms(name, p):
    if name == "Exponential":
        return [np.log(p["rate"])]
    if name == "Uniform":
        w = p["high"] - p["low"]
        return [np.log(w), (abs(p["high"]) + abs(p["low"])) / w]
    a, b = p["concentration1"], p["concentration0"]
    return [sp.gammaln(a), sp.gammaln(b), sp.gammaln(a + b), (a - 1) * sp.digamma(a),
            (b - 1) * sp.digamma(b), (a + b - 2) * sp.digamma(a + b)]


def grid_params(name, dtype):
    """(params in ``dtype``, the same values in float64) for the family's grid."""
    p = {k: np.asarray(v, dtype=dtype) for k, v in GRIDS[name].items()}
    return p, {k: v.astype(np.float64) for k, v in p.items()}


def make(name, **params):
    return getattr(D, name)(**params)


# ---- log_prob, entropy, mean, variance against scipy ----------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", SCALAR_FAMILIES)
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
@pytest.mark.parametrize("name", SCALAR_FAMILIES)
def test_entropy_mean_variance_match_scipy(name, dtype):
    p, p64 = grid_params(name, dtype)
    d = make(name, **p)
    ref = scipy_ref(name, p64)
    for got in (d.entropy(), d.mean, d.variance):
        assert got.dtype == dtype and got.shape == d.batch_shape
    if dtype == np.float64:
        np.testing.assert_allclose(d.entropy().data, ref.entropy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.mean.data, ref.mean(), rtol=1e-12)
        np.testing.assert_allclose(d.variance.data, ref.var(), rtol=1e-12)
    else:
        tol = f32_tol(*entropy_terms(name, p64))
        assert (np.abs(d.entropy().data - ref.entropy()) <= tol).all()
        # A mean or variance is a handful of float32 operations: a few ulps, relative.
        np.testing.assert_allclose(d.mean.data, ref.mean(), rtol=1e-6)
        np.testing.assert_allclose(d.variance.data, ref.var(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("b", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
def test_beta_log_prob_at_0_and_1_matches_scipy(a, b, dtype):
    lp = D.Beta(np.asarray(a, dtype), np.asarray(b, dtype)).log_prob(np.array([0.0, 1.0], dtype=dtype))
    expected = st.beta(a, b).logpdf([0.0, 1.0])  # +inf below 1, 0 + normalizer at 1, -inf above
    assert not np.isnan(lp.data).any()
    np.testing.assert_allclose(lp.data, expected, rtol=1e-6)  # infinities must match exactly


def test_exponential_and_uniform_at_the_edges_of_the_support():
    np.testing.assert_allclose(D.Exponential(2.5).log_prob(0.0).data, st.expon(scale=0.4).logpdf(0.0))
    u = D.Uniform(-1.0, 3.0)
    np.testing.assert_allclose(u.log_prob(-1.0).data, -np.log(4.0))  # low is inside
    assert u.log_prob(3.0).data == -np.inf  # high is not (torch: low <= x < high)


# Values outside the support, for each family: the log-density there is -inf.
OUTSIDE = [
    ("Exponential", lambda: D.Exponential(np.array([0.5, 2.0])), [-1e-300, -1.0, -np.inf], 1.0),
    ("Uniform", lambda: D.Uniform(np.array([0.0, -2.0]), 1.0), [-2.5, 1.0, 7.0], 0.5),
    ("Beta", lambda: D.Beta(np.array([0.5, 2.0]), 3.0), [-1e-9, 1 + 1e-9, 5.0], 0.3),
]


@pytest.mark.parametrize("name,build,bad,good", OUTSIDE, ids=[c[0] for c in OUTSIDE])
def test_outside_the_support_gives_minus_inf_or_raises_under_validation(name, build, bad, good):
    d = build()
    lp = d.log_prob(np.array(bad)[:, None])
    assert lp.shape == (len(bad), 2) and (lp.data == -np.inf).all()
    assert np.isfinite(d.log_prob(good).data).all()
    strict = type(d)(*_params(d), validate_args=True)
    assert np.isfinite(strict.log_prob(good).data).all()
    for v in bad:
        with pytest.raises(ValueError, match="outside the support"):
            strict.log_prob(v)


def _params(d):
    names = {"Exponential": ["rate"], "Uniform": ["low", "high"],
             "Beta": ["concentration1", "concentration0"], "Dirichlet": ["concentration"]}
    return [getattr(d, n) for n in names[type(d).__name__]]


def test_default_validation_switch():
    D.Distribution.set_default_validate_args(True)
    try:
        with pytest.raises(ValueError, match="outside the support"):
            D.Exponential(1.0).log_prob(-1.0)
        with pytest.raises(ValueError, match="outside the support"):
            D.Dirichlet([1.0, 2.0]).log_prob([0.7, 0.7])
    finally:
        D.Distribution.set_default_validate_args(False)
    assert D.Exponential(1.0).log_prob(-1.0).data == -np.inf


# ---- Dirichlet: log_prob, entropy, mean, variance, the simplex ------------------------------

DIRICHLET_GRID = [[0.3, 1.0, 2.5], [1.0, 1.0, 1.0], [5.0, 0.8, 12.0], [40.0, 0.1, 0.5]]


def dirichlet_points(alpha, count, seed):
    """Points on the simplex from scipy's sampler (not ours), kept away from 0."""
    x = st.dirichlet(alpha).rvs(size=count, random_state=seed)
    x = np.maximum(x, 1e-6)
    return x / x.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dirichlet_log_prob_entropy_mean_variance_match_scipy(dtype):
    conc = np.asarray(DIRICHLET_GRID, dtype=dtype)
    a64 = conc.astype(np.float64)
    d = D.Dirichlet(conc)
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    x = np.stack([dirichlet_points(a, 5, seed) for seed, a in enumerate(a64)], axis=1)  # (5, 4, 3)
    x = x.astype(dtype)
    x64 = x.astype(np.float64)
    x64 = x64 / x64.sum(-1, keepdims=True)  # scipy insists on sum 1 to 1e-10; the density is the same
    lp = d.log_prob(x)
    assert lp.dtype == dtype and lp.shape == (5, 4)
    expected = np.array([[st.dirichlet(a).logpdf(xi) for a, xi in zip(a64, row)] for row in x64])
    ent = np.array([st.dirichlet(a).entropy() for a in a64])
    mean = np.array([st.dirichlet(a).mean() for a in a64])
    var = np.array([st.dirichlet(a).var() for a in a64])
    assert d.entropy().shape == (4,) and d.mean.shape == d.variance.shape == (4, 3)
    if dtype == np.float64:
        np.testing.assert_allclose(lp.data, expected, rtol=1e-10)
        np.testing.assert_allclose(d.entropy().data, ent, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.mean.data, mean, rtol=1e-12)
        np.testing.assert_allclose(d.variance.data, var, rtol=1e-12)
    else:
        for got in (lp, d.entropy(), d.mean, d.variance):
            assert got.dtype == np.float32
        # x was renormalized in float64 after rounding, by at most ~1e-7 relative: the
        # log-density moves by at most |a_k - 1| * 1e-7 per component, inside the tolerance.
        a = a64[None]
        tol = f32_tol((np.abs((a - 1) * np.log(x64))).sum(-1), sp.gammaln(a).sum(-1),
                      sp.gammaln(a.sum(-1)), np.abs(a - 1).sum(-1))
        assert (np.abs(lp.data - expected) <= tol).all()
        a0 = a64.sum(-1)
        tol = f32_tol(sp.gammaln(a64).sum(-1), sp.gammaln(a0), (a0 - 3) * sp.digamma(a0),
                      np.abs((a64 - 1) * sp.digamma(a64)).sum(-1))
        assert (np.abs(d.entropy().data - ent) <= tol).all()
        np.testing.assert_allclose(d.mean.data, mean, rtol=1e-6)
        # a0 - a_k cancels: its relative error is about eps32 a0 / (a0 - a_k).
        a0 = a64.sum(-1, keepdims=True)
        assert (np.abs(d.variance.data - var) <= 8 * EPS32 * (1 + a0 / (a0 - a64)) * var).all()


def test_dirichlet_on_the_boundary_of_the_simplex():
    def expected(a, x):  # the density formula written out, with 0 * log 0 = 0
        a, x = np.asarray(a), np.asarray(x)
        return sp.xlogy(a - 1, x).sum() + sp.gammaln(a.sum()) - sp.gammaln(a).sum()

    np.testing.assert_allclose(D.Dirichlet([1.0, 2.0, 3.0]).log_prob([0.0, 0.5, 0.5]).data,
                               st.dirichlet([1.0, 2.0, 3.0]).logpdf([0.0, 0.5, 0.5]))
    assert D.Dirichlet([2.0, 2.0, 2.0]).log_prob([0.0, 0.5, 0.5]).data == -np.inf
    assert D.Dirichlet([0.5, 2.0, 3.0]).log_prob([0.0, 0.5, 0.5]).data == expected([0.5, 2, 3], [0, 0.5, 0.5])
    assert expected([0.5, 2, 3], [0, 0.5, 0.5]) == np.inf
    # One zero wants +inf, another -inf: the density has a factor 0 and is taken as 0, not NaN.
    assert D.Dirichlet([0.5, 2.0, 1.0]).log_prob([0.0, 0.0, 1.0]).data == -np.inf


def test_dirichlet_values_off_the_simplex():
    d = D.Dirichlet(np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]))
    bad = np.array([[-0.1, 0.6, 0.5], [0.5, 0.6, 0.1], [0.2, 0.2, 0.2]])
    lp = d.log_prob(bad[:, None, :])
    assert lp.shape == (3, 2) and (lp.data == -np.inf).all()
    strict = D.Dirichlet(d.concentration, validate_args=True)
    for v in bad:
        with pytest.raises(ValueError, match="outside the support"):
            strict.log_prob(v)
    assert np.isfinite(strict.log_prob([0.2, 0.3, 0.5]).data).all()
    # Sums off by rounding are on the simplex.
    assert np.isfinite(strict.log_prob(np.array([0.1, 0.2, 0.7]) * (1 + 1e-12)).data).all()
    with pytest.raises(ValueError, match="last axis"):
        d.log_prob([0.5, 0.5])
    with pytest.raises(ValueError, match="last axis"):
        d.log_prob(1.0)


# ---- invalid parameters ----------------------------------------------------------------------

INVALID = [
    (lambda: D.Exponential(0.0), ["'rate'"]),
    (lambda: D.Exponential(np.array([1.0, -2.0])), ["'rate'", "-2"]),
    (lambda: D.Exponential(np.inf), ["'rate'"]),
    (lambda: D.Exponential(np.nan), ["'rate'"]),
    (lambda: D.Uniform(1.0, 1.0), ["'low'", "'high'"]),
    (lambda: D.Uniform(np.array([0.0, 2.0]), np.array([1.0, 1.5])), ["'low'", "'high'", "2.0", "1.5"]),
    (lambda: D.Uniform(-np.inf, 0.0), ["'low'"]),
    (lambda: D.Uniform(0.0, np.inf), ["'high'"]),
    (lambda: D.Uniform(np.zeros(3), np.ones(4)), ["low", "high", "(3,)", "(4,)"]),
    (lambda: D.Beta(0.0, 1.0), ["'concentration1'"]),
    (lambda: D.Beta(1.0, -1.0), ["'concentration0'"]),
    (lambda: D.Beta(np.ones(3), np.ones(4)), ["concentration1", "concentration0", "(3,)", "(4,)"]),
    (lambda: D.Beta("a", 1.0), ["'concentration1'"]),
    (lambda: D.Dirichlet([1.0, 0.0, 2.0]), ["'concentration'"]),
    (lambda: D.Dirichlet([[1.0, 2.0], [1.0, -3.0]]), ["'concentration'", "-3"]),
    (lambda: D.Dirichlet(2.0), ["'concentration'", "last axis"]),
    (lambda: D.Dirichlet(np.ones((2, 0))), ["'concentration'", "last axis"]),
]


@pytest.mark.parametrize("build,fragments", INVALID)
def test_invalid_parameters_raise_value_error_naming_them(build, fragments):
    with pytest.raises(ValueError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value)


# ---- shapes, broadcasting, dtypes ------------------------------------------------------------


def test_scalar_family_shapes_and_broadcasting():
    cases = [
        (D.Exponential(np.array([[0.5], [1.0], [2.0]]) * np.ones(4)), lambda x: x >= 0),
        (D.Uniform(np.array([[-1.0], [0.0], [5.0]]), np.array([6.0, 7.0, 8.0, 9.0])),
         lambda x: (x >= np.array([[-1.0], [0.0], [5.0]])) & (x < np.array([6.0, 7.0, 8.0, 9.0]))),
        (D.Beta(np.array([[0.5], [1.0], [3.0]]), np.array([0.5, 1.0, 2.0, 9.0])),
         lambda x: (x > 0) & (x < 1)),
    ]
    for d, inside in cases:
        assert d.batch_shape == (3, 4) and d.event_shape == ()
        x = d.sample((2, 5), rng=rng())
        assert x.shape == (2, 5, 3, 4) and inside(x.data).all()
        assert d.sample(7, rng=rng()).shape == (7, 3, 4)
        assert d.rsample(rng=rng()).shape == (3, 4)
        assert d.log_prob(x).shape == (2, 5, 3, 4)
        assert d.log_prob(x.data[0, 0, 0]).shape == (3, 4)  # a (4,) value broadcasts over the batch
        assert d.entropy().shape == d.mean.shape == d.variance.shape == (3, 4)
        # Each batch element is evaluated with its own parameters.
        p = {k: np.broadcast_to(v.data, (3, 4)) for k, v in zip(_names(d), _params(d))}
        expected = scipy_ref(type(d).__name__, p).logpdf(x.data)
        np.testing.assert_allclose(d.log_prob(x).data, expected, rtol=1e-10)


def _names(d):
    return {"Exponential": ["rate"], "Uniform": ["low", "high"],
            "Beta": ["concentration1", "concentration0"]}[type(d).__name__]


def test_dirichlet_shapes_and_broadcasting():
    conc = np.arange(1.0, 25.0).reshape(2, 3, 4) / 4
    d = D.Dirichlet(conc)
    assert d.batch_shape == (2, 3) and d.event_shape == (4,)
    x = d.sample((5,), rng=rng())
    assert x.shape == (5, 2, 3, 4) and (x.data > 0).all()
    np.testing.assert_allclose(x.data.sum(-1), 1.0, rtol=1e-12)
    assert d.sample(6, rng=rng()).shape == (6, 2, 3, 4)
    assert d.log_prob(x).shape == (5, 2, 3)
    assert d.log_prob([0.1, 0.2, 0.3, 0.4]).shape == (2, 3)
    assert d.entropy().shape == (2, 3) and d.mean.shape == d.variance.shape == (2, 3, 4)
    expected = [[st.dirichlet(conc[i, j]).logpdf(x.data[0, i, j] / x.data[0, i, j].sum()) for j in range(3)]
                for i in range(2)]
    np.testing.assert_allclose(d.log_prob(x).data[0], expected, rtol=1e-10)


@pytest.mark.parametrize("name", SCALAR_FAMILIES + ["Dirichlet"])
def test_float32_parameters_give_float32_everything(name):
    if name == "Dirichlet":
        params = dict(concentration=scg.tensor(np.array([0.5, 2.0, 3.0], np.float32), requires_grad=True))
    else:
        params = {k: scg.tensor(np.float32(v[1]), requires_grad=True) for k, v in GRIDS[name].items()}
    d = make(name, **params)
    x = d.rsample((4,), rng=rng())
    assert x.dtype == np.float32 and d.sample(rng=rng()).dtype == np.float32
    for t in (d.log_prob(x), d.entropy(), d.mean, d.variance):
        assert t.dtype == np.float32
    grads = scg.grad(scg.sum(x * x) + scg.sum(d.log_prob(x.detach())), list(params.values()))
    for g in grads:
        assert g.dtype == np.float32 and np.isfinite(g.data).all()


def test_has_rsample_and_sample_carries_no_gradient():
    rate = scg.tensor(2.0, requires_grad=True)
    for d in (D.Exponential(rate), D.Uniform(-rate, rate), D.Beta(rate, 1.0), D.Dirichlet(rate * np.ones(3))):
        assert d.has_rsample and not d.has_enumerate_support
        assert not d.sample((3,), rng=rng()).requires_grad
        assert d.rsample((3,), rng=rng()).requires_grad


def test_samples_are_reproducible_from_the_seed():
    for build in (lambda: D.Exponential(2.0), lambda: D.Uniform(0.0, 3.0), lambda: D.Beta(0.5, 2.0),
                  lambda: D.Dirichlet([0.5, 1.0, 2.0])):
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
@pytest.mark.parametrize("name", SCALAR_FAMILIES)
def test_sample_moments(name, dtype):
    p, p64 = grid_params(name, dtype)
    x = make(name, **p).sample((100_000,), rng=rng(1)).data
    assert x.dtype == dtype
    mean, var, kurt = scipy_ref(name, p64).stats(moments="mvk")
    assert_moments(x, mean, var, kurt)
    if name == "Uniform":
        assert ((x >= p["low"]) & (x < p["high"])).all()
    elif name == "Beta":
        assert ((x > 0) & (x < 1)).all()
    else:
        assert (x >= 0).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dirichlet_sample_moments(dtype):
    conc = np.asarray(DIRICHLET_GRID, dtype=dtype)
    a = conc.astype(np.float64)
    n = 100_000
    x = D.Dirichlet(conc).sample((n,), rng=rng(2)).data
    assert x.dtype == dtype and (x > 0).all()
    np.testing.assert_allclose(x.astype(np.float64).sum(-1), 1.0, atol=1e-12 if dtype == np.float64 else 1e-6)
    a0 = a.sum(-1, keepdims=True)
    marginal = st.beta(a, a0 - a)  # x_k ~ Beta(a_k, a0 - a_k)
    mean, var, kurt = marginal.stats(moments="mvk")
    assert_moments(x, mean, var, kurt)
    # Covariance of x_0 and x_1: -a_0 a_1 / (a0^2 (a0 + 1)). SE of the sample covariance
    # from E[d0^2 d1^2] <= sqrt(mu4_0 mu4_1) (Cauchy-Schwarz), a conservative bound.
    x = x.astype(np.float64)
    d0, d1 = x[..., 0] - x[..., 0].mean(0), x[..., 1] - x[..., 1].mean(0)
    cov = (d0 * d1).sum(0) / (n - 1)
    expected = -a[:, 0] * a[:, 1] / (a0[:, 0] ** 2 * (a0[:, 0] + 1))
    mu4 = (kurt + 3) * var**2
    se = np.sqrt(np.sqrt(mu4[:, 0] * mu4[:, 1]) / n)
    assert (np.abs(cov - expected) <= Z * se).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiny_concentrations_never_sample_the_boundary(dtype):
    a = scg.tensor(np.asarray([0.01, 1.0, 0.02], dtype), requires_grad=True)
    c = scg.tensor(np.full((2, 4), 0.01, dtype), requires_grad=True)
    for d, param in ((D.Beta(a, np.asarray([0.01, 1e-3, 5.0], dtype)), a), (D.Dirichlet(c), c)):
        x = d.rsample((20_000,), rng=rng(4))
        assert x.dtype == dtype and (x.data > 0).all()
        if isinstance(d, D.Beta):  # (a Dirichlet component may be 1 when the others are > 0)
            assert (x.data < 1).all()
        assert np.isfinite(d.log_prob(x).data).all()
        (g,) = scg.grad(scg.sum(x), [param])
        assert np.isfinite(g.data).all()


def test_uniform_draw_that_rounds_to_high_stays_below_it():
    class AlmostOne:  # a generator whose every uniform draw is the largest float32 below 1
        def random(self, shape, dtype):
            return np.full(shape, np.nextafter(np.float32(1), np.float32(0)), dtype=dtype)

    low = scg.tensor(np.float32(0.1), requires_grad=True)
    high = scg.tensor(np.float32(0.3), requires_grad=True)
    assert low.data + (high.data - low.data) * np.nextafter(np.float32(1), np.float32(0)) >= high.data
    x = D.Uniform(low, high).rsample(rng=AlmostOne())
    assert x.dtype == np.float32 and x.data < high.data and x.data >= 0.2999
    g_low, g_high = scg.grad(x, [low, high])  # the gradient of low + (high - low) u
    np.testing.assert_array_equal([g_low.item(), g_high.item()], [2**-24, 1 - 2**-24])


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


# (family, parameters, parameter differentiated, f, E[f(z)] as a function of the parameters)
PATHWISE = [
    ("Exponential", dict(rate=2.5), "rate", _identity, lambda rate: st.expon(scale=1 / rate).mean()),
    ("Exponential", dict(rate=0.7), "rate", _square, lambda rate: st.expon(scale=1 / rate).moment(2)),
    ("Uniform", dict(low=-1.0, high=2.0), "low", _identity,
     lambda low, high: st.uniform(low, high - low).mean()),
    ("Uniform", dict(low=-1.0, high=2.0), "high", _identity,
     lambda low, high: st.uniform(low, high - low).mean()),
    ("Uniform", dict(low=0.5, high=2.0), "low", _square,
     lambda low, high: st.uniform(low, high - low).moment(2)),
    ("Uniform", dict(low=0.5, high=2.0), "high", _square,
     lambda low, high: st.uniform(low, high - low).moment(2)),
    ("Beta", dict(concentration1=2.0, concentration0=3.0), "concentration1", _identity,
     lambda concentration1, concentration0: st.beta(concentration1, concentration0).mean()),
    ("Beta", dict(concentration1=2.0, concentration0=3.0), "concentration0", _identity,
     lambda concentration1, concentration0: st.beta(concentration1, concentration0).mean()),
    ("Beta", dict(concentration1=0.5, concentration0=1.5), "concentration1", _identity,
     lambda concentration1, concentration0: st.beta(concentration1, concentration0).mean()),
    ("Beta", dict(concentration1=4.0, concentration0=0.7), "concentration0", _square,
     lambda concentration1, concentration0: st.beta(concentration1, concentration0).moment(2)),
]


@pytest.mark.parametrize("name,p,wrt,f,expectation", PATHWISE,
                         ids=[f"{c[0]}-{c[2]}-{c[3].__name__}" for c in PATHWISE])
def test_pathwise_gradients_match_the_analytic_expectation(name, p, wrt, f, expectation):
    g1, g2 = per_sample_derivatives(name, p, wrt, f, n=20_000, seed=5)
    d1, d2 = finite_differences(expectation, p, wrt)
    assert_mean_within_se(g1, d1)
    assert_mean_within_se(g2, d2)


def test_pathwise_gradient_closed_forms():
    """The finite differences above against the closed forms of the brief (guards the helper)."""
    d1, d2 = finite_differences(lambda rate: st.expon(scale=1 / rate).mean(), dict(rate=2.5), "rate")
    np.testing.assert_allclose([d1, d2], [-1 / 2.5**2, 2 / 2.5**3], rtol=1e-6)
    d1, _ = finite_differences(lambda a, b: st.beta(a, b).mean(), dict(a=2.0, b=3.0), "a")
    np.testing.assert_allclose(d1, 3 / 25, rtol=1e-7)
    g1, g2 = per_sample_derivatives("Uniform", dict(low=-1.0, high=2.0), "low", _identity, 4, seed=0)
    u = rng(0).random(4)  # the same uniforms the sampler drew: dz/dlow = 1 - u exactly
    np.testing.assert_allclose(g1, 1 - u, rtol=1e-12)
    np.testing.assert_array_equal(g2, 0)


@pytest.mark.parametrize("name,p,wrt,f,expectation", [PATHWISE[0], PATHWISE[4], PATHWISE[6]],
                         ids=["Exponential", "Uniform", "Beta"])
def test_float32_pathwise_gradients(name, p, wrt, f, expectation):
    g1, g2 = per_sample_derivatives(name, p, wrt, f, n=20_000, seed=6, dtype=np.float32)
    assert g1.dtype == g2.dtype == np.float32
    d1, d2 = finite_differences(expectation, p, wrt)
    assert_mean_within_se(g1.astype(np.float64), d1, fd_error=1e-5)
    assert_mean_within_se(g2.astype(np.float64), d2, fd_error=1e-5)


def test_dirichlet_mean_gradients_first_and_second_order():
    alpha = np.array([0.7, 2.0, 3.5])
    n = 20_000
    conc = scg.tensor(np.tile(alpha, (n, 1)), requires_grad=True)  # one copy per sample
    x = D.Dirichlet(conc).rsample(rng=rng(7))
    (g1,) = scg.grad(scg.sum(x[:, 0]), [conc], create_graph=True)  # row i: d x_i0 / d a_j
    (g2,) = scg.grad(scg.sum(g1[:, 0]), [conc])  # row i: d2 x_i0 / (d a_0 d a_j)

    def e0(a):  # E[x_0] from scipy
        return st.dirichlet(a).mean()[0]

    h = 1e-4
    basis = np.eye(3) * h
    for j in range(3):
        d1 = (e0(alpha + basis[j]) - e0(alpha - basis[j])) / (2 * h)
        d2 = (e0(alpha + basis[0] + basis[j]) - e0(alpha + basis[0] - basis[j])
              - e0(alpha - basis[0] + basis[j]) + e0(alpha - basis[0] - basis[j])) / (4 * h * h)
        assert_mean_within_se(g1.data[:, j], d1)
        assert_mean_within_se(g2.data[:, j], d2)
    # Closed form of the first derivative: d(a_0/a0)/d a_j = (delta_0j a0 - a_0) / a0^2.
    a0 = alpha.sum()
    np.testing.assert_allclose(g1.data.mean(0), (np.eye(3)[0] * a0 - alpha[0]) / a0**2,
                               atol=Z * g1.data.std(0).max() / np.sqrt(n))
