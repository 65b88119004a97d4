"""The families with a finite support, used the way users use them: a distribution's own
``log_prob`` of a value sampled from it, in a cost, in ``g.observe`` and in a bound's
log-weights, for every estimator that applies, outside and inside a plate.

Exact, table-driven. For each case the test enumerates every joint outcome o of the sampled
value (every element of the batch / plate and, for ``n=K``, every K-tuple), replays it,
and sums

    sum_o p(o) * grad surrogate(o)   ==  grad E[cost]       (to 1e-8)
    sum_o p(o) * objective(o)        ==  E[cost]

where the right-hand sides are brute force written here in numpy (own pmf formulas,
sum over the support, complex-step derivative: exact to rounding; no scg call).
Enumerate has one outcome (the whole support): its objective and surrogate gradient are
compared directly. DisARM is integrated exactly over its antithetic uniform (the estimate
is constant on the cells cut by sigma(a) and 1 - sigma(a); see
test_estimators_discrete.py). The moving-average baseline is primed to a non-zero value
and then frozen (no update during the sum), so it is a constant and the sum stays exact.
For Categorical / OneHotCategorical given ``probs`` (leaves on the simplex), sampling
estimators are compared on the sum-zero part of the gradient only: a baseline (or another
element's cost credited to this one) adds a multiple of (1, ..., 1), normal to the simplex,
because E[grad log q] = (1, ..., 1) there. Enumerate is compared in full.

A small continuous part checks ``log_prob`` of a reparameterized value against per-sample
closed forms (Normal, Exponential) and, for Gamma and Beta, the Monte Carlo mean of the
gradient of E[log q(z)] against minus the gradient of the closed-form entropy.
"""

import itertools
import math
from contextlib import nullcontext

import numpy as np
import pytest
from scipy.special import digamma, polygamma

import scg
import scg.distributions as D

from brute import FixedUniform

# ---- numpy formulas (complex-safe: the brute force is differentiated by complex step) -------


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(x):
    e = np.exp(x)  # small fixed logits: no max-shift needed (and max is not complex-safe)
    return e / e.sum()


def bern_lik(x, p):
    """log Bernoulli(x; p) for fixed data x in {0, 1}."""
    return np.log(p) if x == 1 else np.log(1.0 - p)


COIN_FEATURE = np.array([1.0, -2.0])      # Independent(Bernoulli) value -> scalar feature


class Family:
    """One row of the family table.

    ``theta``/``theta2``: q's parameter (scalar batch / batch of 2); ``prior``/``prior2``:
    a fixed prior's; ``make(param)``: the scg distribution; ``support``: numpy values as scg
    samples them; ``pmf(theta_element, v)``: own numpy pmf; ``decoder``: how p(x | z) reads z
    (``"table"``: Bernoulli(probs=table[z]); ``"logit"``: Bernoulli(logits=w0 + w1 * feat(z)))."""

    def __init__(self, name, make, support, pmf, theta, theta2, prior, prior2, decoder,
                 feat_np=None, feat_scg=None, coins=None, enumerable=True):
        self.name, self.make, self.support, self.pmf = name, make, support, pmf
        self.theta, self.theta2 = np.asarray(theta, float), np.asarray(theta2, float)
        self.prior, self.prior2 = np.asarray(prior, float), np.asarray(prior2, float)
        self.decoder, self.feat_np, self.feat_scg = decoder, feat_np, feat_scg
        self.coins = coins  # Bernoulli families: theta -> success probabilities (for DisARM)
        self.enumerable = enumerable
        self.simplex = name in ("cat_p", "ohc_p")  # probs constrained to sum to one

    def __repr__(self):
        return self.name


def _bern_pmf(p1, v):
    return p1 if v == 1 else 1.0 - p1


def _binom_pmf(p1, v):
    k = int(v)
    return math.comb(3, k) * p1**k * (1.0 - p1) ** (3 - k)


FAMILIES = {
    f.name: f
    for f in [
        Family("bern_p", lambda a: D.Bernoulli(probs=a), [np.array(0.0), np.array(1.0)],
               lambda t, v: _bern_pmf(t, v), 0.3, [0.3, 0.8], 0.6, [0.6, 0.25], "logit",
               feat_np=lambda v: v, feat_scg=lambda z: z, coins=lambda t: t),
        Family("bern_l", lambda a: D.Bernoulli(logits=a), [np.array(0.0), np.array(1.0)],
               lambda t, v: _bern_pmf(np_sigmoid(t), v), 0.4, [0.4, -1.1], -0.3, [-0.3, 0.9], "logit",
               feat_np=lambda v: v, feat_scg=lambda z: z, coins=np_sigmoid),
        Family("cat_p", lambda a: D.Categorical(probs=a), [np.array(k) for k in range(3)],
               lambda t, v: t[int(v)] / sum(t), [0.2, 0.5, 0.3], [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]],
               [0.3, 0.3, 0.4], [[0.3, 0.3, 0.4], [0.1, 0.45, 0.45]], "table"),
        Family("cat_l", lambda a: D.Categorical(logits=a), [np.array(k) for k in range(3)],
               lambda t, v: np_softmax(t)[int(v)], [0.3, -0.5, 1.0], [[0.3, -0.5, 1.0], [-0.7, 0.2, 0.4]],
               [0.0, 0.5, -0.5], [[0.0, 0.5, -0.5], [1.0, -1.0, 0.0]], "table"),
        Family("ohc_l", lambda a: D.OneHotCategorical(logits=a), list(np.eye(3)),
               lambda t, v: np_softmax(t)[int(np.argmax(v))], [0.3, -0.5, 1.0],
               [[0.3, -0.5, 1.0], [-0.7, 0.2, 0.4]], [0.0, 0.5, -0.5], [[0.0, 0.5, -0.5], [1.0, -1.0, 0.0]],
               "table"),
        Family("ohc_p", lambda a: D.OneHotCategorical(probs=a), list(np.eye(3)),
               lambda t, v: t[int(np.argmax(v))] / sum(t), [0.2, 0.5, 0.3], [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]],
               [0.3, 0.3, 0.4], [[0.3, 0.3, 0.4], [0.1, 0.45, 0.45]], "table"),
        Family("binom_p", lambda a: D.Binomial(total_count=3, probs=a), [np.array(float(k)) for k in range(4)],
               lambda t, v: _binom_pmf(t, v), 0.35, [0.35, 0.7], 0.6, [0.6, 0.2], "logit",
               feat_np=lambda v: 0.5 * v, feat_scg=lambda z: 0.5 * z),
        Family("binom_l", lambda a: D.Binomial(total_count=3, logits=a), [np.array(float(k)) for k in range(4)],
               lambda t, v: _binom_pmf(np_sigmoid(t), v), -0.4, [-0.4, 0.9], 0.5, [0.5, -0.8], "logit",
               feat_np=lambda v: 0.5 * v, feat_scg=lambda z: 0.5 * z),
        Family("indep_bern", lambda a: D.Independent(D.Bernoulli(logits=a), 1),
               [np.array(b, dtype=float) for b in itertools.product([0.0, 1.0], repeat=2)],
               lambda t, v: _bern_pmf(np_sigmoid(t[0]), v[0]) * _bern_pmf(np_sigmoid(t[1]), v[1]),
               [0.5, -0.8], [[0.5, -0.8], [1.2, 0.3]], [-0.2, 0.4], [[-0.2, 0.4], [0.7, -0.6]], "logit",
               feat_np=lambda v: v @ COIN_FEATURE, feat_scg=lambda z: (z * COIN_FEATURE).sum(-1),
               coins=np_sigmoid, enumerable=False),
    ]
}

TABLE = np.array([0.2, 0.7, 0.45])  # "table" decoder: P(x = 1 | z = k) (a parameter)
W = np.array([0.3, -0.7])           # "logit" decoder: logits w0 + w1 * feat(z) (a parameter)
X1, X2 = 1.0, np.array([1.0, 0.0])  # observed x: scalar batch / batch of 2


def decoder_init(fam):
    return TABLE if fam.decoder == "table" else W


def decoder_p_np(fam, dec, v):
    if fam.decoder == "table":
        return dec[int(np.argmax(v))] if np.ndim(v) else dec[int(v)]
    return np_sigmoid(dec[0] + dec[1] * fam.feat_np(v))


def decoder_scg(fam, dec, z):
    if fam.decoder == "table":
        if fam.name.startswith("ohc"):
            return D.Bernoulli(probs=(z * dec).sum(-1))
        return D.Bernoulli(probs=dec[z])
    return D.Bernoulli(logits=dec[0] + dec[1] * fam.feat_scg(z))


# ---- brute force: E[cost] in numpy, its gradient by complex step ------------------------------


def brute_expectation(fam, use, theta, dec, batched, k):
    """E_q[total cost] for parameters (theta, dec) (complex allowed): a sum over datapoints of
    a sum over the support (or over K-tuples for a bound) of pmf * cost. Costs that keep the
    sample axis are averaged over it, so their expectation is that of one draw."""
    thetas = theta if batched else theta[None]
    priors = fam.prior2 if batched else fam.prior[None]
    xs = X2 if batched else np.array([X1])
    total = 0.0
    for i in range(len(thetas)):
        pq = [fam.pmf(thetas[i], v) for v in fam.support]
        pp = [fam.pmf(priors[i], v) for v in fam.support]
        lik = [bern_lik(xs[i], decoder_p_np(fam, dec, v)) for v in fam.support]
        if use == "bound":
            log_w = [np.log(pp[j]) + lik[j] - np.log(pq[j]) for j in range(len(fam.support))]
            for tup in itertools.product(range(len(fam.support)), repeat=k):
                prob = np.prod([pq[j] for j in tup])
                total = total + prob * -np.log(np.mean(np.exp([log_w[j] for j in tup])))
            continue
        for j in range(len(fam.support)):
            cost = {
                "logq": np.log(pq[j]),
                "kl": np.log(pq[j]) - np.log(pp[j]),
                "prior": np.log(pp[j]),
                "obs_prior": -np.log(pp[j]),
                "obs_lik": -lik[j],
            }[use]
            total = total + pq[j] * cost
    return total


def brute_gradient(fam, use, theta, dec, batched, k, h=1e-30):
    """Complex-step derivative of brute_expectation wrt every entry of theta and dec."""
    out = []
    for which in (0, 1):
        base = [theta.astype(complex), dec.astype(complex)]
        g = np.zeros(base[which].shape)
        for idx in np.ndindex(base[which].shape):
            args = [b.copy() for b in base]
            args[which][idx] += 1j * h
            g[idx] = brute_expectation(fam, use, args[0], args[1], batched, k).imag / h
        out.append(g)
    return out


# ---- scg side ----------------------------------------------------------------------------------


def build(fam, use, scope, estimator, n, theta, dec, replay=None, rng=None):
    g = scg.Graph(replay=replay, rng=rng)
    batched = scope != "scalar"
    prior_np = fam.prior2 if batched else fam.prior
    x = X2 if batched else X1
    with g:
        with g.plate("data", size=2) if scope == "plate" else nullcontext():
            q = fam.make(theta)
            prior = fam.make(scg.tensor(prior_np.copy()))
            z = g.sample("z", q, estimator=estimator, n=n)
            if use == "logq":
                g.cost("c", q.log_prob(z))
            elif use == "kl":
                g.cost("c", q.log_prob(z) - prior.log_prob(z))
            elif use == "prior":
                g.cost("c", prior.log_prob(z))
            elif use == "obs_prior":
                g.observe("prior_z", prior, z)
            elif use == "obs_lik":
                g.observe("x", decoder_scg(fam, dec, z), x)
            elif use == "bound":
                log_w = prior.log_prob(z) + decoder_scg(fam, dec, z).log_prob(x) - q.log_prob(z)
                g.bound("b", log_w, over="z")
            else:
                raise AssertionError(use)
    return g


def joint_outcomes(fam, theta, n, batched):
    """(p(o), value) for every joint value of the node: each element of the batch and of the
    n draws takes each support point; p(o) from the numpy pmf."""
    thetas = theta if batched else theta[None]
    b, k = len(thetas), n or 1
    sup = np.stack(fam.support)
    pm = np.array([[fam.pmf(t, v) for v in fam.support] for t in thetas])  # (B, S)
    for combo in itertools.product(range(len(fam.support)), repeat=k * b):
        idx = np.asarray(combo).reshape(k, b)
        prob = float(np.prod(pm[np.arange(b), idx]))
        value = sup[idx]  # (k, b) + event
        if not batched:
            value = value[:, 0]
        if n is None:
            value = value[0]
        yield prob, value


def make_estimator(est):
    return {
        "sf": lambda: scg.ScoreFunction(),
        "sf_ma": lambda: scg.ScoreFunction(baseline=scg.MovingAverageBaseline(0.9)),
        "rloo": lambda: scg.ScoreFunction(baseline=scg.LeaveOneOutBaseline()),
        "vimco": lambda: scg.VIMCO(),
        "enum": lambda: scg.Enumerate(),
        "disarm": lambda: scg.DisARM(),
    }[est]()


def n_draws(fam, est, use, scope):
    if est in ("rloo", "vimco") or use == "bound":
        return 2 if scope != "scalar" or len(fam.support) > 3 else 3
    if est == "disarm":
        return 2
    return None


# ---- the table ---------------------------------------------------------------------------------

USES = ["logq", "kl", "prior", "obs_prior", "obs_lik"]  # per-sample costs; "bound" pools the K draws
BERNOULLIS = ["bern_p", "bern_l", "indep_bern"]
SMALL = ["bern_p", "bern_l", "cat_p", "cat_l", "ohc_l", "ohc_p"]  # support <= 3


def cases():
    out = []
    for fam in FAMILIES:
        enumerable = FAMILIES[fam].enumerable
        for scope in ("scalar", "plate"):
            for use in USES:
                out.append((fam, use, "sf", scope))
                out.append((fam, use, "sf_ma", scope))
                if enumerable:
                    out.append((fam, use, "enum", scope))
                if fam in BERNOULLIS:
                    out.append((fam, use, "disarm", scope))
                # K-tuples inside a plate: support**(2K) outcomes; the families of support 4
                # (Binomial(3), Independent(2 coins)) only with one use there, to stay fast
                if scope == "scalar" or fam in SMALL or use == "logq":
                    out.append((fam, use, "rloo", scope))
            if scope == "scalar" or fam in SMALL or fam == "binom_l":
                out.append((fam, "bound", "sf", scope))
                out.append((fam, "bound", "vimco", scope))
    # a batch of 2 outside any plate (Enumerate refuses a batch axis that is not a plate: by design)
    for fam in ("bern_l", "cat_l", "ohc_p", "binom_p"):
        for use in ("logq", "kl", "obs_lik"):
            out.append((fam, use, "sf", "batch"))
            out.append((fam, use, "rloo", "batch"))
    return out


CASES = cases()


def params_for(fam, scope):
    theta = fam.theta2 if scope != "scalar" else fam.theta
    return (scg.tensor(theta.copy(), requires_grad=True),
            scg.tensor(decoder_init(fam).copy(), requires_grad=True))


def prime(fam, use, scope, est, n, theta, dec):
    """A few steps with random draws and update(): a non-zero moving average; then frozen."""
    rng = np.random.default_rng(5)
    for _ in range(4):
        build(fam, use, scope, est, n, theta, dec, rng=rng).surrogate()
        est.update()


def integrate_disarm(fam, use, scope, est, theta, dec):
    """E_u[(grad surrogate, objective)] exactly over DisARM's uniform u, (1,) + batch + event."""
    p = np.asarray(fam.coins(theta.data), float)
    u_shape = (1,) + p.shape
    p = p.ravel()
    lo, hi = np.minimum(p, 1 - p), np.maximum(p, 1 - p)
    edges = [np.array([0.0, a, b, 1.0]) for a, b in zip(lo, hi)]
    grads, obj = [np.zeros(theta.shape), np.zeros(dec.shape)], 0.0
    for cell in itertools.product(range(3), repeat=len(p)):
        left = np.array([e[c] for e, c in zip(edges, cell)])
        right = np.array([e[c + 1] for e, c in zip(edges, cell)])
        volume = float(np.prod(right - left))
        if volume == 0:
            continue
        g = build(fam, use, scope, est, 2, theta, dec, rng=FixedUniform(((left + right) / 2).reshape(u_shape)))
        for acc, d in zip(grads, scg.grad(g.surrogate(), [theta, dec])):
            acc += volume * d.data
        obj += volume * g.objective().item()
    return grads, obj


@pytest.mark.parametrize("fam,use,est,scope", CASES, ids=["-".join(c) for c in CASES])
def test_exact_gradient_and_objective(fam, use, est, scope):
    fam = FAMILIES[fam]
    batched = scope != "scalar"
    n = n_draws(fam, est, use, scope)
    theta, dec = params_for(fam, scope)
    want_obj = brute_expectation(fam, use, theta.data, dec.data, batched, n).real
    want = brute_gradient(fam, use, theta.data, dec.data, batched, n)
    assert max(np.abs(w).max() for w in want) > 1e-3  # a non-trivial target
    estimator = make_estimator(est)

    if est == "enum":
        g = build(fam, use, scope, estimator, None, theta, dec)
        got = [d.data for d in scg.grad(g.surrogate(), [theta, dec])]
        got_obj = g.objective().item()
    elif est == "disarm":
        got, got_obj = integrate_disarm(fam, use, scope, estimator, theta, dec)
    else:
        if est == "sf_ma":
            prime(fam, use, scope, estimator, n, theta, dec)
        got, got_obj, total_p = [np.zeros(theta.shape), np.zeros(dec.shape)], 0.0, 0.0
        for p, value in joint_outcomes(fam, theta.data, n, batched):
            g = build(fam, use, scope, estimator, n, theta, dec, replay={"z": value})
            for acc, d in zip(got, scg.grad(g.surrogate(), [theta, dec])):
                acc += p * d.data
            got_obj += p * g.objective().item()
            total_p += p
        assert abs(total_p - 1.0) < 1e-12

    if fam.simplex and est != "enum":
        # probs on the simplex are leaves without the sum-to-one constraint: E[grad log q(z)]
        # = (1, ..., 1) there, so a baseline b (or, outside a plate, the other elements' costs)
        # adds E[b] * (1, ..., 1), normal to the simplex. Only the tangent part (sum-zero
        # directions) is the gradient; compare that.
        got[0] = got[0] - got[0].mean(-1, keepdims=True)
        want[0] = want[0] - want[0].mean(-1, keepdims=True)
    np.testing.assert_allclose(got_obj, want_obj, rtol=1e-8, atol=1e-8, err_msg="objective")
    np.testing.assert_allclose(got[0], want[0], rtol=1e-8, atol=1e-8, err_msg="gradient wrt q's parameter")
    np.testing.assert_allclose(got[1], want[1], rtol=1e-8, atol=1e-8, err_msg="gradient wrt the decoder")
    if est == "sf_ma":  # the check above ran with a non-zero, frozen baseline
        b = build(fam, use, scope, estimator, n, theta, dec, rng=np.random.default_rng(0)).compile().baselines["z"]
        assert abs(float(np.mean(b))) > 1e-3, b


def test_table_size():
    # the table's shape, so a refactor does not silently drop rows
    assert len(FAMILIES) == 9
    assert len(CASES) == len(set(CASES))
    assert len(CASES) >= 300


# ---- continuous families: log_prob of a reparameterized value -----------------------------------


def normal_case(kind):
    loc, scale = scg.tensor(0.4, requires_grad=True), scg.tensor(1.3, requires_grad=True)
    m_p, s_p = -0.5, 0.8
    g = scg.Graph(rng=np.random.default_rng(3))
    with g:
        q = D.Normal(loc, scale)
        z = g.sample("z", q, n=5)
        cost = q.log_prob(z) if kind == "logq" else D.Normal(m_p, s_p).log_prob(z)
        g.cost("c", cost)
    zv = g.nodes["z"].value.data
    eps = (zv - 0.4) / 1.3
    if kind == "logq":  # log q(loc + s eps) = -log s - eps^2/2 - log(2 pi)/2
        want = [0.0, -1 / 1.3]
        obj = np.mean(-np.log(1.3) - 0.5 * eps**2 - 0.5 * np.log(2 * np.pi))
    else:
        r = -(zv - m_p) / s_p**2
        want = [np.mean(r), np.mean(r * eps)]
        obj = np.mean(-np.log(s_p) - 0.5 * ((zv - m_p) / s_p) ** 2 - 0.5 * np.log(2 * np.pi))
    return g, [loc, scale], want, obj


def exponential_case(kind):
    rate = scg.tensor(1.7, requires_grad=True)
    r_p = 0.6
    g = scg.Graph(rng=np.random.default_rng(4))
    with g:
        q = D.Exponential(rate)
        z = g.sample("z", q, n=5)
        g.cost("c", q.log_prob(z) if kind == "logq" else D.Exponential(r_p).log_prob(z))
    zv = g.nodes["z"].value.data  # z = e / rate: dz/drate = -z / rate
    if kind == "logq":  # log rate - rate z = log rate - e
        want, obj = [1 / 1.7], np.mean(np.log(1.7) - 1.7 * zv)
    else:  # log r_p - r_p z
        want, obj = [np.mean(r_p * zv / 1.7)], np.mean(np.log(r_p) - r_p * zv)
    return g, [rate], want, obj


CONTINUOUS = [("normal", "logq"), ("normal", "cross"), ("exponential", "logq"), ("exponential", "cross")]


@pytest.mark.parametrize("family,kind", CONTINUOUS, ids=["-".join(c) for c in CONTINUOUS])
def test_reparameterized_log_prob_per_sample_closed_form(family, kind):
    g, params, want, obj = {"normal": normal_case, "exponential": exponential_case}[family](kind)
    got = [d.item() for d in scg.grad(g.surrogate(), params)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.objective().item(), obj, rtol=1e-10, atol=1e-12)


def gamma_neg_entropy_grad(a, b):
    # H = a - log b + lgamma(a) + (1 - a) digamma(a)
    return [-(1 + (1 - a) * polygamma(1, a)), 1 / b]


def beta_neg_entropy_grad(a, b):
    # H = log B(a, b) - (a - 1) psi(a) - (b - 1) psi(b) + (a + b - 2) psi(a + b)
    t = polygamma(1, a + b)
    dha = digamma(a) - digamma(a + b) - digamma(a) - (a - 1) * polygamma(1, a) + digamma(a + b) + (a + b - 2) * t
    dhb = digamma(b) - digamma(a + b) - digamma(b) - (b - 1) * polygamma(1, b) + digamma(a + b) + (a + b - 2) * t
    return [-dha, -dhb]


@pytest.mark.parametrize("family", ["gamma", "beta"])
def test_reparameterized_log_q_gradient_is_minus_the_entropy_gradient(family):
    a0, b0 = (2.5, 1.5) if family == "gamma" else (2.0, 3.5)
    make = D.Gamma if family == "gamma" else D.Beta
    want = (gamma_neg_entropy_grad if family == "gamma" else beta_neg_entropy_grad)(a0, b0)
    a, b = scg.tensor(a0, requires_grad=True), scg.tensor(b0, requires_grad=True)
    rng = np.random.default_rng(11)
    runs = []
    for _ in range(40):  # 40 independent estimates, each the mean over 500 draws
        g = scg.Graph(rng=rng)
        with g:
            q = make(a, b)
            z = g.sample("z", q, n=500)
            g.cost("logq", q.log_prob(z))
        runs.append([d.item() for d in scg.grad(g.surrogate(), [a, b])])
    runs = np.array(runs)
    mean, se = runs.mean(0), runs.std(0, ddof=1) / np.sqrt(len(runs))
    assert np.all(np.abs(mean - want) < 4 * se + 1e-12), (mean, want, se)
    assert np.all(np.abs(np.asarray(want)) > 10 * se)  # the target is resolved by the test
