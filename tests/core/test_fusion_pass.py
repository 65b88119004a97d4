"""The program passes of a traced step (scg.trace, commit bc24a5e): add + relu fused into one
``bias_relu`` call, a Bernoulli log-likelihood and its negation fused into one ``bernoulli_nll``
call (its finiteness checks moved onto the cost), repeated whole-array checks on an unchanged
value merged into the strongest; relu's C loop and its backward reading relu's output.

Every traced result is compared bit for bit (as unsigned integers, so NaN payloads and the sign
of zero count) with the same step run eagerly from the same seed, and where meaningful with an
answer computed here by brute force; each fusion is also asserted on the compiled program.
"""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import kernels, ops

T = importlib.import_module("scg.trace")  # the module (scg.trace is the function)

F32, F64 = np.float32, np.float64
CHECKS = ("bool (any_nan)", "bool (any_nonfinite)", "bool (any_nonbinary)")


# ---- helpers ---------------------------------------------------------------------------------


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype.kind == "f" else a


def _same_bits(a, b):
    """True if ``a`` and ``b`` (arrays, Tensors, numbers, nested lists/tuples) are equal bit for bit."""
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            _same_bits(x, y) for x, y in zip(a, b))
    if isinstance(a, scg.Tensor):
        if not isinstance(b, scg.Tensor):
            return False
        a, b = a.data, b.data
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(_bits(a), _bits(b))


def _assert_bits(a, b, what=""):
    assert _same_bits(a, b), f"{what}: {a!r} != {b!r}"


def _program(traced):
    """The trusted program of the most recently used signature."""
    entry = list(traced.entries.values())[-1]
    assert entry["programs"], "no trusted program"
    return entry["programs"][0]


def _names(traced):
    return [s.name for s in _program(traced).call_steps]


def _recorded_names(traced):
    return [s.name for s in _program(traced).rec.steps]


def _checks(steps):
    return [s for s in steps if s is not None and s.kind == "guard" and s.name in CHECKS]


def _outcome(fn, *args):
    """("raise", type, message) or ("value", result) of ``fn(*args)``."""
    try:
        return ("value", fn(*args))
    except Exception as e:  # noqa: BLE001  (compared as they are)
        return ("raise", type(e), str(e))


def _same_outcome(e, t):
    if e[0] != t[0]:
        return False
    if e[0] == "raise":
        return e[1:] == t[1:]
    return _same_bits(e[1], t[1])


def _run_pair(build, data, calls):
    """Build the step twice, run one eagerly and one traced on ``data(i)``; assert bits equal on
    every call and the parameters after it; returns the Traced."""
    eager, ep = build()
    fn, tp = build()
    traced = scg.trace(fn)
    for i in range(calls):
        args = data(i)
        _assert_bits(eager(*args), traced(*args), f"call {i}")
        _assert_bits([p.data for p in ep], [p.data for p in tp], f"parameters after call {i}")
    assert traced.stats["replayed"] == calls - 2, traced.stats
    return traced


def _floats(dtype, pattern):
    """One float of ``dtype`` from its bits."""
    u = np.dtype(f"u{np.dtype(dtype).itemsize}")
    return np.array([pattern], u).view(dtype)[0]


# ---- 1. add + relu -> bias_relu ----------------------------------------------------------------


def _dense(dtype, kind, variant="plain", seed=0, n_in=6, n_out=7):
    """A dense layer and relu, SGD on a weighted sum of the activations; returns (step, params).
    ``variant`` makes the sum have another reader, or changes the layout of the add."""
    def build():
        rng = np.random.default_rng(seed)
        if kind == "nn":
            layer = scg.nn.Linear(n_in, n_out, dtype=dtype, rng=np.random.default_rng(seed))
            params = layer.parameters()
            W, b = layer.weight, layer.bias
            net = scg.nn.Sequential(layer, scg.nn.ReLU())
        else:
            W = scg.tensor((rng.standard_normal((n_in, n_out)) * 0.5).astype(dtype), requires_grad=True)
            bdt = F64 if variant == "dtypes differ" else dtype
            bshape = (1, n_out) if variant == "2-D bias" else (n_out,)
            b = scg.tensor((rng.standard_normal(bshape) * 0.5).astype(bdt), requires_grad=True)
            params = [W, b]
            net = None
        opt = scg.optim.SGD(params, lr=0.1)

        def step(x, c):
            xt = scg.tensor(x)
            extra = []
            if net is not None:
                h = net(xt)
            elif variant == "bias first":
                h = scg.relu(b + xt @ W)
            elif variant in ("returned", "reused", "relu twice"):
                s = xt @ W + b
                h = scg.relu(s)
                if variant == "returned":
                    extra = [s]
                elif variant == "reused":
                    h = h + s * 0.5
                else:
                    h = h + scg.relu(s)
            else:  # plain, 3-D, 2-D bias, dtypes differ
                h = scg.relu(xt @ W + b)
            loss = (h * scg.tensor(c)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return [h, loss, [p.grad for p in params]] + extra
        return step, params
    return build


def _dense_data(dtype, shape=(9, 6), n_out=7):
    def data(i):
        r = np.random.default_rng(100 + i)
        return r.standard_normal(shape).astype(dtype), r.standard_normal(shape[:-1] + (n_out,)).astype(dtype)
    return data


@pytest.mark.parametrize("kind", ["nn", "plain"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_a_dense_layer_and_relu_fuse_and_replay_bit_for_bit(dtype, kind):
    traced = _run_pair(_dense(dtype, kind), _dense_data(dtype), 7)
    names, recorded = _names(traced), _recorded_names(traced)
    assert "add" in recorded and "relu" in recorded  # recorded as the pair ...
    assert names.count("bias_relu") == 1 and "relu" not in names  # ... replayed as one call
    assert names.count("relu_grad") == 1  # the backward pass is kept, reading the fused output
    fused = _program(traced).call_steps[names.index("bias_relu")]
    assert fused.fn is ops._bias_relu
    grad = next(s for s in _program(traced).call_steps if s.name == "relu_grad")
    assert grad.args[1] == T._S(fused.out)  # relu_grad(g, ans): the output of the fused call


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_fused_activations_equal_a_brute_force_dense_layer(dtype):
    step, (W, b) = _dense(dtype, "plain")()
    traced = scg.trace(step)
    data = _dense_data(dtype)
    for i in range(5):
        x, c = data(i)
        W0, b0 = W.data.copy(), b.data.copy()
        h, loss, (gW, gb) = traced(x, c)
        pre = x @ W0 + b0  # numpy's matmul then add: the same operations, so the same bits
        expect = np.where(pre > 0, pre, dtype(0))
        _assert_bits(h.data, expect, "h")
        mask = (pre > 0).astype(dtype)
        rtol = 1e-5 if dtype == F32 else 1e-12
        np.testing.assert_allclose(gb.data, (c * mask).sum(0), rtol=rtol, atol=1e-6)
        np.testing.assert_allclose(gW.data, x.T @ (c * mask), rtol=1e-4 if dtype == F32 else 1e-12, atol=1e-5)
    assert traced.stats["replayed"] == 3 and "bias_relu" in _names(traced)


def _specials(dtype, rows=37, cols=9, seed=3):
    """A pre-activation x (rows, cols) and a bias (cols,) such that x + b holds every special value
    (NaN with payloads, signalling NaN, +-inf, -0.0, +0.0 from cancellation, subnormals), with
    never a NaN in both operands of one addition."""
    f = np.finfo(dtype)
    sub = f.smallest_subnormal
    if dtype == F32:
        nans = [_floats(dtype, p) for p in (0x7FC00123, 0xFFC00456, 0x7F800001, 0xFFFFFFFF)]
    else:
        nans = [_floats(dtype, p) for p in (0x7FF8000000000123, 0xFFF8000000000456, 0x7FF0000000000001)]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)).astype(dtype)
    b = np.array([0.0, -0.0, 0.5, -0.5, sub, -sub, 2.0, np.inf, 0.25][:cols], dtype)
    x[0] = -b  # x + b = +0 exactly (and -inf + inf = NaN in column 7)
    x[1] = -0.0  # -0 + -0 = -0 in column 1: relu gives +0
    x[2] = sub
    x[3] = -sub
    x[4, :len(nans)] = nans
    x[5] = np.inf
    x[6] = -np.inf
    x[7] = f.max
    x[8] = -f.tiny
    x[9] = f.tiny
    x[10] = -sub * 3
    return x, b


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_special_pre_activations_give_the_bits_of_add_then_maximum(dtype):
    x0, b0 = _specials(dtype)

    def build():
        b = scg.tensor(b0.copy(), requires_grad=True)
        opt = scg.optim.SGD([b], lr=0.125)

        def step(x, c):
            h = scg.relu(scg.tensor(x) + b)
            loss = (h * scg.tensor(c)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return h, b.grad
        return step, [b]

    def data(i):
        r = np.random.default_rng(i)
        return np.roll(x0, i, axis=0), r.standard_normal(x0.shape).astype(dtype)

    with np.errstate(invalid="ignore", over="ignore"):
        eager, _ = build()
        fn, (b,) = build()
        traced = scg.trace(fn)
        for i in range(6):
            x, c = data(i)
            before = b.data.copy()
            e, t = eager(x, c), traced(x, c)
            _assert_bits(e, t, f"call {i}")
            expect = np.maximum(np.add(x, before), 0)  # the pair, by numpy
            _assert_bits(t[0].data, expect, f"call {i}: the pair")
            assert not np.signbit(t[0].data[~np.isnan(t[0].data)]).any()  # -0 became +0
            sub = np.finfo(dtype).smallest_subnormal
            if i == 0:  # (the bias moves after the first step)
                assert (t[0].data == sub).any()  # subnormals kept (no flush to zero)
            nan_in = np.isnan(x + before)
            assert np.array_equal(np.isnan(t[0].data), nan_in)
            # the gradient of b: c summed where x + b > 0 (NaN excluded), by brute force
            np.testing.assert_allclose(t[1].data, np.where(x + before > 0, c, 0).sum(0),
                                       rtol=1e-5, atol=1e-6)
    assert traced.stats["replayed"] == 4 and "bias_relu" in _names(traced) and "relu" not in _names(traced)


@pytest.mark.parametrize("variant,shape", [
    ("returned", (9, 6)), ("reused", (9, 6)), ("relu twice", (9, 6)), ("bias first", (9, 6)),
    ("plain", (2, 9, 6)), ("2-D bias", (9, 6)), ("dtypes differ", (9, 6))],
    ids=["sum returned", "sum read again", "relu applied twice", "bias first", "3-D", "2-D bias",
         "dtypes differ"])
def test_no_fusion_where_its_conditions_do_not_hold(variant, shape):
    traced = _run_pair(_dense(F32, "plain", variant), _dense_data(F32, shape), 6)
    names = _names(traced)
    assert "bias_relu" not in names
    assert names.count("relu") == (2 if variant == "relu twice" else 1)


def test_fusion_on_each_layer_of_an_mlp():
    def build():
        net = scg.nn.MLP([6, 8, 5, 3], dtype=F32, rng=np.random.default_rng(1))
        params = net.parameters()
        opt = scg.optim.Adam(params, lr=0.01)

        def step(x, y):
            loss = ((net(scg.tensor(x)) - scg.tensor(y)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss, [p.grad for p in params]
        return step, params

    def data(i):
        r = np.random.default_rng(50 + i)
        return r.standard_normal((11, 6)).astype(F32), r.standard_normal((11, 3)).astype(F32)

    traced = _run_pair(build, data, 6)
    names = _names(traced)
    assert names.count("bias_relu") == 2 and "relu" not in names  # two hidden layers; none after the last
    assert names.count("relu_grad") == 2


# ---- 2. SCG_KERNELS=numpy: the same, on numpy's passes ----------------------------------------

_NUMPY_PATH_PROBE = r"""
import json, sys
import numpy as np
import scg, scg.distributions as D
from scg import kernels
sys.path.insert(0, sys.argv[1])
import test_fusion_pass as tf

out = {"status": kernels.status(), "bad": []}
for dtype in (np.float32, np.float64):
    for kind in ("nn", "plain"):
        try:
            tr = tf._run_pair(tf._dense(dtype, kind), tf._dense_data(dtype), 5)
            out.setdefault("names", []).append(tf._names(tr))
        except AssertionError as e:
            out["bad"].append(f"dense {dtype.__name__} {kind}: {e}"[:300])
    x0, b0 = tf._specials(dtype)
    with np.errstate(all="ignore"):
        got = tf.ops._bias_relu(x0, b0)
        if not tf._same_bits(got, np.maximum(np.add(x0, b0), 0)):
            out["bad"].append(f"bias_relu specials {dtype.__name__}")
    try:
        tr = tf._run_pair(lambda: tf._observe_step(dtype), tf._observe_data(dtype), 5)
        out.setdefault("names", []).append(tf._names(tr))
    except AssertionError as e:
        out["bad"].append(f"observe {dtype.__name__}: {e}"[:300])
print(json.dumps(out))
"""


def test_the_numpy_path_in_a_fresh_process_fuses_and_equals_eager():
    env = {k: v for k, v in os.environ.items() if k != "SCG_KERNELS"}
    env["SCG_KERNELS"] = "numpy"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _NUMPY_PATH_PROBE, os.path.dirname(os.path.abspath(__file__))],
                       env=env, capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["status"].startswith("numpy (SCG_KERNELS=numpy)"), got["status"]
    assert got["bad"] == []
    assert len(got["names"]) == 6
    for names in got["names"][:2] + got["names"][3:5]:  # the dense steps
        assert "bias_relu" in names and "relu" not in names
    for names in (got["names"][2], got["names"][5]):  # the observe steps
        assert "bernoulli_nll" in names and "bernoulli_log_prob" not in names


# ---- 3. bernoulli_log_prob + negative -> bernoulli_nll ------------------------------------------


def _observe_step(dtype=F32, validate=None, seed=0, variant="plain", with_sample=False):
    """A VAE's decoder half: logits = relu(z W1 + b1) W2 + b2, observe Bernoulli(logits) data,
    Adam. ``variant``: "also log_prob" (the step also returns dist.log_prob(x)), "broadcast"
    (logits of one row against the batch of data)."""
    rng = np.random.default_rng(seed)
    dec1 = scg.nn.Linear(3, 6, dtype=dtype, rng=rng)
    dec2 = scg.nn.Linear(6, 8, dtype=dtype, rng=rng)
    enc = scg.nn.Linear(8, 3, dtype=dtype, rng=rng)
    params = dec1.parameters() + dec2.parameters() + (enc.parameters() if with_sample else [])
    opt = scg.optim.Adam(params, lr=0.01)

    def step(z, x):
        g = scg.Graph()
        extra = []
        with g:
            if with_sample:
                z = g.sample("z", D.Normal(enc(scg.tensor(x)), 1.0))
            else:
                z = scg.tensor(z)
            logits = dec2(scg.relu(dec1(z)))
            if variant == "broadcast":
                logits = logits.sum(0) * 0.1
            dist = D.Bernoulli(logits=logits, validate_args=validate)
            g.observe("x", dist, x)
            if variant == "also log_prob":
                extra = [dist.log_prob(x)]
        loss = g.surrogate().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return [loss, [p.grad for p in params]] + extra

    return step, params


def _observe_data(dtype=F32, rows=5):
    def data(i):
        r = np.random.default_rng(300 + i)
        return r.standard_normal((rows, 3)).astype(dtype), (r.random((rows, 8)) < 0.5).astype(dtype)
    return data


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("validate", [None, False], ids=["validated", "validate_args=False"])
def test_observe_of_bernoulli_logits_fuses_into_bernoulli_nll(dtype, validate):
    traced = _run_pair(lambda: _observe_step(dtype, validate), _observe_data(dtype), 7)
    prog = _program(traced)
    names = _names(traced)
    assert "bernoulli_log_prob" in _recorded_names(traced)
    assert names.count("bernoulli_nll") == 1 and "bernoulli_log_prob" not in names
    assert names.count("bias_relu") == 1
    n = names.index("bernoulli_nll")
    nll = prog.call_steps[n]
    assert nll.fn is ops._bernoulli_nll
    # the finiteness check of the log-likelihood now reads the cost, right after it
    after = prog.call_steps[n + 1]
    assert after.kind == "guard" and after.name == "bool (any_nonfinite)" and after.args == (T._S(nll.out),)
    # no guard reads a value the program no longer computes
    written = set(prog.inputs) | {s.out for s in prog.call_steps if isinstance(s.out, int)}
    written |= {i for i, v in enumerate(prog.values) if i in prog.fixed}
    for s in prog.call_steps:
        if s.kind == "guard" and s.name in CHECKS:
            assert s.args[0].i in written | {st.out for st in prog.rec.steps if st.kind == "read"}


def test_observe_cost_equals_a_brute_force_log_likelihood():
    step, params = _observe_step(F64)
    traced = scg.trace(step)
    data = _observe_data(F64)
    dec1w, dec1b, dec2w, dec2b = params
    for i in range(5):
        z, x = data(i)
        h = np.maximum(z @ dec1w.data + dec1b.data, 0)
        l = h @ dec2w.data + dec2b.data
        expect = np.sum(x * np.logaddexp(0, -l) + (1 - x) * np.logaddexp(0, l))  # -log p, another formula
        loss = float(traced(z, x)[0].data)
        assert abs(loss - expect) <= 1e-12 * abs(expect)
    assert traced.stats["replayed"] == 3 and "bernoulli_nll" in _names(traced)


def test_observe_with_a_sampled_code_equals_eager_with_the_same_seed():
    scg.manual_seed(11)
    es, ep = _observe_step(F32, with_sample=True)
    e = [es(*_observe_data(F32)(i)) for i in range(6)]
    scg.manual_seed(11)
    ts, tp = _observe_step(F32, with_sample=True)
    traced = scg.trace(ts)
    t = [traced(*_observe_data(F32)(i)) for i in range(6)]
    _assert_bits(e, t, "results")
    _assert_bits([p.data for p in ep], [p.data for p in tp], "parameters")
    assert traced.stats["replayed"] == 4 and "bernoulli_nll" in _names(traced)


def test_no_nll_fusion_when_the_log_likelihood_is_read_elsewhere_or_broadcast():
    # a broadcast (logits of one row, data of five): shapes differ
    traced = _run_pair(lambda: _observe_step(F32, variant="broadcast"), _observe_data(F32), 6)
    assert "bernoulli_nll" not in _names(traced) and "bernoulli_log_prob" in _names(traced)
    # the user's own dist.log_prob(x), returned: that one is not fused; observe's own still is
    traced = _run_pair(lambda: _observe_step(F32, variant="also log_prob"), _observe_data(F32), 6)
    names = _names(traced)
    assert names.count("bernoulli_nll") == 1 and names.count("bernoulli_log_prob") == 1

    # the log-likelihood itself returned next to its negation: not fused
    def build(read_twice):
        w = scg.tensor(np.full(8, 0.5, F32), requires_grad=True)

        def step(l, x):
            lp = ops.bernoulli_log_prob(scg.tensor(x), scg.tensor(l) * w)
            cost = -lp
            return (cost, lp) if read_twice else (cost,)
        return step, [w]

    def data(i):
        r = np.random.default_rng(i)
        return r.standard_normal((4, 8)).astype(F32) * 5, (r.random((4, 8)) < 0.5).astype(F32)

    traced = _run_pair(lambda: build(True), data, 5)
    assert "bernoulli_nll" not in _names(traced) and "bernoulli_log_prob" in _names(traced)
    traced = _run_pair(lambda: build(False), data, 5)  # and the same without: fused
    assert "bernoulli_nll" in _names(traced) and "bernoulli_log_prob" not in _names(traced)


def _checked_nll_step():
    """The log-likelihood checked by the user's code (a sign-blind check), then negated."""
    def step(l, x):
        lp = ops.bernoulli_log_prob(scg.tensor(x), scg.tensor(l))
        if not kernels.all_finite(lp.data):
            raise ValueError("the log-likelihood is not finite")
        return -lp
    return step, []


@pytest.mark.parametrize("odd", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
def test_the_moved_check_on_the_cost_refuses_as_eagerly(odd):
    def data(i):
        r = np.random.default_rng(i)
        return r.standard_normal((5, 8)).astype(F32) * 4, (r.random((5, 8)) < 0.5).astype(F32)

    eager, _ = _checked_nll_step()
    traced = _run_pair(_checked_nll_step, data, 5)
    prog = _program(traced)
    names = _names(traced)
    assert "bernoulli_nll" in names and "bernoulli_log_prob" not in names and "negative" not in names
    nll = prog.call_steps[names.index("bernoulli_nll")]
    guard = prog.call_steps[names.index("bernoulli_nll") + 1]
    assert guard.name == "bool (any_nonfinite)" and guard.args == (T._S(nll.out),)
    l, x = data(9)
    for pos in ((0, 0), (2, 5), (4, 7)):
        l2 = l.copy()
        l2[pos] = odd
        x2 = x.copy()
        x2[pos] = 1.0  # at l = +inf, x = 1 the log-likelihood is NaN (0 inf), at -inf -inf
        with np.errstate(invalid="ignore"):
            e, t = _outcome(eager, l2, x2), _outcome(traced, l2, x2)
        assert e[0] == "raise" and _same_outcome(e, t), (e, t)
    _assert_bits(eager(*data(12)), traced(*data(12)))  # and it goes on


@pytest.mark.parametrize("odd", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("validate", [None, False], ids=["validated", "validate_args=False"])
def test_observe_with_non_finite_logits_after_recording_does_what_eager_does(odd, validate):
    def build():
        b = scg.tensor(np.zeros(8, F32), requires_grad=True)
        opt = scg.optim.Adam([b], lr=0.01)

        def step(l, x):
            g = scg.Graph()
            with g:
                g.observe("x", D.Bernoulli(logits=scg.tensor(l) + b, validate_args=validate), x)
            loss = g.surrogate().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss, b.grad
        return step, [b]

    def data(i):
        r = np.random.default_rng(i)
        return r.standard_normal((5, 8)).astype(F32), (r.random((5, 8)) < 0.5).astype(F32)

    eager, ep = build()
    fn, tp = build()
    traced = scg.trace(fn)
    for i in range(4):
        _assert_bits(eager(*data(i)), traced(*data(i)))
    assert "bernoulli_nll" in _names(traced)
    for x_at in (0.0, 1.0):
        l, x = data(20)
        l[1, 2] = odd
        x[1, 2] = x_at
        with np.errstate(invalid="ignore"):
            e, t = _outcome(eager, l, x), _outcome(traced, l, x)
        assert _same_outcome(e, t), (e, t)
        _assert_bits([p.data for p in ep], [p.data for p in tp], "parameters")
    _assert_bits(eager(*data(30)), traced(*data(30)))


# ---- 4. merged checks -------------------------------------------------------------------------


@pytest.mark.parametrize("validate", [None, False], ids=["validated", "validate_args=False"])
def test_observe_of_binary_data_runs_each_check_once(validate):
    traced = _run_pair(lambda: _observe_step(F32, validate), _observe_data(F32), 5)
    prog = _program(traced)
    recorded = [s.name for s in _checks(prog.rec.steps)]
    kept = [s.name for s in _checks(prog.call_steps)]
    # recorded: logits (has_nan, all_finite), data (has_nan in observe [, in _value], all_binary),
    # the log-likelihood (all_finite)
    assert len(recorded) == (6 if validate is None else 5), recorded
    # kept: the strongest check once per value (logits, data), and the cost's check
    assert kept == ["bool (any_nonfinite)", "bool (any_nonbinary)", "bool (any_nonfinite)"], kept
    slots = [s.args[0].i for s in _checks(prog.call_steps)]
    assert len(set(slots)) == 3
    # the data's check runs where its first check ran: before the log-likelihood
    data_guard = _checks(prog.call_steps)[1]
    assert prog.call_steps.index(data_guard) < _names(traced).index("bernoulli_nll")


def _refused_as_eagerly(eager, traced, tparams, args, text):
    before = [p.data.copy() for p in tparams]
    with pytest.raises(ValueError) as ee:
        eager(*args)
    with pytest.raises(ValueError) as te:
        traced(*args)
    assert str(te.value) == str(ee.value) and text in str(te.value)
    _assert_bits(before, [p.data for p in tparams], "no optimizer step")


@pytest.mark.parametrize("validate", [None, False], ids=["validated", "validate_args=False"])
@pytest.mark.parametrize("odd,text", [(0.5, "outside the support"), (2.0, "outside the support"),
                                      (np.nan, "NaN"), (np.inf, "outside the support")])
def test_data_binary_when_recorded_then_not_raises_as_eagerly(validate, odd, text):
    es, ep = _observe_step(F32, validate)
    ts, tp = _observe_step(F32, validate)
    traced = scg.trace(ts)
    data = _observe_data(F32)
    for i in range(4):
        _assert_bits(es(*data(i)), traced(*data(i)))
    assert traced.stats["replayed"] == 2
    for pos in ((0, 0), (3, 7)):
        z, x = data(40)
        x[pos] = odd
        _refused_as_eagerly(es, traced, tp, (z, x), text)
    _assert_bits(es(*data(41)), traced(*data(41)))
    _assert_bits([p.data for p in ep], [p.data for p in tp])


def _direct_step(seed=0):
    """Bernoulli(validate_args=False).log_prob on data that may hold values other than 0 and 1."""
    rng = np.random.default_rng(seed)
    w = scg.tensor((rng.standard_normal((4, 10)) * 0.5).astype(F32), requires_grad=True)
    opt = scg.optim.Adam([w], lr=0.05)

    def step(z, x):
        lp = D.Bernoulli(logits=scg.tensor(z) @ w, validate_args=False).log_prob(x)
        loss = -ops.where(lp > -np.inf, lp, 0.0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, lp, w.grad

    return step, [w]


def test_non_binary_data_without_validation_equals_eager():
    es, ep = _direct_step()
    ts, tp = _direct_step()
    traced = scg.trace(ts)
    for i, odd in enumerate([0, 0, 0, 0, 0.5, 0, 0, 2.0, 0.5, 0, 0, 0]):
        r = np.random.default_rng(500 + i)
        z, x = r.standard_normal((6, 4)).astype(F32), (r.random((6, 10)) < 0.5).astype(F32)
        if odd:
            x[2, 3] = odd
        e, t = es(z, x), traced(z, x)
        _assert_bits(e, t, f"call {i}")
        _assert_bits([p.data for p in ep], [p.data for p in tp])
        assert np.array_equal(np.isneginf(t[1].data), (x != 0) & (x != 1))
    assert traced.stats["replayed"] >= 4


def _user_checks_step(write=None, between="nothing"):
    """User code checking one array several times; ``write(a, y)`` may write it in between."""
    def step(x, y):
        a = x * 1.0
        if kernels.has_nan(a):
            raise ValueError("first check: NaN")
        if between == "other array":
            c = a * 2.0
            c[0] = 5.0  # a write, but not into a
        elif write is not None:
            write(a, y)
        if kernels.has_nan(a):
            raise ValueError("second check: NaN")
        if between == "all three" and not kernels.all_finite(a):
            raise ValueError("third check: not finite")
        if between == "all three" and not kernels.all_binary(a):
            raise ValueError("fourth check: not 0 or 1")
        return scg.tensor(a * 2.0)
    return step


def test_unchanged_values_are_checked_once_as_the_strongest_check():
    step = _user_checks_step(between="all three")
    traced = scg.trace(step)
    x, y = np.array([0.0, 1.0, 1.0, 0.0]), np.zeros(4)
    for _ in range(4):
        _assert_bits(step(x, y), traced(x, y))
    prog = _program(traced)
    assert len(_checks(prog.rec.steps)) == 4
    kept = _checks(prog.call_steps)
    assert [s.name for s in kept] == ["bool (any_nonbinary)"]
    assert _names(traced).index("bool (any_nonbinary)") == 1  # where the first check ran
    for odd in (np.nan, np.inf, -np.inf, 0.5, 2.0):
        x2 = x.copy()
        x2[2] = odd
        e, t = _outcome(step, x2, y), _outcome(traced, x2, y)
        assert _same_outcome(e, t), (odd, e, t)
    _assert_bits(step(x, y), traced(x, y))

    step = _user_checks_step(between="other array")
    traced = scg.trace(step)
    for _ in range(4):
        _assert_bits(step(x, y), traced(x, y))
    assert len(_checks(_program(traced).call_steps)) == 1  # a write elsewhere does not part them


_WRITES = {
    "setitem": lambda a, y: a.__setitem__(slice(1, 3), y[1:3]),
    "setitem on a view": lambda a, y: a[1:].__setitem__(Ellipsis, y[1:]),
    "fill of a view": lambda a, y: a[1:3].fill(y[1]),
    "in-place ufunc": lambda a, y: np.add(a, y, out=a),
    "augmented assignment": lambda a, y: a.__iadd__(y),
    "ufunc into a view": lambda a, y: np.multiply(y[:2], 1.0, out=a[1:3]),
}
_WRITES_RETURNING_NONE = {  # numpy's in-place writers that return None: recorded as guards on that None
    "np.copyto": lambda a, y: np.copyto(a, y),
    "np.add.at": lambda a, y: np.add.at(a, np.array([1]), y[1:2]),
    "np.putmask": lambda a, y: np.putmask(a, np.isnan(y) | (y != 2.0), y),
    "np.put": lambda a, y: np.put(a, [1, 2, 3], y[1:]),
}


def _written_between_checks(write):
    step = _user_checks_step(write)
    traced = scg.trace(step)
    x, y = np.ones(4), np.full(4, 2.0)
    for _ in range(4):
        _assert_bits(step(x, y), traced(x, y))
    assert traced.stats["replayed"] == 2
    y2 = y.copy()
    y2[1:] = np.nan  # written into a by the call between the checks
    e, t = _outcome(step, x, y2), _outcome(traced, x, y2)
    assert e[:2] == ("raise", ValueError) and "second check" in e[2]
    assert _same_outcome(e, t), (e, t)
    assert len(_checks(_program(traced).call_steps)) == 2  # both checks kept
    _assert_bits(step(x, y), traced(x, y))


@pytest.mark.parametrize("how", list(_WRITES))
def test_a_value_written_between_two_checks_keeps_both(how):
    _written_between_checks(_WRITES[how])


@pytest.mark.parametrize("how", list(_WRITES_RETURNING_NONE))
def test_a_value_written_between_two_checks_by_a_writer_returning_none_keeps_both(how):
    # (found by this file's first version: such writes did not close the merge's window)
    _written_between_checks(_WRITES_RETURNING_NONE[how])


def test_an_optimizer_step_between_two_checks_keeps_both():
    w = scg.tensor(np.ones(3), requires_grad=True)
    opt = scg.optim.SGD([w], lr=1.0)

    def step(x):
        d = w.data
        if kernels.has_nan(d):
            raise ValueError("before the step")
        loss = (w * scg.tensor(x)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()  # writes d in place
        if kernels.has_nan(d):
            raise ValueError("after the step")
        return loss

    traced = scg.trace(step)
    for i in range(4):
        traced(np.full(3, 0.01 * i))
    assert traced.stats["replayed"] == 2
    prog = _program(traced)
    assert [s.name for s in _checks(prog.call_steps)] == ["bool (any_nan)", "bool (any_nan)"]
    # a NaN gradient makes the step write NaN into w: eagerly the second check raises; a replay
    # cannot undo the optimizer's step, so it refuses by name (it must not go on silently)
    with pytest.raises((ValueError, scg.TraceError)) as err:
        traced(np.array([0.0, np.nan, 0.0]))
    assert "after the step" in str(err.value) or "went the other way" in str(err.value)
    assert np.isnan(w.data[1])


# ---- 5. relu's loop, bias_relu and bernoulli_nll's .into, relu's gradient -----------------------


@pytest.fixture(scope="module")
def raw():
    """The compiled library itself (whatever its self-check said), to test the loops directly."""
    path, why = kernels._build()
    if path is None:
        pytest.skip(why)
    lib, why = kernels._open(path)
    assert lib is not None, why
    return lib


def _odd_values32(n, seed):
    r = np.random.default_rng(seed)
    x = (r.standard_normal(n) * r.choice([1e-40, 1e-3, 1.0, 1e30], n)).astype(F32)
    specials = np.array([0x7FC00123, 0xFFC00456, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000, 0,
                         0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF], np.uint32)
    k = min(n, len(specials))
    x.view(np.uint32)[r.choice(n, k, replace=False)] = specials[:k]
    return x


def test_the_compiled_relu_loop_is_in_use_and_is_np_maximum_to_the_bit(raw):
    assert kernels.status().startswith("compiled"), kernels.status()
    P = kernels._ptr
    for n in list(range(1, 41)) + [63, 64, 65, 1000]:
        for offset in (0, 1, 3):  # unaligned starts for the vector loop
            buf = _odd_values32(n + offset, n * 7 + offset)
            x = buf[offset:]
            out = np.full(n + offset, np.nan, F32)[offset:]
            raw.relu_f32(P(x), P(out), n)
            _assert_bits(out, np.maximum(x, 0), f"relu_f32 n={n} offset={offset}")
            out2 = np.empty_like(x)
            assert kernels.relu(x, out2) is True  # the loop ran (self-check passed)
            _assert_bits(out2, np.maximum(x, 0), f"kernels.relu n={n}")
            _assert_bits(ops._relu(x), np.maximum(x, 0), f"ops._relu n={n}")
    # every special value at every position of a short array (the vector body and the tail)
    for n in (1, 5, 16, 17, 33):
        for p in (0x7FC00123, 0xFFC00456, 0x7F800001, 0x80000000, 0x80000001, 0x00000001):
            for i in range(n):
                x = np.full(n, -0.25, F32)
                x.view(np.uint32)[i] = p
                out = np.empty_like(x)
                raw.relu_f32(P(x), P(out), n)
                _assert_bits(out, np.maximum(x, 0), f"{hex(p)} at {i} of {n}")
                assert not np.signbit(out[x.view(np.uint32) == 0x80000000]).any()


def test_relu_and_bias_relu_use_the_loop_from_the_cut_on_and_give_numpys_bits_on_both_sides(monkeypatch):
    """Below ops._RELU_LOOP_FROM elements numpy is faster than a call into the loop: both sides of
    the cut, through the forward and .into, give np.maximum's bits, and only the large side calls it."""
    calls = []
    for name in ("relu", "bias_relu"):
        loop = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _loop=loop, _name=name: calls.append(_name) or _loop(*a))
    cut = ops._RELU_LOOP_FROM
    for rows in (1, cut // 400, cut // 400 + 1, 3 * cut // 400):
        x = _odd_values32(rows * 400, rows).reshape(rows, 400)
        b = _odd_values32(400, rows + 1)
        b[~np.isfinite(b)] = 0.5  # (finite sums: the loop's own path, not numpy's redo)
        x[~np.isfinite(x)] = -0.0
        big = x.size >= cut
        calls.clear()
        with np.errstate(all="ignore"):
            _assert_bits(ops._relu(x), np.maximum(x, 0), f"relu rows={rows}")
            out = np.full(x.shape, 7, F32)
            ops._relu.into(x, out=out)
            _assert_bits(out, np.maximum(x, 0), f"relu.into rows={rows}")
            _assert_bits(ops._bias_relu(x, b), np.maximum(np.add(x, b), 0), f"bias_relu rows={rows}")
        assert calls == (["relu", "relu", "bias_relu"] if big else []), (rows, calls)


def test_relu_on_layouts_the_loop_does_not_take_falls_back_to_numpy():
    x = _odd_values32(60, 1).reshape(6, 10)
    x[np.abs(x) > 6e4] = 1.0  # (float16 below)
    with np.errstate(invalid="ignore"):  # (a signalling NaN converted)
        views = (x.T, x[:, ::2], x[::2], np.asfortranarray(x), x.astype(F64), x.astype(np.float16),
                 np.array(x[0, 0]), x[:0])
    for view in views:
        out = np.empty(view.shape, view.dtype)
        expect = np.maximum(view, 0)
        if not (view.dtype == F32 and view.flags.c_contiguous):
            assert kernels.relu(view, out) is False
        _assert_bits(ops._relu(view), expect, f"{view.shape} {view.dtype}")
        out = np.full(view.shape, 7, view.dtype)
        ops._relu.into(view, out=out)
        _assert_bits(out, expect, f"into {view.shape} {view.dtype}")


def test_the_compiled_bias_relu_loop_is_the_pair_to_the_bit_or_reports(raw):
    """The loop gives the pair's bits where every sum is finite, and reports (returns 1) any sum
    that is not; ops._bias_relu then redoes it with numpy, so it is the pair to the bit always."""
    P = kernels._ptr
    for cols in list(range(1, 41)) + [64, 65]:
        rows = 3
        x = _odd_values32(rows * cols, cols).reshape(rows, cols)
        b = _odd_values32(cols, cols + 1000)
        with np.errstate(all="ignore"):
            expect = np.maximum(np.add(x, b), 0)
            for xs, bs in ((x, b), (np.where(np.isfinite(x), x, 1.5).astype(F32), np.where(np.isfinite(b), b, -0.0).astype(F32))):
                out = np.full((rows, cols), np.nan, F32)
                sums = np.add(xs, bs)
                odd = raw.bias_relu_f32(P(xs), P(bs), P(out), rows, cols)
                assert odd == (not np.isfinite(sums).all()), f"cols={cols}: reported {odd}"
                if not odd:
                    _assert_bits(out, np.maximum(sums, 0), f"bias_relu_f32 cols={cols}")
                _assert_bits(ops._bias_relu(xs, bs), np.maximum(sums, 0), f"ops._bias_relu cols={cols}")
            _assert_bits(ops._bias_relu(x, b), expect, f"ops._bias_relu with odd values, cols={cols}")


@pytest.mark.parametrize("dtype", [F32, F64, np.float16], ids=["float32", "float64", "float16"])
def test_bias_relu_and_bernoulli_nll_into_a_buffer_equal_their_forward(dtype):
    r = np.random.default_rng(4)
    with np.errstate(all="ignore"):
        for rows, cols in ((1, 1), (7, 13), (33, 17), (64, 40)):
            x = (r.standard_normal((rows, cols)) * 3).astype(dtype)
            b = r.standard_normal(cols).astype(dtype)
            x.flat[::7] = -b[0]
            fwd = ops._bias_relu(x, b)
            _assert_bits(fwd, np.maximum(np.add(x, b), 0), "forward")
            out = np.full((rows, cols), np.nan, dtype)
            ops._bias_relu.into(x, b, out=out)
            _assert_bits(out, fwd, "bias_relu into")
            out = np.full((rows, cols), np.nan, dtype)
            ops._bias_relu.into(np.asfortranarray(x), b, out=out)  # a layout the loop does not take
            _assert_bits(out, fwd, "bias_relu into, Fortran order")
            if dtype == np.float16:
                continue
            xs = (r.random((rows, cols)) < 0.5).astype(dtype)
            l = (r.standard_normal((rows, cols)) * 10).astype(dtype)
            idx = np.arange(0, l.size, 5)
            l.flat[idx] = np.resize(np.array([np.inf, -np.inf, 0.0, -0.0, 30.0], dtype), idx.size)
            nll = ops._bernoulli_nll(xs, l)
            _assert_bits(nll, np.negative(ops._bernoulli_log_prob(xs, l)), "nll forward")
            out = np.full((rows, cols), np.nan, dtype)
            ops._bernoulli_nll.into(xs, l, out=out)
            _assert_bits(out, nll, "nll into")


def test_bernoulli_nll_is_the_negated_log_likelihood_to_the_bit_at_every_position(raw):
    r = np.random.default_rng(8)
    specials = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 1e-45, 3e38, -3e38, 88.7, -88.7, 20.0,
                         -20.0, 1e-8], F32)
    with np.errstate(all="ignore"):
        for n in list(range(1, 41)) + [100, 1000]:
            l = (r.standard_normal(n) * r.choice([1e-8, 1.0, 10.0, 100.0], n)).astype(F32)
            k = min(n, len(specials))
            l[r.choice(n, k, replace=False)] = specials[:k]
            for x in ((r.random(n) < 0.5).astype(F32), np.ones(n, F32), np.zeros(n, F32)):
                out = np.empty(n, F32)
                raw.bernoulli_nll_f32(kernels._ptr(x), kernels._ptr(l), kernels._ptr(out), n)
                expect = np.negative(ops._bernoulli_log_prob(x, l))
                _assert_bits(out, expect, f"n={n}")
                _assert_bits(ops._bernoulli_nll(x, l), expect, f"n={n}")
            # and the log-likelihood itself within a few ulps of a float64 formula
            x = (r.random(n) < 0.5).astype(F32)
            fin = np.isfinite(l)
            ref = -np.where(x == 1, -np.logaddexp(0, -l.astype(F64)), -np.logaddexp(0, l.astype(F64)))
            got = ops._bernoulli_nll(x, l).astype(F64)
            assert np.all(np.abs(got[fin] - ref[fin]) <= 4e-7 * np.maximum(np.abs(ref[fin]), 1e-30) + 1e-44)


def _relu_grad_ref(x, g):
    return np.where(x > 0, g, 0).astype(x.dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_relus_gradient_reads_its_output_and_is_the_mask(dtype):
    sub = np.finfo(dtype).smallest_subnormal
    x0 = np.array([[-2.0, -0.0, 0.0, sub, -sub, 3.0, np.inf, -np.inf, np.nan, 0.5, -1e-30, 1e-30]], dtype)
    x0 = np.repeat(x0, 3, 0) * np.array([[1], [2], [-1]], dtype)
    g0 = np.random.default_rng(0).standard_normal(x0.shape).astype(dtype)
    x = scg.tensor(x0, requires_grad=True)
    with np.errstate(invalid="ignore"):
        y = scg.relu(x)
        _assert_bits(y.data, np.maximum(x0, 0), "forward")
        (gx,) = scg.grad(y, [x], grad_outputs=scg.tensor(g0))
    _assert_bits(gx.data, _relu_grad_ref(x0, g0), "first order")
    # second order: d/dx sum((relu x)^2 / 2) = relu(x) mask = relu(x); d2 = mask
    xf = x0.copy()
    xf[~np.isfinite(xf) | (np.abs(xf) < 1e-20)] = 1.0  # (a subnormal's square underflows)
    xf[0, 1:3] = (-0.0, 0.0)
    x = scg.tensor(xf, requires_grad=True)
    r = scg.relu(x)
    (d1,) = scg.grad((r * r).sum() * 0.5, [x], create_graph=True)
    _assert_bits(d1.data, np.maximum(xf, 0), "d1")
    (d2,) = scg.grad(d1.sum(), [x])
    _assert_bits(d2.data, (xf > 0).astype(dtype), "d2")
    # through relu_grad's own backward: d/dg of sum(relu_grad(g, ans) * c) is the mask times c
    gt = scg.tensor(g0, requires_grad=True)
    x = scg.tensor(xf, requires_grad=True)
    (gx,) = scg.grad(scg.relu(x), [x], grad_outputs=gt, create_graph=True)
    c = np.random.default_rng(1).standard_normal(xf.shape).astype(dtype)
    (gg,) = scg.grad((gx * scg.tensor(c)).sum(), [gt])
    _assert_bits(gg.data, _relu_grad_ref(xf, c), "d/dg")


def test_relu_gradcheck_float64_to_second_order():
    x = scg.tensor(np.array([[-1.3, 0.7, 2.1], [0.4, -0.2, -3.0]]), requires_grad=True)
    assert scg.gradcheck(lambda t: scg.relu(t) ** 2, [x])


# ---- 6. NaN in both operands of the fused add: numpy's NaN, as eager ---------------------------------


# (found by this file's first version: the C loop gave b's NaN where numpy's add keeps x's; a sum
# that is not finite is now redone by numpy)
def test_bias_relu_with_a_nan_in_both_operands_keeps_the_first_operands_nan():
    x = np.array([[-np.nan, 1.0]], F32)  # sign bit set (the NaN 0 * inf gives on x86)
    b = np.array([np.nan, 0.0], F32)
    with np.errstate(invalid="ignore"):
        expect = np.maximum(np.add(x, b), 0)
        assert np.signbit(expect[0, 0])
        _assert_bits(ops._bias_relu(x, b), expect, "bias_relu")


def test_traced_bias_relu_with_nan_in_both_operands_equals_eager():
    def build():
        b = scg.tensor(np.array([np.nan, 0.5, 0.0], F32), requires_grad=True)
        return (lambda x: scg.relu(scg.tensor(x) + b)), [b]

    x = np.array([[-np.nan, 1.0, -1.0], [2.0, -np.nan, 3.0]], F32)
    with np.errstate(invalid="ignore"):
        traced = _run_pair(build, lambda i: (x,), 4)
    assert "bias_relu" in _names(traced)


# ---- 7. numpy's floating-point error handling through the fused add ----------------------------------


def _dense_relu_step():
    w = scg.tensor(np.eye(3, dtype=F32))
    b = scg.tensor(np.array([3e38, 0.5, -1.0], F32))

    def step(x):
        return scg.relu(scg.tensor(x) @ w + b)
    return step


def _caught(fn, *args):
    """(outcome, the warnings' messages) of fn(*args)."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = _outcome(fn, *args)
    return out, [str(w.message) for w in seen]


@pytest.mark.parametrize("err", [None, "raise", "warn", "ignore"])
def test_an_overflow_in_the_fused_bias_add_is_reported_as_numpy_reports_it(err):
    """The C loop sets no flag numpy reads: an overflow (found by the review: 3e38 + 3e38) must still
    warn or raise as np.errstate says, as the eager add does, and give eager's bits."""
    eager, fn = _dense_relu_step(), _dense_relu_step()
    traced = scg.trace(fn)
    fine = np.ones((4, 3), F32)
    for _ in range(4):
        _assert_bits(eager(fine), traced(fine))
    assert "bias_relu" in _names(traced)
    big = np.full((4, 3), 3e38, F32)
    with np.errstate(**({} if err is None else {"over": err})):
        e, ew = _caught(eager, big)
        t, tw = _caught(traced, big)
    assert _same_outcome(e, t), (e, t)
    assert ew == tw, (ew, tw)
    if err == "raise":
        assert e[:2] == ("raise", FloatingPointError)
    elif err in (None, "warn"):
        assert e[0] == "value" and any("overflow" in m for m in ew)


# ---- 8. constant folding: what only a Tensor made in the step from its own arrays reads ----------------


def _prior_step(make_prior):
    """A step whose cost reads a distribution made in the step (its parameter checks are recorded)."""
    w = scg.tensor(np.array([[0.5, -1.0], [2.0, 0.25]], F32), requires_grad=True)
    opt = scg.optim.SGD([w], lr=0.01)

    def step(x):
        z = scg.tensor(x) @ w
        prior = make_prior()
        loss = -prior.log_prob(z).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step, w


def _run_prior(make_prior, inputs, between=lambda i: None):
    eager, ew = _prior_step(make_prior)
    fn, tw = _prior_step(make_prior)
    traced = scg.trace(fn)
    for i, x in enumerate(inputs):
        between(i)
        _assert_bits(eager(x), traced(x), f"call {i}")
        between(i)  # (the eager and the traced step each see the same state)
        _assert_bits(ew.data, tw.data, f"parameters after call {i}")
    return traced


def _inputs(n=6):
    rng = np.random.default_rng(3)
    return [rng.standard_normal((4, 2)).astype(F32) for _ in range(n)]


def test_a_prior_made_in_the_step_has_its_checks_folded_and_equals_eager():
    traced = _run_prior(lambda: D.Normal(np.zeros((4, 2), F32), np.ones((4, 2), F32)), _inputs())
    assert traced.stats["replayed"] == 4
    prog = _program(traced)
    recorded = [s.name for s in prog.rec.steps]
    replayed = [s.name for s in prog.call_steps]
    # the recording checks the prior's loc and scale (NaN, > 0, finite: greater, isfinite, all, bool);
    # none of them reads anything but the two constant arrays, so none is replayed
    assert recorded.count("greater") >= 1 and recorded.count("all") >= 2
    assert replayed.count("greater") == 0 and replayed.count("all") == 0 and replayed.count("isfinite") == 0
    assert sum(1 for s in prog.call_steps if s.kind == "read") < sum(1 for s in prog.rec.steps if s.kind == "read")


def test_an_array_from_outside_changed_in_place_between_calls_is_not_folded():
    """A Tensor made in the step from a captured array (or a view of one) reads memory code outside
    the step can change: eager calls see the change, so a replay must too."""
    scale = np.ones((4, 2), F32)
    for wrap in (lambda: scale, lambda: scale[:, :]):
        scale[...] = 1.0

        def change(i):
            scale[...] = 1.0 + 0.5 * i  # (set twice per call: the same value both times)
        traced = _run_prior(lambda: D.Normal(np.zeros((4, 2), F32), wrap()), _inputs(8), change)
        assert traced.stats["replayed"] == 6
        assert "greater" in [s.name for s in _program(traced).call_steps]  # the scale's check still runs


def test_a_constant_whose_computation_warns_is_not_folded():
    import warnings

    def step(x):
        c = scg.tensor(-np.ones(3))
        return scg.tensor(x) + scg.sqrt(c)  # sqrt(-1): numpy warns "invalid value" on every eager call

    traced = scg.trace(step)
    x = np.ones(3)
    for i in range(5):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            e = step(x)
            n_eager = len(seen)
            t = traced(x)
        assert n_eager >= 1 and len(seen) == 2 * n_eager, (i, [str(w.message) for w in seen])
        _assert_bits(e, t)
    assert traced.stats["replayed"] == 3


def test_a_constant_written_in_place_later_keeps_every_call():
    def step(x):
        c = scg.tensor(np.arange(3.0))
        d = c.data
        if kernels.has_nan(d):
            raise ValueError("NaN before")
        d[1:] = x[1:]  # the constant is written with a value of the step
        if kernels.has_nan(d):
            raise ValueError("NaN after")
        return scg.tensor(x) * c

    traced = scg.trace(step)
    x = np.array([1.0, 2.0, 3.0])  # (the same each call: the written constant must agree to be trusted)
    for i in range(4):
        _assert_bits(step(x), traced(x))
    assert traced.stats["replayed"] == 2
    assert [s.name for s in _checks(_program(traced).call_steps)] == ["bool (any_nan)"] * 2
    bad = np.array([1.0, np.nan, 2.0])
    e, t = _outcome(step, bad), _outcome(traced, bad)
    # eager raises at the second check; the replay must not go on without it: it raises the same,
    # or refuses because the write into the Tensor's array cannot be undone to rerun eagerly
    assert e[:2] == ("raise", ValueError) and "after" in e[2]
    assert _same_outcome(e, t) or (t[:2] == ("raise", scg.TraceError) and "cannot be undone" in t[2]), (e, t)


def test_a_python_branch_on_a_constant_is_folded_and_a_branch_on_the_input_is_not():
    def step(x):
        c = scg.tensor(np.array([2.0, 3.0]))
        if (c.data > 0).all():  # always true: the recording's answer
            y = scg.tensor(x) * c
        else:
            y = scg.tensor(x) - c
        if (y.data.sum() > 0):  # depends on the input: kept
            return y * 2.0
        return y

    traced = scg.trace(step)
    for v in (1.0, 2.0, 3.0, 4.0, -1.0, -2.0, 5.0):
        x = np.full(2, v)
        _assert_bits(step(x), traced(x), f"x = {v}")
    names = [s.name for s in _program(traced).call_steps]
    assert names.count("bool") == 1, names


# Found by the review of the folding (each wrong at d70b376): a folded call's other inputs, writes
# recorded as guards, Python warnings; and (wrong before this round too) a Tensor made in the step
# whose array the step writes in place.


def _per_call(fn, calls=6, between=lambda i: None, probe=lambda r: r):
    """[(probe(result), warning messages)] of ``calls`` calls, ``between(i)`` before each."""
    import warnings

    rows = []
    for i in range(calls):
        between(i)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            r = fn(np.zeros(1))
        rows.append((probe(r), [str(w.message) for w in seen]))
    return rows


def _eager_and_traced(make, **kw):
    fn_e, between_e, probe_e = make()
    fn_t, between_t, probe_t = make()
    traced = scg.trace(fn_t)
    e = _per_call(fn_e, between=between_e, probe=probe_e, **kw)
    t = _per_call(traced, between=between_t, probe=probe_t, **kw)
    assert traced.stats["replayed"] >= 3, traced.stats
    for i, (a, b) in enumerate(zip(e, t)):
        assert _same_bits(a[0], b[0]) and a[1] == b[1], (i, e, t)


def test_a_call_reading_a_constant_and_an_array_from_outside_is_not_folded():
    def make():
        w = np.zeros(3)

        def fn(x):
            c = scg.tensor(np.ones(3))
            return scg.Tensor(np.multiply(c.data, w))

        def between(i):
            w[:] = i
        return fn, between, lambda r: r.data
    _eager_and_traced(make)


def test_a_write_from_a_constant_into_an_array_from_outside_is_replayed():
    for write in (lambda acc, c: np.add.at(acc, [0], c), lambda acc, c: np.copyto(acc, acc + c),
                  lambda acc, c: np.putmask(acc, c > 0, acc + c)):
        def make():
            acc = np.zeros(1)

            def fn(x):
                write(acc, scg.tensor(np.ones(1)).data)
                return scg.tensor(x)
            return fn, (lambda i: None), lambda r: acc.copy()
        _eager_and_traced(make)


def test_a_constant_whose_computation_warns_through_python_warnings_is_not_folded():
    def make():
        def fn(x):
            return scg.Tensor(np.nanmean(scg.tensor(np.full(3, np.nan)).data))  # "Mean of empty slice"
        return fn, (lambda i: None), lambda r: r.data
    _eager_and_traced(make)


@pytest.mark.parametrize("write", ["+=", "setitem", "out=", "copyto", "view"])
def test_an_array_the_step_makes_and_writes_in_place_starts_afresh_at_every_replay(write):
    def make():
        def fn(x):
            d = scg.tensor(np.zeros(3)).data
            e = np.exp(d)  # read before the write
            if write == "+=":
                d += 1.0
            elif write == "setitem":
                d[0] = d[0] + 1.0
            elif write == "out=":
                np.add(d, 1.0, out=d)
            elif write == "copyto":
                np.copyto(d, d + 1.0)
            else:
                d[1:] += 1.0
            return scg.Tensor(e * d)
        return fn, (lambda i: None), lambda r: r.data
    _eager_and_traced(make)
