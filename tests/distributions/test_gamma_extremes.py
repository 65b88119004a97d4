"""Beta, Dirichlet and Gamma at extreme concentrations (issue 11).

Small concentrations: the Gammas behind Beta and Dirichlet underflow, and the ratio of
two floored draws used to give exactly the midpoint / centroid. The samplers are checked
with Kolmogorov-Smirnov tests against ``scipy.stats`` (fixed seeds, p > 1e-3).

Large concentrations: the implicit gradient of a Gamma sample must stay accurate (against
finite differences of scipy's inverse CDF) and use bounded memory.
"""

import tracemalloc

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import scg
import scg.distributions as D
from scg.distributions.gamma import rsample_log_standard_gamma


def rng(seed):
    return np.random.default_rng(seed)


# ---- small concentrations: the samplers ---------------------------------------------------


def assert_matches_below_half(x, dist, lo=1e-30):
    """x (1-D draws) against the scipy distribution ``dist`` on [0, 1/2]: the fraction of
    draws at or below 1/2 within 4 standard errors, and a KS test of the draws in
    [lo, 1/2] against the conditional CDF. (Small concentrations put most mass within
    rounding of 0 and 1, where floats hold many ties and KS does not apply; floats are
    fine-grained in [lo, 1/2], and Beta(b, a) = 1 - Beta(a, b) covers the upper half.)"""
    x = x.astype(np.float64)
    n, half = len(x), dist.cdf(0.5)
    assert abs(np.mean(x <= 0.5) - half) <= 4 * np.sqrt(half * (1 - half) / n)
    inside = x[(x >= lo) & (x <= 0.5)]
    f_lo = dist.cdf(lo)
    assert len(inside) > 50
    p = st.kstest(inside, lambda v: (dist.cdf(v) - f_lo) / (half - f_lo)).pvalue
    assert p > 1e-3, p


@pytest.mark.parametrize("a,b,dtype", [(1e-3, 1e-3, np.float64), (1e-3, 1e-3, np.float32),
                                       (0.01, 0.05, np.float32), (0.05, 0.01, np.float32)])
def test_beta_small_concentrations_match_scipy(a, b, dtype):
    x = D.Beta(np.asarray(a, dtype), np.asarray(b, dtype)).sample((20_000,), rng=rng(1)).data
    assert x.dtype == dtype
    # Before the fix, Beta(1e-3, 1e-3) gave exactly 0.5 in 24% (float64) / 84% (float32)
    # of draws; P(0.01 < x < 0.99) is 0.005.
    assert np.mean(x == 0.5) < 0.01
    assert_matches_below_half(x, st.beta(a, b))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dirichlet_small_concentrations_match_scipy(dtype):
    alpha = np.array([1e-3, 2e-3, 1e-3])
    x = D.Dirichlet(alpha.astype(dtype)).sample((20_000,), rng=rng(2)).data
    assert x.dtype == dtype
    # Before the fix all three Gammas floored together in 12% of float64 draws: the centroid.
    assert np.mean(np.all(np.abs(x - 1 / 3) < 1e-3, axis=-1)) < 0.01
    np.testing.assert_allclose(x.sum(-1), 1, rtol=4 * np.finfo(dtype).eps)
    for k in range(3):  # the marginals are Beta(a_k, a0 - a_k)
        assert_matches_below_half(x[:, k], st.beta(alpha[k], alpha.sum() - alpha[k]))


def test_log_gamma_sample_and_gradient_where_the_sample_underflows():
    """For z < 1e-100, P(a, z) = z^a / Gamma(a + 1) to 1e-100, so at fixed u = P:
    log z = (log u + lgamma(a + 1)) / a, d log z/da = (digamma(a + 1) - log z) / a and
    d2 log z/da2 = (trigamma(a + 1) - 2 d log z/da) / a."""
    a0 = 1e-3
    a = scg.tensor(np.full(2000, a0), requires_grad=True)
    log_z = rsample_log_standard_gamma(a, (2000,), rng(3))
    lz = log_z.data
    assert np.isfinite(lz).all() and (lz < -745).mean() > 0.4  # z itself would be 0 there
    # log z is distributed as (log u + lgamma(a + 1)) / a where z is tiny: u = P(a, z) ~ U(0, 1).
    tiny = lz < -230
    u = np.exp(a0 * lz[tiny] - sp.gammaln(a0 + 1))
    assert st.kstest(u, st.uniform(0, np.exp(-230 * a0 - sp.gammaln(a0 + 1))).cdf).pvalue > 1e-3
    (g1,) = scg.grad(scg.sum(log_z), [a], create_graph=True)
    (g2,) = scg.grad(scg.sum(g1), [a])
    d1 = (sp.digamma(a0 + 1) - lz) / a0
    d2 = (sp.polygamma(1, a0 + 1) - 2 * d1) / a0
    np.testing.assert_allclose(g1.data[tiny], d1[tiny], rtol=1e-10)
    np.testing.assert_allclose(g2.data[tiny], d2[tiny], rtol=1e-8)


# ---- large concentrations: the implicit gradient ------------------------------------------


def _inverse_cdf_derivative(alpha, z):
    """dz/dalpha at fixed u = P(alpha, z), by a central difference of scipy's inverse CDF
    with Richardson extrapolation (steps of 1e-2 min(alpha, sqrt(alpha)): small against
    alpha and against the distribution's width). Above the median it holds q = 1 - u fixed instead, which
    keeps upper-tail probabilities like 1e-12 exact."""
    upper = z > alpha
    p = np.where(upper, sp.gammaincc(alpha, z), sp.gammainc(alpha, z))
    h = 1e-2 * np.minimum(alpha, np.sqrt(alpha))

    def inv(shift):
        return np.where(upper, sp.gammainccinv(alpha + shift, p), sp.gammaincinv(alpha + shift, p))

    def d1(h):
        return (inv(h) - inv(-h)) / (2 * h)

    np.testing.assert_allclose(inv(0), z, rtol=1e-12)
    return (4 * d1(h / 2) - d1(h)) / 3



def _gradient_and_peak_memory(z, a):
    """d sum(z) / da, and the peak of Python-traced memory while computing it (bytes)."""
    tracemalloc.start()
    try:
        (g1,) = scg.grad(scg.sum(z), [a])
        return g1, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

@pytest.mark.parametrize("alpha", [1e3, 1e4, 1e6])
def test_gamma_implicit_gradient_at_large_concentrations(alpha):
    """Accurate, in memory that does not grow with alpha (the series used to take
    200 x ~(alpha + 10 sqrt(alpha)) float64s per intermediate: 18 MB at 1e4, 1.6 GB at 1e6)."""
    a = scg.tensor(np.full(200, alpha), requires_grad=True)
    z = D.Gamma(a, 1.0).rsample(rng=rng(5))
    g1, peak = _gradient_and_peak_memory(z, a)
    assert peak < 8 * 2**20, peak
    # dz/da is ~1 + xi / (2 sqrt(a)); rounding of z (1e-16 z) in the differences of
    # the inverse CDF limits them to ~1e-16 z / h = 1e-14 sqrt(a).
    rtol = 1e-8 + 1e-13 * np.sqrt(alpha)
    np.testing.assert_allclose(g1.data, _inverse_cdf_derivative(alpha, z.data), rtol=rtol)


def test_gamma_implicit_gradient_in_the_far_tails():
    """Values a sampler rarely gives, on both sides of the series/quadrature switch (z = 4).
    Before the fix the series lost 6e-5 (relative) at z = 24 in the upper tail."""
    alpha = np.array([0.3, 2.0, 25.0, 29.0, 40.0, 40.0, 300.0, 300.0, 0.01, 5.0])
    u = np.array([1 - 1e-12, 1 - 1e-9, 0.99, 0.6, 1e-6, 0.999, 1e-10, 1 - 1e-10, 1 - 1e-8, 0.01])
    z = np.where(u > 0.5, sp.gammainccinv(alpha, 1 - u), sp.gammaincinv(alpha, u))
    a = scg.tensor(alpha, requires_grad=True)
    log_z = D.gamma.log_standard_gamma(a, log_sample=np.log(z))
    (g1,) = scg.grad(scg.sum(scg.exp(log_z)), [a])
    np.testing.assert_allclose(g1.data, _inverse_cdf_derivative(alpha, z), rtol=1e-7)


def test_gamma_gradient_memory_is_bounded():
    """One draw at concentration 1e6 in a batch of 1000 used to ask for 7.5 GiB
    (n x (largest sample) series terms)."""
    alpha = np.full(1000, 2.0)
    alpha[0] = 1e6
    a = scg.tensor(alpha, requires_grad=True)
    z = D.Gamma(a, 1.0).rsample(rng=rng(6))
    g1, peak = _gradient_and_peak_memory(z, a)
    assert peak < 40 * 2**20, peak
    assert np.isfinite(g1.data).all()
    np.testing.assert_allclose(g1.data[0], _inverse_cdf_derivative(1e6, z.data[:1])[0], rtol=1e-7)
