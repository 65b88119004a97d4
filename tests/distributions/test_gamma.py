"""Gamma: what is particular to it. The density at zero, and the implicit
reparameterization gradient sample by sample (against finite differences of scipy's
inverse CDF, first and second order, float64 and float32) and its exact rate part.
What every scalar family shares is checked over ``families.py`` by ``test_families.py``;
extreme concentrations are in ``test_gamma_extremes.py``."""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st
from families import identity, per_sample_derivatives, rng

import scg
import scg.distributions as D

# ---- the density at the edge of the support -------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
def test_gamma_log_prob_at_zero_matches_scipy(a, dtype):
    lp = D.Gamma(np.asarray(a, dtype), np.asarray(2.0, dtype)).log_prob(np.zeros((), dtype))
    expected = st.gamma(a, scale=0.5).logpdf(0.0)  # +inf, log 2, -inf
    assert not np.isnan(lp.data)
    np.testing.assert_allclose(lp.data, expected, rtol=1e-6)


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
    g1, g2 = per_sample_derivatives("Gamma", dict(concentration=2.0, rate=3.0), "rate", identity, 6, seed=0)
    z = rng(0).standard_gamma(2.0, size=6) / 3.0
    np.testing.assert_allclose(g1, -z / 3.0, rtol=1e-12)
    np.testing.assert_allclose(g2, 2 * z / 9.0, rtol=1e-12)
