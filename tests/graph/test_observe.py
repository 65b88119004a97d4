"""g.observe: conditioning on data adds -log p(value) as a cost, checks the support,
is credited like any cost, and is drawn as a shaded circle."""

import numpy as np
import pytest
from scipy.special import expit as sigmoid

import scg
import scg.distributions as D
from scg.diagnostics import exact_gradient


def test_observe_adds_the_negative_log_likelihood():
    l = scg.tensor(np.array([0.4, -1.0]), requires_grad=True)
    g = scg.Graph()
    with g:
        x = g.observe("x", D.Bernoulli(logits=l), np.array([1.0, 0.0]))
    s = sigmoid(l.data)
    assert isinstance(x, scg.Tensor) and np.array_equal(x.data, [1.0, 0.0])
    assert np.isclose(g.objective().item(), -(np.log(s[0]) + np.log(1 - s[1])), rtol=1e-12)
    (d,) = scg.grad(g.surrogate(), [l])
    np.testing.assert_allclose(d.data, [-(1 - s[0]), s[1]], rtol=1e-12)  # d/dl of -log p


def test_observation_is_credited_to_the_latent_upstream():
    th = scg.tensor(0.3, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            z = g.sample("z", D.Bernoulli(logits=th), estimator=scg.ScoreFunction())
            g.observe("x", D.Normal(2.0 * z, 1.0), 0.5)
        return g

    # E_z[-log N(0.5; 2z, 1)] = const + E[(0.5 - 2z)^2] / 2: (0.25 p0 + 2.25 p1) / 2
    s = sigmoid(0.3)
    exact = s * (1 - s) * (2.25 - 0.25) / 2
    assert np.isclose(exact_gradient(build, [th])[0].item(), exact, rtol=1e-12)


@pytest.mark.parametrize("value, match", [(np.array([0.5, 1.0]), "outside the support of Bernoulli"),
                                          (np.array([np.nan, 1.0]), "contains NaN")])
def test_observed_values_outside_the_support_are_refused(value, match):
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match=f"observe 'x': .*{match}"):
            g.observe("x", D.Bernoulli(logits=np.zeros(2)), value)
    assert "x" not in g.nodes and not g.costs


def test_observed_node_is_a_shaded_circle():
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(0.0, 1.0))
        g.observe("x", D.Normal(z, 1.0), 0.2)
    src = g.to_graphviz().source
    ids = {name: f"n{i}" for i, name in enumerate(g.nodes)}  # the ids scg.viz gives nodes
    decl = src[src.index(f"\t{ids['x']} [") :].split("\n\t")[0]
    assert "Normal" in decl and "observed" in decl and "shape=ellipse" in decl and 'fillcolor="#bbbbbb"' in decl
    assert f"{ids['z']} -> {ids['x']}" in src
