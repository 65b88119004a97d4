"""The graph never guesses: dependencies through indices, comparisons, no_grad and
Python scalars; named axes tracked op by op; re-entered and subsampled plates;
replay; enumeration that is exact or refused. Each case of issue 10 is here with
its exact value computed independently (by hand or by brute force in numpy)."""

import itertools

import numpy as np
import pytest
from scipy.special import expit as sigmoid

import scg
import scg.distributions as D
from scg.diagnostics import exact_gradient, outcomes


def expected_surrogate_grad(build, params):
    """sum over every outcome o of p(o) * grad surrogate(o): exact, no sampling."""
    total, mass = None, 0.0
    for g, log_p in outcomes(build):
        p = float(np.exp(log_p.data))
        mass += p
        grads = [p * x.data for x in scg.grad(g.surrogate(), params)]
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
    assert np.isclose(mass, 1.0, atol=1e-12)
    return total


SF = scg.ScoreFunction


# ---- 1. dependencies the graph must see -----------------------------------------------------


def test_categorical_sample_used_as_an_index_is_credited():
    th = scg.tensor(np.array([0.2, -0.5, 1.0]), requires_grad=True)
    table = np.array([1.0, 4.0, -2.0])

    def build():
        g = scg.Graph()
        with g:
            k = g.sample("k", D.Categorical(logits=th))
            g.cost("c", scg.tensor(table)[k])
        return g

    p = np.exp(th.data) / np.exp(th.data).sum()
    exact = p * (table - p @ table)
    np.testing.assert_allclose(exact_gradient(build, [th])[0].data, exact, rtol=1e-12)
    np.testing.assert_allclose(expected_surrogate_grad(build, [th])[0], exact, rtol=1e-12)


@pytest.mark.parametrize("how", ["compare", "no_grad", "cast"])
def test_samples_seen_through_comparisons_no_grad_and_casts_are_credited(how):
    l = scg.tensor(0.3, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=l), estimator=SF())
            if how == "compare":
                c = scg.where(b == 1, 3.0, 0.0)
            elif how == "no_grad":
                with scg.no_grad():
                    c = b * 3.0
            else:
                c = b.astype(np.int64).astype(np.float64) * 3.0
            g.cost("c", c)
        return g

    s = sigmoid(0.3)
    assert np.isclose(expected_surrogate_grad(build, [l])[0], 3 * s * (1 - s), rtol=1e-12)


def test_cost_without_history_is_credited_to_everything_with_a_warning():
    l = scg.tensor(0.3, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=l), estimator=SF())
            g.cost("c", b.data * 3.0)  # an ndarray: no recorded history
        return g

    s = sigmoid(0.3)
    with pytest.warns(UserWarning, match="cost 'c' has no recorded history"):
        got = expected_surrogate_grad(build, [l])[0]
    assert np.isclose(got, 3 * s * (1 - s), rtol=1e-12)


ESCAPES = {
    "item()": lambda b: 1.0 if b.item() == 1 else 0.0,
    "float()": lambda b: float(b),
    "np.asarray": lambda b: np.asarray(b),
    "numpy()": lambda b: b.numpy(),
    "np.where": lambda b: np.where(b, 1.0, 0.0),
    "scg.tensor": lambda b: scg.tensor(b),
    "Tensor()": lambda b: scg.Tensor(b),
}


@pytest.mark.parametrize("leave", list(ESCAPES), ids=list(ESCAPES))
def test_escape_is_credited_with_a_warning(leave):
    # The value leaves as a Python number, an array or a fresh leaf and comes back as a
    # constant: without the safety net the cost would look independent of b (gradient 0).
    l = scg.tensor(0.3, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=l), estimator=SF())
            z = g.sample("z", D.Bernoulli(logits=0.0), estimator=SF())
            g.cost("c", z * 0.0 + 3.0 * ESCAPES[leave](b))
        return g

    s = sigmoid(0.3)
    with pytest.warns(UserWarning, match="credited to 'b' too"):
        got = expected_surrogate_grad(build, [l])[0]
    assert np.isclose(got, 3 * s * (1 - s), rtol=1e-12)


# ---- 2. named axes are tracked, not guessed -------------------------------------------------


def test_cost_that_reduced_the_sample_axis_is_not_averaged_again():
    vec = np.array([1.0, 2.0, 4.27])
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(0.0, 1.0), n=3)
        g.cost("c", z.sum() * 0.0 + scg.tensor(vec))  # a (3,) cost that is not per sample
    assert np.isclose(g.objective().item(), vec.sum())  # 7.27, not the mean 2.42


def test_enumerated_axis_meeting_a_vector_of_its_size_is_refused():
    l = scg.tensor(0.3, requires_grad=True)
    g = scg.Graph()
    with g:
        b = g.sample("b", D.Bernoulli(logits=l), estimator=scg.Enumerate())
        with pytest.raises(scg.AxisError, match="support axis of enumerated 'b'.*unnamed axis"):
            g.cost("c", b * np.array([1.0, 2.0]))
        g.cost("ok", b[..., None] * np.array([1.0, 2.0]))  # the way out: its own position
    s = sigmoid(0.3)
    (d,) = scg.grad(g.surrogate(), [l])
    assert np.isclose(g.objective().item(), 3 * s) and np.isclose(d.item(), 3 * s * (1 - s))


def test_exact_gradient_of_the_same_model_sampled():
    l = scg.tensor(0.3, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=l), estimator=SF())
            g.cost("c", b * np.array([1.0, 2.0]))
        return g

    s = sigmoid(0.3)
    assert np.isclose(exact_gradient(build, [l])[0].item(), 3 * s * (1 - s), rtol=1e-12)


def test_two_named_axes_at_one_position_are_refused():
    g = scg.Graph()
    with g:
        a = g.sample("a", D.Normal(0.0, 1.0), n=2)  # (2,)
        b = g.sample("b", D.Normal(0.0, 1.0), n=2)  # (2, 1): its own position, left of a's
        assert a.shape == (2,) and b.shape == (2, 1)
        with pytest.raises(scg.AxisError, match="sample axis of 'a'.*sample axis of 'b'|sample axis of 'b'.*sample axis of 'a'"):
            g.cost("c", a[:, None] * b)  # a moved by hand onto b's position
        g.cost("outer", a * b)  # (2, 2): each axis has its own position
    assert g.costs[-1].dims == (g.nodes["b"].dim, g.nodes["a"].dim)


def test_transpose_keeps_names_and_reshape_across_a_sample_axis_pools_it():
    mu = scg.tensor(np.array([0.5, -0.5]), requires_grad=True)
    g = scg.Graph()
    with g:
        with g.plate("data", 2):
            z = g.sample("z", D.Normal(mu, 1.0), estimator=SF(), n=3)  # (3, 2)
            g.cost("t", z.T.T ** 2)
        g.cost("r", z.reshape(6) * 1.0)
    assert g.costs[0].dims == g.nodes["z"].dims and len(g.nodes["z"].dims) == 2
    assert g.costs[1].dims == ()
    assert g.credit().own_axis_pooled["z"]  # cost r mixes the three samples


# ---- 3.-6. plates ---------------------------------------------------------------------------


def test_reentered_plate_is_the_same_axis():
    th = scg.tensor(np.array([0.1, -0.4, 0.8]), requires_grad=True)
    g = scg.Graph()
    with g:
        with g.plate("data", 3) as first:
            z = g.sample("z", D.Normal(th, 1.0), estimator=SF())
        with g.plate("data", 3) as again:
            g.cost("f", z * z)
        with pytest.raises(ValueError, match="plate 'data' was entered before with size 3"):
            with g.plate("data", 4):
                pass
    assert np.array_equal(first, again)
    assert g.costs[0].dims == g.nodes["z"].dims
    np.testing.assert_allclose(g.downstream_costs()["z"], z.data**2)  # per datapoint


def brute(thetas_bern, cost_of):
    """E[cost] and its gradient for independent Bernoulli logits, by enumeration."""
    th = np.asarray(thetas_bern, dtype=float)
    s = sigmoid(th)
    e, grad = 0.0, np.zeros_like(th)
    for bits in itertools.product([0.0, 1.0], repeat=th.size):
        b = np.array(bits).reshape(th.shape)
        p = np.prod(np.where(b == 1, s, 1 - s))
        c = cost_of(b)
        e += p * c
        grad += p * c * (b - s)
    return e, grad


def test_local_latents_feeding_a_global_latent():
    th = scg.tensor(np.array([0.3, -0.2, 0.9]), requires_grad=True)
    w = np.array([1.0, -2.0, 0.5])

    def build():
        g = scg.Graph()
        with g:
            with g.plate("data", 3):
                b = g.sample("b", D.Bernoulli(logits=th), estimator=SF())
            s = g.sample("s", D.Bernoulli(logits=b.sum() - 1.5), estimator=SF())
            with g.plate("data", 3):
                g.cost("c", b * w + s * b)
        return g

    def exact_grad():
        # E over b of [sum(b w) + P(s=1 | b) sum(b)]; s's own logit does not involve th directly
        return brute(th.data, lambda b: np.sum(b * w) + sigmoid(b.sum() - 1.5) * b.sum())[1]

    np.testing.assert_allclose(expected_surrogate_grad(build, [th])[0], exact_grad(), rtol=1e-12)
    np.testing.assert_allclose(exact_gradient(build, [th])[0].data, exact_grad(), rtol=1e-12)


def test_enumerate_in_a_plate_with_a_cost_coupling_datapoints_is_refused():
    logits = scg.tensor(np.array([0.1, 0.4]), requires_grad=True)
    g = scg.Graph()
    with g:
        with g.plate("data", 2):
            b = g.sample("b", D.Bernoulli(logits=logits), estimator=scg.Enumerate())
        with pytest.raises(scg.AxisError, match="cost 'c' depends on the enumerated node 'b'.*plate 'data'"):
            g.cost("c", (b.sum(-1) - 1.0) ** 2)


def test_cost_mixing_datapoints_inside_the_plate_gets_full_credit():
    th = scg.tensor(np.array([0.3, -0.7]), requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            with g.plate("data", 2):
                b = g.sample("b", D.Bernoulli(logits=th), estimator=SF())
                g.cost("c", (b - b.mean(0, keepdims=True) * 0.5) ** 2)
        return g

    exact = brute(th.data, lambda b: np.sum((b - 0.5 * b.mean()) ** 2))[1]
    np.testing.assert_allclose(expected_surrogate_grad(build, [th])[0], exact, rtol=1e-12)


def test_subsampled_plate_scales_costs_to_the_full_data():
    x = np.array([1.0, 3.0, -2.0, 5.0])
    seen = {}
    for seed in range(200):
        g = scg.Graph(rng=np.random.default_rng(seed))
        with g:
            with g.plate("data", 4, subsample_size=2) as idx:
                assert len(idx) == 2 and len(set(idx.tolist())) == 2
                g.cost("c", scg.tensor(x[idx]))
        seen[tuple(sorted(idx.tolist()))] = g.objective().item()
    assert len(seen) == 6  # every pair was drawn; each is equally likely
    assert np.isclose(np.mean(list(seen.values())), x.sum())
    assert np.isclose(seen[(0, 1)], 2.0 * (1.0 + 3.0))


def test_plate_arguments_are_checked():
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match="subsample_size must be an integer in \\[1, size=4\\]"):
            with g.plate("data", 4, subsample_size=5):
                pass


# ---- enumeration ----------------------------------------------------------------------------


def test_two_dependent_enumerated_nodes_are_exact():
    l1 = scg.tensor(0.2, requires_grad=True)
    l2 = scg.tensor(-0.5, requires_grad=True)
    g = scg.Graph()
    with g:
        b1 = g.sample("b1", D.Bernoulli(logits=l1), estimator=scg.Enumerate())
        b2 = g.sample("b2", D.Bernoulli(logits=l2 + b1), estimator=scg.Enumerate())
        g.cost("f", b1 + 2 * b2)
    s = sigmoid
    p1 = s(0.2)
    e = p1 + 2 * ((1 - p1) * s(-0.5) + p1 * s(0.5))
    d1 = p1 * (1 - p1) * (1 + 2 * (s(0.5) - s(-0.5)))
    ds = lambda x: s(x) * (1 - s(x))  # noqa: E731
    d2 = 2 * ((1 - p1) * ds(-0.5) + p1 * ds(0.5))
    assert np.isclose(g.objective().item(), e, rtol=1e-12)
    g1, g2 = scg.grad(g.surrogate(), [l1, l2])
    assert np.isclose(g1.item(), d1, rtol=1e-12) and np.isclose(g2.item(), d2, rtol=1e-12)


def test_exact_gradient_with_n_samples():
    l = scg.tensor(0.4, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=l), estimator=SF(), n=2)
            g.cost("f", (b.sum() - 1.0) ** 2)  # pools both draws: counts once
        return g

    p = sigmoid(0.4)
    # (b1 + b2 - 1)^2 is 1 when both agree, 0 otherwise: E = p^2 + (1 - p)^2
    assert np.isclose(exact_gradient(build, [l])[0].item(), (2 * p - 2 * (1 - p)) * p * (1 - p), rtol=1e-12)


def test_exact_gradient_refuses_too_many_outcomes():
    def build():
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=np.zeros(30)), estimator=SF())
            g.cost("f", b.sum())
        return g

    with pytest.raises(ValueError, match="'b' \\(30 elements of 2 values each\\) makes more than"):
        exact_gradient(build, [])


# ---- replay ---------------------------------------------------------------------------------


def test_replay_fixes_values_and_checks_them():
    with scg.replay({"b": np.array([1.0, 0.0])}):
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=np.zeros(2)), estimator=SF())
    np.testing.assert_array_equal(b.data, [1.0, 0.0])
    g = scg.Graph(replay={"b": np.zeros(3)})
    with g:
        with pytest.raises(ValueError, match="replayed value has shape \\(3,\\), expected \\(2,\\)"):
            g.sample("b", D.Bernoulli(logits=np.zeros(2)), estimator=SF())
        with pytest.raises(ValueError, match="replayed value needs a score-function estimator"):
            g.sample("z", D.Normal(0.0, 1.0), value=np.array(0.5))


def test_backward_before_the_last_cost_is_refused():
    mu = scg.tensor(0.5, requires_grad=True)
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(mu, 1.0), estimator=SF())
        y = (z - mu) * 2.0
        y.backward()
        with pytest.raises(RuntimeError, match="freed by an earlier backward"):
            g.cost("f", y)


def test_multivariate_normal_in_a_plate_keeps_per_datapoint_credit():
    mu = scg.tensor(np.zeros((3, 2)), requires_grad=True)
    g = scg.Graph()
    with g:
        with g.plate("data", 3):
            z = g.sample("z", D.MultivariateNormal(mu, scale_tril=np.eye(2)), estimator=SF(), n=4)
            g.cost("c", (z**2).sum(-1))
    node = g.nodes["z"]
    assert z.shape == (4, 3, 2) and g.costs[0].dims == node.dims and len(node.dims) == 2
    # per draw and datapoint, with the 1/K of the average over the four draws
    np.testing.assert_allclose(g.downstream_costs()["z"], (z.data**2).sum(-1) / 4)


def test_replayed_value_outside_the_support_is_refused():
    g = scg.Graph(replay={"k": np.array(5)})
    with g:
        with pytest.raises(ValueError, match="sample 'k': a replayed value is outside the support of Categorical"):
            g.sample("k", D.Categorical(logits=np.zeros(3)), estimator=SF())


def test_reshape_keeps_the_names_of_unchanged_leading_axes_also_of_size_one():
    """An n=1 node in a plate, its event flattened: (1, B, 2, 3) -> (1, B, 6) leaves the
    sample and plate axes in place, so a bound over the node's one sample is accepted and
    equals -log_w; a reshape that does move the size-1 axis still counts as mixing it."""
    logits = scg.tensor(np.linspace(-1, 1, 24).reshape(4, 2, 3), requires_grad=True)
    g = scg.Graph(rng=np.random.default_rng(0))
    with g:
        with g.plate("data", 4):
            z = g.sample("z", D.Bernoulli(logits=logits).to_event(2), n=1)
            flat = z.reshape((1, 4, 6))
            log_w = (flat * np.arange(6.0)).sum(-1) - 1.0
            g.bound("b", log_w, over="z")
    np.testing.assert_allclose(g.objective().data, -log_w.data.sum())
    g2 = scg.Graph(rng=np.random.default_rng(0))
    with g2:
        with g2.plate("data", 4):
            z = g2.sample("z", D.Bernoulli(logits=logits).to_event(2), n=1)
            moved = z.reshape((4, 1, 6))  # the sample axis of size 1 no longer in front
            with pytest.raises(scg.AxisError):
                g2.bound("b", moved.sum(-1)[None, :, 0], over="z")


def test_escape_of_a_reparameterized_value_warns_that_its_path_is_lost():
    # Credit cannot repair a lost pathwise gradient: the user is told, not left with a
    # silently biased gradient (here +0.2 where the exact one is 2 (mu - 3) + 0.2 mu = -3.8).
    mu = scg.tensor(1.0, requires_grad=True)
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(mu, 1.0))
        with pytest.warns(UserWarning, match="values of 'z' left the graph .* reparameterized"):
            g.cost("c", (np.asarray(z) - 3.0) ** 2)
        g.cost("reg", 0.1 * mu**2)  # warned once per node, not again


def test_reparameterized_value_kept_on_tensors_warns_nothing():
    mu = scg.tensor(1.0, requires_grad=True)
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(mu, 1.0))
        g.cost("c", (z - 3.0) ** 2)
    (gr,) = scg.grad(g.surrogate(), mu)
    assert np.isclose(gr.item(), 2 * (z.item() - 3.0))
