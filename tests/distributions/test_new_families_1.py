"""MixtureSameFamily, NegativeBinomial, Gumbel, HalfCauchy, Weibull and Chi2: what the shared
table (``families.py``, which has rows for the four scalar continuous ones) does not check:
cdf, icdf and mode against scipy / closed forms, pathwise gradients against finite differences
of scipy's expectations, the KL pairs against numerical integration, the negative binomial
against scipy.stats.nbinom (whose p is torch's 1 - probs), and the mixture against scipy and
against the same model written as a graph with the component summed out.
"""

import math

import numpy as np
import pytest
import scipy.integrate as si
import scipy.special as sp
import scipy.stats as st
from families import Z, assert_mean_within_se, assert_moments, f32_tol, finite_differences, per_sample_derivatives, rng

import scg
import scg.distributions as D
from scg import ops

DTYPES = [np.float64, np.float32]

# ---- cdf, icdf, mode ---------------------------------------------------------------------------

# (name, params, scipy frozen distribution, values inside the support)
SCALAR = [
    ("Gumbel", dict(loc=[0.0, -3.0, 10.0, 0.5], scale=[1.0, 0.1, 4.0, 2.0]),
     lambda p: st.gumbel_r(p["loc"], p["scale"]), [-2.0, -0.5, 0.0, 1.0, 4.0]),
    ("HalfCauchy", dict(scale=[1.0, 0.1, 4.0, 1e3]), lambda p: st.halfcauchy(scale=p["scale"]),
     [1e-3, 0.1, 1.0, 3.0, 50.0]),
    ("Weibull", dict(scale=[1.0, 0.5, 2.0, 10.0], concentration=[0.5, 1.0, 3.0, 10.0]),
     lambda p: st.weibull_min(p["concentration"], scale=p["scale"]), [1e-3, 0.1, 0.5, 1.0, 1.5]),
    ("Chi2", dict(df=[0.3, 1.0, 5.0, 30.0]), lambda p: st.chi2(p["df"]), [1e-3, 0.1, 0.5, 1.0, 2.0]),
]
SCALAR_IDS = [c[0] for c in SCALAR]


def _setup(name, p, ref, rel, dtype):
    """(distribution in dtype, float64 params, values (Q, P) in dtype, their float64 copy, scipy ref).
    Values are ``rel`` times the scale of each setting (the scale, or df for Chi2)."""
    p = {k: np.asarray(v, dtype=dtype) for k, v in p.items()}
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    unit = p64.get("scale", p64.get("df"))
    x = (np.asarray(rel)[:, None] * unit + (p64["loc"] if name == "Gumbel" else 0)).astype(dtype)
    return getattr(D, name)(**p), p64, x, x.astype(np.float64), ref(p64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,p,ref,rel", SCALAR, ids=SCALAR_IDS)
def test_cdf_matches_scipy(name, p, ref, rel, dtype):
    d, p64, x, x64, r = _setup(name, p, ref, rel, dtype)
    got = d.cdf(x)
    assert got.dtype == dtype and got.shape == x.shape
    want = r.cdf(x64)
    if dtype == np.float64:
        np.testing.assert_allclose(got.data, want, rtol=1e-10, atol=1e-300)
    else:
        # A few roundings of the result, plus that of the argument carried by x f(x) (relative).
        tol = f32_tol(want, x64 * r.pdf(x64) * (1 + np.abs(p64.get("concentration", 1.0))))
        assert (np.abs(got.data - want) <= tol).all(), np.max(np.abs(got.data - want) / tol)


ICDF = [c for c in SCALAR if c[0] != "Chi2"]  # torch's Chi2 (a Gamma) has no icdf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,p,ref,rel", ICDF, ids=[c[0] for c in ICDF])
def test_icdf_matches_scipy_and_inverts_cdf(name, p, ref, rel, dtype):
    d, p64, _, _, r = _setup(name, p, ref, rel, dtype)
    q = np.array([1e-3, 0.1, 0.5, 0.9, 0.999])[:, None].astype(dtype)
    got = d.icdf(q)
    assert got.dtype == dtype and got.shape == (5, len(next(iter(p.values()))))
    want = r.ppf(q.astype(np.float64))
    # float32: the icdf amplifies the rounding of q by q / (x f(x)), at most ~1e3 here
    rtol = 1e-10 if dtype == np.float64 else 2e3 * 8 * float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(got.data, want, rtol=rtol)
    if dtype == np.float64:
        np.testing.assert_allclose(d.cdf(got).data, np.broadcast_to(q, got.shape), rtol=1e-10)


def _mode(name, p):
    """Closed forms, written here: where the density is largest."""
    if name == "Gumbel":
        return p["loc"]
    if name == "HalfCauchy":
        return 0 * p["scale"]
    if name == "Weibull":
        k = p["concentration"]
        with np.errstate(invalid="ignore"):
            return np.where(k > 1, p["scale"] * ((k - 1) / k) ** (1 / k), 0.0)
    return np.maximum(p["df"] - 2, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,p,ref,rel", SCALAR, ids=SCALAR_IDS)
def test_mode_is_the_closed_form_and_the_density_peaks_there(name, p, ref, rel, dtype):
    d, p64, _, _, r = _setup(name, p, ref, rel, dtype)
    got = d.mode
    assert got.dtype == dtype and got.shape == d.batch_shape
    want = _mode(name, p64)
    np.testing.assert_allclose(got.data, want, rtol=1e-12 if dtype == np.float64 else 4 * float(np.finfo(np.float32).eps))
    # scipy's density is no larger a little to either side (inside the support)
    unit = p64.get("scale", p64.get("df"))
    for step in (-1e-3, 1e-3):
        x = want + step * unit
        ok = np.full(x.shape, True) if name == "Gumbel" else x > 0
        with np.errstate(divide="ignore"):  # scipy's density is infinite at 0 for some
            assert (r.logpdf(x)[ok] <= r.logpdf(want)[ok]).all()


def test_weibull_mode_is_zero_at_concentration_at_most_one():
    # torch 2.x returns scale ((k - 1) / k)^(1/k) for every k: 2.0 for Weibull(2, 0.5), where the
    # density decreases from 0 (it is infinite there). scg returns 0.
    k = 1.0 + 1e-9
    d = D.Weibull(np.array([2.0, 2.0, 2.0]), np.array([0.5, 1.0, k]))
    np.testing.assert_allclose(d.mode.data, [0.0, 0.0, 2.0 * ((k - 1) / k) ** (1 / k)], rtol=1e-12)
    assert st.weibull_min(0.5, scale=2.0).logpdf(1e-6) > st.weibull_min(0.5, scale=2.0).logpdf(1e-3)


def test_half_cauchy_mean_and_variance_are_infinite():
    d = D.HalfCauchy(np.array([0.5, 2.0]))
    assert (d.mean.data == np.inf).all() and (d.variance.data == np.inf).all()
    assert st.halfcauchy().mean() == np.inf  # scipy agrees


def test_chi2_is_gamma_with_half_df_and_rate_half():
    d = D.Chi2(np.array([0.5, 3.0]))
    assert isinstance(d, D.Gamma)
    np.testing.assert_array_equal(d.concentration.data, [0.25, 1.5])
    np.testing.assert_array_equal(d.rate.data, [0.5, 0.5])
    np.testing.assert_array_equal(d.df.data, [0.5, 3.0])
    np.testing.assert_allclose(d.mean.data, [0.5, 3.0], rtol=1e-15)
    np.testing.assert_allclose(d.variance.data, [1.0, 6.0], rtol=1e-15)
    assert D.Chi2(3.0).log_prob(np.float32(1.0)).dtype == np.float32  # Python numbers follow the value


# ---- gradients ---------------------------------------------------------------------------------


def test_cdf_icdf_and_log_prob_gradcheck_second_order():
    def gumbel(loc, scale, x, q):
        d = D.Gumbel(loc, scale)
        return d.cdf(x) + d.icdf(q) * d.log_prob(x)

    def half_cauchy(scale, x, q):
        d = D.HalfCauchy(scale)
        return d.cdf(x) + d.icdf(q) * d.log_prob(x)

    def weibull(scale, k, x, q):
        d = D.Weibull(scale, k)
        return d.cdf(x) + d.icdf(q) * d.log_prob(x)

    def chi2(df, x):  # the cdf is differentiable in df (implicit gradient of P(a, x) in a)
        d = D.Chi2(df)
        return d.cdf(x) + d.log_prob(x)

    a = np.array
    assert scg.gradcheck(gumbel, [a([0.3, -1.0]), a([0.7, 1.4]), a([1.5, -2.0]), a([0.2, 0.7])], order=2)
    assert scg.gradcheck(half_cauchy, [a([0.7, 1.4]), a([0.5, 2.5]), a([0.2, 0.7])], order=2)
    assert scg.gradcheck(weibull, [a([0.7, 1.4]), a([0.8, 2.5]), a([0.5, 2.5]), a([0.2, 0.7])], order=2)
    assert scg.gradcheck(chi2, [a([0.7, 3.0, 12.0]), a([0.5, 2.5, 20.0])], order=2)


def test_chi2_cdf_gradient_in_df_matches_scipy_finite_differences():
    df, x = np.array([0.7, 3.0, 12.0, 40.0]), np.array([0.5, 2.5, 20.0, 30.0])
    t = scg.tensor(df, requires_grad=True)
    (g,) = scg.grad(scg.sum(D.Chi2(t).cdf(x)), [t])
    h = 1e-6 * df
    fd = (st.chi2(df + h).cdf(x) - st.chi2(df - h).cdf(x)) / (2 * h)
    np.testing.assert_allclose(g.data, fd, rtol=1e-7)


def _gumbel_moment2(loc, scale):
    return st.gumbel_r(loc, scale).moment(2)


def _weibull_mean(scale, concentration):
    return st.weibull_min(concentration, scale=scale).mean()


def _weibull_moment2(scale, concentration):
    return st.weibull_min(concentration, scale=scale).moment(2)


def _chi2_moment2(df):
    return st.chi2(df).moment(2)


def _half_cauchy_mean_log(scale):
    return math.log(scale)  # E[log |C|] = 0 for a standard Cauchy (its median is 1 in |C|)


# (family, parameters, parameter differentiated, f, E[f(x)] as a function of the parameters)
PATHWISE = [
    ("Gumbel", dict(loc=0.5, scale=1.5), "loc", lambda x: x * x, _gumbel_moment2),
    ("Gumbel", dict(loc=0.5, scale=1.5), "scale", lambda x: x * x, _gumbel_moment2),
    ("Weibull", dict(scale=1.5, concentration=2.0), "concentration", lambda x: x, _weibull_mean),
    ("Weibull", dict(scale=1.5, concentration=0.8), "concentration", lambda x: x * x, _weibull_moment2),
    ("Weibull", dict(scale=1.5, concentration=3.0), "scale", lambda x: x * x, _weibull_moment2),
    ("Chi2", dict(df=3.0), "df", lambda x: x * x, _chi2_moment2),
    ("Chi2", dict(df=0.6), "df", lambda x: x * x, _chi2_moment2),
    ("HalfCauchy", dict(scale=1.5), "scale", scg.log, _half_cauchy_mean_log),
]


@pytest.mark.parametrize("name,p,wrt,f,expectation", PATHWISE, ids=[f"{c[0]}-{c[2]}-{list(c[1].values())}" for c in PATHWISE])
def test_pathwise_gradients_match_finite_differences_of_the_expectation(name, p, wrt, f, expectation):
    g1, g2 = per_sample_derivatives(name, p, wrt, f, n=20_000, seed=5)
    d1, d2 = finite_differences(expectation, p, wrt)
    assert_mean_within_se(g1, d1)
    assert_mean_within_se(g2, d2)


def test_pathwise_derivatives_per_draw():
    """Known per-draw derivatives: Gumbel dx/dscale = (x - loc) / scale, HalfCauchy dx/dscale =
    x / scale, Weibull dx/dk = -x log(x / scale) / k (x = scale E^(1/k))."""
    loc, scale, k = scg.tensor(0.3, requires_grad=True), scg.tensor(1.7, requires_grad=True), scg.tensor(
        1.3, requires_grad=True)
    x = D.Gumbel(loc, scale).rsample((50,), rng=rng(1))
    gl, gs = scg.grad(scg.sum(x), [loc, scale])
    assert gl.item() == 50.0
    np.testing.assert_allclose(gs.item(), ((x.data - 0.3) / 1.7).sum(), rtol=1e-12)
    y = D.HalfCauchy(scale).rsample((50,), rng=rng(2))
    (gs,) = scg.grad(scg.sum(y), [scale])
    np.testing.assert_allclose(gs.item(), (y.data / 1.7).sum(), rtol=1e-12)
    w = D.Weibull(scale, k).rsample((50,), rng=rng(3))
    (gk,) = scg.grad(scg.sum(w), [k])
    np.testing.assert_allclose(gk.item(), (-w.data * np.log(w.data / 1.7) / 1.3).sum(), rtol=1e-10)


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,params,bad", [
    ("HalfCauchy", dict(scale=2.0), -1.0),
    ("Weibull", dict(scale=2.0, concentration=1.5), 0.0),
    ("Chi2", dict(df=3.0), -0.5),
])
def test_cdf_outside_the_support_is_zero_or_raises_under_validation(name, params, bad):
    loose = getattr(D, name)(**params, validate_args=False)
    assert loose.cdf(bad).item() == 0.0 and loose.log_prob(bad).item() == -np.inf
    strict = getattr(D, name)(**params, validate_args=True)
    for method in (strict.cdf, strict.log_prob):
        with pytest.raises(ValueError, match="outside the support"):
            method(bad)


# ---- NegativeBinomial ------------------------------------------------------------------------------

NB_R = np.array([3.0, 0.5, 2.5, 40.0, 1.0])
NB_P = np.array([0.3, 0.9, 0.05, 0.6, 0.5])  # torch's probs: of a success; scipy's p is 1 - probs
NB_K = np.array([0.0, 1.0, 2.0, 7.0, 30.0, 150.0])[:, None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", ["probs", "logits"])
def test_negative_binomial_log_prob_mean_variance_match_scipy(given, dtype):
    r, p = NB_R.astype(dtype), NB_P.astype(dtype)
    param = p if given == "probs" else (np.log(p) - np.log1p(-p)).astype(dtype)
    d = D.NegativeBinomial(r, **{given: param})
    r64, p64 = r.astype(np.float64), (p if given == "probs" else sp.expit(param.astype(np.float64))).astype(np.float64)
    ref = st.nbinom(r64, 1 - p64)
    lp = d.log_prob(NB_K.astype(dtype))
    assert lp.dtype == dtype and lp.shape == (6, 5)
    want = ref.logpmf(NB_K)
    if dtype == np.float64:
        np.testing.assert_allclose(lp.data, want, rtol=1e-10)
        np.testing.assert_allclose(d.mean.data, ref.mean(), rtol=1e-12)
        np.testing.assert_allclose(d.variance.data, ref.var(), rtol=1e-12)
    else:
        terms = [sp.gammaln(NB_K + r64), sp.gammaln(r64), sp.gammaln(NB_K + 1), NB_K * np.log(p64),
                 r64 * np.log1p(-p64), NB_K / (1 - p64)]
        tol = f32_tol(*terms)
        assert (np.abs(lp.data - want) <= tol).all(), np.max(np.abs(lp.data - want) / tol)
        np.testing.assert_allclose(d.mean.data, ref.mean(), rtol=1e-5)
        np.testing.assert_allclose(d.variance.data, ref.var(), rtol=1e-5)


def test_negative_binomial_mode_and_conventions():
    d = D.NegativeBinomial(NB_R, probs=NB_P)
    want = np.maximum(np.floor((NB_R - 1) * NB_P / (1 - NB_P)), 0)  # torch's rule
    np.testing.assert_array_equal(d.mode.data, want)
    k = np.arange(400.0)[:, None]
    np.testing.assert_array_equal(np.argmax(st.nbinom(NB_R, 1 - NB_P).logpmf(k), axis=0), want)  # a mode indeed
    assert not d.has_rsample and not d.has_enumerate_support
    with pytest.raises(NotImplementedError):
        d.rsample()
    # probs is the probability of a success, counted by x: the mean grows with it
    assert D.NegativeBinomial(2.0, probs=0.9).mean.item() > D.NegativeBinomial(2.0, probs=0.1).mean.item()
    # total_count 0 or probs 0: all the mass at 0
    z = D.NegativeBinomial(np.array([0.0, 2.0]), probs=np.array([0.5, 0.0]))
    np.testing.assert_array_equal(z.log_prob(np.array([[0.0], [1.0]])).data, [[0.0, 0.0], [-np.inf, -np.inf]])
    np.testing.assert_array_equal(z.sample((100,), rng=rng()).data, 0.0)


def test_negative_binomial_sample_moments():
    n = 100_000
    d = D.NegativeBinomial(np.array([3.0, 0.5, 20.0]), probs=np.array([0.3, 0.9, 0.6]))
    x = d.sample((n,), rng=rng(4)).data
    assert x.shape == (n, 3) and x.dtype == np.float64 and (x == np.floor(x)).all() and (x >= 0).all()
    ref = st.nbinom(np.array([3.0, 0.5, 20.0]), 1 - np.array([0.3, 0.9, 0.6]))
    m, v, _, kurt = ref.stats(moments="mvsk")
    assert_moments(x, m, v, kurt)


def test_negative_binomial_validation_and_invalid_parameters():
    for build, fragment in [
        (lambda: D.NegativeBinomial(2.0, probs=1.0), "'probs'"),
        (lambda: D.NegativeBinomial(2.0, probs=-0.1), "'probs'"),
        (lambda: D.NegativeBinomial(2.0, logits=np.inf), "'logits'"),
        (lambda: D.NegativeBinomial(-1.0, probs=0.5), "'total_count'"),
        (lambda: D.NegativeBinomial(np.inf, probs=0.5), "'total_count'"),
        (lambda: D.NegativeBinomial(2.0, probs=0.5, logits=0.0), "'probs' and 'logits'"),
        (lambda: D.NegativeBinomial(np.ones(2), probs=np.full(3, 0.5)), "(2,)"),
    ]:
        with pytest.raises(ValueError, match=None) as info:
            build()
        assert fragment in str(info.value)
    loose = D.NegativeBinomial(2.0, probs=0.5, validate_args=False)
    np.testing.assert_array_equal(loose.log_prob(np.array([-1.0, 1.5, np.inf])).data, -np.inf)
    strict = D.NegativeBinomial(2.0, probs=0.5, validate_args=True)
    for bad in (-1.0, 1.5):
        with pytest.raises(ValueError, match="outside the support"):
            strict.log_prob(bad)


def test_negative_binomial_log_prob_gradcheck_second_order():
    k = np.array([0.0, 3.0, 11.0])

    def from_probs(r, p):
        return D.NegativeBinomial(r, probs=p).log_prob(k)

    def from_logits(r, l):
        return D.NegativeBinomial(r, logits=l).log_prob(k)

    assert scg.gradcheck(from_probs, [np.array([0.7, 3.0, 12.0]), np.array([0.2, 0.5, 0.8])], order=2)
    assert scg.gradcheck(from_logits, [np.array([0.7, 3.0, 12.0]), np.array([-1.5, 0.0, 2.0])], order=2)


# ---- KL divergences --------------------------------------------------------------------------------


def _quad_kl(p_ref, q_ref, lo, hi):
    """int p (log p - log q) by scipy.integrate.quad over [lo, hi]."""
    def f(x):
        lp = p_ref.logpdf(x)
        density = math.exp(lp)
        return 0.0 if density == 0.0 else density * (lp - q_ref.logpdf(x))

    with np.errstate(over="ignore"):  # scipy's Gumbel e^(-z) far in the left tail, where p is 0
        return si.quad(f, lo, hi, limit=200, epsabs=1e-13, epsrel=1e-11)[0]


KL = [
    (D.Gumbel(0.3, 1.2), D.Gumbel(-0.5, 0.7), st.gumbel_r(0.3, 1.2), st.gumbel_r(-0.5, 0.7), -np.inf, np.inf),
    (D.Gumbel(2.0, 0.5), D.Gumbel(0.0, 3.0), st.gumbel_r(2.0, 0.5), st.gumbel_r(0.0, 3.0), -np.inf, np.inf),
    (D.Normal(0.3, 1.2), D.Gumbel(-0.5, 0.7), st.norm(0.3, 1.2), st.gumbel_r(-0.5, 0.7), -np.inf, np.inf),
    (D.Gumbel(0.3, 1.2), D.Normal(-0.5, 0.7), st.gumbel_r(0.3, 1.2), st.norm(-0.5, 0.7), -np.inf, np.inf),
    (D.Exponential(1.3), D.Gumbel(-0.5, 0.7), st.expon(scale=1 / 1.3), st.gumbel_r(-0.5, 0.7), 0.0, np.inf),
    (D.Gamma(2.3, 1.4), D.Gumbel(0.5, 2.0), st.gamma(2.3, scale=1 / 1.4), st.gumbel_r(0.5, 2.0), 0.0, np.inf),
    (D.Uniform(-1.3, 1.4), D.Gumbel(-0.5, 0.7), st.uniform(-1.3, 2.7), st.gumbel_r(-0.5, 0.7), -1.3, 1.4),
    (D.Chi2(3.0), D.Gumbel(1.0, 2.0), st.chi2(3.0), st.gumbel_r(1.0, 2.0), 0.0, np.inf),
    (D.Chi2(3.0), D.Chi2(5.5), st.chi2(3.0), st.chi2(5.5), 0.0, np.inf),
    (D.Chi2(4.0), D.Gamma(2.0, 0.7), st.chi2(4.0), st.gamma(2.0, scale=1 / 0.7), 0.0, np.inf),
]


@pytest.mark.parametrize("p,q,p_ref,q_ref,lo,hi", KL, ids=[f"{type(c[0]).__name__}-{type(c[1]).__name__}-{i}" for i, c in enumerate(KL)])
def test_kl_matches_numerical_integration(p, q, p_ref, q_ref, lo, hi):
    got = D.kl_divergence(p, q)
    assert got.dtype == np.float64 and got.shape == ()
    np.testing.assert_allclose(got.item(), _quad_kl(p_ref, q_ref, lo, hi), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("q", [D.Uniform(-1.0, 2.0), D.Exponential(1.0), D.Gamma(2.0, 1.0), D.Beta(2.0, 3.0), D.Chi2(2.0)])
def test_kl_from_gumbel_to_a_bounded_support_is_infinite(q):
    got = D.kl_divergence(D.Gumbel(np.zeros(3), 1.0), q)
    assert got.shape == (3,) and (got.data == np.inf).all()


def test_kl_gumbel_gradcheck_second_order():
    def kl(m1, b1, m2, b2):
        return D.kl_divergence(D.Gumbel(m1, b1), D.Gumbel(m2, b2)) + D.kl_divergence(D.Normal(m2, b1), D.Gumbel(m1, b2))

    a = np.array
    assert scg.gradcheck(kl, [a([0.3, -1.0]), a([0.7, 1.4]), a([0.1, 0.5]), a([1.2, 0.9])], order=2)


# ---- MixtureSameFamily -----------------------------------------------------------------------------

W = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])  # batch (2,), K = 3
MU = np.array([[-1.0, 0.5, 3.0], [0.0, 2.0, -2.0]])
SIGMA = np.array([[0.5, 1.0, 2.0], [1.5, 0.3, 0.7]])


def _gmm(w=W, mu=MU, sigma=SIGMA, **kw):
    return D.MixtureSameFamily(D.Categorical(probs=w), D.Normal(mu, sigma), **kw)


def test_mixture_log_prob_mean_variance_cdf_match_scipy():
    d = _gmm()
    assert d.batch_shape == (2,) and d.event_shape == () and not d.has_rsample
    x = np.array([-3.0, -0.5, 0.0, 1.2, 4.0])[:, None]
    want = np.log((W * st.norm(MU, SIGMA).pdf(x[..., None])).sum(-1))
    np.testing.assert_allclose(d.log_prob(x).data, want, rtol=1e-12)
    gumbels = D.MixtureSameFamily(D.Categorical(probs=W), D.Gumbel(MU, SIGMA))  # (Normal has no cdf yet)
    np.testing.assert_allclose(gumbels.cdf(x).data, (W * st.gumbel_r(MU, SIGMA).cdf(x[..., None])).sum(-1), rtol=1e-12)
    mean = (W * MU).sum(-1)
    np.testing.assert_allclose(d.mean.data, mean, rtol=1e-14)
    second = (W * (SIGMA**2 + MU**2)).sum(-1)  # E[x^2], then Var = E[x^2] - E[x]^2
    np.testing.assert_allclose(d.variance.data, second - mean**2, rtol=1e-12)
    with pytest.raises(NotImplementedError):
        d.rsample()


def test_mixture_of_vector_components_and_broadcast_weights():
    # components Independent(Normal) with event (2,); one weight vector for a batch of 4
    mu = rng(0).normal(size=(4, 3, 2))
    sigma = np.exp(rng(1).normal(size=(4, 3, 2)) * 0.3)
    w = np.array([0.5, 0.2, 0.3])
    d = D.MixtureSameFamily(D.Categorical(probs=w), D.Normal(mu, sigma).to_event(1))
    assert d.batch_shape == (4,) and d.event_shape == (2,)
    x = rng(2).normal(size=(5, 4, 2))
    comp = st.norm(mu, sigma).logpdf(x[:, :, None, :]).sum(-1)  # (5, 4, 3)
    np.testing.assert_allclose(d.log_prob(x).data, sp.logsumexp(comp + np.log(w), axis=-1), rtol=1e-12)
    mean = (w[:, None] * mu).sum(-2)
    np.testing.assert_allclose(d.mean.data, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d.variance.data, (w[:, None] * (sigma**2 + mu**2)).sum(-2) - mean**2, rtol=1e-10)
    s = d.sample((3, 7), rng=rng(3))
    assert s.shape == (3, 7, 4, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mixture_sample_moments(dtype):
    n = 100_000
    d = _gmm(W.astype(dtype), MU.astype(dtype), SIGMA.astype(dtype))
    x = d.sample((n,), rng=rng(7)).data
    assert x.shape == (n, 2) and x.dtype == dtype
    # moments of the mixture from those of the components (closed forms written here)
    m1 = (W * MU).sum(-1)
    raw = [(W * c).sum(-1) for c in (MU, SIGMA**2 + MU**2, MU**3 + 3 * MU * SIGMA**2,
                                      MU**4 + 6 * MU**2 * SIGMA**2 + 3 * SIGMA**4)]
    var = raw[1] - m1**2
    mu4 = raw[3] - 4 * m1 * raw[2] + 6 * m1**2 * raw[1] - 3 * m1**4
    assert_moments(x, m1, var, mu4 / var**2 - 3)
    # the draw of each component: which component's neighbourhood the draws land in
    assert abs((x[:, 1] > 1.0).mean() - st.norm(0.0, 1.5).sf(1.0) * 0.6 - st.norm(2.0, 0.3).sf(1.0) * 0.1
               - st.norm(-2.0, 0.7).sf(1.0) * 0.3) <= Z * 0.5 / np.sqrt(n)


def test_mixture_log_prob_gradcheck_second_order():
    x = np.array([-0.7, 0.4, 2.5])[:, None]

    def f(logits, mu, log_sigma):
        return D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(mu, ops.exp(log_sigma))).log_prob(x)

    assert scg.gradcheck(f, [np.array([[0.2, -0.4, 1.0]]), np.array([[-1.0, 0.5, 2.0]]), np.array([[0.1, -0.3, 0.4]])],
                         order=2)


def test_mixture_invalid_parameters_and_validation():
    normal = D.Normal(np.zeros((2, 3)), 1.0)
    for build, fragment in [
        (lambda: D.MixtureSameFamily(D.Bernoulli(probs=0.5), normal), "'mixture_distribution'"),
        (lambda: D.MixtureSameFamily(D.Categorical(probs=np.full(4, 0.25)), normal), "'component_distribution'"),
        (lambda: D.MixtureSameFamily(D.Categorical(probs=np.full((5, 3), 1 / 3)), normal), "'mixture_distribution'"),
        (lambda: D.MixtureSameFamily(D.Categorical(probs=np.full(3, 1 / 3)), "normal"), "'component_distribution'"),
    ]:
        with pytest.raises(ValueError) as info:
            build()
        assert fragment in str(info.value)
    w = np.array([0.5, 0.5])
    loose = D.MixtureSameFamily(D.Categorical(probs=w), D.Exponential(np.array([1.0, 2.0]), validate_args=False))
    assert loose.log_prob(-1.0).item() == -np.inf
    strict = D.MixtureSameFamily(D.Categorical(probs=w), D.Exponential(np.array([1.0, 2.0]), validate_args=True))
    with pytest.raises(ValueError, match="outside the support"):
        strict.log_prob(-1.0)


X_DATA = np.array([-1.2, 0.3, 2.1, 1.7, -0.4])


def _gmm_params():
    return [scg.tensor(np.array(v), requires_grad=True) for v in ([0.2, -0.1, 0.5], [-1.0, 1.5, 0.2], [0.1, -0.3, 0.4])]


def test_mixture_equals_the_graph_with_the_component_marginalized():
    """The Gaussian mixture as MixtureSameFamily, and as a graph: k ~ Categorical summed out
    (scg.Marginalize) and x observed under Normal(means[k], sigma[k]). The graph's cost is
    -log sum_k w_k N(x; mu_k, sigma_k) per datapoint: the same number, the same gradients."""
    params = _gmm_params()
    logits, means, log_scale = params
    mixture = D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(means, ops.exp(log_scale)))
    nll = -scg.sum(mixture.log_prob(X_DATA))
    want = scg.grad(nll, params)
    g = scg.Graph()
    with g:
        with g.plate("data", 5):
            k = g.sample("k", D.Categorical(logits=logits), estimator=scg.Marginalize())
            g.observe("x", D.Normal(means[k], ops.exp(log_scale)[k]), X_DATA)
    loss = g.surrogate()
    got = scg.grad(loss, params)
    np.testing.assert_allclose(loss.item(), nll.item(), rtol=1e-14)
    np.testing.assert_allclose(g.objective().item(), nll.item(), rtol=1e-14)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-13, atol=1e-15)
    # and both against the closed form in scipy
    w = sp.softmax(logits.data)
    lik = (w * st.norm(means.data, np.exp(log_scale.data)).pdf(X_DATA[:, None])).sum(-1)
    np.testing.assert_allclose(nll.item(), -np.log(lik).sum(), rtol=1e-13)


def test_mixture_likelihood_equals_the_graph_with_the_component_enumerated():
    """With scg.Enumerate the graph's objective is an expectation over k, so the mixture's
    likelihood p(x) = E_k[N(x; mu_k, sigma_k)] is the cost exp(log N(x | k)) per datapoint:
    objective and gradients equal those of sum_n exp(mixture.log_prob(x_n)). (Observing x,
    the cost -log N(x | k), gives E_k[-log p(x | k)], Jensen's bound, not the marginal.)"""
    params = _gmm_params()
    logits, means, log_scale = params
    mixture = D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(means, ops.exp(log_scale)))
    lik = scg.sum(ops.exp(mixture.log_prob(X_DATA)))
    want = scg.grad(lik, params)
    g = scg.Graph()
    with g:
        with g.plate("data", 5):
            k = g.sample("k", D.Categorical(logits=logits), estimator=scg.Enumerate())
            g.cost("lik", ops.exp(D.Normal(means[k], ops.exp(log_scale)[k]).log_prob(X_DATA)))
    np.testing.assert_allclose(g.objective().item(), lik.item(), rtol=1e-14)
    got = scg.grad(g.surrogate(), params)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-13, atol=1e-15)
    # observing instead: E_k[-log p(x | k)], larger than the marginal's -log p(x)
    g = scg.Graph()
    with g:
        with g.plate("data", 5):
            k = g.sample("k", D.Categorical(logits=logits), estimator=scg.Enumerate())
            g.observe("x", D.Normal(means[k], ops.exp(log_scale)[k]), X_DATA)
    w = sp.softmax(logits.data)
    expected = -(w * st.norm(means.data, np.exp(log_scale.data)).logpdf(X_DATA[:, None])).sum()
    np.testing.assert_allclose(g.objective().item(), expected, rtol=1e-13)
    assert expected > -scg.sum(mixture.log_prob(X_DATA)).item()
