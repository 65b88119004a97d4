"""The traced training step (scg.trace) of each bundled model equals its eager step bit for
bit: losses, gradients and parameters over several steps, run side by side from the same
seeds. Also a hand-written graph with enumeration, plates and a score-function node."""

import numpy as np
import pytest

import scg
import scg.distributions as D
from models import discrete_vae, vae


def _images(n, seed=0):
    return (np.random.default_rng(seed).random((n, 784)) < 0.3).astype(np.float32)


def _run(make, batches, steps=6):
    """``make() -> (step, params)``; the step run eagerly and traced over ``steps`` calls.
    Returns the traced wrapper after checking every call's result, grads and params."""
    eager, eparams = make()
    fn, tparams = make()
    traced = scg.trace(fn)
    for i in range(steps):
        x = batches[i % len(batches)]
        le, lt = eager(x), traced(x)
        np.testing.assert_array_equal(le.data, lt.data)
        for pe, pt in zip(eparams, tparams):
            np.testing.assert_array_equal(pe.grad.data, pt.grad.data)
            np.testing.assert_array_equal(pe.data, pt.data)
    assert traced.stats["replayed"] >= steps - 3
    return traced


def _vae_maker(k, estimator="reparam", kl="analytic"):
    def make():
        model = vae.VAE(hidden=32, latent=3, rng=np.random.default_rng(0))
        opt = scg.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(1)

        def step(x):
            loss = vae.build_graph(model, x, k=k, kl=kl, rng=rng, estimator=estimator).surrogate() / x.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return step, model.parameters()
    return make


@pytest.fixture(params=["compiled", "numpy"])
def loops(request, monkeypatch):
    """Each step twice: on scg's fused loops (scg.kernels) and on the numpy passes they replace
    (two code paths of the same primitives; a replay must equal eager on both)."""
    from scg import kernels
    if request.param == "compiled":
        if kernels.lib() is None:
            pytest.skip(f"the fused loops are not in use here: {kernels.status()}")
        calls = []
        real = kernels._float32_loop
        monkeypatch.setattr(kernels, "_float32_loop", lambda *a: calls.append(a[0]) or real(*a))
        yield request.param
        assert "bernoulli_log_prob_f32" in calls or "relu_grad_f32" in calls  # the loops did run
    else:
        monkeypatch.setattr(kernels, "_lib", None)
        monkeypatch.setattr(kernels, "_state", "numpy (forced by a test)")
        yield request.param


@pytest.mark.parametrize("k, estimator", [(1, "reparam"), (5, "reparam"), (5, "dreg")])
def test_the_vae_and_iwae_steps_replay_bit_for_bit(k, estimator, loops):
    batches = [_images(16, s) for s in range(3)]
    _run(_vae_maker(k, estimator, kl="mc" if k > 1 else "analytic"), batches)


def test_the_discrete_vae_step_with_disarm_replays_bit_for_bit(loops):
    def make():
        model = discrete_vae.make_model("bernoulli", 6, 2, 32, rng=np.random.default_rng(0))
        estimator = discrete_vae.make_estimator("disarm", model)
        opt = scg.optim.Adam(discrete_vae.trainable(model, estimator), lr=1e-2)
        rng = np.random.default_rng(1)

        def step(x):
            loss = discrete_vae.build_graph(model, x, estimator, n=2, rng=rng).surrogate() / x.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return step, discrete_vae.trainable(model, estimator)

    _run(make, [_images(16, s) for s in range(3)])


def test_a_graph_with_enumeration_plates_and_a_score_function_node_replays_bit_for_bit():
    data = np.array([-2.1, -1.7, 0.2, 1.9, 2.4, 2.2])

    def make():
        means = scg.tensor(np.array([-1.0, 0.5, 1.0]), requires_grad=True)
        logits = scg.tensor(np.zeros(3), requires_grad=True)
        rate = scg.tensor(np.array(0.3), requires_grad=True)
        opt = scg.optim.Adam([means, logits, rate], lr=0.05)
        rng = np.random.default_rng(4)

        def step(x):
            g = scg.Graph(rng=rng)
            with g:
                with g.plate("data", len(x)):
                    z = g.sample("z", D.Categorical(logits=logits), estimator=scg.Enumerate())
                    g.observe("x", D.Normal(means[z], 1.0), x)
                s = g.sample("s", D.Bernoulli(logits=rate), estimator=scg.ScoreFunction(baseline=scg.LeaveOneOutBaseline()), n=4)
                g.cost("penalty", (s - 0.3) ** 2)
            loss = g.surrogate()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return step, [means, logits, rate]

    _run(make, [data, data[::-1].copy(), data + 0.1], steps=7)
