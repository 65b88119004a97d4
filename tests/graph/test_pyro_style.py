"""Models written as Pyro users write them: plates that broadcast, sample/support axes that
find their own positions, marginalization, enumerated event-shaped layers. Every expected
value is a brute force written here in numpy (or in plain scg arithmetic, outside a graph)."""

import itertools

import numpy as np
import pytest
from scipy.special import expit, logsumexp
from scipy.stats import norm

import scg
import scg.distributions as D
from scg import ops
from scg.diagnostics import exact_gradient

from brute import central_differences


# ---- Distribution.expand (torch's meaning) -------------------------------------------------


def test_expand_adds_independent_copies_on_the_left_and_grows_size_one_axes():
    mu = scg.tensor(np.array([[0.5], [-1.0]]), requires_grad=True)  # batch (2, 1)
    d = D.Normal(mu, 2.0).expand((3, 2, 4))
    assert d.batch_shape == (3, 2, 4) and d.event_shape == ()
    x = d.sample((5,), rng=np.random.default_rng(0))
    assert x.shape == (5, 3, 2, 4)
    # every element its own draw: no two of the 3 x 4 copies of one row are equal
    flat = x.data.transpose(0, 2, 1, 3).reshape(5, 2, 12)
    assert all(len(set(flat[s, r].tolist())) == 12 for s in range(5) for r in range(2))
    lp = d.log_prob(x)
    expected = norm.logpdf(x.data, mu.data, 2.0)
    np.testing.assert_allclose(lp.data, expected, rtol=1e-13)
    (g,) = scg.grad(lp.sum(), [mu])
    np.testing.assert_allclose(g.data, ((x.data - mu.data) / 4.0).sum(axis=(0, 1, 3))[:, None], rtol=1e-12)
    np.testing.assert_allclose(d.mean.data, np.broadcast_to(mu.data, (3, 2, 4)))
    assert D.Normal(0.0, 1.0).expand(()) .batch_shape == ()


def test_expand_refuses_a_shape_the_batch_cannot_broadcast_to():
    with pytest.raises(ValueError, match=r"batch_shape \(2,\) of Normal cannot be expanded to \(3,\)"):
        D.Normal(np.zeros(2), 1.0).expand((3,))
    with pytest.raises(ValueError, match=r"non-negative integers \(or -1 to keep a size\), got \(-2,\)"):
        D.Normal(0.0, 1.0).expand((-2,))
    with pytest.raises(ValueError, match=r"cannot be expanded to \(-1, 2\)"):  # -1 on a new axis
        D.Normal(np.zeros(2), 1.0).expand((-1, 2))


def test_expand_minus_one_keeps_the_base_size_as_torch_does():
    loc = np.array([0.5, -1.0, 2.0])
    d = D.Normal(loc, 1.0).expand((4, -1))
    assert d.batch_shape == (4, 3)
    x = d.sample(rng=np.random.default_rng(0))
    np.testing.assert_allclose(d.log_prob(x).data, norm.logpdf(x.data, loc), rtol=1e-13)


def test_expanded_discrete_enumerates_and_has_kl():
    b = D.Bernoulli(probs=np.array([0.2, 0.9])).expand((3, 2))
    support = b.enumerate_support()
    assert support.shape == (2, 3, 2)
    np.testing.assert_array_equal(support.data[:, 0, 0], [0.0, 1.0])
    np.testing.assert_allclose(ops.exp(b.log_prob(support)).data.sum(0), np.ones((3, 2)), rtol=1e-14)
    kl = D.kl_divergence(D.Normal(0.0, 1.0).expand((3,)), D.Normal(1.0, 2.0))
    np.testing.assert_allclose(kl.data, np.full(3, np.log(2.0) + (1 + 1) / 8 - 0.5), rtol=1e-14)


# ---- plates broadcast ----------------------------------------------------------------------


def test_a_scalar_distribution_inside_a_plate_is_expanded_to_it():
    mu = scg.tensor(0.3, requires_grad=True)
    x = np.array([0.1, -0.4, 1.2, 0.7, 2.0])
    g = scg.Graph(rng=np.random.default_rng(1))
    with g:
        with g.plate("data", 5):
            z = g.sample("z", D.Normal(mu, 1.0))
            g.observe("x", D.Normal(mu, 2.0), x)
    assert z.shape == (5,) and len(set(z.data.tolist())) == 5
    assert g.nodes["z"].dims == (g._plate_dims["data"],)
    assert g.costs[0].dims == (g._plate_dims["data"],)
    np.testing.assert_allclose(g.costs[0].value.data, -norm.logpdf(x, 0.3, 2.0), rtol=1e-13)


def test_a_size_one_batch_axis_grows_and_a_wrong_size_is_refused_naming_the_plate():
    g = scg.Graph()
    with g:
        with g.plate("data", 4):
            z = g.sample("z", D.Normal(np.zeros((1, 3)), 1.0))  # (1, 3): the 1 grows to 4
            assert z.shape == (4, 3)
            with pytest.raises(scg.AxisError, match=r"plate 'data' of size 4.*found size 3.*\.to_event\(1\)"):
                g.sample("w", D.Normal(np.zeros(3), 1.0))


def test_the_full_data_in_a_subsampled_plate_is_refused_with_the_fix():
    g = scg.Graph(rng=np.random.default_rng(0))
    x = np.arange(100.0)
    with g:
        with g.plate("data", 100, subsample_size=10) as idx:
            loc = g.sample("loc", D.Normal(0.0, 1.0))
            with pytest.raises(scg.AxisError, match=r"subsample of 10 of its 100.*x\[idx\]"):
                g.observe("x", D.Normal(loc, 1.0), x)
            g.observe("x_ok", D.Normal(loc, 1.0), x[idx])


def test_a_global_enumerated_node_next_to_a_plate_of_the_same_size():
    means = scg.tensor(np.array([-1.0, 1.0]), requires_grad=True)
    w = np.array([0.4, 0.6])
    x = np.array([0.3, -0.2])
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Categorical(probs=w), estimator=scg.Enumerate())
        with g.plate("data", 2):
            g.observe("x", D.Normal(means[z], 1.0), x)
    obj = g.objective()
    (grad,) = scg.grad(obj, [means])
    m = means.data
    expected = sum(w[k] * -norm.logpdf(x, m[k]).sum() for k in range(2))
    np.testing.assert_allclose(obj.item(), expected, rtol=1e-13)
    np.testing.assert_allclose(grad.data, [-w[k] * (x - m[k]).sum() for k in range(2)], rtol=1e-12)


# ---- axes allocated so that independent nodes never collide --------------------------------


def test_independent_sample_axes_get_their_own_positions():
    mu = scg.tensor(0.5, requires_grad=True)
    g = scg.Graph(rng=np.random.default_rng(3))
    with g:
        a = g.sample("a", D.Normal(mu, 1.0), n=3)
        b = g.sample("b", D.Normal(mu, 2.0), n=4)
        c = g.sample("c", D.Normal(a, 1.0), n=2)  # depends on a: a's axis stays where it was
        assert (a.shape, b.shape, c.shape) == ((3,), (4, 1), (2, 1, 3))
        f = g.cost("f", (a + b) ** 2)
    assert f.shape == (4, 3)
    # each cost element is averaged over the sample axes it keeps
    np.testing.assert_allclose(g.objective().item(), ((a.data + b.data) ** 2).mean(), rtol=1e-13)


def _brute_three(l1, l2, l3, f):
    """E f(u, v, w) for u ~ Bernoulli(sigmoid(l1)), v ~ Cat(softmax(l2)), w ~ Cat(softmax(l3))."""
    p1 = expit(l1)
    p2, p3 = np.exp(l2 - logsumexp(l2)), np.exp(l3 - logsumexp(l3))
    return sum((p1 if u else 1 - p1) * p2[v] * p3[w] * f(u, v, w)
               for u in range(2) for v in range(len(l2)) for w in range(len(l3)))


@pytest.mark.parametrize("estimators", [("E", "E", "E"), ("SF", "E", "SF"), ("SF", "SF", "SF")])
def test_several_independent_discrete_nodes_without_manual_axes_are_exact(estimators):
    l1 = scg.tensor(0.4, requires_grad=True)
    l2 = scg.tensor(np.array([0.1, -0.5, 0.8]), requires_grad=True)
    l3 = scg.tensor(np.array([0.3, -0.2]), requires_grad=True)
    pick = {"E": scg.Enumerate, "SF": scg.ScoreFunction}

    def f(u, v, w):
        return (u + 2 * v - w) ** 2 + u * w

    def build():
        g = scg.Graph()
        with g:
            u = g.sample("u", D.Bernoulli(logits=l1), estimator=pick[estimators[0]]())
            v = g.sample("v", D.Categorical(logits=l2), estimator=pick[estimators[1]]())
            w = g.sample("w", D.Categorical(logits=l3), estimator=pick[estimators[2]]())
            g.cost("f", f(u, v, w))
        return g

    grads = exact_gradient(build, [l1, l2, l3])
    fds = central_differences(lambda *a: _brute_three(*a, f), [l1.data, l2.data, l3.data])
    for gr, fd in zip(grads, fds):
        np.testing.assert_allclose(gr.data, fd, rtol=1e-6, atol=1e-8)


def test_a_categorical_enumerated_downstream_of_an_enumerated_bernoulli():
    table = scg.tensor(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]))
    logit = scg.tensor(-0.3, requires_grad=True)
    g = scg.Graph()
    with g:
        b = g.sample("b", D.Bernoulli(logits=logit), estimator=scg.Enumerate())
        c = g.sample("c", D.Categorical(probs=table[ops.astype(b, np.int64)]), estimator=scg.Enumerate())
        g.cost("f", (b + c) ** 2)
    assert c.shape == (3, 2)
    p = expit(-0.3)
    expected = sum((p if bb else 1 - p) * table.data[bb, cc] * (bb + cc) ** 2 for bb in range(2) for cc in range(3))
    obj = g.objective()
    np.testing.assert_allclose(obj.item(), expected, rtol=1e-13)
    (grad,) = scg.grad(obj, [logit])
    e = [sum(table.data[bb, cc] * (bb + cc) ** 2 for cc in range(3)) for bb in range(2)]
    np.testing.assert_allclose(grad.item(), p * (1 - p) * (e[1] - e[0]), rtol=1e-12)


def test_a_replayed_value_may_omit_the_size_one_slots():
    g = scg.Graph()
    with g:
        g.sample("a", D.Bernoulli(probs=0.5), estimator=scg.Enumerate())
        v = g.sample("v", D.Bernoulli(probs=0.3), n=2, value=np.array([1.0, 0.0]))
    assert v.shape == (2, 1)
    np.testing.assert_array_equal(v.data[:, 0], [1.0, 0.0])


# ---- marginalization -------------------------------------------------------------------------


def test_gmm_marginal_likelihood_and_gradient_equal_logsumexp():
    x = np.array([-1.2, 0.3, 2.1, 1.7, -0.4])
    logits = scg.tensor(np.array([0.2, -0.1]), requires_grad=True)
    means = scg.tensor(np.array([-1.0, 1.5]), requires_grad=True)
    log_scale = scg.tensor(np.array([0.1, -0.3]), requires_grad=True)
    g = scg.Graph()
    with g:
        with g.plate("data", 5):
            z = g.sample("z", D.Categorical(logits=logits), estimator=scg.Marginalize())
            g.observe("x", D.Normal(means[z], ops.exp(log_scale)[z]), x)
    loss = g.surrogate()
    grads = scg.grad(loss, [logits, means, log_scale])

    def nll(lg, m, ls):
        lw = lg - logsumexp(lg)
        return -logsumexp(lw[:, None] + norm.logpdf(x[None, :], m[:, None], np.exp(ls)[:, None]), axis=0).sum()

    values = [t.data for t in (logits, means, log_scale)]
    np.testing.assert_allclose(loss.item(), nll(*values), rtol=1e-13)
    # the gradient in closed form: responsibilities r (2, 5)
    lw = values[0] - logsumexp(values[0])
    s = np.exp(values[2])
    lj = lw[:, None] + norm.logpdf(x[None, :], values[1][:, None], s[:, None])
    r = np.exp(lj - logsumexp(lj, axis=0))
    d_logits = -(r.sum(1) - 5 * np.exp(lw))
    d_means = -(r * (x - values[1][:, None]) / s[:, None] ** 2).sum(1)
    d_log_scale = -(r * ((x - values[1][:, None]) ** 2 / s[:, None] ** 2 - 1)).sum(1)
    for got, want in zip(grads, (d_logits, d_means, d_log_scale)):
        np.testing.assert_allclose(got.data, want, rtol=1e-10, atol=1e-12)


def _hmm_brute(init_logits, trans_logits, mu, obs):
    """-log p(obs), summed over every state sequence, in scg arithmetic outside any graph."""
    K, T = init_logits.shape[0], len(obs)
    log_init = ops.log_softmax(init_logits)
    log_trans = ops.log_softmax(trans_logits, axis=-1)
    terms = []
    for zs in itertools.product(range(K), repeat=T):
        lp = log_init[zs[0]]
        for t in range(1, T):
            lp = lp + log_trans[zs[t - 1], zs[t]]
        for t in range(T):
            lp = lp + D.Normal(mu[zs[t]], 1.0).log_prob(obs[t])
        terms.append(ops.reshape(lp, (1,)))
    return -ops.logsumexp(ops.concatenate(terms))


def test_hmm_marginal_likelihood_and_gradient_against_brute_force():
    rng = np.random.default_rng(0)
    K, T = 3, 3
    init_logits = scg.tensor(rng.normal(size=K), requires_grad=True)
    trans_logits = scg.tensor(rng.normal(size=(K, K)), requires_grad=True)
    mu = scg.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    obs = np.array([0.5, -0.7, 1.9])
    g = scg.Graph()
    with g:
        z = None
        for t in range(T):
            logits = init_logits if t == 0 else trans_logits[z]
            z = g.sample(f"z{t}", D.Categorical(logits=logits), estimator=scg.Marginalize())
            g.observe(f"x{t}", D.Normal(mu[z], 1.0), obs[t])
    assert [c.name for c in g.effective_costs()] == ["marginal(z0, z1, z2)"]
    loss = g.surrogate()
    brute = _hmm_brute(init_logits, trans_logits, mu, obs)
    np.testing.assert_allclose(loss.item(), brute.item(), rtol=1e-12)
    params = [init_logits, trans_logits, mu]
    for got, want in zip(scg.grad(loss, params), scg.grad(brute, params)):
        np.testing.assert_allclose(got.data, want.data, rtol=1e-10, atol=1e-12)


def test_marginal_under_a_score_function_node_is_credited_exactly():
    """A score-function switch w picks the noise scale of a marginalized mixture: the
    gradient of E_w[-log p(x | w)] by exact_gradient against a brute force."""
    lw = scg.tensor(0.3, requires_grad=True)
    means = scg.tensor(np.array([-1.0, 1.0]), requires_grad=True)
    x = np.array([0.4, -1.3, 0.9])
    scales = np.array([0.5, 2.0])

    def build():
        g = scg.Graph()
        with g:
            w = g.sample("w", D.Bernoulli(logits=lw), estimator=scg.ScoreFunction())
            scale = 0.5 + 1.5 * w
            with g.plate("data", 3):
                z = g.sample("z", D.Categorical(probs=np.array([0.5, 0.5])), estimator=scg.Marginalize())
                g.observe("x", D.Normal(means[z], scale[..., None] if scale.ndim else scale), x)
        return g

    def brute(l, m):
        p = expit(l)
        nll = [-logsumexp(np.log(0.5) + norm.logpdf(x[None, :], m[:, None], scales[w]), axis=0).sum()
               for w in range(2)]
        return (1 - p) * nll[0] + p * nll[1]

    got = exact_gradient(build, [lw, means])
    d_l, d_m = central_differences(brute, [lw.data, means.data])
    np.testing.assert_allclose(got[0].item(), d_l, rtol=1e-6)
    np.testing.assert_allclose(got[1].data, d_m, rtol=1e-6)


def test_marginalization_refusals_name_the_node_and_the_count():
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Categorical(probs=np.full(4, 0.25)), estimator=scg.Marginalize())
        with pytest.raises(ValueError, match=r"sample 'y' depends on 'z', summed out by scg.Marginalize"):
            g.sample("y", D.Normal(ops.astype(z, np.float64), 1.0))
    g = scg.Graph()
    with g:
        total = 0.0
        for t in range(11):  # eleven independent nodes in one cost: a 4^11 table, above 2^20
            total = total + ops.astype(g.sample(f"z{t}", D.Categorical(probs=np.full(4, 0.25)),
                                                estimator=scg.Marginalize()), np.float64)
        g.observe("x", D.Normal(total, 1.0), 0.5)
    with pytest.raises(ValueError, match=r"summing out 'z10' .* = 4194304 values, above the limit of 1048576"):
        g.objective()


def test_a_long_hmm_is_summed_out_step_by_step_as_the_forward_algorithm():
    """T = 25 steps of K = 3 states (3^25 paths): linear elimination, against the forward
    recursion written in numpy."""
    rng = np.random.default_rng(7)
    K, T = 3, 25  # each node adds an axis to the values after it: numpy allows 32
    init = rng.dirichlet(np.ones(K))
    trans = rng.dirichlet(np.ones(K), size=K)
    mu = np.array([-1.5, 0.0, 1.5])
    obs = rng.normal(mu[rng.integers(0, K, T)], 1.0)
    g = scg.Graph()
    with g:
        z = None
        for t in range(T):
            probs = init if t == 0 else scg.tensor(trans)[z]
            z = g.sample(f"z{t}", D.Categorical(probs=probs), estimator=scg.Marginalize())
            g.observe(f"x{t}", D.Normal(scg.tensor(mu)[z], 1.0), obs[t])
        assert z.size == K  # each value carries its own support axis only
    log_alpha = np.log(init) + norm.logpdf(obs[0], mu)
    for t in range(1, T):
        log_alpha = logsumexp(log_alpha[:, None] + np.log(trans), axis=0) + norm.logpdf(obs[t], mu)
    np.testing.assert_allclose(g.objective().item(), -logsumexp(log_alpha), rtol=1e-12)


def test_more_axes_than_numpy_allows_are_refused_by_name():
    g = scg.Graph()
    with g:
        for t in range(32):
            g.sample(f"z{t}", D.Bernoulli(probs=0.5), estimator=scg.Enumerate())
        with pytest.raises(scg.AxisError, match=r"sample 'z32' .* 33 axes .* more than numpy's 32"):
            g.sample("z32", D.Bernoulli(probs=0.5), estimator=scg.Enumerate())


def test_a_subsampled_marginal_is_scaled_to_the_full_data():
    x = np.array([-1.2, 0.3, 2.1, 1.7, -0.4, 0.9])
    means = np.array([-1.0, 1.5])
    per_point = -logsumexp(np.log(0.5) + norm.logpdf(x[None, :], means[:, None]), axis=0)
    g = scg.Graph(rng=np.random.default_rng(4))
    with g:
        with g.plate("data", 6, subsample_size=2) as idx:
            z = g.sample("z", D.Categorical(probs=np.array([0.5, 0.5])), estimator=scg.Marginalize())
            g.observe("x", D.Normal(scg.tensor(means)[z], 1.0), x[idx])
    np.testing.assert_allclose(g.objective().item(), 3.0 * per_point[idx].sum(), rtol=1e-13)


# ---- enumerating event-shaped discrete layers ----------------------------------------------------


def test_a_sigmoid_belief_network_enumerates_and_its_exact_gradient_matches_brute_force():
    W = scg.tensor(np.array([[0.5, -1.0, 0.3], [1.2, 0.1, -0.7]]), requires_grad=True)
    b0 = scg.tensor(np.array([0.2, -0.4, 0.9]), requires_grad=True)
    target = np.array([1.0, 0.0])

    def build(estimator):
        g = scg.Graph()
        with g:
            h = g.sample("h", D.Bernoulli(logits=b0).to_event(1), estimator=estimator())
            v = g.sample("v", D.Bernoulli(logits=(h[..., None, :] * W).sum(-1)).to_event(1),
                         estimator=estimator())
            g.cost("f", ((v - target) ** 2).sum(-1) + h.sum(-1))
        return g

    def brute(w, b):
        total = 0.0
        for h in itertools.product([0.0, 1.0], repeat=3):
            h = np.array(h)
            ph = np.prod(np.where(h == 1, expit(b), 1 - expit(b)))
            for v in itertools.product([0.0, 1.0], repeat=2):
                v = np.array(v)
                pv = np.prod(np.where(v == 1, expit(w @ h), 1 - expit(w @ h)))
                total += ph * pv * (((v - target) ** 2).sum() + h.sum())
        return total

    g = build(scg.Enumerate)
    assert g.nodes["h"].value.shape == (8, 3) and g.nodes["v"].value.shape == (4, 8, 2)
    np.testing.assert_allclose(g.objective().item(), brute(W.data, b0.data), rtol=1e-13)
    fds = central_differences(brute, [W.data, b0.data])
    for make in (scg.Enumerate, scg.ScoreFunction):
        for got, fd in zip(exact_gradient(lambda: build(make), [W, b0]), fds):
            np.testing.assert_allclose(got.data, fd, rtol=1e-6, atol=1e-9)


def test_a_joint_support_above_the_limit_is_refused_by_name():
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match=r"Enumerate for 'h': .*2\^17 = 131072 values"):
            g.sample("h", D.Bernoulli(logits=np.zeros(17)).to_event(1), estimator=scg.Enumerate())


# ---- pictures ----------------------------------------------------------------------------------


def test_pictures_show_unregistered_parameters_and_subsampled_plates():
    mu = scg.tensor(0.0, requires_grad=True)
    log_s = scg.tensor(np.zeros(100), requires_grad=True)
    x = np.linspace(-1, 1, 100)
    g = scg.Graph(rng=np.random.default_rng(0))
    with g:
        glob = g.sample("global", D.Normal(mu, 1.0))
        with g.plate("data", 100, subsample_size=10) as idx:
            loc = g.sample("local", D.Normal(glob, ops.exp(log_s[idx])))
            g.observe("x", D.Normal(loc, 1.0), x[idx])
    src = g.to_graphviz().source
    assert 'label="data (10 of 100)"' in src
    assert src.count("shape=hexagon") == 2  # mu and log_s, never registered with g.param
    ops_src = g.to_graphviz(detail="ops").source
    plate = ops_src[ops_src.index("subgraph cluster_data"):]
    assert "subtract" in plate  # the observation's log-density is computed per datapoint, inside


# ---- marginalized nodes shared by a plate's datapoints (found by review) ------------------------


def test_a_global_marginalized_node_multiplies_the_likelihoods_of_its_plate():
    """-log sum_z p(z) prod_n p(x_n | z), not a mixture per datapoint."""
    x = np.array([-1.2, 0.3, 2.1, 1.7, -0.4])
    w = np.array([0.3, 0.7])
    means = scg.tensor(np.array([-1.0, 1.5]), requires_grad=True)
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Categorical(probs=w), estimator=scg.Marginalize())
        with g.plate("data", 5):
            g.observe("x", D.Normal(means[z], 1.0), x)
    obj = g.objective()
    lj = np.log(w) + norm.logpdf(x[None, :], means.data[:, None]).sum(1)
    np.testing.assert_allclose(obj.item(), -logsumexp(lj), rtol=1e-13)
    r = np.exp(lj - logsumexp(lj))
    (grad,) = scg.grad(obj, [means])
    np.testing.assert_allclose(grad.data, -r * (x[None, :] - means.data[:, None]).sum(1), rtol=1e-11)


def test_nested_marginalized_nodes_eliminate_the_inner_plate_first():
    """z1 per group (plate g), z2 per item (plates g, m) with p(z2 | z1): per group,
    -log sum_z1 p(z1) prod_m sum_z2 p(z2 | z1) p(x_gm | z2), against brute force."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3))
    logits1 = scg.tensor(np.array([0.3, -0.2]), requires_grad=True)
    trans = scg.tensor(rng.normal(size=(2, 2)), requires_grad=True)
    mu = np.array([-1.0, 1.0])
    g = scg.Graph()
    with g:
        with g.plate("g", 2):
            z1 = g.sample("z1", D.Categorical(logits=logits1), estimator=scg.Marginalize())
            with g.plate("m", 3):
                z2 = g.sample("z2", D.Categorical(logits=trans[z1][..., None, :]), estimator=scg.Marginalize())
                g.observe("x", D.Normal(scg.tensor(mu)[z2], 1.0), x)
    obj = g.objective()

    def brute(l1, t):
        lp1 = l1 - logsumexp(l1)
        lt = t - logsumexp(t, axis=1, keepdims=True)
        total = 0.0
        for gi in range(2):
            terms = [lp1[a] + sum(logsumexp(lt[a] + norm.logpdf(x[gi, mi], mu)) for mi in range(3)) for a in range(2)]
            total -= logsumexp(terms)
        return total

    np.testing.assert_allclose(obj.item(), brute(logits1.data, trans.data), rtol=1e-12)
    gl, gt = scg.grad(obj, [logits1, trans])
    for got, fd in zip((gl, gt), central_differences(brute, [logits1.data, trans.data])):
        np.testing.assert_allclose(got.data, fd, rtol=1e-6, atol=1e-9)


def test_a_marginalized_node_shared_by_a_subsampled_plate_is_refused():
    g = scg.Graph(rng=np.random.default_rng(0))
    x = np.arange(6.0)
    with g:
        z = g.sample("z", D.Bernoulli(probs=0.5), estimator=scg.Marginalize())
        with g.plate("data", 6, subsample_size=2) as idx:
            g.observe("x", D.Normal(z, 1.0), x[idx])
    with pytest.raises(scg.AxisError, match=r"'z' is shared by the datapoints of plate 'data'.*subsample of 6"):
        g.objective()


def test_a_global_value_meeting_a_plate_value_is_refused_as_an_axis_error_with_the_fix():
    g = scg.Graph()
    with g:
        e2 = g.sample("e2", D.Bernoulli(logits=0.5), estimator=scg.Enumerate())
        with g.plate("data", 5):
            e1 = g.sample("e1", D.Bernoulli(logits=-1.0), estimator=scg.Enumerate())
            with pytest.raises(scg.AxisError, match=r"support axis of enumerated 'e2'.*z\[\.\.\., None\]"):
                e1 - e2
            g.cost("c", (e1 - e2[..., None]) ** 2)  # the fix: e2 gets the plate's slot
    p1, p2 = expit(-1.0), expit(0.5)
    expected = 5 * (p1 * (1 - p2) + (1 - p1) * p2)  # E (e1 - e2)^2 = P(e1 != e2), per datapoint
    np.testing.assert_allclose(g.objective().item(), expected, rtol=1e-13)
