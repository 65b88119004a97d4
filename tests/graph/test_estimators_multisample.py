"""Multi-sample bounds (``g.bound``) and the estimators that read their log-weights:
VIMCO (Mnih & Rezende 2016), STL (Roeder et al. 2017) and DReG (Tucker et al. 2019).

The reference side of every check is plain numpy, written from the formulas:

* VIMCO: the exact gradient of E[-L] by enumerating every K-tuple of outcomes, compared
  with the surrogate gradient summed over the same tuples (replayed) to 1e-8, and with
  the Monte Carlo mean within 4 standard errors.
* STL / DReG on the conjugate model p(z) = N(0, 1), p(x|z) = N(theta z, 1) with
  q(z) = N(m, s): per-sample closed forms of the standard, STL and DReG gradients
  (exact to 1e-10 given the sampled z), STL exactly zero at the true posterior, and
  DReG's mean against the standard estimator's mean over 200k float64 samples.
"""

import itertools
from contextlib import nullcontext

import numpy as np
import pytest

import scg
import scg.distributions as D

from replicas import REP, copies, replica_stats

LOG_2PI = np.log(2 * np.pi)


def logmeanexp(a, axis=0):
    m = a.max(axis=axis, keepdims=True)
    return np.log(np.exp(a - m).mean(axis=axis)) + m.squeeze(axis)


def softmax0(a):
    e = np.exp(a - a.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def grads(loss, params):
    return [g.data.copy() for g in scg.grad(loss, params)]


# ---- g.bound: value and refusals ---------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4])
def test_bound_value_is_minus_log_mean_exp_inside_a_plate(k):
    mu = scg.tensor(np.array([0.3, -1.0, 2.0]), requires_grad=True)
    g = scg.Graph(rng=np.random.default_rng(1))
    with g:
        with g.plate("data", 3):
            z = g.sample("z", D.Normal(mu, 1.5), n=k)  # (K, 3)
            log_w = -0.5 * (z - 1.0) ** 2 * z
            cost = g.bound("neg_iwae", log_w, over="z")
    lw = log_w.data
    expected = -logmeanexp(lw, axis=0)  # (3,)
    assert cost.shape == (3,)
    np.testing.assert_allclose(cost.data, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.objective().item(), expected.sum(), rtol=0, atol=1e-12)
    node = g.costs[0]
    assert node.kind == "bound" and node.over is g.nodes["z"] and node.log_w is log_w
    assert node.scale == 1.0  # the bound reduces the sample axis: it counts once, not 1/K


def test_bound_value_with_another_sample_axis_is_averaged_over_it():
    """log_w (Kz, Ka): the bound reduces z's axis, the cost keeps a's and gets 1/Ka."""
    g = scg.Graph(rng=np.random.default_rng(2))
    with g:
        z = g.sample("z", D.Normal(scg.tensor(0.0), 1.0), n=4)
        a = g.sample("a", D.Normal(scg.tensor(0.0), 1.0), n=3)
        log_w = z * a - z ** 2  # (Ka, Kz): a's axis allocated left of z's
        assert log_w.shape == (3, 4)
        g.bound("b", log_w, over="z")
    expected = -logmeanexp(log_w.data, axis=1).mean()
    np.testing.assert_allclose(g.objective().item(), expected, rtol=0, atol=1e-12)


def test_bound_refusals_name_the_problem():
    g = scg.Graph()
    with g:
        z1 = g.sample("z1", D.Normal(scg.tensor(0.0), 1.0))
        z = g.sample("z", D.Normal(scg.tensor(0.0), 1.0), n=3)
        with pytest.raises(ValueError, match="over='nope' must name a stochastic node.*'z1', 'z'"):
            g.bound("b1", -(z**2), over="nope")
        with pytest.raises(ValueError, match="node 'z1' has no sample axis.*n=K"):
            g.bound("b2", -(z1**2), over="z1")
        with pytest.raises(ValueError, match="does not carry the sample axis of 'z'"):
            g.bound("b3", -(z**2).sum() + z1 * 0, over="z")
        with pytest.raises(ValueError, match="mixes the sample axis of 'z'"):
            g.bound("b4", z - z.sum(), over="z")  # log_w_k depends on the other samples
        with pytest.raises(TypeError, match="log_w must be a Tensor"):
            g.bound("b5", np.zeros(3), over="z")
        with pytest.raises(ValueError, match="every log-weight along the sample axis of 'z' \\(n=3\\) is -inf"):
            g.bound("b6", z * 0 - np.inf, over="z")
        g.bound("ok", -(z**2), over="z")
        with pytest.raises(ValueError, match="'ok' already exists"):
            g.bound("ok", -(z**2), over="z")
    with pytest.raises(RuntimeError, match="outside an active graph"):
        g.bound("late", -(z**2), over="z")


# ---- VIMCO -------------------------------------------------------------------------------------

K, DIM = 3, 2
X, C = 0.8, 0.1
PHI0 = np.array([0.4, -0.7])
A0 = np.array([1.2, -0.5])
PEN = 0.3  # a per-sample cost besides the bound (plain score-function credit)


def vimco_model(phi, a, estimator, replay=None, rng=None, x=X, penalty=True, replicas=None):
    """h_k ~ Bernoulli(sigmoid(phi)) (k = 1..K, DIM latents), p(h) = Bernoulli(1/2),
    p(x|h) = N(a.h + C, 1); cost -L with log_w_k = log p(x, h_k) - log q(h_k), plus PEN * sum(h_k)
    per sample (averaged over the K samples). With ``replicas=R`` (phi and a of shape (R, DIM)):
    R independent copies of the model in a plate (see replicas.py)."""
    g = scg.Graph(replay=replay, rng=rng)
    with g, (g.plate(REP, replicas) if replicas else nullcontext()):
        q = D.Bernoulli(logits=phi)
        h = g.sample("h", q, n=K, estimator=estimator)
        log_p = (h * np.log(0.5) + (1 - h) * np.log(0.5)).sum(-1) + D.Normal((h * a).sum(-1) + C, 1.0).log_prob(x)
        g.bound("neg_iwae", log_p - q.log_prob(h).sum(-1), over="h")
        if penalty:
            g.cost("penalty", PEN * h.sum(-1))
    return g


def tuples():
    """Every (K, DIM) binary array."""
    for bits in itertools.product([0.0, 1.0], repeat=K * DIM):
        yield np.array(bits).reshape(K, DIM)


def exact_vimco_gradient(phi, a):
    """d/dphi, d/da of E[-L + PEN * mean_k sum_d h_kd], by enumeration (numpy only)."""
    sig = 1 / (1 + np.exp(-phi))
    g_phi, g_a = np.zeros(DIM), np.zeros(DIM)
    for h in tuples():
        log_q = (h * np.log(sig) + (1 - h) * np.log(1 - sig)).sum(-1)  # (K,)
        p = np.exp(log_q.sum())
        mean = h @ a + C
        log_w = DIM * np.log(0.5) - 0.5 * (X - mean) ** 2 - 0.5 * LOG_2PI - log_q
        neg_l = -logmeanexp(log_w)
        wt = softmax0(log_w)
        score = (h - sig).sum(0)  # d/dphi log p(tuple)
        # d(-L)/dphi at fixed h: -sum_k wt_k * d log_w_k/dphi = sum_k wt_k (h_k - sig)
        g_phi += p * (score * neg_l + (wt[:, None] * (h - sig)).sum(0))
        g_a += p * -(wt[:, None] * ((X - mean)[:, None] * h)).sum(0)
    g_phi += PEN * sig * (1 - sig)  # E[PEN * mean_k h_kd] = PEN * sig_d
    return g_phi, g_a


def test_vimco_is_exactly_unbiased_by_enumerating_every_tuple():
    phi, a = scg.tensor(PHI0.copy(), requires_grad=True), scg.tensor(A0.copy(), requires_grad=True)
    exact = exact_vimco_gradient(PHI0, A0)
    sig = 1 / (1 + np.exp(-PHI0))
    total = [np.zeros(DIM), np.zeros(DIM)]
    dice = [np.zeros(DIM), np.zeros(DIM)]  # the bound is an ordinary cost to DiCE too
    for h in tuples():
        p = np.prod(np.where(h == 1, sig, 1 - sig))
        g = vimco_model(phi, a, scg.VIMCO(), replay={"h": h})
        for t, gr in zip(total, grads(g.surrogate(), [phi, a])):
            t += p * gr
        g = vimco_model(phi, a, scg.VIMCO(), replay={"h": h})
        for t, gr in zip(dice, grads(g.dice(), [phi, a])):
            t += p * gr
    for est in (total, dice):
        np.testing.assert_allclose(est[0], exact[0], rtol=0, atol=1e-8)
        np.testing.assert_allclose(est[1], exact[1], rtol=0, atol=1e-8)
    assert np.abs(exact[0]).min() > 1e-2  # a non-trivial target


def test_vimco_baseline_is_the_leave_one_out_bound():
    """The baseline of sample k is -L_{-k}: log mean of w with log w_k replaced by the
    mean of the others (recomputed here from the log-weights)."""
    phi, a = scg.tensor(PHI0.copy(), requires_grad=True), scg.tensor(A0.copy(), requires_grad=True)
    h = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    g = vimco_model(phi, a, scg.VIMCO(), replay={"h": h})
    log_w = g.costs[0].log_w.data
    expected = []
    for k in range(K):
        lw = log_w.copy()
        lw[k] = np.delete(log_w, k).mean()
        expected.append(-logmeanexp(lw))
    b = g.compile().baselines["h"]
    assert b.shape == (K, 1)
    np.testing.assert_allclose(b[:, 0], expected, rtol=0, atol=1e-12)


def test_vimco_monte_carlo_mean_within_four_standard_errors():
    r = 1500  # 2 graphs x 1500 independent replicas (replicas.py) = 3000 estimates
    phi, a = scg.tensor(copies(PHI0, r), requires_grad=True), scg.tensor(copies(A0, r), requires_grad=True)
    exact = exact_vimco_gradient(PHI0, A0)
    rng = np.random.default_rng(7)
    stats = replica_stats(lambda: vimco_model(phi, a, scg.VIMCO(), rng=rng, replicas=r), [phi, a])
    for mean, se, ex in zip(stats.mean, stats.stderr, exact):
        assert np.all(np.abs(mean - ex) < 4 * se), (mean, ex, se)


def test_vimco_variance_below_plain_score_function():
    """Same problem, same seeds: VIMCO's encoder-gradient variance is well below that of the
    score function without a baseline (measured 0.28 against 25.5 over 2000 runs; asserted:
    below a tenth, a margin of about 9x)."""
    r = 1000  # 2 graphs x 1000 independent replicas (replicas.py) = 2000 estimates
    phi, a = scg.tensor(copies(PHI0, r), requires_grad=True), scg.tensor(copies(A0, r), requires_grad=True)
    var = {}
    for name, est in [("vimco", scg.VIMCO), ("sf", scg.ScoreFunction)]:
        rng = np.random.default_rng(11)
        stats = replica_stats(lambda: vimco_model(phi, a, est(), rng=rng, x=3.0, replicas=r), [phi])
        var[name] = stats.total_variance()
    assert var["vimco"] < 0.1 * var["sf"], var


def test_vimco_inside_a_plate_agrees_with_each_datapoint_alone():
    """(K, B, DIM) replayed values: the gradient wrt each datapoint's phi_b equals that of a
    graph with datapoint b alone."""
    b_size = 3
    xs = np.array([0.8, -1.0, 2.5])
    phis = np.array([[0.4, -0.7], [1.0, 0.2], [-0.3, 0.5]])
    h = np.random.default_rng(3).integers(0, 2, size=(K, b_size, DIM)).astype(float)
    phi = scg.tensor(phis.copy(), requires_grad=True)
    a = scg.tensor(A0.copy(), requires_grad=True)
    g = scg.Graph(replay={"h": h})
    with g:
        with g.plate("data", b_size):
            q = D.Bernoulli(logits=phi)
            hh = g.sample("h", q, n=K, estimator=scg.VIMCO())
            log_p = (hh * np.log(0.5) + (1 - hh) * np.log(0.5)).sum(-1) + D.Normal(
                (hh * a).sum(-1) + C, 1.0).log_prob(xs)
            g.bound("neg_iwae", log_p - q.log_prob(hh).sum(-1), over="h")
    assert g.compile().baselines["h"].shape == (K, b_size, 1)
    g_phi, g_a = grads(g.surrogate(), [phi, a])
    total_a = np.zeros(DIM)
    for b in range(b_size):
        phi_b = scg.tensor(phis[b].copy(), requires_grad=True)
        one = vimco_model(phi_b, a, scg.VIMCO(), replay={"h": h[:, b]}, x=xs[b], penalty=False)
        gp, ga = grads(one.surrogate(), [phi_b, a])
        np.testing.assert_allclose(g_phi[b], gp, rtol=0, atol=1e-10)
        total_a += ga
    np.testing.assert_allclose(g_a, total_a, rtol=0, atol=1e-10)


def test_vimco_refusals():
    phi = scg.tensor(PHI0.copy(), requires_grad=True)
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match="VIMCO for 'h' needs n >= 2"):
            g.sample("h", D.Bernoulli(logits=phi), n=1, estimator=scg.VIMCO())
        h = g.sample("h2", D.Bernoulli(logits=phi), n=3, estimator=scg.VIMCO())
        g.cost("c", h.sum(-1))
    with pytest.raises(ValueError, match="VIMCO for 'h2': no bound over its sample axis.*g.bound"):
        g.surrogate()
    assert scg.VIMCO().describe() == "VIMCO"


# ---- STL and DReG on the conjugate Gaussian model -----------------------------------------------


def gauss_model(m, log_s, theta, x, k, estimator, rng, plate=None):
    """z_k ~ q = N(m, exp(log_s)); log w_k = log N(z_k; 0, 1) + log N(x; theta z_k, 1) - log q(z_k)."""
    g = scg.Graph(rng=rng)
    with g:
        def body():
            q = D.Normal(m, scg.exp(log_s))
            z = g.sample("z", q, n=k, estimator=estimator)
            log_w = D.Normal(0.0, 1.0).log_prob(z) + D.Normal(theta * z, 1.0).log_prob(x) - q.log_prob(z)
            g.bound("neg_bound", log_w, over="z")

        if plate is None:
            body()
        else:
            with g.plate("data", *plate):
                body()
    return g


def closed_form(z, m, s, theta, x, scale=1.0):
    """Per-sample gradients (d/dm, d/dlog_s, d/dtheta) of the cost -L for the standard
    reparameterized, STL and DReG estimators, given z (K, ...)."""
    log_w = -0.5 * z**2 - 0.5 * (x - theta * z) ** 2 + 0.5 * ((z - m) / s) ** 2 + np.log(s) - 0.5 * LOG_2PI
    wt = softmax0(log_w)
    dz = -z + theta * (x - theta * z) + (z - m) / s**2  # d log w / dz at fixed q parameters
    dm, dls = 1.0, z - m  # dz/dm, dz/dlog_s
    score_m, score_ls = -(z - m) / s**2, 1 - ((z - m) / s) ** 2  # d(-log q)/d param at fixed z
    d_theta = -(wt * (x - theta * z) * z).sum(0) * scale
    out = {}
    for name, c_path, c_score in [("reparam", wt, wt), ("stl", wt, 0 * wt), ("dreg", wt**2, 0 * wt)]:
        out[name] = (-(c_path * dz * dm + c_score * score_m).sum(0) * scale,
                     -(c_path * dz * dls + c_score * score_ls).sum(0) * scale, d_theta)
    return out


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("name", ["reparam", "stl", "dreg"])
def test_gradients_match_the_closed_form_sample_by_sample(name, k):
    est = {"reparam": scg.Reparam, "stl": scg.STL, "dreg": scg.DReG}[name]
    m, log_s, theta = (scg.tensor(v, requires_grad=True) for v in (0.2, 0.1, 0.9))
    for seed in range(5):
        g = gauss_model(m, log_s, theta, 1.3, k, est(), np.random.default_rng(seed))
        got = grads(g.surrogate(), [m, log_s, theta])
        want = closed_form(g.nodes["z"].value.data, 0.2, np.exp(0.1), 0.9, 1.3)[name]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_stl_gradient_is_exactly_zero_at_the_true_posterior():
    """x = 1.3: the posterior is N(x/2, 1/2). With q equal to it, log w is constant in z,
    so STL's gradient wrt q's mean and log-std is zero for every sample; the standard one is not."""
    x = 1.3
    m, log_s, theta = (scg.tensor(v, requires_grad=True) for v in (x / 2, 0.5 * np.log(0.5), 1.0))
    largest = 0.0
    for seed in range(20):
        stl = gauss_model(m, log_s, theta, x, 1, scg.STL(), np.random.default_rng(seed))
        np.testing.assert_allclose(grads(stl.surrogate(), [m, log_s]), 0.0, rtol=0, atol=1e-10)
        std = gauss_model(m, log_s, theta, x, 1, scg.Reparam(), np.random.default_rng(seed))
        largest = max(largest, np.abs(grads(std.surrogate(), [m, log_s])).max())
    assert largest > 0.5


def test_dreg_encoder_gradient_is_unbiased_and_decoder_gradient_is_standard():
    x, m0, ls0, th0, k = 1.3, 0.2, 0.1, 0.9, 5
    s0 = np.exp(ls0)
    # Reference: the standard reparameterized gradient, 200k float64 draws of K samples.
    z = m0 + s0 * np.random.default_rng(123).standard_normal((k, 200_000))
    ref = np.stack(closed_form(z, m0, s0, th0, x)["reparam"][:2])  # (2, N)
    ref_mean, ref_se = ref.mean(1), ref.std(1, ddof=1) / np.sqrt(ref.shape[1])
    reps = 1500  # 2 graphs x 1500 independent replicas in a plate (replicas.py) = 3000 estimates
    m, log_s = (scg.tensor(copies(v, reps), requires_grad=True) for v in (m0, ls0))
    theta = scg.tensor(th0, requires_grad=True)
    rng = np.random.default_rng(5)
    runs = []
    for _ in range(2):
        g = gauss_model(m, log_s, theta, x, k, scg.DReG(), rng, plate=(reps,))
        runs.append(np.stack(grads(g.surrogate(), [m, log_s]), axis=1))  # (R, 2): replica r's
    runs = np.concatenate(runs)
    mean, se = runs.mean(0), runs.std(0, ddof=1) / np.sqrt(len(runs))
    assert np.all(np.abs(mean - ref_mean) < 4 * np.sqrt(se**2 + ref_se**2)), (mean, ref_mean, se, ref_se)
    assert np.all(np.abs(ref_mean) > 10 * ref_se)  # the target is not zero
    # Decoder parameter: DReG and the standard estimator agree sample by sample (same draws).
    m, log_s, theta = (scg.tensor(v, requires_grad=True) for v in (m0, ls0, th0))
    for seed in range(5):
        d = gauss_model(m, log_s, theta, x, k, scg.DReG(), np.random.default_rng(seed))
        r = gauss_model(m, log_s, theta, x, k, scg.Reparam(), np.random.default_rng(seed))
        gd, gr = grads(d.surrogate(), [m, theta]), grads(r.surrogate(), [m, theta])
        np.testing.assert_allclose(gd[1], gr[1], rtol=0, atol=1e-12)
        assert abs(gd[0] - gr[0]) > 1e-6  # while the encoder gradients differ


@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_inside_a_subsampled_plate_each_datapoint_gets_its_own_gradient(name):
    """B=3 datapoints out of 6 (costs scaled by 2), each with its own q: the gradient wrt
    m_b, log_s_b is datapoint b's closed form times 2; theta's is the sum."""
    est = {"stl": scg.STL, "dreg": scg.DReG}[name]
    xs = np.array([1.3, -0.4, 2.0])
    m0, ls0 = np.array([0.2, -0.5, 1.1]), np.array([0.1, -0.3, 0.2])
    m, log_s = scg.tensor(m0.copy(), requires_grad=True), scg.tensor(ls0.copy(), requires_grad=True)
    theta = scg.tensor(0.9, requires_grad=True)
    g = gauss_model(m, log_s, theta, xs, 4, est(), np.random.default_rng(9), plate=(6, 3))
    got = grads(g.surrogate(), [m, log_s, theta])
    z = g.nodes["z"].value.data  # (K, 3)
    want = closed_form(z, m0, np.exp(ls0), 0.9, xs, scale=2.0)[name]
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(got[2], want[2].sum(), rtol=0, atol=1e-10)


def test_stl_and_dreg_refusals():
    mu = scg.tensor(0.0, requires_grad=True)
    for est, label in [(scg.STL(), "STL"), (scg.DReG(), "DReG")]:
        assert est.describe() == label
        g = scg.Graph()
        with g:
            z = g.sample("z", D.Normal(mu, 1.0), n=2, estimator=est)
            g.cost("c", z**2)
        with pytest.raises(ValueError, match=f"{label} for 'z': no bound over its sample axis"):
            g.surrogate()
        g = scg.Graph()
        with g:
            z = g.sample("z", D.Normal(mu, 1.0), n=2, estimator=est)
            g.bound("b", -(z[:, None] - np.arange(3.0)) ** 2, over="z")  # (K, 3): unnamed axis
        with pytest.raises(ValueError, match=f"{label} for 'z'.*unnamed axes \\[1\\]"):
            g.surrogate()
    with pytest.raises(ValueError, match="Bernoulli has no reparameterized sample"):
        scg.STL().check(D.Bernoulli(probs=0.5), 2, "b")
