"""Adversarial review of the multi-sample and Bernoulli estimators (VIMCO, STL, DReG,
DisARM, ARM, RELAX, NVIL normalisation), ``g.bound`` and the compiler's hook for them.

Each test is a case a user could plausibly write. The reference side is plain numpy:
exact expectations by enumerating every outcome (replayed in scg with its probability
computed in numpy), or per-sample closed forms.
"""

import itertools

import numpy as np
import pytest

import scg
import scg.distributions as D


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def logmeanexp(a, axis=0):
    m = a.max(axis=axis, keepdims=True)
    return np.log(np.exp(a - m).mean(axis=axis)) + m.squeeze(axis)


def bernoulli_tuples(shape):
    """Every 0/1 array of ``shape``."""
    for bits in itertools.product([0.0, 1.0], repeat=int(np.prod(shape))):
        yield np.array(bits).reshape(shape)


# ---- log-weights laid out plate-first: (B, K) instead of (K, B) ------------------------------


def vimco_plate_first(phi, h, a, replay=True):
    """h (K, B) ~ Bernoulli(sigmoid(phi_b)); log_w given datapoint-first, shape (B, K)."""
    g = scg.Graph(replay={"h": h} if replay else None, rng=np.random.default_rng(0))
    with g:
        with g.plate("data", phi.shape[0]):
            q = D.Bernoulli(logits=phi)
            hh = g.sample("h", q, n=h.shape[0], estimator=scg.VIMCO())
            g.bound("neg_iwae", (hh * a - q.log_prob(hh)).T, over="h")
    return g


def exact_vimco_plate_first(phi0, a, k):
    """d/dphi E[sum_b -L_b], log w_kb = a_b h_kb - log q(h_kb), by enumeration (numpy)."""
    sig = sigmoid(phi0)
    total = np.zeros_like(phi0)
    for h in bernoulli_tuples((k, phi0.shape[0])):
        log_q = np.where(h == 1, np.log(sig), np.log(1 - sig))  # (K, B)
        p = np.exp(log_q.sum())
        neg_l = -logmeanexp(a * h - log_q)  # (B,)
        wt = np.exp(a * h - log_q - logmeanexp(a * h - log_q)[None]) / k
        # d/dphi_b of -L_b at fixed h: sum_k wt_kb (h_kb - sig_b); plus the score term.
        total += p * ((h - sig) * neg_l.sum() + wt * (h - sig)).sum(0)
    return total


@pytest.mark.parametrize("b_size", [1, 2])
def test_vimco_is_exact_when_log_w_is_laid_out_datapoint_first(b_size):
    """A (B, K) log_w is a legal bound (the sample axis is found by name). With B=1 the
    baseline was laid out (1, K) against the (K, 1) log-prob and broadcast to (K, K): a
    silently wrong gradient; with B=2 a raw numpy broadcasting error."""
    k = 3
    phi0, a = np.array([0.3, -0.8])[:b_size], np.array([1.5, -0.7])[:b_size]
    phi = scg.tensor(phi0.copy(), requires_grad=True)
    sig = sigmoid(phi0)
    total = np.zeros(b_size)
    for h in bernoulli_tuples((k, b_size)):
        p = np.prod(np.where(h == 1, sig, 1 - sig))
        (d,) = scg.grad(vimco_plate_first(phi, h, a).surrogate(), [phi])
        total += p * d.data
    np.testing.assert_allclose(total, exact_vimco_plate_first(phi0, a, k), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["stl", "dreg"])
@pytest.mark.parametrize("b_size", [1, 2])
def test_stl_and_dreg_accept_log_w_laid_out_datapoint_first(name, b_size):
    """The same graph with log_w transposed to (B, K) gives the same gradient as (K, B)."""
    est = {"stl": scg.STL, "dreg": scg.DReG}[name]
    m0 = np.array([0.2, -0.5])[:b_size]
    xs = np.array([1.3, -0.4])[:b_size]
    out = []
    for transpose in (False, True):
        m = scg.tensor(m0.copy(), requires_grad=True)
        g = scg.Graph(rng=np.random.default_rng(4))
        with g:
            with g.plate("data", b_size):
                q = D.Normal(m, 0.8)
                z = g.sample("z", q, n=3, estimator=est())
                log_w = D.Normal(0.0, 1.0).log_prob(z) + D.Normal(z, 1.0).log_prob(xs) - q.log_prob(z)
                g.bound("b", log_w.T if transpose else log_w, over="z")
        out.append(scg.grad(g.surrogate(), [m])[0].data)
    np.testing.assert_allclose(out[1], out[0], rtol=0, atol=1e-12)


def test_score_function_credit_of_a_cost_laid_out_datapoint_first():
    """The credit itself: a (B, K) cost of an n=K score-function node in a plate of B=2
    crashed with a raw numpy error while summing the credit parts."""
    k, phi0 = 3, np.array([0.3, -0.4])
    w = np.array([1.0, -2.0])
    phi = scg.tensor(phi0.copy(), requires_grad=True)
    sig = sigmoid(phi0)
    got, exact = np.zeros(2), np.zeros(2)
    for h in bernoulli_tuples((k, 2)):
        p = np.prod(np.where(h == 1, sig, 1 - sig))
        g = scg.Graph(replay={"h": h})
        with g:
            with g.plate("data", 2):
                hh = g.sample("h", D.Bernoulli(logits=phi), n=k, estimator=scg.ScoreFunction())
                g.cost("c", ((hh * w + 0.5) ** 2 + hh).T)
        got += p * scg.grad(g.surrogate(), [phi])[0].data
        exact += p * (((h * w + 0.5) ** 2 + h).sum() / k) * (h - sig).sum(0)
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-10)


# ---- one sample axis on two positions (an outer product of the samples) --------------------------


def test_bound_refuses_log_w_that_carries_the_sample_axis_twice():
    """log_w[k, j] = f(h_k, h_j): log_w_k is not a function of sample k alone. It used to be
    accepted and then crash in the compiler with a raw reshape error."""
    phi = scg.tensor(0.3, requires_grad=True)
    g = scg.Graph(rng=np.random.default_rng(0))
    with g:
        q = D.Bernoulli(logits=phi)
        h = g.sample("h", q, n=2, estimator=scg.VIMCO())
        log_w = h[:, None] * 1.5 - h[None, :] * 0.7 - q.log_prob(h)[:, None]
        with pytest.raises(ValueError, match="bound 'b'.*sample axis of 'h' \\(n=2\\) at two positions"):
            g.bound("b", log_w, over="h")


def test_cost_that_carries_a_sample_axis_twice_is_refused():
    """An outer product of the samples as a cost: refused by name instead of a raw reshape
    error while computing the credit."""
    phi = scg.tensor(0.3, requires_grad=True)
    g = scg.Graph(rng=np.random.default_rng(0))
    with g:
        h = g.sample("h", D.Bernoulli(logits=phi), n=2, estimator=scg.ScoreFunction())
        with pytest.raises(ValueError, match="cost 'c'.*sample axis of 'h' \\(n=2\\) at two positions"):
            g.cost("c", (h[:, None] * 1.5 - h[None, :] * 0.7) ** 2)


# ---- float32 parameters keep float32 gradients --------------------------------------------------


@pytest.mark.parametrize("make", [lambda w: scg.RELAX(lambda z: z * w), lambda w: scg.DisARM(),
                                  lambda w: scg.ARM()])
def test_bernoulli_estimators_keep_float32_gradients(make):
    """float32 logits and control weights: every gradient is float32 (as for every other
    estimator and op); RELAX's uniforms were float64 and promoted its whole estimate."""
    logits = scg.tensor(np.array([0.3, -0.8], dtype=np.float32), requires_grad=True)
    w = scg.tensor(np.float32(0.5), requires_grad=True)
    g = scg.Graph(rng=np.random.default_rng(0))
    with g:
        b = g.sample("b", D.Bernoulli(logits=logits), estimator=make(w), n=2)
        g.cost("f", (b - np.float32(0.3)) ** 2)
    loss = g.surrogate()
    d_logits, d_w = scg.grad(loss, [logits, w])
    assert loss.dtype == np.float32
    assert d_logits.dtype == np.float32 and d_w.dtype == np.float32


# ---- DReG with a score-function node between z and the log-weights ------------------------------


def test_dreg_refuses_log_w_that_depends_on_a_score_function_node_downstream_of_z():
    """y ~ Bernoulli(sigmoid(2 z_k)) per sample and log w_k = -z_k^2/2 + 3 y_k - log q(z_k):
    DReG's identity needs w~_k as a differentiable function of z_k, but here it also depends
    on z_k through y's distribution (a score term DReG's extra backward cannot see).
    Measured over 20000 seeds (K=2, m=0.3): the standard estimator's mean -0.306 (se 0.024),
    DReG's -0.597 (se 0.022), a bias of ~9 standard errors. Refused instead."""
    m = scg.tensor(0.3, requires_grad=True)
    g = scg.Graph(rng=np.random.default_rng(0))
    with g:
        q = D.Normal(m, 1.0)
        z = g.sample("z", q, n=2, estimator=scg.DReG())
        y = g.sample("y", D.Bernoulli(logits=2.0 * z), estimator=scg.ScoreFunction())
        g.bound("b", -0.5 * z**2 + 3.0 * y - q.log_prob(z), over="z")
    with pytest.raises(ValueError, match="DReG for 'z'.*bound 'b'.*score-function node 'y'.*drawn given 'z'"):
        g.surrogate()
