"""The KL pairs torch registers between ContinuousBernoulli and the other families: each finite
one against numerical integration (scipy.integrate.quad of p (log p - log q) on p's support, in
float64), with the ContinuousBernoulli density normalised by quadrature too (not by the
closed-form normaliser); probs at 1/2, near it (inside and outside the series window), and near 0
and 1; gradients by gradcheck; the pairs whose supports do not nest are +inf with gradients that
are not NaN; float32 in, float32 out."""

import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as st

import scg
import scg.distributions as D

QUAD = dict(epsabs=1e-14, epsrel=1e-12, limit=400)

# probs at 1/2, inside the series window (|l| < 0.02), just outside it, moderate, near 0 and 1,
# and 0 and 1 themselves (clipped to [eps, 1 - eps] like torch, l = -+36.04)
PROBS = np.array([0.5, 0.5 + 1e-4, 0.5 - 0.00505, 0.3, 0.9, 1e-3, 1 - 1e-6, 0.0, 1.0])


def logits_of(probs):
    eps = np.finfo(np.float64).eps
    p = np.clip(probs, eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def cb_logpdf(l):
    """log density of ContinuousBernoulli(logits=l) on [0, 1], normalised by quadrature."""
    m = max(l, 0.0)  # exp(l x - m) <= 1 on [0, 1]
    z = si.quad(lambda x: np.exp(l * x - m), 0, 1, **QUAD)[0]
    return lambda x: l * x - m - np.log(z)


def integrate(logp, logq, lo, hi, points=None):
    def integrand(x):
        lp = logp(x)
        return 0.0 if np.exp(lp) == 0 else np.exp(lp) * (lp - logq(x))

    return si.quad(integrand, lo, hi, points=points, **QUAD)[0]


def cb_points(l):
    # CB(l) is concentrated within ~1/|l| of an end: tell quad where
    return [min(1 / abs(l), 0.5), max(1 - 1 / abs(l), 0.5)] if abs(l) > 2 else None


def check(kl, expected):
    np.testing.assert_allclose(kl.data, expected, rtol=1e-8, atol=1e-13)


def test_beta_continuous_bernoulli():
    a_s, b_s = np.array([0.7, 2.0, 3.5, 1.0]), np.array([1.5, 0.8, 3.0, 1.0])
    for a, b in zip(a_s, b_s):
        beta = D.Beta(np.full(PROBS.shape, a), np.full(PROBS.shape, b))
        kl = D.kl_divergence(beta, D.ContinuousBernoulli(PROBS))
        p = st.beta(a, b)
        expected = [integrate(p.logpdf, cb_logpdf(l), 0, 1) for l in logits_of(PROBS)]
        check(kl, expected)


def test_uniform_continuous_bernoulli():
    lows, highs = np.array([0.0, 0.1, 0.45, 0.0]), np.array([1.0, 0.8, 0.55, 0.01])
    for low, high in zip(lows, highs):
        kl = D.kl_divergence(D.Uniform(np.full(PROBS.shape, low), high), D.ContinuousBernoulli(PROBS))
        log_p = -np.log(high - low)
        expected = [integrate(lambda x: log_p, cb_logpdf(l), low, high) for l in logits_of(PROBS)]
        check(kl, expected)


@pytest.mark.parametrize("q, logq", [
    (D.Exponential(1.3), st.expon(scale=1 / 1.3).logpdf),
    (D.Exponential(0.05), st.expon(scale=1 / 0.05).logpdf),
    (D.Normal(0.2, 0.7), st.norm(0.2, 0.7).logpdf),
    (D.Normal(-3.0, 0.1), st.norm(-3.0, 0.1).logpdf),
    (D.Uniform(0.0, 1.0), lambda x: 0.0),
    (D.Uniform(-0.5, 2.5), lambda x: -np.log(3.0)),
], ids=["Exponential-1.3", "Exponential-0.05", "Normal-a", "Normal-b", "Uniform-01", "Uniform-wide"])
def test_continuous_bernoulli_to(q, logq):
    kl = D.kl_divergence(D.ContinuousBernoulli(PROBS), q)
    expected = [integrate(cb_logpdf(l), logq, 0, 1, cb_points(l)) for l in logits_of(PROBS)]
    check(kl, expected)


def test_logits_at_the_window_edges():
    # the series and direct forms of log C and the mean meet at |l| = 0.02
    logits = np.array([-0.02 - 1e-9, -0.02 + 1e-9, 0.02 - 1e-9, 0.02 + 1e-9, 1e-7, -30.0, 30.0])
    q = D.ContinuousBernoulli(logits=logits)
    check(D.kl_divergence(D.Beta(2.0, 3.0), q),
          [integrate(st.beta(2, 3).logpdf, cb_logpdf(l), 0, 1) for l in logits])
    check(D.kl_divergence(q, D.Normal(0.4, 0.5)),
          [integrate(cb_logpdf(l), st.norm(0.4, 0.5).logpdf, 0, 1, cb_points(l)) for l in logits])


A = np.array
# name -> fn(*params) -> KL, and float64 parameters (interior, so that gradcheck's steps stay there)
FINITE = {
    "Beta-CB": (lambda a, b, l: D.kl_divergence(D.Beta(a, b), D.ContinuousBernoulli(logits=l)),
                [A([2.0, 0.7, 1.2]), A([1.5, 3.0, 0.9]), A([0.3, -4.0, 1e-3])]),
    "Beta-CB-probs": (lambda a, b, p: D.kl_divergence(D.Beta(a, b), D.ContinuousBernoulli(p)),
                      [A([2.0, 0.7, 1.2]), A([1.5, 3.0, 0.9]), A([0.3, 0.02, 0.5001])]),
    "Uniform-CB": (lambda lo, hi, l: D.kl_divergence(D.Uniform(lo, hi), D.ContinuousBernoulli(logits=l)),
                   [A([0.1, 0.0, 0.4]), A([0.8, 0.5, 0.45]), A([0.3, -4.0, 1e-3])]),
    "CB-Exponential": (lambda l, r: D.kl_divergence(D.ContinuousBernoulli(logits=l), D.Exponential(r)),
                       [A([0.3, -4.0, 1e-3]), A([1.3, 0.2, 4.0])]),
    "CB-Normal": (lambda l, m, s: D.kl_divergence(D.ContinuousBernoulli(logits=l), D.Normal(m, s)),
                  [A([0.3, -4.0, 1e-3]), A([0.2, -1.0, 0.5]), A([0.7, 2.0, 0.3])]),
    "CB-Normal-probs": (lambda p, m, s: D.kl_divergence(D.ContinuousBernoulli(p), D.Normal(m, s)),
                        [A([0.3, 0.02, 0.5001]), A([0.2, -1.0, 0.5]), A([0.7, 2.0, 0.3])]),
    "CB-Uniform": (lambda l, lo, hi: D.kl_divergence(D.ContinuousBernoulli(logits=l), D.Uniform(lo, hi)),
                   [A([0.3, -4.0, 1e-3]), A([-0.1, -2.0, -0.3]), A([1.2, 1.5, 3.0])]),
}


@pytest.mark.parametrize("name", sorted(FINITE))
def test_finite_pair_gradcheck(name):
    fn, params = FINITE[name]
    assert scg.gradcheck(fn, params, order=1)


@pytest.mark.parametrize("name", sorted(FINITE))
def test_float32_in_float32_out(name):
    fn, params = FINITE[name]
    kl64 = fn(*params)
    kl32 = fn(*(x.astype(np.float32) for x in params))
    assert kl32.dtype == np.float32
    np.testing.assert_allclose(kl32.data, kl64.data, rtol=1e-4, atol=1e-5)


UNBOUNDED = {
    "Normal": (D.Normal, (A([0.3, -1.0]), A([1.2, 0.4]))),
    "Laplace": (D.Laplace, (A([0.3, -1.0]), A([1.2, 0.4]))),
    "Gumbel": (D.Gumbel, (A([0.3, -1.0]), A([1.2, 0.4]))),
    "Exponential": (D.Exponential, (A([0.6, 2.0]),)),
    "Gamma": (D.Gamma, (A([2.0, 0.7]), A([1.5, 3.0]))),
}


@pytest.mark.parametrize("name", sorted(UNBOUNDED))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unbounded_to_continuous_bernoulli_is_infinite(name, dtype):
    make, args = UNBOUNDED[name]
    args = [scg.tensor(a.astype(dtype), requires_grad=True) for a in args]
    logits = scg.tensor(A([[0.3], [-2.0], [0.0]], dtype=dtype), requires_grad=True)
    kl = D.kl_divergence(make(*args), D.ContinuousBernoulli(logits=logits))
    assert kl.shape == (3, 2) and kl.dtype == dtype and np.isposinf(kl.data).all()
    for g in scg.grad(kl.sum(), args + [logits]):
        assert not np.isnan(g.data).any()


def test_uniform_outside_the_unit_interval_is_infinite():
    low = scg.tensor(A([-0.1, 0.2, 0.0, 0.5]), requires_grad=True)
    high = scg.tensor(A([0.5, 1.1, 1.0, 2.0]), requires_grad=True)
    logits = scg.tensor(A([0.3, -2.0, 1e-3, 5.0]), requires_grad=True)
    kl = D.kl_divergence(D.Uniform(low, high), D.ContinuousBernoulli(logits=logits))
    np.testing.assert_array_equal(np.isposinf(kl.data), [True, True, False, True])
    for g in scg.grad(kl.sum(), [low, high, logits]):
        assert np.isfinite(g.data).all()
        np.testing.assert_array_equal(g.data[[0, 1, 3]], 0.0)


def test_continuous_bernoulli_to_a_uniform_not_covering_the_unit_interval_is_infinite():
    logits = scg.tensor(A([0.3, -2.0, 1e-3, 5.0]), requires_grad=True)
    low = scg.tensor(A([0.1, -1.0, 0.0, -0.5]), requires_grad=True)
    high = scg.tensor(A([2.0, 0.9, 1.0, 1.0]), requires_grad=True)
    kl = D.kl_divergence(D.ContinuousBernoulli(logits=logits), D.Uniform(low, high))
    np.testing.assert_array_equal(np.isposinf(kl.data), [True, True, False, False])
    for g in scg.grad(kl.sum(), [logits, low, high]):
        assert np.isfinite(g.data).all()
        np.testing.assert_array_equal(g.data[[0, 1]], 0.0)
