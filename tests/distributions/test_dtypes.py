"""Python-number parameters take the dtype of what they meet (issue 11): a float32 model
must not be turned into float64 by ``Normal(0.0, 1.0)``."""

import numpy as np
import pytest

import scg
import scg.distributions as D


def f32(*values):
    return scg.tensor(np.array(values, np.float32), requires_grad=True)


def f64(*values):
    return scg.tensor(np.array(values, np.float64), requires_grad=True)


# (typed distribution from a tensor maker t, a distribution of Python numbers only)
KL_PAIRS = [
    (lambda t: D.Normal(t(0.5, -1.0), 1.0), lambda: D.Normal(0.0, 1.0)),  # the case
    (lambda t: D.Normal(t(0.5, -1.0), t(2.0, 0.5)), lambda: D.Normal(0.0, 1.0)),
    (lambda t: D.Gamma(t(2.0, 3.0), 1.0), lambda: D.Gamma(1.0, 2.0)),
    (lambda t: D.Beta(t(2.0, 3.0), 1.0), lambda: D.Beta(1.0, 1.5)),
    (lambda t: D.Dirichlet(t(2.0, 3.0)), lambda: D.Dirichlet([1.0, 1.5])),
    (lambda t: D.Exponential(t(2.0, 3.0)), lambda: D.Exponential(1.0)),
    (lambda t: D.Bernoulli(logits=t(0.3)), lambda: D.Bernoulli(probs=0.25)),
    (lambda t: D.Categorical(logits=t(0.3, 0.1)), lambda: D.Categorical(probs=[0.25, 0.75])),
]


@pytest.mark.parametrize("typed,untyped", KL_PAIRS)
def test_kl_with_a_python_number_distribution_stays_float32(typed, untyped):
    for order in (1, -1):  # KL(typed || numbers) and KL(numbers || typed)
        dists = (typed(f32), untyped())[::order]
        kl = D.kl_divergence(*dists)
        assert kl.dtype == np.float32, order
        # Value: the same KL with the typed side in float64, to float32 accuracy.
        kl64 = D.kl_divergence(*(typed(f64), untyped())[::order])
        np.testing.assert_allclose(kl.data, kl64.data, rtol=1e-5, atol=1e-6)


def test_kl_gradient_stays_float32():
    mu, sigma = f32(0.5, -1.0), f32(2.0, 0.5)
    kl = D.kl_divergence(D.Normal(mu, sigma), D.Normal(0.0, 1.0))
    g_mu, g_sigma = scg.grad(scg.sum(kl), [mu, sigma])
    assert g_mu.dtype == g_sigma.dtype == np.float32
    np.testing.assert_allclose(g_mu.data, [0.5, -1.0])  # d/dmu (mu^2/2) = mu
    np.testing.assert_allclose(g_sigma.data, [2.0 - 1 / 2.0, 0.5 - 1 / 0.5])  # sigma - 1/sigma


@pytest.mark.parametrize("build", [lambda: D.Normal(0.0, 1.0), lambda: D.Gamma(2.0, 1.0),
                                   lambda: D.Beta(2.0, 3.0), lambda: D.Exponential(1.5),
                                   lambda: D.Uniform(0.0, 1.0), lambda: D.Dirichlet([1.0, 2.0])])
def test_python_number_distribution_follows_a_float32_value(build):
    d = build()
    assert d.dtype == np.float64 and d.log_prob(np.array([0.25, 0.75])).dtype == np.float64  # on its own
    z = f32(0.25, 0.75)
    lp = d.log_prob(z)
    assert lp.dtype == np.float32
    np.testing.assert_allclose(lp.data, d.log_prob(z.data.astype(np.float64)).data, rtol=1e-6)
    (g,) = scg.grad(scg.sum(lp), [z])
    assert g.dtype == np.float32
