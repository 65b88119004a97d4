"""Wishart: log_prob and entropy against scipy.stats.wishart (float64 and float32, p = 2 and 3,
every parameterization, batched df and matrices), mean / variance / mode against their closed
forms, sample moments within 4 standard errors, pathwise gradients (Bartlett draws, chi-square
diagonal implicitly reparameterized) against finite differences of closed-form expectations,
second-order gradient checks of log_prob, bad parameters and values."""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import scg
import scg.distributions as D
from scg.distributions import constraints
from scg.distributions.linalg import cholesky

FORMS = ["covariance_matrix", "precision_matrix", "scale_tril"]


def spd(rng, p, batch=()):
    m = rng.standard_normal(batch + (p, p))
    return m @ np.swapaxes(m, -1, -2) + p * np.eye(p)


def sym(a):
    return 0.5 * (a + scg.ops.swapaxes(a, -1, -2))


def given(form, cov):
    """The scale in ``form``, computed in float64 from the covariance."""
    if form == "covariance_matrix":
        return cov
    if form == "precision_matrix":
        prec = np.linalg.inv(cov)
        return 0.5 * (prec + np.swapaxes(prec, -1, -2))
    return np.linalg.cholesky(cov)


def covariance_of(form, m):
    """The covariance (float64) that the parameter ``m`` in ``form`` stands for."""
    m = np.asarray(m, dtype=np.float64)
    if form == "covariance_matrix":
        return m
    if form == "precision_matrix":
        return np.linalg.inv(m)
    return m @ np.swapaxes(m, -1, -2)


def log_prob_terms(df, cov, x):
    """The five terms of log p(x) (float64), for the float32 tolerance."""
    p = x.shape[-1]
    _, log_det_x = np.linalg.slogdet(x)
    _, log_det_s = np.linalg.slogdet(cov)
    trace = np.trace(np.linalg.solve(cov, x))
    return [0.5 * (df - p - 1) * log_det_x, 0.5 * trace, 0.5 * df * p * np.log(2), 0.5 * df * log_det_s,
            sp.multigammaln(0.5 * df, p)]


# ---- densities --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("p", [2, 3])
def test_log_prob_against_scipy(p, form, dtype, rng):
    cov = spd(rng, p, (2,))
    df = np.array([p - 0.5, p + 3.7])  # one below p: real df > p - 1 is allowed
    m = given(form, cov).astype(dtype)
    d = D.Wishart(df.astype(dtype), **{form: m})
    assert d.batch_shape == (2,) and d.event_shape == (p, p) and d.dtype == dtype
    x = np.stack([st.wishart(df[i], cov[i]).rvs(5, random_state=rng) for i in range(2)], axis=1)  # (5, 2, p, p)
    x = x.astype(dtype)
    lp = d.log_prob(x)
    assert lp.shape == (5, 2) and lp.dtype == dtype
    # the reference at the parameters and values as rounded to dtype
    df64, cov64, x64 = df.astype(dtype).astype(np.float64), covariance_of(form, m), x.astype(np.float64)
    for k in range(5):
        for i in range(2):
            expected = st.wishart(df64[i], cov64[i]).logpdf(x64[k, i])
            if dtype == np.float64:
                tol = 1e-10 * abs(expected)
            else:  # a few eps of the largest magnitudes that cancel, times a condition factor of x
                size = sum(abs(t) for t in log_prob_terms(df64[i], cov64[i], x64[k, i]))
                tol = 64 * np.finfo(np.float32).eps * (size + p * np.linalg.cond(x64[k, i]))
            assert abs(lp.data[k, i] - expected) <= tol, (k, i, lp.data[k, i], expected, tol)


def test_log_prob_broadcasts_df_against_matrices_and_values(rng):
    cov = spd(rng, 2, (3,))
    df = np.array([[2.5], [6.0]])  # (2, 1) against the matrices' (3,): batch (2, 3)
    d = D.Wishart(df, cov)
    assert d.batch_shape == (2, 3)
    x = spd(rng, 2)  # one value for every batch element
    lp = d.log_prob(x)
    assert lp.shape == (2, 3)
    for a in range(2):
        for b in range(3):
            np.testing.assert_allclose(lp.data[a, b], st.wishart(df[a, 0], cov[b]).logpdf(x), rtol=1e-10)


@pytest.mark.parametrize("p", [2, 3])
def test_entropy_against_scipy(p, rng):
    cov = spd(rng, p, (2,))
    df = np.array([p - 0.7, p + 4.2])
    for form in FORMS:
        h = D.Wishart(df, **{form: given(form, cov)}).entropy()
        assert h.shape == (2,)
        expected = [st.wishart(df[i], cov[i]).entropy() for i in range(2)]
        np.testing.assert_allclose(h.data, expected, rtol=1e-10)


def test_python_number_parameters_follow_a_float32_value():
    d = D.Wishart(3.0, [[2.0, 0.5], [0.5, 1.0]])
    assert d.dtype == np.float64
    lp = d.log_prob(np.eye(2, dtype=np.float32))
    assert lp.dtype == np.float32
    np.testing.assert_allclose(lp.data, st.wishart(3.0, [[2.0, 0.5], [0.5, 1.0]]).logpdf(np.eye(2)), rtol=1e-5)


# ---- moments ------------------------------------------------------------------------------


def test_mean_variance_mode_closed_forms(rng):
    p = 3
    cov = spd(rng, p, (3,))
    df = np.array([2.5, 4.0, 9.5])  # df <= p + 1 has no mode: NaN, as torch
    d = D.Wishart(df, covariance_matrix=cov)
    diag = np.diagonal(cov, axis1=-2, axis2=-1)
    np.testing.assert_allclose(d.mean.data, df[:, None, None] * cov, rtol=1e-12)
    np.testing.assert_allclose(d.variance.data, df[:, None, None] * (cov ** 2 + diag[:, :, None] * diag[:, None, :]),
                               rtol=1e-12)
    mode = d.mode.data
    assert mode.shape == (3, p, p)
    assert np.isnan(mode[:2]).all()
    np.testing.assert_allclose(mode[2], (df[2] - p - 1) * cov[2], rtol=1e-12)
    np.testing.assert_allclose(d.stddev.data, np.sqrt(d.variance.data), rtol=1e-12)
    for form in ("precision_matrix", "scale_tril"):  # the same moments from the other forms
        other = D.Wishart(df, **{form: given(form, cov)})
        np.testing.assert_allclose(other.mean.data, d.mean.data, rtol=1e-10)
        np.testing.assert_allclose(other.variance.data, d.variance.data, rtol=1e-10)
        np.testing.assert_allclose(other.covariance_matrix.data, cov, rtol=1e-10)
        np.testing.assert_allclose(other.precision_matrix.data, np.linalg.inv(cov), rtol=1e-10)
        np.testing.assert_allclose(other.scale_tril.data, np.linalg.cholesky(cov), rtol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_sample_moments_within_four_standard_errors(form, rng):
    p, n = 3, 4000
    cov = spd(rng, p)
    d = D.Wishart(np.array([2.3, 6.5]), **{form: given(form, cov)})
    w = d.sample((n,)).data
    assert w.shape == (n, 2, p, p)
    np.testing.assert_array_equal(w, np.swapaxes(w, -1, -2))
    # positive definite in floating point where df is well above p - 1 (near it, Chi2(df - p + 1)
    # puts mass below 1e-16 of the other terms, and a few draws are singular to working precision)
    assert (np.linalg.eigvalsh(w[:, 1]) > 0).all()
    mean, var = d.mean.data, d.variance.data
    assert (np.abs(w.mean(0) - mean) <= 4 * np.sqrt(var / n)).all()
    centred = (w - w.mean(0)) ** 2
    se = centred.std(0) / np.sqrt(n)  # standard error of the sample variance, estimated from the draws
    assert (np.abs(centred.mean(0) - var) <= 4 * se).all()


def test_rsample_shapes_and_dtypes():
    d = D.Wishart(np.float32(4.0), covariance_matrix=np.eye(2, dtype=np.float32))
    w = d.rsample((3, 5))
    assert w.shape == (3, 5, 2, 2) and w.dtype == np.float32
    assert d.sample().shape == (2, 2)
    assert np.isfinite(d.log_prob(w).data).all()  # its own draws are inside the support, under validation


# ---- pathwise gradients -------------------------------------------------------------------


def expected_log_det(df, a):
    """E[log det W] = log det Sigma + p log 2 + sum_i digamma((df - i)/2), Sigma = sym(a)."""
    p = a.shape[-1]
    return np.linalg.slogdet(0.5 * (a + a.T))[1] + p * np.log(2) + sp.digamma((df - np.arange(p)) / 2).sum()


def expected_trace(df, a):
    """E[trace W] = df trace(Sigma)."""
    return df * np.trace(a)


def central_differences(f, df, a, h=1e-5):
    d_df = (f(df + h, a) - f(df - h, a)) / (2 * h)
    d_a = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        e = np.zeros_like(a)
        e[idx] = h
        d_a[idx] = (f(df, a + e) - f(df, a - e)) / (2 * h)
    return d_df, d_a


def log_det(w):
    return 2 * scg.ops.sum(scg.ops.log(scg.distributions.linalg.diagonal(cholesky(w))), axis=-1)


def trace(w):
    return scg.ops.sum(scg.distributions.linalg.diagonal(w), axis=-1)


@pytest.mark.parametrize("statistic, expectation, df0", [
    (log_det, expected_log_det, 3.5), (log_det, expected_log_det, 7.0),  # (near p - 1, a few draws are singular)
    (trace, expected_trace, 2.4), (trace, expected_trace, 7.0),
])
def test_rsample_gradients_match_differentiated_expectations(statistic, expectation, df0, rng):
    p, n = 3, 4000
    a0 = spd(rng, p) / p
    # one copy of df and of the matrix per draw, so every draw's gradient is seen on its own
    df = scg.tensor(np.full(n, df0), requires_grad=True)
    a = scg.tensor(np.broadcast_to(a0, (n, p, p)).copy(), requires_grad=True)
    w = D.Wishart(df, covariance_matrix=sym(a)).rsample()
    g_df, g_a = scg.grad(scg.ops.sum(statistic(w)), [df, a])
    want_df, want_a = central_differences(expectation, df0, a0)
    se_df = g_df.data.std() / np.sqrt(n)
    assert abs(g_df.data.mean() - want_df) <= 4 * se_df, (g_df.data.mean(), want_df, se_df)
    se_a = g_a.data.std(0) / np.sqrt(n)
    assert (np.abs(g_a.data.mean(0) - want_a) <= 4 * se_a + 1e-8).all(), (g_a.data.mean(0), want_a, se_a)


# ---- gradient checks ----------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_log_prob_gradcheck_second_order(form, rng):
    p = 3
    cov = spd(rng, p, (2,))
    m = given(form, cov)
    x = spd(rng, p, (2,))
    df = np.array([2.7, 5.5])
    if form == "scale_tril":
        mask = np.tril(np.ones((p, p)))
        build = lambda df_, m_: D.Wishart(df_, scale_tril=m_ * mask)
    else:
        build = lambda df_, m_: D.Wishart(df_, **{form: sym(m_)})
    assert scg.gradcheck(lambda df_, m_, x_: build(df_, m_).log_prob(sym(x_)), [df, m, x], order=2)


def test_entropy_gradcheck_second_order(rng):
    cov = spd(rng, 2, (2,))
    assert scg.gradcheck(lambda df_, m_: D.Wishart(df_, covariance_matrix=sym(m_)).entropy(),
                         [np.array([1.6, 4.0]), cov], order=2)


# ---- parameters and values ----------------------------------------------------------------


def test_constraints_are_objects():
    d = D.Wishart(4.0, np.eye(3))
    assert d.support is constraints.positive_definite
    assert d.arg_constraints["covariance_matrix"] is constraints.positive_definite
    assert d.arg_constraints["scale_tril"] is constraints.lower_cholesky
    assert d.arg_constraints["df"].check(np.array([2.5, 2.0])).tolist() == [True, False]  # df > p - 1 = 2


@pytest.mark.parametrize("kwargs, name", [
    (dict(df=1.0, covariance_matrix=np.eye(2)), "'df'"),  # df must exceed p - 1 = 1
    (dict(df=np.array([3.0, 0.5]), covariance_matrix=np.eye(2)), "'df'"),
    (dict(df=np.inf, covariance_matrix=np.eye(2)), "'df'"),
    (dict(df=np.nan, covariance_matrix=np.eye(2)), "'df'"),
    (dict(df=3.0), "exactly one"),
    (dict(df=3.0, covariance_matrix=np.eye(2), scale_tril=np.eye(2)), "exactly one"),
    (dict(df=3.0, covariance_matrix=np.ones(2)), "'covariance_matrix'"),
    (dict(df=3.0, covariance_matrix=np.ones((2, 3))), "'covariance_matrix'"),
    (dict(df=3.0, covariance_matrix=np.array([[1.0, 0.5], [0.0, 1.0]])), "'covariance_matrix'"),
    (dict(df=3.0, covariance_matrix=np.array([[1.0, 2.0], [2.0, 1.0]])), "'covariance_matrix'"),
    (dict(df=3.0, precision_matrix=np.array([[1.0, 2.0], [2.0, 1.0]])), "'precision_matrix'"),
    (dict(df=3.0, scale_tril=np.array([[1.0, 1.0], [0.0, 1.0]])), "'scale_tril'"),
    (dict(df=3.0, scale_tril=np.array([[1.0, 0.0], [1.0, -1.0]])), "'scale_tril'"),
    (dict(df=3.0, covariance_matrix=np.array([[np.inf, 0.0], [0.0, 1.0]])), "'covariance_matrix'"),
    (dict(df=np.array([3.0, 4.0, 5.0]), covariance_matrix=np.broadcast_to(np.eye(2), (2, 2, 2))), "do not broadcast"),
])
def test_invalid_parameters_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        D.Wishart(**kwargs)


NOT_SPD = np.array([[1.0, 2.0], [2.0, 1.0]])
NOT_SYMMETRIC = np.array([[2.0, 0.5], [0.0, 2.0]])


@pytest.mark.parametrize("bad", [NOT_SPD, NOT_SYMMETRIC, -np.eye(2), np.array([[np.inf, 0.0], [0.0, 1.0]])])
def test_value_outside_the_support_raises_under_validation(bad):
    with pytest.raises(ValueError, match="Wishart.log_prob"):
        D.Wishart(3.0, np.eye(2)).log_prob(bad)


def test_value_outside_the_support_is_impossible_without_validation():
    df = scg.tensor(3.5, requires_grad=True)
    d = D.Wishart(df, np.eye(2), validate_args=False)
    x = np.stack([NOT_SPD, NOT_SYMMETRIC, np.eye(2), np.full((2, 2), np.nan)])
    lp = d.log_prob(x)
    assert lp.data[0] == -np.inf and lp.data[1] == -np.inf and lp.data[3] == -np.inf
    np.testing.assert_allclose(lp.data[2], st.wishart(3.5, np.eye(2)).logpdf(np.eye(2)), rtol=1e-12)
    (g,) = scg.grad(lp[2], [df])  # the valid value's gradient is untouched by the invalid ones
    assert np.isfinite(g.data)


def test_value_of_the_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"Wishart.log_prob: value must end in \(2, 2\)"):
        D.Wishart(3.0, np.eye(2)).log_prob(np.eye(3))
