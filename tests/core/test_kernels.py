"""scg.kernels (the fused C loops of scg/_kernels.c, numpy as fallback) and their callers:
ops.softplus, ops.sigmoid, ops.bernoulli_log_prob, ops.bernoulli_score, optim.Adam and
distributions.Bernoulli.log_prob.

Every expected value is computed here from the formulas, in longdouble or float64 (or by
central finite differences), never by the code under test. Most tests run twice: on the
compiled loops ("compiled", skipped when this machine cannot build them) and on the numpy
fallback forced in-process ("numpy"). The build and its fallbacks are checked in fresh
subprocesses with their own kernel cache directory.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import kernels, nn, ops, optim, parallel

F32 = np.float32
LD = np.longdouble

# Values where the formulas switch branches, saturate, overflow or lose digits.
EDGES = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0,
                  1e4, -1e4, 1.0, -1.0, 17.0, -17.0, 0.3], dtype=F32)
# Sizes around the loops' block of 16 (a partial last block is padded), and sizes above 4096
# (below it ops.sigmoid calls scipy's expit, not the loop); 2-D shapes; a 0-d and an empty one.
SHAPES = [(1,), (15,), (16,), (17,), (33,), (1000,), (4113,), (3, 7), (65, 67), (), (0,)]


def _compiled_or_skip():
    if kernels.lib() is None:
        pytest.skip(f"the compiled kernels are not available here: {kernels.status()}")


def _force_numpy(monkeypatch):
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_state", "numpy (forced by a test)")


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """Run the test on the compiled loops, then on the numpy fallback."""
    if request.param == "compiled":
        _compiled_or_skip()
    else:
        _force_numpy(monkeypatch)
    return request.param


# ---- independent references (longdouble) ----------------------------------------------------


def _ld(a):
    return np.asarray(a).astype(LD)  # exact: every float32/float64 is a longdouble


def _softplus_ref(x):
    with np.errstate(invalid="ignore"):  # NaN in, NaN out
        return np.logaddexp(LD(0), _ld(x))


def _sigmoid_ref(x):
    with np.errstate(invalid="ignore", over="ignore"):
        return 1 / (1 + np.exp(-_ld(x)))


def _bernoulli_log_prob_ref(x, l):
    """x l - softplus(l); at l = +-inf the limit of (x - [l > 0]) l, the form the library
    computes: -inf for an outcome the logit rules out, NaN (0 inf) for the certain one."""
    x, l = np.broadcast_arrays(_ld(x), _ld(l))
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(l), (x - (l > 0)) * l, x * l - _softplus_ref(l))


def _bernoulli_score_ref(x, l):
    with np.errstate(invalid="ignore"):
        return _ld(x) - _sigmoid_ref(l)


def _ulps(value, ref, dtype, scale=None):
    """|value - ref| in ulps of ``dtype`` at ``scale`` (default |ref|), elementwise; below the
    smallest normal number in units of it (ulps of subnormals mean nothing). Where ``ref`` is
    not finite the value must be the same infinity or a NaN for a NaN: 0 if so, else inf."""
    value, ref = _ld(value), _ld(ref)
    value, ref = np.broadcast_arrays(value, ref)
    scale = np.abs(ref) if scale is None else np.broadcast_to(_ld(scale), ref.shape)
    finite = np.isfinite(ref)
    same = (value == ref) | (np.isnan(value) & np.isnan(ref))
    tiny = np.finfo(dtype).tiny
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.where(finite, scale, 1)
        ulp = np.where(s < tiny, tiny, np.spacing(s.astype(dtype)).astype(LD))
        err = np.where(finite, np.abs(value - np.where(finite, ref, 0)), 0)
        err = np.where(np.isnan(err), np.inf, err)  # a NaN where the reference is finite
    return np.where(finite, err / ulp, np.where(same, 0, np.inf))


# Error bounds in ulps. softplus and sigmoid: 4 is the documented contract (tests/core/test_ops.py)
# and the compiled loops keep it (max 3.3 and 3.6 over every third float32 in [-104, 90]). The
# numpy fallback's float32 softplus does not: 5.34 ulps at x = -4.152139 (numpy's float32 exp,
# ~2.5 ulps, whose relative error log1p passes through, then _log1p_unit's 4), so 6.5 for it.
#
# The two-input ops, from the one-input bounds S (softplus) and G (sigmoid): the computed value
# is fl(fl(x l) - s~) with |s~ - s| <= S ulp(s), s = softplus(l). With M = max(|x l|, s):
#   fl(x l) is off by <= 1/2 ulp(x l) <= 1/2 ulp(M);
#   s~ by <= S ulp(s) <= S ulp(M);
#   the subtraction rounds by <= u |fl(x l) - s~| <= u 2M (1 + 8u) < 2 (1 + 8u) ulp(M)
#     (u = 2^-24, or 2^-53, and ulp(M) > u M);
# in all <= S + 2.5 ulps of M (+ 0.1 for the factors 1 + 8u). Of M, not of the result: x l and s
# cancel (at x = 1, l >> 0 the result is -exp(-l), only its absolute error is bounded). Likewise
# x - sigmoid(l) is within G ulp(sigmoid) + 2 ulp(max(|x|, sigmoid)), G + 2 ulps of that max.
def _bounds(S, G):
    return dict(softplus=S, sigmoid=G, log_prob=S + 2.6, score=G + 2.1)


BOUNDS = {"compiled": _bounds(4, 4), "numpy": _bounds(6.5, 4)}


def _bound(path, dtype=F32):
    """The bounds of the arithmetic that runs: the loops take float32 only."""
    return BOUNDS[path if np.dtype(dtype) == F32 else "numpy"]


def _log_prob_ulps(out, x, l, dtype=F32):
    ref = _bernoulli_log_prob_ref(x, l)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.abs(_ld(x) * _ld(l)), _softplus_ref(l))
    return _ulps(out, ref, dtype, scale)


def _score_ulps(out, x, l, dtype=F32):
    ref = _bernoulli_score_ref(x, l)
    scale = np.maximum(np.abs(_ld(x)), _sigmoid_ref(l))
    return _ulps(out, ref, dtype, scale)


def _values(shape, shift, seed=0):
    """float32 of ``shape``: the edge values (rotated by ``shift``) then random ones."""
    rng = np.random.default_rng(seed)
    pool = np.concatenate([np.roll(EDGES, -shift), rng.normal(0, 20, 5000).astype(F32)])
    return np.resize(pool, shape).astype(F32)


def _shifts(shape):
    """Enough rotations that every edge value passes through an array of this size."""
    n = int(np.prod(shape))
    return range(0, len(EDGES), max(n, 1)) if n < len(EDGES) else [0, 5]


def _check_tensor(t, shape):
    assert type(t.data) is np.ndarray
    assert t.dtype == F32
    assert t.shape == shape


# ---- 1. the contract of each op, on both paths ----------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softplus_and_sigmoid_float32_within_their_ulps_with_edge_values(path, shape):
    B = _bound(path)
    for shift in _shifts(shape):
        x = _values(shape, shift)
        # no warnings either (inf, NaN and saturation are expected inputs); but a 0-d NaN goes
        # through np.logaddexp, which warns "invalid value" (older than the kernels; reported)
        invalid = "ignore" if x.ndim == 0 and np.isnan(x) else "raise"
        with np.errstate(all="raise", under="ignore", invalid=invalid):
            sp_, sg = ops.softplus(scg.Tensor(x)), ops.sigmoid(scg.Tensor(x))
        _check_tensor(sp_, shape)
        _check_tensor(sg, shape)
        assert np.max(_ulps(sp_.data, _softplus_ref(x), F32), initial=0) <= B["softplus"]
        assert np.max(_ulps(sg.data, _sigmoid_ref(x), F32), initial=0) <= B["sigmoid"]
        # exact where exactness is owed: -inf -> 0, +inf -> inf, NaN -> NaN, saturation in [0, 1]
        assert np.all(sp_.data[x == -np.inf] == 0) and np.all(sp_.data[x == np.inf] == np.inf)
        assert np.all(sg.data[x == -np.inf] == 0) and np.all(sg.data[x == np.inf] == 1)
        assert np.array_equal(np.isnan(sp_.data), np.isnan(x))
        assert np.array_equal(np.isnan(sg.data), np.isnan(x))
        assert np.all((sg.data[~np.isnan(x)] >= 0) & (sg.data[~np.isnan(x)] <= 1))


def _x_for(l, seed=1):
    """Bernoulli outcomes mostly, and some other reals (the op takes any x), as float32."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, 1, 0, 0.5, -2.0, 3.25], F32), size=l.shape)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bernoulli_log_prob_and_score_float32_within_their_bounds(path, shape):
    B = _bound(path)
    for shift in _shifts(shape):
        l = _values(shape, shift)
        for seed in (1, 2):
            x = _x_for(l, seed)
            # 0 * inf and inf - inf are invalid (NaN is the right answer there): numpy warns
            with np.errstate(all="raise", under="ignore", invalid="ignore"):
                lp = ops.bernoulli_log_prob(scg.Tensor(x), scg.Tensor(l))
                sc = ops.bernoulli_score(scg.Tensor(x), scg.Tensor(l))
            _check_tensor(lp, shape)
            _check_tensor(sc, shape)
            assert np.max(_log_prob_ulps(lp.data, x, l), initial=0) <= B["log_prob"]
            assert np.max(_score_ulps(sc.data, x, l), initial=0) <= B["score"]


def test_bernoulli_log_prob_at_outcomes_is_log_sigmoid_exactly_at_the_extremes(path):
    """x in {0, 1}: -inf stays -inf, l = -1e4 at x = 1 gives -1e4 exactly, l = 1e4 at x = 0
    gives -1e4 exactly, an infinite logit gives -inf for the outcome it rules out and NaN for
    the certain one (0 inf, not a number made up; Bernoulli.log_prob takes another form there)."""
    l = np.resize(np.array([-np.inf, -1e4, 1e4, np.inf, -1e4, 1e4, np.inf, -np.inf], F32), 40)
    x = np.resize(np.array([1, 1, 0, 0, 0, 1, 1, 0], F32), 40)
    with np.errstate(invalid="ignore"):  # numpy warns at 0 * inf (the loop does not)
        out = ops.bernoulli_log_prob(scg.Tensor(x), scg.Tensor(l)).data
    np.testing.assert_array_equal(out[:8], [-np.inf, -1e4, -1e4, -np.inf, 0, 0, np.nan, np.nan])
    l2 = np.array([20.0, -20.0], F32)  # the likely outcome keeps its digits: -log1p(exp(-20))
    lp = ops.bernoulli_log_prob(scg.Tensor(np.array([1.0, 0.0], F32)), scg.Tensor(l2)).data
    np.testing.assert_allclose(lp, -np.log1p(np.exp(-20.0)), rtol=1e-6)


def test_the_ops_call_the_compiled_loops_where_they_apply(monkeypatch):
    """float32, contiguous, one shape (and >= 4096 elements for sigmoid): the loop runs (so the
    tests on the "compiled" path test it), and the op's result is the loop's, bit for bit."""
    _compiled_or_skip()
    calls = {}
    for name in ("softplus", "sigmoid", "bernoulli_log_prob", "bernoulli_score"):
        real = getattr(kernels, name)

        def spy(*args, _real=real, _name=name):
            done = _real(*args)
            calls.setdefault(_name, []).append(done)
            return done
        monkeypatch.setattr(kernels, name, spy)
    l = _values((70, 70), 0)
    x = _x_for(l)
    results = {"softplus": ops.softplus(scg.Tensor(l)).data, "sigmoid": ops.sigmoid(scg.Tensor(l)).data,
               "bernoulli_log_prob": ops.bernoulli_log_prob(scg.Tensor(x), scg.Tensor(l)).data,
               "bernoulli_score": ops.bernoulli_score(scg.Tensor(x), scg.Tensor(l)).data}
    for name, got in results.items():
        assert calls[name] and all(calls[name]), name
        direct = np.empty_like(l)
        args = (l,) if name in ("softplus", "sigmoid") else (x, l)
        assert getattr(kernels, name)(*args, direct)
        assert np.array_equal(got.view(np.uint32), direct.view(np.uint32)), name


# ---- 2. compiled vs numpy; position and thread independence ---------------------------------


def _random32(n, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 10, n), rng.uniform(-100, 100, n),
                           np.linspace(-20, 20, n)]).astype(F32)


def _run_all(x, l):
    return {"softplus": ops.softplus(scg.Tensor(l)).data, "sigmoid": ops.sigmoid(scg.Tensor(l)).data,
            "bernoulli_log_prob": ops.bernoulli_log_prob(scg.Tensor(x), scg.Tensor(l)).data,
            "bernoulli_score": ops.bernoulli_score(scg.Tensor(x), scg.Tensor(l)).data}


def test_compiled_and_numpy_agree_on_random_float32(monkeypatch):
    """Each is within its bound of the exact value, so the two are within the sum of the bounds
    of each other (the triangle inequality; 6 ulps measured for softplus, so not within 4)."""
    _compiled_or_skip()
    l = _random32(20_000, 3)
    x = _x_for(l, 3)
    compiled = _run_all(x, l)
    _force_numpy(monkeypatch)
    fallback = _run_all(x, l)
    scale_lp = np.maximum(np.abs(_ld(x) * _ld(l)), _softplus_ref(l))
    scale_sc = np.maximum(np.abs(_ld(x)), _sigmoid_ref(l))
    C, N = BOUNDS["compiled"], BOUNDS["numpy"]
    # (the ulps of the scale, not of the numpy value: within 1 + 8u of each other, as is the
    # spacing, so the sum of the bounds holds to within that)
    assert np.max(_ulps(compiled["softplus"], fallback["softplus"], F32, _softplus_ref(l))) \
        <= C["softplus"] + N["softplus"]
    assert np.max(_ulps(compiled["sigmoid"], fallback["sigmoid"], F32, _sigmoid_ref(l))) \
        <= C["sigmoid"] + N["sigmoid"]
    assert np.max(_ulps(compiled["bernoulli_log_prob"], fallback["bernoulli_log_prob"], F32, scale_lp)) \
        <= C["log_prob"] + N["log_prob"]
    assert np.max(_ulps(compiled["bernoulli_score"], fallback["bernoulli_score"], F32, scale_sc)) \
        <= C["score"] + N["score"]
    # and each is within its own bound of the exact value
    for got, B in ((compiled, C), (fallback, N)):
        assert np.max(_ulps(got["softplus"], _softplus_ref(l), F32)) <= B["softplus"]
        assert np.max(_ulps(got["sigmoid"], _sigmoid_ref(l), F32)) <= B["sigmoid"]
        assert np.max(_log_prob_ulps(got["bernoulli_log_prob"], x, l)) <= B["log_prob"]
        assert np.max(_score_ulps(got["bernoulli_score"], x, l)) <= B["score"]


def _bits(a):
    return a.view(np.uint32)


@pytest.mark.parametrize("name", ["softplus", "sigmoid", "bernoulli_log_prob", "bernoulli_score"])
def test_a_compiled_result_does_not_depend_on_where_the_element_sits(name):
    """The loop on x[k:] (another start, another alignment, another partial last block) and
    on x[:m] gives, bit for bit, what the loop on all of x gives for those elements."""
    _compiled_or_skip()
    f = getattr(kernels, name)
    l = np.concatenate([EDGES, _random32(400, 4)])
    x = _x_for(l, 4)
    args = (l,) if name in ("softplus", "sigmoid") else (x, l)
    full = np.empty_like(l)
    assert f(*args, full)
    for k in (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 100):
        part = np.empty(l.size - k, F32)
        assert f(*[a[k:] for a in args], part)
        assert np.array_equal(_bits(part), _bits(full[k:])), k
    for m in (1, 5, 16, 17, 40, 1001):
        part = np.empty(m, F32)
        assert f(*[a[:m] for a in args], part)
        assert np.array_equal(_bits(part), _bits(full[:m])), m


@pytest.mark.parametrize("shape", [(600, 784), (601, 783)], ids=str)
def test_one_and_two_threads_give_the_same_bits_on_the_compiled_loops(shape, monkeypatch):
    """Above the loops' threshold (1 << 18 elements) the rows are cut between two threads; the
    result is the one-thread result to the bit. (601, 783) cuts off the 16-element grid. (numpy's
    passes are tested in a subprocess below, under a watchdog: they deadlocked at 230200d.)"""
    _compiled_or_skip()
    split = []
    real_run = parallel.run

    def spy(tasks):
        split.append(len(tasks))
        return real_run(tasks)
    monkeypatch.setattr(parallel, "run", spy)
    rng = np.random.default_rng(5)
    l = rng.normal(0, 8, shape).astype(F32)
    x = (rng.random(shape) < 0.5).astype(F32)
    monkeypatch.setenv("SCG_NUM_THREADS", "1")
    one = _run_all(x, l)
    assert split == []
    monkeypatch.setenv("SCG_NUM_THREADS", "2")
    two = _run_all(x, l)
    assert split and all(n == 2 for n in split)  # the work really was split
    for name in one:
        assert np.array_equal(_bits(one[name]), _bits(two[name])), name
    assert np.max(_ulps(one["softplus"], _softplus_ref(l), F32)) <= BOUNDS["compiled"]["softplus"]


_THREADS_PROBE = r"""
import faulthandler, json, os, sys
import numpy as np
import scg
from scg import ops, parallel

split = []
real_run = parallel.run
parallel.run = lambda tasks: (split.append(len(tasks)), real_run(tasks))[1]
rng = np.random.default_rng(5)
l64 = rng.normal(0, 8, (600, 784))
x64 = (rng.random((600, 784)) < 0.5).astype(np.float64)
cases = {"float32": (x64.astype(np.float32), l64.astype(np.float32)),
         "float64": (x64, l64),
         "float32 Fortran order": (np.asfortranarray(x64, np.float32), np.asfortranarray(l64, np.float32))}
for case, (x, l) in cases.items():
    for name in ("softplus", "sigmoid", "bernoulli_log_prob", "bernoulli_score"):
        print(json.dumps({"start": f"{name} {case}"}), flush=True)
        faulthandler.dump_traceback_later(5, exit=True)  # a deadlock ends the process
        args = (l,) if name in ("softplus", "sigmoid") else (x, l)
        results = []
        for n in ("1", "2"):
            os.environ["SCG_NUM_THREADS"] = n
            split.clear()
            results.append((getattr(ops, name)(*map(scg.Tensor, args)).data, list(split)))
        faulthandler.cancel_dump_traceback_later()
        (one, s1), (two, s2) = results
        print(json.dumps({"case": f"{name} {case}", "same": one.tobytes() == two.tobytes(),
                          "split": s2, "unsplit": s1, "dtype": str(two.dtype)}), flush=True)
"""


@pytest.mark.parametrize("kernels_env", ["", "numpy"], ids=["default", "SCG_KERNELS=numpy"])
def test_one_and_two_threads_give_the_same_bits_and_never_deadlock(kernels_env):
    """Every op, on float32 (the loops, unless SCG_KERNELS=numpy), float64 and Fortran-order
    float32 (numpy's passes): two threads give the one-thread bits. In a subprocess with a
    watchdog: the numpy passes of bernoulli_log_prob / bernoulli_score run softplus / sigmoid,
    themselves split over the pool, inside a piece already on the pool."""
    env = {k: v for k, v in os.environ.items() if k not in ("SCG_KERNELS", "SCG_NUM_THREADS")}
    if kernels_env:
        env["SCG_KERNELS"] = kernels_env
    try:
        r = subprocess.run([sys.executable, "-c", _THREADS_PROBE], env=env, capture_output=True,
                           text=True, timeout=60)
        lines, err = r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        lines, err = e.stdout or "", "(timed out)"
        lines = lines.decode() if isinstance(lines, bytes) else lines
    records = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
    done = {r["case"]: r for r in records if "case" in r}
    started = [r["start"] for r in records if "start" in r]
    hung = [c for c in started if c not in done]
    assert not hung, f"deadlocked in {hung[0]} (SCG_NUM_THREADS=2):\n{err[-3000:]}"
    assert len(done) == 12, err[-3000:]
    for case, rec in done.items():
        assert rec["same"], case
        assert rec["unsplit"] == [] and rec["split"] and all(n == 2 for n in rec["split"]), case
        assert rec["dtype"] == ("float64" if "float64" in case else "float32"), case


# ---- 3. Adam ----------------------------------------------------------------------------------

LR, BETAS, EPS = 1e-2, (0.9, 0.999), 1e-8
STEPS = 5


def _adam_problem(seed=6):
    """Parameters (float32 and float64, one large enough to be cut into row blocks) and STEPS
    gradients each; some gradients are transposed views (not contiguous: the numpy passes run
    for them)."""
    rng = np.random.default_rng(seed)
    specs = [((7, 5), F32, False), ((5, 7), F32, True), ((13,), np.float64, False),
             ((4, 6), np.float64, True), ((300, 257), F32, False), ((3,), F32, False)]
    inits = [rng.normal(size=s).astype(d) for s, d, _ in specs]
    grads = [[(rng.normal(size=s[::-1]).astype(d).T if t else rng.normal(size=s).astype(d))
              for s, d, t in specs] for _ in range(STEPS)]
    return inits, grads


def _run_adam(inits, grads, wd):
    params = [nn.Parameter(p.copy()) for p in inits]
    opt = optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=wd)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = scg.Tensor(g)  # Tensor keeps the view (scg.tensor would copy it)
        opt.step()
    return [p.data for p in params], opt.state["m"], opt.state["v"]


def _adam_reference(p0, grads, wd):
    """Adam as torch.optim.Adam writes it (L2 weight decay, bias-corrected moments), float64."""
    b1, b2 = BETAS
    p = p0.astype(np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        g = g.astype(np.float64)
        if wd:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - LR * m_hat / (np.sqrt(v_hat) + EPS)
    return p, m, v


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_compiled_and_numpy_are_bit_identical_and_equal_the_formula(wd, monkeypatch):
    _compiled_or_skip()
    monkeypatch.setenv("SCG_NUM_THREADS", "2")  # the large parameter goes in row blocks
    inits, grads = _adam_problem()
    done = []
    real = kernels.adam

    def spy(*args):
        r = real(*args)
        done.append(r)
        return r
    monkeypatch.setattr(kernels, "adam", spy)
    compiled = _run_adam(inits, grads, wd)
    assert True in done and False in done  # the loop ran, and the transposed gradients took numpy
    _force_numpy(monkeypatch)
    fallback = _run_adam(inits, grads, wd)
    for a_list, b_list in zip(compiled, fallback):
        for i, (a, b) in enumerate(zip(a_list, b_list)):
            assert a.dtype == inits[i].dtype and b.dtype == inits[i].dtype
            assert a.tobytes() == b.tobytes(), i  # to the bit
    for i, p0 in enumerate(inits):
        eps = np.finfo(p0.dtype).eps
        p_ref, m_ref, v_ref = _adam_reference(p0, [gs[i] for gs in grads], wd)
        gmax = max(np.abs(gs[i]).max() for gs in grads) + wd * 5
        p, m, v = compiled[0][i], compiled[1][i], compiled[2][i]
        # every step rounds p (1/2 ulp) and its step of size ~LR (a few eps relative); m is a sum
        # of terms up to gmax that may cancel (absolute), v of positive terms (relative)
        np.testing.assert_allclose(p, p_ref, rtol=STEPS * eps, atol=STEPS * 16 * eps * LR)
        np.testing.assert_allclose(m, m_ref, rtol=0, atol=STEPS * 4 * eps * gmax)
        np.testing.assert_allclose(v, v_ref, rtol=STEPS * 4 * eps, atol=0)


def test_adam_formula_on_the_numpy_path_alone(monkeypatch):
    """The fallback also equals the formula where no compiler exists (runs without one)."""
    _force_numpy(monkeypatch)
    inits, grads = _adam_problem(7)
    got = _run_adam(inits, grads, 0.01)
    for i, p0 in enumerate(inits):
        eps = np.finfo(p0.dtype).eps
        p_ref, _, v_ref = _adam_reference(p0, [gs[i] for gs in grads], 0.01)
        np.testing.assert_allclose(got[0][i], p_ref, rtol=STEPS * eps, atol=STEPS * 16 * eps * LR)
        np.testing.assert_allclose(got[2][i], v_ref, rtol=STEPS * 4 * eps, atol=0)


# ---- 4. gradients -----------------------------------------------------------------------------


def _lp64(x, l):
    return x * l - np.logaddexp(0.0, l)


def _sc64(x, l):
    return x - 1 / (1 + np.exp(-l))


def _fd(f, x, l, wrt, h=1e-5):
    """Central differences of the float64 function f, elementwise (f acts elementwise)."""
    x, l = x.astype(np.float64), l.astype(np.float64)
    if wrt == "x":
        return (f(x + h, l) - f(x - h, l)) / (2 * h)
    return (f(x, l + h) - f(x, l - h)) / (2 * h)


def _sig(l):
    return np.asarray(_sigmoid_ref(l), dtype=np.float64)


@pytest.mark.parametrize("dtype", [np.float64, F32])
def test_first_and_second_derivatives_elementwise(dtype, path):
    rng = np.random.default_rng(8)
    l = rng.uniform(-8, 8, (6, 7)).astype(dtype)
    x = rng.uniform(-2, 2, (6, 7)).astype(dtype)
    x[0] = 0
    x[1] = 1
    tol = dict(rtol=1e-7, atol=1e-8) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    s = _sig(l)
    for op, ref, d_ll, d_lx in ((ops.bernoulli_log_prob, _lp64, -s * (1 - s), 1),  # d/dl = x - s(l)
                                (ops.bernoulli_score, _sc64, -s * (1 - s) * (1 - 2 * s), 0)):  # -s'(l)
        xt, lt = scg.tensor(x, requires_grad=True), scg.tensor(l, requires_grad=True)
        out = op(xt, lt)
        gx, gl = scg.grad(out.sum(), [xt, lt], create_graph=True)
        assert gx.dtype == dtype and gl.dtype == dtype
        np.testing.assert_allclose(gx.data, _fd(ref, x, l, "x"), **tol)
        np.testing.assert_allclose(gl.data, _fd(ref, x, l, "l"), **tol)
        # second derivatives: d2/dl2 = -sigmoid'(l) (log_prob), -sigmoid''(l) (score); d2/dx dl
        gll, glx = scg.grad(gl.sum(), [lt, xt])
        np.testing.assert_allclose(gll.data, d_ll, rtol=0, atol=1e-14 if dtype == np.float64 else 2e-6)
        np.testing.assert_array_equal(glx.data, np.full_like(x, d_lx))


def test_gradcheck_float64_to_second_order():
    """scg.gradcheck: the VJPs against finite differences of the ops' own forward."""
    rng = np.random.default_rng(9)
    l, x = rng.uniform(-5, 5, (3, 4)), rng.uniform(-1, 2, (3, 4))
    assert scg.gradcheck(ops.bernoulli_log_prob, [x, l], order=2)
    assert scg.gradcheck(ops.bernoulli_score, [x, l], order=2)
    assert scg.gradcheck(ops.bernoulli_log_prob, [x[:1], l], order=2)  # broadcast


def _fd_sum(f, x, l, wrt, h=1e-6):
    """d/d(each entry of x or l) of sum(f(x, l)) broadcast, by central differences (float64)."""
    x, l = x.astype(np.float64), l.astype(np.float64)
    a = x if wrt == "x" else l
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        up, dn = a.copy(), a.copy()
        up[i] += h
        dn[i] -= h
        fu = f(up, l) if wrt == "x" else f(x, up)
        fd = f(dn, l) if wrt == "x" else f(x, dn)
        g[i] = (fu.sum() - fd.sum()) / (2 * h)
    return g


@pytest.mark.parametrize("dtype", [np.float64, F32])
@pytest.mark.parametrize("xs, ls", [((5, 1), (5, 4)), ((4,), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1))],
                         ids=str)
def test_broadcast_gradients_have_the_input_shapes_and_values(dtype, xs, ls, path):
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 2, xs).astype(dtype)
    l = rng.uniform(-6, 6, ls).astype(dtype)
    tol = dict(rtol=1e-7, atol=1e-8) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for op, ref in ((ops.bernoulli_log_prob, _lp64), (ops.bernoulli_score, _sc64)):
        xt, lt = scg.tensor(x, requires_grad=True), scg.tensor(l, requires_grad=True)
        out = op(xt, lt)
        assert out.shape == np.broadcast_shapes(xs, ls) and out.dtype == dtype
        gx, gl = scg.grad(out.sum(), [xt, lt])
        assert gx.shape == xs and gl.shape == ls
        assert gx.dtype == dtype and gl.dtype == dtype
        np.testing.assert_allclose(gx.data, _fd_sum(ref, x, l, "x"), **tol)
        np.testing.assert_allclose(gl.data, _fd_sum(ref, x, l, "l"), **tol)
        assert np.max(np.abs(out.data - ref(x.astype(np.float64), l.astype(np.float64)))) \
            <= (1e-13 if dtype == np.float64 else 1e-5)


# ---- 5. Bernoulli.log_prob from logits ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, F32])
@pytest.mark.parametrize("xs, ls", [((40, 3), (40, 3)), ((2, 40, 3), (40, 3)), ((3,), (40, 3))], ids=str)
def test_bernoulli_log_prob_from_logits_is_log_sigmoid_and_its_gradient_the_score(dtype, xs, ls, path):
    B = _bound(path, dtype)
    rng = np.random.default_rng(11)
    l = np.concatenate([rng.uniform(-12, 12, (34, 3)),
                        [[-80, 80, 0], [-30, 30, -0.0], [1e-30, -1e-30, 60],
                         [-60, 15, -15], [35, -35, 5], [1e4, -1e4, 100]]]).astype(dtype)[:ls[0]]
    x = rng.integers(0, 2, xs).astype(dtype)
    if x.size >= 6:
        x.reshape(-1)[:6] = [0, 1, 0, 1, 0, 1]
    lt = scg.tensor(l, requires_grad=True)
    lp = D.Bernoulli(logits=lt).log_prob(x)
    shape = np.broadcast_shapes(xs, ls)
    assert lp.shape == shape and lp.dtype == dtype and type(lp.data) is np.ndarray
    # log sigmoid(l) at x = 1, log(1 - sigmoid(l)) at x = 0, in longdouble; written as
    # -log1p(exp(-l)) and -log1p(exp(l)) (the same numbers: log(s) with s = 1 - 6e-16 would keep
    # only 3 digits of a 64-bit mantissa)
    xb, lb = np.broadcast_arrays(_ld(x), _ld(l))
    ref = np.where(xb == 1, -np.log1p(np.exp(-lb)), -np.log1p(np.exp(lb)))
    scale = np.maximum(np.abs(xb * lb), _softplus_ref(lb))
    assert np.max(_ulps(lp.data, ref, dtype, scale)) <= B["log_prob"]
    (g,) = scg.grad(lp.sum(), [lt])
    assert g.shape == ls and g.dtype == dtype
    score = xb - _sigmoid_ref(lb)
    expected = score.sum(axis=tuple(range(score.ndim - len(ls)))) if score.ndim > len(ls) else score
    if xs == ls:
        assert np.max(_ulps(g.data, expected, dtype, np.maximum(np.abs(xb), _sigmoid_ref(lb)))) <= B["score"]
    else:
        np.testing.assert_allclose(g.data, np.asarray(expected, np.float64), rtol=0,
                                   atol=32 * np.finfo(dtype).eps)


# ---- 6. fallbacks and the build ----------------------------------------------------------------

_PROBE = r"""
import json
import numpy as np
import scg
from scg import kernels
x = np.concatenate([np.linspace(-30, 30, 1001), [-100, 100, 0, 1e-30]]).astype(np.float32)
out = scg.softplus(scg.Tensor(x)).data
print(json.dumps({"status": kernels.status(), "x": x.tolist(), "softplus": out.tolist(),
                  "dtype": str(out.dtype)}))
"""


def _probe(tmp_path, **env):
    """Run _PROBE in a fresh interpreter with the kernel cache in tmp_path/cache, without $CC and
    $SCG_KERNELS unless ``env`` sets them; check its softplus; return (its JSON, the cache)."""
    cache = tmp_path / "cache"
    e = {k: v for k, v in os.environ.items() if k not in ("SCG_KERNELS", "CC")}
    e["SCG_KERNEL_CACHE"] = str(cache)
    e.update(env)
    r = subprocess.run([sys.executable, "-c", _PROBE], env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    x = np.array(got["x"], F32)
    out = np.array(got["softplus"], F32)
    assert got["dtype"] == "float32"
    B = BOUNDS["compiled" if got["status"].startswith("compiled") else "numpy"]
    assert np.max(_ulps(out, _softplus_ref(x), F32)) <= B["softplus"]  # right on any path
    return got, cache


def _leftovers(cache):
    return sorted(p.name for p in cache.glob(".kernels-*")) if cache.exists() else []


def test_scg_kernels_numpy_builds_nothing_and_still_computes(tmp_path):
    got, cache = _probe(tmp_path, SCG_KERNELS="numpy")
    assert got["status"].startswith("numpy (SCG_KERNELS=numpy)")
    assert not cache.exists() or not any(cache.iterdir())


def test_no_compiler_falls_back_to_numpy_and_says_why(tmp_path):
    got, cache = _probe(tmp_path, CC="/nonexistent/cc")
    assert got["status"].startswith("numpy (no C compiler"), got["status"]
    assert "/nonexistent/cc" in got["status"]
    assert not cache.exists() or not any(cache.iterdir())


def test_a_failing_compiler_falls_back_to_numpy_and_leaves_no_files(tmp_path):
    got, cache = _probe(tmp_path, CC="false")
    assert got["status"].startswith("numpy (compiling"), got["status"]
    assert "failed" in got["status"]
    assert _leftovers(cache) == []
    assert not cache.exists() or not list(cache.glob("*.so"))


def test_the_build_lands_in_the_cache_atomically_and_is_reused(tmp_path):
    if shutil.which("cc") is None:  # (_probe runs without $CC)
        pytest.skip("no C compiler on this machine")
    got, cache = _probe(tmp_path)
    status = got["status"]
    if status.startswith("numpy (the compiled loops disagree"):
        pytest.fail(f"the compiled loops were built but fail their self-check: {status}")
    assert status.startswith("compiled ("), status
    path = status[len("compiled ("):-1]
    assert os.path.dirname(path) == str(cache) and os.path.isfile(path) and path.endswith(".so")
    assert [p.name for p in cache.iterdir()] == [os.path.basename(path)]  # and nothing else
    assert _leftovers(cache) == []
    mtime = os.stat(path).st_mtime_ns
    again, _ = _probe(tmp_path)
    assert again["status"] == status  # the same file ...
    assert os.stat(path).st_mtime_ns == mtime  # ... not rebuilt
    assert [p.name for p in cache.iterdir()] == [os.path.basename(path)]


def test_a_cached_file_that_does_not_load_is_built_again(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine")
    got, cache = _probe(tmp_path)
    path = got["status"][len("compiled ("):-1]
    with open(path, "w") as f:
        f.write("not a shared library")  # damaged, or a stale file under the same name
    again, _ = _probe(tmp_path)
    assert again["status"] == got["status"]  # loaded after one rebuild, under the same name
    with open(path, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    assert os.stat(path).st_mode & 0o777 == 0o755  # others sharing the cache can load it too


def test_a_library_without_the_loops_falls_back_to_numpy_and_says_why(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this machine")
    # hidden symbols: the library loads but has none of the functions (as one of another version)
    got, _ = _probe(tmp_path, CC="gcc -fvisibility=hidden")
    assert got["status"].startswith("numpy (cannot load") and "undefined symbol" in got["status"], got["status"]


def test_a_temporary_directory_others_may_write_to_is_not_used(tmp_path):
    """When the cache directory cannot be made, the shared temporary directory is the fallback,
    but only a private one: another user could have put a library there for this process."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    tmp = tmp_path / "tmp"
    shared = tmp / f"scg-kernels-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    got, _ = _probe(tmp_path, SCG_KERNEL_CACHE=str(blocker / "cache"), TMPDIR=str(tmp))
    assert got["status"].startswith("numpy (no writable cache directory"), got["status"]
    assert list(shared.iterdir()) == []
    shared.chmod(0o700)  # private: used
    got, _ = _probe(tmp_path, SCG_KERNEL_CACHE=str(blocker / "cache"), TMPDIR=str(tmp))
    assert got["status"].startswith(f"compiled ({shared}"), got["status"]


# ---- inputs the loops do not take ------------------------------------------------------------


def test_the_loops_decline_what_they_do_not_take_and_leave_out_alone():
    _compiled_or_skip()
    rng = np.random.default_rng(12)
    a = rng.normal(size=64).astype(F32)
    b = rng.normal(size=64).astype(F32)
    ro = np.empty(64, F32)
    ro.flags.writeable = False
    one_input = [(a[::2], np.empty(32, F32)),  # x not contiguous
                 (a[:32], np.empty(64, F32)[::2]),  # out not contiguous
                 (a.astype(np.float16), np.empty(64, np.float16)),
                 (a.astype(np.float64), np.empty(64)),
                 (a, np.empty(64, np.float64)),  # mixed dtypes
                 (a, np.empty(63, F32)),  # sizes differ
                 (a, ro),  # out read-only
                 (a.reshape(8, 8).T, np.empty((8, 8), F32)),  # Fortran order
                 (list(a), np.empty(64, F32))]  # not an array
    for name in ("softplus", "sigmoid"):
        f = getattr(kernels, name)
        for x, out in one_input:
            if out.flags.writeable:
                out[...] = 7
            assert f(x, out) is False, (name, x, out.dtype)
            if out.flags.writeable:
                assert np.all(out == 7)  # untouched: the caller does the work
        assert f(a, np.empty(64, F32)) is True  # the control
    two_inputs = [(a[::2], b[::2]), (a, b[::-1]), (a.astype(np.float16), b.astype(np.float16)),
                  (a, b.astype(np.float64)), (a.astype(np.float64), b), (a, b[:63])]
    for name in ("bernoulli_log_prob", "bernoulli_score"):
        f = getattr(kernels, name)
        for x, l in two_inputs:
            out = np.full(x.shape, 7, F32)
            assert f(x, l, out) is False, (name, x.dtype, l.dtype)
            assert np.all(out == 7)
        assert f(a, b, np.empty(64, F32)) is True
    p, m, v = (np.zeros((8, 8), F32) for _ in range(3))
    g = rng.normal(size=(8, 8)).astype(F32)
    for args in ((p, g.T, m, v), (p, g.astype(np.float64), m, v), (p.astype(np.float16), g.astype(np.float16),
                 m.astype(np.float16), v.astype(np.float16)), (p[:, ::2], g[:, ::2], m[:, ::2], v[:, ::2])):
        before = [np.array(x, copy=True) for x in args]
        assert kernels.adam(*args, 0.9, 0.999, 1e-3, 1e-8, 0.0) is False
        assert all(np.array_equal(x, y) for x, y in zip(args, before))
    assert kernels.adam(p, g, m, v, 0.9, 0.999, 1e-3, 1e-8, 0.0) is True and np.any(p != 0)


@pytest.mark.parametrize("kind", ["strided", "transposed", "float16"])
def test_the_ops_are_right_on_inputs_the_loops_decline(kind, path):
    rng = np.random.default_rng(13)
    base = np.concatenate([EDGES, rng.normal(0, 20, 9000 - EDGES.size)]).astype(F32)
    xs = rng.choice(np.array([0, 1, 0.5], F32), 9000)
    if kind == "strided":
        l, x, dtype = base[::2], xs[::2], F32
    elif kind == "transposed":
        l, x, dtype = base.reshape(90, 100).T, xs.reshape(90, 100).T, F32
    else:
        l, x, dtype = base.astype(np.float16), xs.astype(np.float16), np.float16
    assert not l.flags.c_contiguous or l.dtype != F32
    with np.errstate(all="raise", under="ignore", invalid="ignore"):  # 0 * inf: NaN, rightly
        sp_, sg = ops.softplus(scg.Tensor(l)).data, ops.sigmoid(scg.Tensor(l)).data
        lp = ops.bernoulli_log_prob(scg.Tensor(x), scg.Tensor(l)).data
        sc = ops.bernoulli_score(scg.Tensor(x), scg.Tensor(l)).data
    for out in (sp_, sg, lp, sc):
        assert out.dtype == dtype and out.shape == l.shape and type(out) is np.ndarray
    B = BOUNDS["numpy"]  # the loops decline these: numpy's arithmetic on either path
    assert np.max(_ulps(sp_, _softplus_ref(l), dtype)) <= B["softplus"]
    assert np.max(_ulps(sg, _sigmoid_ref(l), dtype)) <= B["sigmoid"]
    assert np.max(_log_prob_ulps(lp, x, l, dtype)) <= B["log_prob"]
    assert np.max(_score_ulps(sc, x, l, dtype)) <= B["score"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (1,), (17,), (65, 67), (600, 784)])
def test_relu_backward_is_numpy_where_bit_for_bit(path, dtype, shape):
    """relu's gradient is g where x > 0 else 0, exactly as np.where gives it: inf and NaN in g
    kept where x > 0 and dropped elsewhere, a NaN input gets 0, the gradient at 0 is 0."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, shape).astype(dtype)
    g = rng.normal(0, 1, shape).astype(dtype)
    if x.size >= 8:
        x.flat[:8] = [0.0, -0.0, np.nan, 1.0, -1.0, 2.0, -2.0, np.inf]
        g.flat[:8] = [5.0, 5.0, 5.0, np.inf, np.inf, np.nan, np.nan, 3.0]
    xt = scg.Tensor(x, requires_grad=True)
    (got,) = scg.grad(ops.relu(xt), [xt], grad_outputs=g)
    assert type(got.data) is np.ndarray and got.dtype == dtype and got.shape == x.shape
    np.testing.assert_array_equal(got.data, np.where(x > 0, g, 0).astype(dtype))
    # transposed (non-contiguous) arrays take the numpy path with the same result
    if x.ndim == 2:
        xt2 = scg.Tensor(x.T, requires_grad=True)
        (got2,) = scg.grad(ops.relu(xt2), [xt2], grad_outputs=g.T)
        np.testing.assert_array_equal(got2.data, np.where(x.T > 0, g.T, 0))


def test_relu_second_derivative_is_the_mask_applied_again():
    x = scg.Tensor(np.array([-1.0, 0.5, 2.0], F32), requires_grad=True)
    (g,) = scg.grad((ops.relu(x) * x).sum(), [x], create_graph=True)  # d/dx x relu(x) = 2x [x > 0]
    np.testing.assert_array_equal(g.data, [0.0, 1.0, 4.0])
    (h,) = scg.grad(g.sum(), [x])
    np.testing.assert_array_equal(h.data, [0.0, 2.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_boolean_observation_is_an_outcome_in_0_1(dtype):
    x = np.array([True, False, True, False])
    l = np.array([2.0, -1.0, -3.0, 30.0], dtype)
    got = ops.bernoulli_log_prob(scg.Tensor(x), scg.Tensor(l)).data
    ref = np.where(x, -np.logaddexp(0, -l.astype(np.float64)), -np.logaddexp(0, l.astype(np.float64)))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=4 * np.finfo(dtype).eps)
