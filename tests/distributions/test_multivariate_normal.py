"""MultivariateNormal and LowRankMultivariateNormal, and the Cholesky / triangular-solve
primitives under them: values against scipy.stats.multivariate_normal and numpy in
float64 and float32, sample moments within 4 standard errors, gradients of log_prob,
entropy, rsample and KL at first and second order, KL against the closed form written
with numpy (and Monte Carlo), and bad parameters raising ValueError naming them."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats as st

import scg
import scg.distributions as D
from scg.distributions.linalg import cholesky, solve_triangular

TRIL = np.tril(np.ones((3, 3)))


def spd(rng, n, batch=()):
    m = rng.standard_normal(batch + (n, n))
    return m @ np.swapaxes(m, -1, -2) + n * np.eye(n)


def sym(a):
    return 0.5 * (a + scg.ops.swapaxes(a, -1, -2))


# ---- the primitives -----------------------------------------------------------------


def test_cholesky_and_solve_match_numpy_and_scipy(rng):
    a = spd(rng, 3, (2,))
    L = np.linalg.cholesky(a)
    np.testing.assert_allclose(cholesky(a).data, L, rtol=1e-12)
    b = rng.standard_normal((3, 2))
    for i in range(2):
        expected = scipy.linalg.solve(L[i], b)
        np.testing.assert_allclose(solve_triangular(L, b).data[i], expected, rtol=1e-10)
        np.testing.assert_allclose(solve_triangular(L, b, transpose=True).data[i], scipy.linalg.solve(L[i].T, b), rtol=1e-10)
    with pytest.raises(ValueError, match="positive definite"):
        cholesky(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_primitive_gradients_first_and_second_order(rng):
    a = spd(rng, 3, (2,))
    L = np.linalg.cholesky(a)
    b = rng.standard_normal((2, 3, 2))
    assert scg.gradcheck(lambda m: cholesky(sym(m)), [a], order=2)
    assert scg.gradcheck(lambda l, x: solve_triangular(l * TRIL, x), [L, b], order=2)
    assert scg.gradcheck(lambda l, x: solve_triangular(l * TRIL, x, transpose=True), [L, b], order=2)
    # broadcasting the matrix over a batch of right-hand sides sums its gradient back
    assert scg.gradcheck(lambda l, x: solve_triangular(l * TRIL, x), [L[0], b], order=2)


def test_gradcheck_rejects_a_wrong_cholesky_vjp(rng):
    # the checker above could not pass a Cholesky whose VJP forgets to symmetrise
    from scg.distributions import linalg

    a = spd(rng, 3)
    wrong = scg.autodiff.primitive("wrong", np.linalg.cholesky, lambda g, ans, x: linalg._cholesky_vjp(g, ans, x) * TRIL)
    with pytest.raises(scg.GradcheckError):
        scg.gradcheck(lambda m: wrong(sym(m)), [a])


# ---- MultivariateNormal ---------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("form", ["covariance_matrix", "precision_matrix", "scale_tril"])
def test_mvn_against_scipy(form, dtype, tol, rng):
    cov = spd(rng, 3, (2,))
    loc = rng.standard_normal((2, 3))
    given = {"covariance_matrix": cov, "precision_matrix": np.linalg.inv(cov), "scale_tril": np.linalg.cholesky(cov)}[form]
    given = 0.5 * (given + np.swapaxes(given, -1, -2)) if form != "scale_tril" else given
    d = D.MultivariateNormal(loc.astype(dtype), **{form: given.astype(dtype)})
    assert d.batch_shape == (2,) and d.event_shape == (3,) and d.dtype == dtype
    x = rng.standard_normal((5, 2, 3)).astype(dtype)
    lp = d.log_prob(x)
    assert lp.shape == (5, 2) and lp.dtype == dtype
    for i in range(2):
        ref = st.multivariate_normal(loc[i], cov[i])
        np.testing.assert_allclose(lp.data[:, i], ref.logpdf(x[:, i].astype(np.float64)), rtol=tol)
        np.testing.assert_allclose(d.entropy().data[i], ref.entropy(), rtol=tol)
    np.testing.assert_allclose(d.mean.data, loc, rtol=tol)
    np.testing.assert_allclose(d.variance.data, np.diagonal(cov, axis1=-2, axis2=-1), rtol=tol)
    np.testing.assert_allclose(d.covariance_matrix.data, cov, rtol=tol, atol=tol)
    np.testing.assert_allclose(d.precision_matrix.data, np.linalg.inv(cov), rtol=tol, atol=tol)
    np.testing.assert_allclose(d.scale_tril.data, np.linalg.cholesky(cov), rtol=tol, atol=tol)


def test_mvn_batch_shapes_broadcast_loc_and_matrix(rng):
    d = D.MultivariateNormal(np.zeros((4, 1, 2)), covariance_matrix=spd(rng, 2, (3,)))
    assert d.batch_shape == (4, 3) and d.event_shape == (2,)
    assert d.sample((5,)).shape == (5, 4, 3, 2)
    assert d.log_prob(np.zeros(2)).shape == (4, 3)
    assert d.entropy().shape == (4, 3) and d.mean.shape == (4, 3, 2)


def test_mvn_sample_moments(rng):
    cov = spd(rng, 3)
    loc = np.array([1.0, -2.0, 0.5])
    n = 50_000
    x = D.MultivariateNormal(loc, covariance_matrix=cov).sample((n,), rng=np.random.default_rng(7)).data
    assert x.shape == (n, 3)
    var = np.diag(cov)
    assert np.all(np.abs(x.mean(0) - loc) <= 4 * np.sqrt(var / n))
    # se of a sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n) for a Gaussian
    se = np.sqrt((np.outer(var, var) + cov**2) / n)
    assert np.all(np.abs(np.cov(x.T) - cov) <= 4 * se)


def test_mvn_rsample_is_loc_plus_scale_tril_times_eps_and_its_gradients(rng):
    L = np.linalg.cholesky(spd(rng, 3))
    loc = scg.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    tril = scg.tensor(L, requires_grad=True)
    z = D.MultivariateNormal(loc, scale_tril=tril).rsample((4,), rng=np.random.default_rng(2))
    eps = np.random.default_rng(2).standard_normal((4, 3))
    np.testing.assert_allclose(z.data, loc.data + eps @ L.T, rtol=1e-12)
    # d sum(z) / d loc = number of draws; d sum(z) / d L_ij = sum over draws of eps_j (rows i <= ...)
    g_loc, g_tril = scg.grad(z.sum(), [loc, tril])
    np.testing.assert_allclose(g_loc.data, [4.0, 4.0, 4.0])
    np.testing.assert_allclose(g_tril.data, np.broadcast_to(eps.sum(0), (3, 3)), rtol=1e-12)

    def draw(m, l, c):
        with_grad = D.MultivariateNormal(m, **{"scale_tril": l * TRIL} if c is None else {"covariance_matrix": sym(c)})
        return with_grad.rsample((3,), rng=np.random.default_rng(4))

    assert scg.gradcheck(lambda m, l: draw(m, l, None), [loc.data, L], order=2)
    assert scg.gradcheck(lambda m, c: draw(m, None, c), [loc.data, spd(rng, 3)], order=2)


def test_mvn_log_prob_and_entropy_gradients_first_and_second_order(rng):
    loc, cov = rng.standard_normal(3), spd(rng, 3)
    x = rng.standard_normal((2, 3))
    assert scg.gradcheck(lambda m, c: D.MultivariateNormal(m, covariance_matrix=sym(c)).log_prob(x), [loc, cov], order=2)
    assert scg.gradcheck(lambda m, p: D.MultivariateNormal(m, precision_matrix=sym(p)).log_prob(x),
                         [loc, np.linalg.inv(cov)], order=2)
    assert scg.gradcheck(lambda m, l: D.MultivariateNormal(m, scale_tril=l * TRIL).log_prob(x),
                         [loc, np.linalg.cholesky(cov)], order=2)
    assert scg.gradcheck(lambda v: D.MultivariateNormal(loc, covariance_matrix=cov).log_prob(v), [x], order=2)
    assert scg.gradcheck(lambda c: D.MultivariateNormal(loc, covariance_matrix=sym(c)).entropy(), [cov], order=2)


def test_mvn_log_prob_gradient_matches_the_analytic_one(rng):
    # d log p / d loc = Sigma^{-1} (x - loc); d log p / d x = -Sigma^{-1} (x - loc)
    loc, cov, x = rng.standard_normal(3), spd(rng, 3), rng.standard_normal(3)
    m, v = scg.tensor(loc, requires_grad=True), scg.tensor(x, requires_grad=True)
    g_m, g_x = scg.grad(D.MultivariateNormal(m, covariance_matrix=cov).log_prob(v), [m, v])
    expected = np.linalg.solve(cov, x - loc)
    np.testing.assert_allclose(g_m.data, expected, rtol=1e-10)
    np.testing.assert_allclose(g_x.data, -expected, rtol=1e-10)


# ---- LowRankMultivariateNormal -------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_lowrank_against_scipy(dtype, tol, rng):
    W = rng.standard_normal((2, 4, 2))
    diag = rng.uniform(0.5, 2.0, (2, 4))
    loc = rng.standard_normal(4)
    d = D.LowRankMultivariateNormal(loc.astype(dtype), W.astype(dtype), diag.astype(dtype))
    assert d.batch_shape == (2,) and d.event_shape == (4,) and d.dtype == dtype
    x = rng.standard_normal((5, 2, 4)).astype(dtype)
    lp = d.log_prob(x)
    assert lp.shape == (5, 2) and lp.dtype == dtype
    cov = W @ np.swapaxes(W, -1, -2) + diag[..., None] * np.eye(4)
    for i in range(2):
        ref = st.multivariate_normal(loc, cov[i])
        np.testing.assert_allclose(lp.data[:, i], ref.logpdf(x[:, i].astype(np.float64)), rtol=tol)
        np.testing.assert_allclose(d.entropy().data[i], ref.entropy(), rtol=tol)
    np.testing.assert_allclose(d.mean.data, np.broadcast_to(loc, (2, 4)), rtol=tol)
    np.testing.assert_allclose(d.variance.data, np.diagonal(cov, axis1=-2, axis2=-1), rtol=tol)
    np.testing.assert_allclose(d.covariance_matrix.data, cov, rtol=tol, atol=tol)
    np.testing.assert_allclose(d.precision_matrix.data, np.linalg.inv(cov), rtol=tol, atol=tol)
    np.testing.assert_allclose(d.scale_tril.data, np.linalg.cholesky(cov), rtol=tol, atol=tol)


def test_lowrank_samples_and_rsample_gradients(rng):
    W, diag, loc = rng.standard_normal((3, 1)), np.array([0.5, 1.0, 2.0]), np.array([1.0, 0.0, -1.0])
    n = 50_000
    x = D.LowRankMultivariateNormal(loc, W, diag).sample((n,), rng=np.random.default_rng(8)).data
    cov = W @ W.T + np.diag(diag)
    var = np.diag(cov)
    assert np.all(np.abs(x.mean(0) - loc) <= 4 * np.sqrt(var / n))
    assert np.all(np.abs(np.cov(x.T) - cov) <= 4 * np.sqrt((np.outer(var, var) + cov**2) / n))
    assert scg.gradcheck(
        lambda m, w, dg: D.LowRankMultivariateNormal(m, w, dg).rsample((2,), rng=np.random.default_rng(1)),
        [loc, W, diag], order=2,
    )


def test_lowrank_log_prob_gradients_first_and_second_order(rng):
    W, diag, loc = rng.standard_normal((3, 2)), np.array([0.5, 1.0, 2.0]), rng.standard_normal(3)
    x = rng.standard_normal((2, 3))
    assert scg.gradcheck(lambda m, w, dg: D.LowRankMultivariateNormal(m, w, dg).log_prob(x), [loc, W, diag], order=2)
    assert scg.gradcheck(lambda w, dg: D.LowRankMultivariateNormal(loc, w, dg).entropy(), [W, diag], order=2)


# ---- KL -----------------------------------------------------------------------------


def kl_by_hand(m1, s1, m2, s2):
    """(tr(S2^-1 S1) + (m2 - m1)^T S2^-1 (m2 - m1) - n + log det S2 - log det S1) / 2."""
    s2_inv = np.linalg.inv(s2)
    diff = m2 - m1
    return 0.5 * (np.trace(s2_inv @ s1) + diff @ s2_inv @ diff - len(m1)
                  + np.linalg.slogdet(s2)[1] - np.linalg.slogdet(s1)[1])


def test_mvn_kl_against_the_closed_form_and_monte_carlo(rng):
    c1, c2 = spd(rng, 3, (2,)), spd(rng, 3)
    m1, m2 = rng.standard_normal((2, 3)), rng.standard_normal(3)
    p = D.MultivariateNormal(m1, covariance_matrix=c1)
    q = D.MultivariateNormal(m2, scale_tril=np.linalg.cholesky(c2))
    kl = D.kl_divergence(p, q)
    assert kl.shape == (2,)
    np.testing.assert_allclose(kl.data, [kl_by_hand(m1[i], c1[i], m2, c2) for i in range(2)], rtol=1e-10)
    n = 20_000
    x = p.sample((n,), rng=np.random.default_rng(9))
    ratio = (p.log_prob(x) - q.log_prob(x)).data
    assert np.all(np.abs(ratio.mean(0) - kl.data) <= 4 * ratio.std(0) / np.sqrt(n))
    assert D.kl_divergence(p, p).data.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


def test_lowrank_kl_pairs_against_the_closed_form(rng):
    W, diag, m1 = rng.standard_normal((3, 2)), np.array([0.5, 1.0, 2.0]), rng.standard_normal(3)
    c1 = W @ W.T + np.diag(diag)
    c2, m2 = spd(rng, 3), rng.standard_normal(3)
    low = D.LowRankMultivariateNormal(m1, W, diag)
    full = D.MultivariateNormal(m2, covariance_matrix=c2)
    np.testing.assert_allclose(D.kl_divergence(low, full).item(), kl_by_hand(m1, c1, m2, c2), rtol=1e-10)
    np.testing.assert_allclose(D.kl_divergence(full, low).item(), kl_by_hand(m2, c2, m1, c1), rtol=1e-10)
    low2 = D.LowRankMultivariateNormal(m2, W[:, :1], diag[::-1])
    c3 = W[:, :1] @ W[:, :1].T + np.diag(diag[::-1])
    np.testing.assert_allclose(D.kl_divergence(low, low2).item(), kl_by_hand(m1, c1, m2, c3), rtol=1e-10)


def test_mvn_kl_gradients_first_and_second_order(rng):
    c1, c2 = spd(rng, 2), spd(rng, 2)
    m1, m2 = rng.standard_normal(2), rng.standard_normal(2)

    def kl(a, s, b, t):
        return D.kl_divergence(D.MultivariateNormal(a, covariance_matrix=sym(s)),
                               D.MultivariateNormal(b, scale_tril=t * np.tril(np.ones((2, 2)))))

    assert scg.gradcheck(kl, [m1, c1, m2, np.linalg.cholesky(c2)], order=2)


def test_mvn_in_a_graph_gets_the_pathwise_gradient(rng):
    # d/dm E[|z - 1|^2] = 2 (m - 1) for z ~ N(m, S), whatever S: averaged over draws
    m = scg.tensor(np.zeros(2), requires_grad=True)
    g = scg.Graph()
    with g:
        z = g.sample("z", D.MultivariateNormal(m, scale_tril=np.array([[1.0, 0.0], [0.5, 1.0]])), n=20_000)
        g.cost("f", ((z - 1.0) ** 2).sum(-1))
    g.surrogate().backward()
    # per-coordinate gradient 2 (z_i - 1), sd 2 sqrt(S_ii), mean over 20,000 draws
    se = 2 * np.sqrt(np.array([1.0, 1.25]) / 20_000)
    assert np.all(np.abs(m.grad.data - (-2.0)) <= 4 * se)


# ---- bad parameters -----------------------------------------------------------------


@pytest.mark.parametrize("make, name", [
    (lambda: D.MultivariateNormal(np.zeros(2), covariance_matrix=np.array([[1.0, 2.0], [2.0, 1.0]])), "covariance_matrix"),
    (lambda: D.MultivariateNormal(np.zeros(2), covariance_matrix=np.array([[1.0, 0.5], [0.0, 1.0]])), "covariance_matrix"),
    (lambda: D.MultivariateNormal(np.zeros(2), covariance_matrix=np.eye(3)), "covariance_matrix"),
    (lambda: D.MultivariateNormal(np.zeros(2), covariance_matrix=np.ones(2)), "covariance_matrix"),
    (lambda: D.MultivariateNormal(np.zeros(2), precision_matrix=-np.eye(2)), "precision_matrix"),
    (lambda: D.MultivariateNormal(np.zeros(2), scale_tril=np.array([[1.0, 0.0], [0.3, -1.0]])), "scale_tril"),
    (lambda: D.MultivariateNormal(np.zeros(2), scale_tril=np.array([[1.0, 0.2], [0.3, 1.0]])), "scale_tril"),
    (lambda: D.MultivariateNormal(np.zeros(2), covariance_matrix=np.eye(2), scale_tril=np.eye(2)), "scale_tril"),
    (lambda: D.MultivariateNormal(np.zeros(2)), "covariance_matrix"),
    (lambda: D.MultivariateNormal(np.array([0.0, np.nan]), covariance_matrix=np.eye(2)), "loc"),
    (lambda: D.MultivariateNormal(np.zeros((3, 2)), covariance_matrix=np.eye(2)[None].repeat(2, 0)), "loc"),
    (lambda: D.LowRankMultivariateNormal(np.zeros(2), np.ones((2, 1)), np.array([1.0, 0.0])), "cov_diag"),
    (lambda: D.LowRankMultivariateNormal(np.zeros(2), np.ones((3, 1)), np.ones(2)), "cov_factor"),
    (lambda: D.LowRankMultivariateNormal(np.zeros(2), np.ones((2, 1)), np.ones(3)), "cov_diag"),
    (lambda: D.LowRankMultivariateNormal(np.zeros(2), np.full((2, 1), np.inf), np.ones(2)), "cov_factor"),
])
def test_bad_parameters_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_a_bad_diagonal_of_scale_tril_is_reported():
    with pytest.raises(ValueError, match=r"'scale_tril' must be positive on its diagonal; got .*-1\.5"):
        D.MultivariateNormal(np.zeros(3), scale_tril=np.diag([1.0, -1.5, 2.0]))


def test_log_prob_refuses_a_value_of_the_wrong_event_size():
    with pytest.raises(ValueError, match="last axis"):
        D.MultivariateNormal(np.zeros(2), covariance_matrix=np.eye(2)).log_prob(np.zeros(3))
    with pytest.raises(ValueError, match="last axis"):
        D.LowRankMultivariateNormal(np.zeros(2), np.ones((2, 1)), np.ones(2)).log_prob(np.zeros(3))
