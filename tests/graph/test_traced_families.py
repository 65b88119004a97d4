"""scg.trace used the way users call it: every distribution family inside a graph, under every
estimator that applies to it, as a training step (surrogate, zero_grad, backward, optimizer
step) replayed by ``scg.trace`` and run eagerly side by side from the same seeds. Over five
calls whose data change (observed values, a prior's parameters), the loss, every ``.grad``
and every parameter must be equal bit for bit, and the last calls must be replays; or the
step is refused with ``scg.TraceError`` naming why (the moving-average and NVIL baselines,
whose statistics are Python numbers), and ``fallback=True`` then gives eager's results.

The discrete families and their uses come from the exact family table
(``test_family_table.py``); the scalar continuous ones from ``tests/distributions/families.py``.

The last tests are the reproducers of five bugs this file found (parameters read by raw numpy
inside the library, a flipped branch hiding a changed constant, RELAX's fresh leaf, a baseline
whose state fell behind): each failed before its fix.
"""

import gc
import importlib.util
import os
import sys
import warnings
from contextlib import nullcontext

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import ops
from scg.estimators import score_function
from test_family_table import BERNOULLIS, FAMILIES, USES, decoder_init, decoder_scg


def _load(name, path):
    """A helper module of another test folder (tests/distributions is not on sys.path here)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


CONTINUOUS = _load("families", os.path.join(os.path.dirname(__file__), "..", "distributions", "families.py")).FAMILIES

CALLS = 5


@pytest.fixture
def own_discard_count(monkeypatch):
    """The baselines these steps leave with a statistic pending (a refused step's) are counted
    here, not in the process's count that warns later tests."""
    monkeypatch.setattr(score_function, "_DISCARDED", [0, False])
    yield
    gc.collect()  # their finalizers run while the count is this test's


# ---- running a step eagerly and traced, side by side ------------------------------------------


def _run(make, data, calls=CALLS, min_replays=CALLS - 2):
    """``make() -> (step, params)`` builds an independent copy (model, optimizer, generator);
    one copy runs eagerly, the other through scg.trace, on ``data(i)`` for call i. Asserts
    bit-for-bit equal losses, grads and parameters after every call, and that replays
    happened; returns the Traced."""
    eager, eparams = make()
    fn, tparams = make()
    traced = scg.trace(fn)
    for i in range(calls):
        args = data(i)
        le, lt = eager(*args), traced(*args)
        np.testing.assert_array_equal(lt.data, le.data, err_msg=f"loss, call {i}")
        for k, (pe, pt) in enumerate(zip(eparams, tparams)):
            assert (pe.grad is None) == (pt.grad is None), f"param {k}, call {i}"
            if pe.grad is not None:
                np.testing.assert_array_equal(pt.grad.data, pe.grad.data, err_msg=f"grad {k}, call {i}")
            np.testing.assert_array_equal(pt.data, pe.data, err_msg=f"param {k}, call {i}")
    assert traced.stats["replayed"] >= min_replays, traced.stats
    return traced


def _train(g, opt):
    loss = g.surrogate()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


class Control(scg.nn.Module):
    """RELAX's control: c(z) = tanh(w z + b) per coin, summed over an event axis."""

    def __init__(self, event):
        self.w = scg.nn.Parameter(np.array(0.5))
        self.b = scg.nn.Parameter(np.array(0.1))
        self.event = event

    def forward(self, z):
        c = ops.tanh(z * self.w + self.b)
        return c.sum(-1) if self.event else c


# ---- discrete families: the family table's rows, every estimator that applies ------------------

ESTIMATORS = {  # name -> (make(family), n draws)
    "sf": (lambda fam: scg.ScoreFunction(), None),
    "rloo": (lambda fam: scg.ScoreFunction(baseline=scg.LeaveOneOutBaseline()), 3),
    "enum": (lambda fam: scg.Enumerate(), None),
    "marg": (lambda fam: scg.Marginalize(), None),
    "disarm": (lambda fam: scg.DisARM(), 2),
    "arm": (lambda fam: scg.ARM(), 2),
    "relax": (lambda fam: scg.RELAX(Control(event=fam.name == "indep_bern")), None),
    "vimco": (lambda fam: scg.VIMCO(), 3),
}


def discrete_cases():
    out = []
    for fam in FAMILIES:
        for scope in ("scalar", "plate", "batch"):
            for use in USES + ["bound"]:
                if use == "bound":
                    ests = ["sf", "vimco"]
                elif scope == "batch":  # a batch outside any plate: Enumerate refuses it (by design)
                    ests = ["sf", "rloo"]
                else:
                    ests = ["sf", "rloo"]
                    if FAMILIES[fam].enumerable:
                        ests += ["enum", "marg"]
                    if fam in BERNOULLIS:
                        ests += ["disarm", "arm"] + (["relax"] if use == "obs_lik" else [])
                out += [(fam, use, est, scope) for est in ests]
    return out


def _discrete_param(case):
    fam, use, est, scope = case
    return pytest.param(*case)


DISCRETE_CASES = discrete_cases()


def make_discrete(fam, use, est, scope, seed=1):
    batched = scope != "scalar"
    make_est, n = ESTIMATORS[est]
    if use == "bound":
        n = 3

    def make():
        theta = scg.tensor((fam.theta2 if batched else fam.theta).copy(), requires_grad=True)
        dec = scg.tensor(decoder_init(fam).copy(), requires_grad=True)
        estimator = make_est(fam)  # made once, outside the step, as users do
        params = [theta, dec] + (estimator.control.parameters() if est == "relax" else [])
        opt = scg.optim.Adam(params, lr=0.01)
        rng = np.random.default_rng(seed)  # made once: a generator made inside the step is refused

        def step(x, prior_param):
            g = scg.Graph(rng=rng)
            with g:
                with g.plate("data", size=2) if scope == "plate" else nullcontext():
                    # probs on the simplex stay there: normalised by a traced op
                    q = fam.make(theta / theta.sum(-1, keepdims=True) if fam.simplex else theta)
                    prior = fam.make(scg.tensor(prior_param))
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
                    else:
                        log_w = prior.log_prob(z) + decoder_scg(fam, dec, z).log_prob(x) - q.log_prob(z)
                        g.bound("b", log_w, over="z")
            return _train(g, opt)
        return step, params
    return make


def discrete_data(fam, scope):
    """Call i: observed x in {0, 1} per datapoint, and a prior moved towards q's start."""
    batched = scope != "scalar"
    prior0, theta0 = (fam.prior2, fam.theta2) if batched else (fam.prior, fam.theta)

    def data(i):
        t = 0.15 * i
        prior = np.asarray((1 - t) * prior0 + t * theta0)  # an array (a numpy scalar is a signature)
        x = np.array([i % 2, (i // 2) % 2], float) if batched else np.array(float(i % 2))
        return x, prior
    return data


@pytest.mark.parametrize("fam,use,est,scope", [_discrete_param(c) for c in DISCRETE_CASES],
                         ids=["-".join(c) for c in DISCRETE_CASES])
def test_a_discrete_family_step_replays_bit_for_bit(fam, use, est, scope):
    fam = FAMILIES[fam]
    _run(make_discrete(fam, use, est, scope), discrete_data(fam, scope))


def test_the_discrete_table_covers_every_family_and_estimator():
    assert {c[0] for c in DISCRETE_CASES} == set(FAMILIES)
    assert {c[2] for c in DISCRETE_CASES} == set(ESTIMATORS)
    assert {c[3] for c in DISCRETE_CASES} == {"scalar", "plate", "batch"}
    assert len(DISCRETE_CASES) == len(set(DISCRETE_CASES)) >= 300


# ---- scalar continuous families: reparameterized and score-function samples -------------------



def make_continuous(name, est):
    fam = CONTINUOUS[name]

    def make():
        params = {k: scg.tensor(np.array(float(v)), requires_grad=True) for k, v in fam.example.items()}
        opt = scg.optim.SGD(list(params.values()), lr=1e-3)
        rng = np.random.default_rng(2)
        estimator = scg.ScoreFunction() if est == "sf" else None  # None: the default, reparameterized

        def step(y, x):
            g = scg.Graph(rng=rng)
            with g:
                q = getattr(D, name)(**params)
                z = g.sample("z", q, n=3, estimator=estimator)
                cost = -q.log_prob(z) + 0.01 * (z - scg.tensor(y)) ** 2 + q.entropy()
                if name not in ("Cauchy", "HalfCauchy"):  # no finite mean
                    cost = cost + 0.1 * q.mean
                g.cost("c", cost)
                with g.plate("data", size=2):
                    g.observe("x", getattr(D, name)(**params), x)
            return _train(g, opt)
        return step, list(params.values())
    return make


def continuous_data(name):
    fam = CONTINUOUS[name]
    values = fam.values({k: np.array([float(v)]) for k, v in fam.example.items()})[:, 0]  # inside the support
    inner = values[1:-1]

    def data(i):
        return np.array(0.1 * i), np.array([inner[i % len(inner)], inner[(i + 1) % len(inner)]])
    return data


CONTINUOUS_CASES = [(name, est) for name in CONTINUOUS for est in ("reparam", "sf")]


def _continuous_param(name, est):
    return pytest.param(name, est)


@pytest.mark.parametrize("name,est", [_continuous_param(*c) for c in CONTINUOUS_CASES],
                         ids=["-".join(c) for c in CONTINUOUS_CASES])
def test_a_continuous_family_step_replays_bit_for_bit(name, est):
    # Gamma's draw takes another branch while its concentration is below 1 (one more recording)
    _run(make_continuous(name, est), continuous_data(name), min_replays=CALLS - 3 if name == "Gamma" else CALLS - 2)


# ---- multivariate families and wrappers -------------------------------------------------------


def _mvn(p):
    return D.MultivariateNormal(p["loc"], scale_tril=ops.exp(p["log_diag"]) * np.eye(2) + p["off"] * np.tri(2, k=-1))


MULTIVARIATE = {  # name -> (parameters, make the distribution, observed data of call i)
    "MultivariateNormal": (
        dict(loc=[0.2, -0.3], log_diag=[0.1, -0.2], off=0.3), _mvn,
        lambda i: np.array([[0.1 * i, -0.5], [1.0, 0.2 * i]])),
    "LowRankMultivariateNormal": (
        dict(loc=[0.2, -0.3], factor=[[0.5], [-0.3]], log_diag=[0.1, -0.2]),
        lambda p: D.LowRankMultivariateNormal(p["loc"], p["factor"], ops.exp(p["log_diag"])),
        lambda i: np.array([[0.1 * i, -0.5], [1.0, 0.2 * i]])),
    "Dirichlet": (
        dict(log_conc=[0.2, -0.1, 0.4]), lambda p: D.Dirichlet(ops.exp(p["log_conc"])),
        lambda i: np.array([[0.2 + 0.05 * i, 0.3, 0.5 - 0.05 * i], [0.6, 0.1 + 0.02 * i, 0.3 - 0.02 * i]])),
    "Independent(Normal)": (
        dict(loc=[0.2, -0.3], log_scale=[0.1, -0.2]),
        lambda p: D.Normal(p["loc"], ops.exp(p["log_scale"])).to_event(1),
        lambda i: np.array([[0.1 * i, -0.5], [1.0, 0.2 * i]])),
    "TransformedDistribution(Normal, Exp)": (
        dict(loc=[0.2, -0.3], log_scale=[0.1, -0.2]),
        lambda p: D.TransformedDistribution(D.Normal(p["loc"], ops.exp(p["log_scale"])).to_event(1), [D.ExpTransform()]),
        lambda i: np.array([[0.5 + 0.1 * i, 1.5], [2.0, 0.3 + 0.1 * i]])),
}


def make_multivariate(name, est):
    init, dist, _ = MULTIVARIATE[name]

    def make():
        params = {k: scg.tensor(np.array(v, float), requires_grad=True) for k, v in init.items()}
        opt = scg.optim.Adam(list(params.values()), lr=0.01)
        rng = np.random.default_rng(7)
        estimator = scg.ScoreFunction() if est == "sf" else None

        def step(y, x):
            g = scg.Graph(rng=rng)
            with g:
                q = dist(params)
                z = g.sample("z", q, n=3, estimator=estimator)
                g.cost("c", q.log_prob(z) + 0.1 * ((z - scg.tensor(y)) ** 2).sum(-1))
                with g.plate("data", size=2):
                    g.observe("x", dist(params), x)
            return _train(g, opt)
        return step, list(params.values())
    return make


MULTIVARIATE_CASES = [(name, est) for name in MULTIVARIATE for est in ("reparam", "sf")]


@pytest.mark.parametrize("name,est", MULTIVARIATE_CASES, ids=["-".join(c) for c in MULTIVARIATE_CASES])
def test_a_multivariate_family_step_replays_bit_for_bit(name, est):
    observed = MULTIVARIATE[name][2]
    _run(make_multivariate(name, est), lambda i: (np.array(0.1 * i), observed(i)))


# ---- baselines whose statistics are Python numbers: refused, never silently different --------


class Residual(scg.nn.Module):
    """NVIL's input-dependent part: b(x) = w x."""

    def __init__(self):
        self.w = scg.nn.Parameter(np.array(0.2))

    def forward(self, x):
        return x * self.w


BASELINES = {
    "moving_average": lambda module: scg.MovingAverageBaseline(0.9),
    "nvil": lambda module: scg.LearnedBaseline(module),  # centred by a moving average
    "nvil_normalized": lambda module: scg.LearnedBaseline(module, center=None, normalize=True),
    "nvil_uncentred": lambda module: scg.LearnedBaseline(module, center=None),  # no Python numbers
}
REFUSED = {"moving_average", "nvil", "nvil_normalized"}


def make_baseline_step(kind, update):
    def make():
        theta = scg.tensor(np.array([0.3, -0.4]), requires_grad=True)
        module = Residual()
        estimator = scg.ScoreFunction(baseline=BASELINES[kind](module))
        params = [theta] + (module.parameters() if kind != "moving_average" else [])
        opt = scg.optim.Adam(params, lr=0.05)
        rng = np.random.default_rng(3)

        def step(x):
            g = scg.Graph(rng=rng)
            with g:
                with g.plate("data", 2):
                    z = g.sample("z", D.Bernoulli(logits=theta), estimator=estimator, context=scg.tensor(x))
                    g.observe("x", D.Normal(z, 1.0), x)
            loss = _train(g, opt)
            if update:
                estimator.update()
            return loss
        return step, params
    return make


def baseline_data(i):
    return (np.array([0.5 * i, 1.0 - i]),)


BASELINE_CASES = [(kind, update) for kind in BASELINES for update in (True, False)]


@pytest.mark.filterwarnings("ignore:.*statistic recorded before the last optimiser step:UserWarning")
@pytest.mark.filterwarnings("ignore:.*stateful baselines were thrown away:UserWarning")
@pytest.mark.parametrize("kind,update", BASELINE_CASES,
                         ids=[f"{k}-{'update' if u else 'no_update'}" for k, u in BASELINE_CASES])
@pytest.mark.usefixtures("own_discard_count")
def test_a_baseline_read_as_a_python_number_is_refused_by_name(kind, update):
    make = make_baseline_step(kind, update)
    if kind not in REFUSED:
        _run(make, baseline_data, calls=6)
        return
    step, _ = make()
    traced = scg.trace(step)
    with pytest.raises(scg.TraceError, match=r"leaves the step as a Python number \(float\).*"
                                             r"test_traced_families\.py.*score_function\.py"):
        for i in range(8):
            traced(*baseline_data(i))
    assert traced.stats["replayed"] == 0


@pytest.mark.filterwarnings("ignore:.*statistic recorded before the last optimiser step:UserWarning")
@pytest.mark.filterwarnings("ignore:.*stateful baselines were thrown away:UserWarning")
@pytest.mark.parametrize("kind", sorted(REFUSED))
@pytest.mark.usefixtures("own_discard_count")
def test_fallback_warns_once_and_keeps_giving_eager_results(kind):
    make = make_baseline_step(kind, update=True)
    eager, eparams = make()
    fn, tparams = make()
    traced = scg.trace(fn, fallback=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(7):
            le, lt = eager(*baseline_data(i)), traced(*baseline_data(i))
            np.testing.assert_array_equal(lt.data, le.data)
            for pe, pt in zip(eparams, tparams):
                np.testing.assert_array_equal(pt.grad.data, pe.grad.data)
                np.testing.assert_array_equal(pt.data, pe.data)
    assert sum("runs eagerly from now on" in str(w.message) for w in caught) == 1
    assert traced.refused is not None and "Python number" in traced.refused
    assert traced.stats["replayed"] == 0


# ---- bugs: minimal reproducers ---------------------------------------------------------------


def _leaf_step(estimator, dist, w):
    rng = np.random.default_rng(0)

    def step(x):
        g = scg.Graph(rng=rng)
        with g:
            z = g.sample("z", dist(w), estimator=estimator, n=2)
            g.cost("c", z * scg.tensor(x))
        return g.surrogate()
    return step


LEAF_REPROS = {
    "DisARM-Bernoulli(logits=w)": (scg.DisARM, lambda w: D.Bernoulli(logits=w), [0.3, -0.2], [3.0, 3.0]),
    "ScoreFunction-Binomial(probs=w)": (scg.ScoreFunction, lambda w: D.Binomial(total_count=3, probs=w),
                                         [0.5, 0.4], [0.9, 0.9]),
    "Reparam-Gamma(w, 1)": (scg.Reparam, lambda w: D.Gamma(w, 1.0), [1.0, 2.0], [5.0, 0.5]),
}


@pytest.mark.parametrize("name", sorted(LEAF_REPROS))
def test_a_parameter_read_by_raw_numpy_and_updated_in_place_replays_its_new_value(name):
    make_est, dist, start, later = LEAF_REPROS[name]
    we, wt = (scg.tensor(np.array(start)) for _ in range(2))
    eager, traced = _leaf_step(make_est(), dist, we), scg.trace(_leaf_step(make_est(), dist, wt))
    for i in range(6):
        if i == 3:  # both parameters updated in place, as an optimizer outside the step would
            we.data[...] = later
            wt.data[...] = later
        x = np.array([1.0 + i, 2.0])
        np.testing.assert_array_equal(traced(x).data, eager(x).data, err_msg=f"call {i}")
    assert traced.stats["replayed"] >= 2


# (the counter, a number in a list the step reads by name, is part of the signature now: every
# call records afresh, with a warning; the assertions hold either way)
@pytest.mark.filterwarnings("ignore:.*different values of a Python number:RuntimeWarning")
def test_a_branch_that_flipped_between_the_recordings_does_not_hide_a_changing_constant():
    def make():
        w = scg.tensor(np.array([1.0, 2.0]))
        calls = [0]

        def step(x):
            calls[0] += 1
            y = scg.tensor(x) * w
            if y.sum() > 0:  # a branch on a value (a bool guard); the same calls either way
                pass
            return (y * np.array(float(calls[0]))).sum()  # a constant that changes every call: refused
        return step

    eager, traced = make(), scg.trace(make())
    for i, x in enumerate([[1.0, 1.0], [-1.0, -1.0], [-2.0, -1.0], [-3.0, -1.0]]):
        x = np.array(x)
        try:
            t = traced(x)
        except scg.TraceError:
            return  # refused: right
        np.testing.assert_array_equal(t.data, eager(x).data, err_msg=f"call {i}")


@pytest.mark.usefixtures("own_discard_count")
def test_a_moving_average_baseline_is_never_replayed_with_a_stale_state():
    def make():
        theta = scg.tensor(np.array([0.3, -0.4]), requires_grad=True)
        estimator = scg.ScoreFunction(baseline=scg.MovingAverageBaseline(0.5))
        opt = scg.optim.SGD([theta], lr=0.05)
        rng = np.random.default_rng(3)

        def step(x):
            g = scg.Graph(rng=rng)
            with g:
                z = g.sample("z", D.Bernoulli(logits=theta), estimator=estimator)
                g.cost("c", 0.0 * z + scg.tensor(x))  # the same statistic whenever x is the same
            loss = _train(g, opt)
            estimator.update()
            return loss
        return step, estimator

    (eager, e_est), (fn, t_est) = make(), make()
    traced = scg.trace(fn)
    try:
        for i in range(6):
            x = np.array(1.0)
            np.testing.assert_array_equal(traced(x).data, eager(x).data)
    except scg.TraceError:
        return  # refused: right
    assert t_est.baseline.average.state == e_est.baseline.average.state
