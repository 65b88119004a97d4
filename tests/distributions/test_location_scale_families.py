"""Normal, LogNormal, Laplace, StudentT, Cauchy and HalfNormal: what is particular to each.

StudentT's moments where they do not exist and its implicit gradient in df (against
finite differences of scipy's inverse CDF and against the analytic expectation),
HalfNormal at zero, and the exact per-sample pathwise gradients of Normal and
HalfNormal. What every scalar family shares is checked over the table in ``families.py``
by ``test_families.py`` (the helpers and tolerances are described there)."""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st
from families import Z, per_sample_derivatives, rng, square

import scg
import scg.distributions as D

# ---- values against scipy --------------------------------------------------------------------


def test_student_t_mean_and_variance_where_they_do_not_exist():
    d = D.StudentT(np.array([0.5, 1.0, 1.5, 2.0, 2.5]), 3.0, 2.0)
    ref = st.t(np.array([0.5, 1.0, 1.5, 2.0, 2.5]), 3.0, 2.0)
    np.testing.assert_array_equal(np.isnan(d.mean.data), [True, True, False, False, False])
    np.testing.assert_allclose(d.mean.data[2:], 3.0)
    np.testing.assert_array_equal(d.variance.data[2:4], [np.inf, np.inf])
    np.testing.assert_allclose(d.variance.data[4], 4.0 * 2.5 / 0.5)
    np.testing.assert_allclose(d.variance.data[2:], ref.var()[2:])
    assert np.isnan(d.variance.data[:2]).all()


def test_half_normal_at_zero_matches_scipy():
    np.testing.assert_allclose(D.HalfNormal(2.0).log_prob(0.0).data, st.halfnorm(scale=2.0).logpdf(0.0))


# ---- gradients ---------------------------------------------------------------------------------


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


def test_normal_pathwise_gradient_is_exact_per_sample():
    g1, g2 = per_sample_derivatives("Normal", dict(loc=0.5, scale=1.5), "scale", square, 5, seed=0)
    eps = rng(0).standard_normal(5)  # the draws behind z = loc + scale eps
    np.testing.assert_allclose(g1, 2 * (0.5 + 1.5 * eps) * eps, rtol=1e-12)
    np.testing.assert_allclose(g2, 2 * eps**2, rtol=1e-12)
