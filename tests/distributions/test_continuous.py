"""Exponential, Uniform, Beta and Dirichlet: what is particular to each.

The edges of the supports (Beta at 0 and 1, Exponential at 0, Uniform's open upper end),
the default-validation switch, the Dirichlet's simplex, values, moments, shapes and
gradients, tiny concentrations, and the exact per-sample Uniform gradient. What every
scalar family shares is checked over the table in ``families.py`` by ``test_families.py``;
the helpers and tolerances (``f32_tol``, ``Z`` standard errors) are described there.
"""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st
from families import (
    EPS32,
    Z,
    assert_mean_within_se,
    assert_moments,
    f32_tol,
    identity,
    per_sample_derivatives,
    rng,
)

import scg
import scg.distributions as D

# ---- the edges of the supports ----------------------------------------------------------------


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
    # high is not (torch's density: low <= x < high); torch gives -inf there even under
    # validation (its support constraint is closed), scg refuses (README, differences)
    with pytest.raises(ValueError, match=r"value np.float64\(3.0\) is outside the support, low <= x < high"):
        u.log_prob(3.0)
    assert D.Uniform(-1.0, 3.0, validate_args=False).log_prob(3.0).data == -np.inf


def test_default_validation_switch():
    # on by default (as torch): values outside the support raise
    with pytest.raises(ValueError, match="outside the support"):
        D.Exponential(1.0).log_prob(-1.0)
    with pytest.raises(ValueError, match="outside the support"):
        D.Dirichlet([1.0, 2.0]).log_prob([0.7, 0.7])
    D.Distribution.set_default_validate_args(False)
    try:
        assert D.Exponential(1.0).log_prob(-1.0).data == -np.inf
        assert D.Dirichlet([1.0, 2.0]).log_prob([0.7, 0.7]).data == -np.inf
    finally:
        D.Distribution.set_default_validate_args(True)


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
    d = D.Dirichlet(np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]), validate_args=False)
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


# ---- Dirichlet samples, tiny concentrations, rounding ----------------------------------------


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


# ---- reparameterized gradients ----------------------------------------------------------------


# (family, parameters, parameter differentiated, f, E[f(z)] as a function of the parameters)


def test_uniform_pathwise_gradient_is_exact_per_sample():
    g1, g2 = per_sample_derivatives("Uniform", dict(low=-1.0, high=2.0), "low", identity, 4, seed=0)
    u = rng(0).random(4)  # the same uniforms the sampler drew: dz/dlow = 1 - u exactly
    np.testing.assert_allclose(g1, 1 - u, rtol=1e-12)
    np.testing.assert_array_equal(g2, 0)


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
