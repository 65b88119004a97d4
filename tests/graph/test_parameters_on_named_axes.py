"""A family whose parameter carries a named axis (an enumerated node's support axis, or the
sample axis of n=K draws) while the value does not: its log_prob must follow the axis, as
plain broadcasting would. (Support checks used to broadcast their mask to the batch shape as
a fresh, unnamed axis, which a graph refused to mix with the parameter's named one.) Exact
expectations over the enumerated node are computed here from scipy.stats."""

import numpy as np
import pytest
import scipy.stats as st
from scipy.special import softmax

import scg
import scg.distributions as D

RATES = np.array([0.7, 1.6, 3.0])  # the parameter's value for each of the 3 categories

CASES = {  # name -> (the family at parameter t (a Tensor), a value, scipy's logpdf/logpmf at parameter r)
    "Exponential": (lambda t: D.Exponential(t), 1.3, lambda r, v: st.expon(scale=1 / r).logpdf(v)),
    "Poisson": (lambda t: D.Poisson(t), 2.0, lambda r, v: st.poisson(r).logpmf(v)),
    "HalfNormal": (lambda t: D.HalfNormal(t), 1.3, lambda r, v: st.halfnorm(scale=r).logpdf(v)),
    "Beta": (lambda t: D.Beta(t, 2.0), 0.3, lambda r, v: st.beta(r, 2.0).logpdf(v)),
    "Geometric": (lambda t: D.Geometric(probs=t / 4), 2.0, lambda r, v: st.geom(r / 4, loc=-1).logpmf(v)),
    "Binomial": (lambda t: D.Binomial(5, probs=t / 4), 2.0, lambda r, v: st.binom(5, r / 4).logpmf(v)),
    "Weibull": (lambda t: D.Weibull(t, 1.5), 1.3, lambda r, v: st.weibull_min(1.5, scale=r).logpdf(v)),
    "HalfCauchy": (lambda t: D.HalfCauchy(t), 1.3, lambda r, v: st.halfcauchy(scale=r).logpdf(v)),
    "Kumaraswamy": (lambda t: D.Kumaraswamy(t, 2.0), 0.4,
                    lambda r, v: np.log(r * 2.0) + (r - 1) * np.log(v) + np.log1p(-v ** r)),
    "NegativeBinomial": (lambda t: D.NegativeBinomial(3.0, probs=t / 4), 2.0,
                         lambda r, v: st.nbinom(3.0, 1 - r / 4).logpmf(v)),
    "Gamma": (lambda t: D.Gamma(t, 1.0), 1.3, lambda r, v: st.gamma(r).logpdf(v)),
    "Gumbel": (lambda t: D.Gumbel(0.0, t), 1.3, lambda r, v: st.gumbel_r(scale=r).logpdf(v)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_parameter_indexed_by_an_enumerated_node(name):
    make, value, logpdf = CASES[name]
    theta = scg.tensor(np.array([0.2, -0.5, 0.4]), requires_grad=True)
    g = scg.Graph()
    with g:
        k = g.sample("k", D.Categorical(logits=theta), estimator=scg.Enumerate())
        g.cost("nll", -make(scg.tensor(RATES)[k]).log_prob(value))
    (grad,) = scg.grad(g.surrogate(), [theta])
    # E = sum_k pi_k c_k with c_k = -log p(value | rate_k): dE/dtheta_j = pi_j (c_j - E)
    pi, c = softmax([0.2, -0.5, 0.4]), -logpdf(RATES, value)
    np.testing.assert_allclose(g.objective().item(), pi @ c, rtol=1e-12)
    np.testing.assert_allclose(grad.data, pi * (c - pi @ c), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_parameter_drawn_n_times(name):
    make, value, logpdf = CASES[name]
    a = scg.tensor(3.0, requires_grad=True)
    g = scg.Graph()
    with g:
        lam = g.sample("lam", D.Gamma(a, 4.0), n=3)  # draws well inside every family's range
        g.cost("nll", -make(lam).log_prob(value))
    g.surrogate().backward()
    drawn = next(s for s in g.stochastic if s.name == "lam").value.data
    assert drawn.shape == (3,) and a.grad is not None and np.isfinite(a.grad.data).all()
    # the cost is the mean over the three draws of -log p(value | draw)
    np.testing.assert_allclose(g.objective().item(), np.mean(-logpdf(drawn, value)), rtol=1e-12)


def test_a_binomial_total_count_on_a_named_axis():
    theta0 = np.array([0.2, -0.5, 0.7])
    theta = scg.tensor(theta0, requires_grad=True)
    g = scg.Graph()
    with g:
        k = g.sample("k", D.Categorical(logits=theta), estimator=scg.Enumerate())
        g.observe("x", D.Binomial(scg.tensor([4.0, 5.0, 6.0])[k], probs=0.3), 2.0)
    (grad,) = scg.grad(g.surrogate(), [theta])
    pi, c = softmax(theta0), -st.binom(np.array([4, 5, 6]), 0.3).logpmf(2)
    np.testing.assert_allclose(g.objective().item(), pi @ c, rtol=1e-12)
    np.testing.assert_allclose(grad.data, pi * (c - pi @ c), rtol=1e-10)
