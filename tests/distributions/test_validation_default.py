"""Validation on by default, as torch: log_prob refuses values outside the support unless a
distribution is built with ``validate_args=False`` (or the default is switched off); the
parameters are checked once, at construction, and a value by one vectorised test."""

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import context
from scg.distributions.distribution import Distribution


def test_on_by_default_and_off_on_request():
    assert context.state.validate_args is True
    with pytest.raises(ValueError, match=r"Exponential.log_prob: value np.float64\(-1.0\) is outside the support, x >= 0"):
        D.Exponential(1.0).log_prob(-1.0)
    assert D.Exponential(1.0, validate_args=False).log_prob(-1.0).data == -np.inf
    D.Distribution.set_default_validate_args(False)
    try:
        assert D.Exponential(1.0).log_prob(-1.0).data == -np.inf
    finally:
        D.Distribution.set_default_validate_args(True)
    with pytest.raises(ValueError, match="outside the support"):
        D.Exponential(1.0).log_prob(-1.0)


@pytest.mark.parametrize("build, value", [
    (lambda **kw: D.Exponential(np.ones(3), **kw), np.array([1.0, -1.0, 2.0])),
    (lambda **kw: D.Categorical(logits=np.zeros((3, 4)), **kw), np.array([0, 4, 1])),
    (lambda **kw: D.Dirichlet(np.ones((3, 2)), **kw), np.array([[0.5, 0.5], [0.6, 0.6], [1.0, 0.0]])),
    (lambda **kw: D.Independent(D.Beta(np.ones((3, 2)), 1.0, **kw), 1), np.array([[0.5, 0.5], [0.6, 1.6], [1.0, 0.0]])),
])
def test_one_vectorised_support_test_per_log_prob(build, value, monkeypatch):
    calls = []
    support = Distribution._support
    monkeypatch.setattr(Distribution, "_support", lambda self, *a, **k: calls.append(1) or support(self, *a, **k))
    with pytest.raises(ValueError, match="outside the support"):
        build().log_prob(value)
    assert len(calls) == 1
    lp = build(validate_args=False).log_prob(value)
    assert lp.shape == (3,) and lp.data[1] == -np.inf and np.isfinite(lp.data[0])


def test_parameters_are_checked_at_construction_not_per_log_prob(monkeypatch):
    import scg.distributions.distribution as base

    checks = []
    original = base.check
    monkeypatch.setattr(base, "check", lambda *a: checks.append(a[1]) or original(*a))
    d = D.Normal(np.zeros(3), np.ones(3))  # LocationScale checks 'scale' (twice: > 0, finite) and 'loc'
    built = len(checks)
    assert built == 3
    for _ in range(4):
        d.log_prob(np.zeros(3))
    assert len(checks) == built


def test_a_traced_step_validates_on_replay_as_eagerly():
    # the support test reads a value derived from the traced input: a guard, so a value
    # outside the support in a later call stops the replay and raises the eager error
    rate = scg.tensor(np.array([1.0, 2.0]), requires_grad=True)

    def step(x):
        return D.Exponential(rate).log_prob(scg.tensor(x)).sum()

    traced = scg.trace(step)
    for i in range(4):
        np.testing.assert_allclose(traced(np.array([0.5, 1.0 + i])).data, step(np.array([0.5, 1.0 + i])).data)
    assert traced.stats["replayed"] >= 1
    with pytest.raises(ValueError) as eager:
        step(np.array([0.5, -1.0]))
    with pytest.raises(ValueError) as replayed:
        traced(np.array([0.5, -1.0]))
    assert str(replayed.value) == str(eager.value)


def test_graph_refusals_keep_their_wording_under_validation():
    g = scg.Graph()
    with g, pytest.raises(ValueError, match=r"observe 'x': an observed value is outside the support of Bernoulli \(\{0, 1\}\)"):
        g.observe("x", D.Bernoulli(probs=0.3), np.array([0.0, 0.5]))
