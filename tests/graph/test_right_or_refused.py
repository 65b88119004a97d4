"""Cases that used to be silently wrong (issue: right or refused everywhere a user reaches).
Each is now right, checked against a brute force written here, or refused with a message
that names the problem and the way out."""

import itertools
import math

import numpy as np
import pytest

import scg
import scg.distributions as D


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ---- a cost that sums a subsampled plate after the plate's block ----------------------------


def test_cost_reducing_a_subsampled_plate_outside_it_is_refused():
    mu = scg.tensor(np.zeros(5), requires_grad=True)
    g = scg.Graph()
    with g:
        with g.plate("d", 5, subsample_size=2) as idx:
            z = g.sample("z", D.Normal(mu[idx], 1.0))
        with pytest.raises(scg.AxisError, match="reduces plate 'd'.*subsample of 5.*inside `with g.plate"):
            g.cost("c", (z**2).sum())


def test_cost_reducing_a_full_plate_outside_it_is_fine():
    mu = scg.tensor(np.zeros(5), requires_grad=True)
    g = scg.Graph()
    with g:
        with g.plate("d", 5):
            z = g.sample("z", D.Normal(mu, 1.0))
        g.cost("c", (z**2).sum())
    assert np.isclose(g.objective().item(), float((z.data**2).sum()))


# ---- exact_gradient with a subsampled plate: every minibatch, exactly ------------------------


def test_exact_gradient_averages_over_every_minibatch():
    logits = np.array([0.5, -1.0, 2.0, 0.3, 1.1])
    mu = scg.tensor(logits, requires_grad=True)
    target = 0.3 * np.arange(5)

    def build():
        g = scg.Graph()
        with g:
            with g.plate("d", 5, subsample_size=2) as idx:
                b = g.sample("b", D.Bernoulli(logits=mu[idx]), estimator=scg.ScoreFunction())
                g.cost("c", (b - target[idx]) ** 2)
        return g

    # Brute force: the full-data objective sum_i E[(b_i - t_i)^2] = sum_i p_i (1 - 2 t_i) + t_i^2,
    # whose gradient in logit i is sigma'(l_i) (1 - 2 t_i).
    p = sigmoid(logits)
    want = p * (1 - p) * (1 - 2 * target)
    got = [scg.diagnostics.exact_gradient(build, [mu])[0].data for _ in range(3)]
    for gr in got:
        np.testing.assert_allclose(gr, want, rtol=1e-10, atol=1e-12)


def test_exact_gradient_refuses_too_many_minibatches():
    mu = scg.tensor(np.zeros(30), requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            with g.plate("d", 30, subsample_size=15) as idx:
                b = g.sample("b", D.Bernoulli(logits=mu[idx]), estimator=scg.ScoreFunction())
                g.cost("c", b)
        return g

    with pytest.raises(ValueError, match=f"{math.comb(30, 15)} minibatches of plate 'd'"):
        scg.diagnostics.exact_gradient(build, [mu])


# ---- replay with a name that is not a node ------------------------------------------------


def _coin_graph(**kwargs):
    g = scg.Graph(**kwargs)
    with g:
        b = g.sample("b", D.Bernoulli(logits=0.0), estimator=scg.ScoreFunction())
        g.cost("c", b)
    return g


def test_graph_replay_with_an_unknown_name_is_refused():
    g = _coin_graph(replay={"bb": 1.0})
    for method in ("objective", "surrogate", "dice", "credit"):
        with pytest.raises(ValueError, match="replay names 'bb'.*stochastic nodes: 'b'"):
            getattr(g, method)()


def test_replay_block_with_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="'bb' named no stochastic node"):
        with scg.replay({"bb": 1.0}):
            _coin_graph()
    with scg.replay({"b": 1.0}):
        g = _coin_graph()
    assert g.objective().item() == 1.0


# ---- antithetic and relaxed Bernoulli estimators at probabilities 0 and 1 --------------------

SATURATING = {
    "DisARM": lambda: scg.DisARM(),
    "ARM": lambda: scg.ARM(),
    "RELAX": lambda: scg.RELAX(lambda z: 0.1 * z),
}


@pytest.mark.parametrize("name", list(SATURATING))
def test_probs_of_exactly_one_are_refused_by_pair_estimators(name):
    p = scg.tensor([1.0, 0.4], requires_grad=True)
    g = scg.Graph()
    with g:
        b = g.sample("b", D.Bernoulli(probs=p), estimator=SATURATING[name](), n=2)
        g.cost("c", (b - 0.2) ** 2)
    with pytest.raises(ValueError, match=f"{name} for 'b': probs holds 1 .*Keep probs inside"):
        g.surrogate()


@pytest.mark.parametrize("name", list(SATURATING))
def test_infinite_logits_get_zero_gradient_not_nan(name):
    # E[(b - 0.2)^2] = 0.64 p + 0.04 (1 - p) per coin: d/dl = 0.6 sigma'(l), zero at l = inf.
    logit = scg.tensor([np.inf, 0.3], requires_grad=True)
    g = scg.Graph()
    with g:
        b = g.sample("b", D.Bernoulli(logits=logit), estimator=SATURATING[name](), n=2)
        g.cost("c", (b - 0.2) ** 2)
    loss = g.surrogate()
    (gr,) = scg.grad(loss, logit)
    assert np.isfinite(loss.item()) and np.isfinite(gr.data).all()
    assert gr.data[0] == 0.0
    assert np.all(b.data[:, 0] == 1.0)


def test_bernoulli_log_prob_at_infinite_logits():
    d = D.Bernoulli(logits=np.array([np.inf, -np.inf, 0.0]))
    np.testing.assert_array_equal(d.log_prob(np.array([1.0, 0.0, 1.0])).data, [0.0, 0.0, np.log(0.5)])
    np.testing.assert_array_equal(d.log_prob(np.array([0.0, 1.0, 0.0])).data, [-np.inf, -np.inf, np.log(0.5)])


# ---- a parameter that depends on an enumerated sample -------------------------------------


def test_dirichlet_whose_concentration_depends_on_an_enumerated_node():
    # Dirichlet's accurate log B(a) picks a pivot among the concentrations; the pivot used to
    # be a numpy array, refused next to the support axis of k. Brute force: scipy per k.
    from scipy import stats

    table = np.array([[1.0, 2.0], [3.0, 0.5], [2.0, 2.0]])
    a = scg.tensor(table, requires_grad=True)
    x = np.array([0.3, 0.7])
    g = scg.Graph()
    with g:
        k = g.sample("k", D.Categorical(logits=np.zeros(3)), estimator=scg.Enumerate())
        g.cost("c", -D.Dirichlet(a[k] + 0.5).log_prob(x))
    want = np.mean([-stats.dirichlet.logpdf(x, row + 0.5) for row in table])
    assert np.isclose(g.objective().item(), want, rtol=1e-12)
    (gr,) = scg.grad(g.surrogate(), a)
    h = 1e-6
    num = np.zeros_like(table)
    for i, j in itertools.product(range(3), range(2)):
        up, dn = table.copy(), table.copy()
        up[i, j] += h
        dn[i, j] -= h
        num[i, j] = (-stats.dirichlet.logpdf(x, up[i] + 0.5) + stats.dirichlet.logpdf(x, dn[i] + 0.5)) / (2 * h) / 3
    np.testing.assert_allclose(gr.data, num, rtol=1e-6, atol=1e-9)
