"""The validation checks in one read pass (scg.kernels.has_nan / all_finite / all_binary, their C
loops and numpy fallback, recorded as one guard in a traced step), Bernoulli.log_prob without its
support mask when every value is 0 or 1, ops.negative keeping a broadcast a broadcast, and the
fused primitive ops.bernoulli_score_times (the backward pass of bernoulli_log_prob in the logits).

Every expected value is computed here independently of the code under test: element by element
in Python, or from the formulas in float64 / longdouble. Most kernel tests run twice: on the
compiled loops ("compiled") and on the numpy fallback forced in-process ("numpy"); the fallback
chosen by SCG_KERNELS=numpy is also checked in a fresh subprocess.
"""

import cmath
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import kernels, ops
from scg.autodiff import primitive

F32 = np.float32
LD = np.longdouble
EPS32 = float(np.finfo(F32).eps)
SUB32 = float(np.finfo(F32).smallest_subnormal)  # 1.4e-45
SUB64 = float(np.finfo(np.float64).smallest_subnormal)


def _force_numpy(monkeypatch):
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_state", "numpy (forced by a test)")


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """Run the test on the compiled loops, then on the numpy fallback."""
    if request.param == "compiled":
        # gcc is installed here: the compiled loops must be what the normal run uses
        assert kernels.status().startswith("compiled"), kernels.status()
        assert kernels.lib() is not None
    else:
        _force_numpy(monkeypatch)
    return request.param


def test_the_compiled_loops_are_in_use():
    assert kernels.status().startswith("compiled"), kernels.status()
    for name in ("any_nan_f32", "any_nan_f64", "any_nonfinite_f32", "any_nonfinite_f64",
                 "any_nonbinary_f32", "any_nonbinary_f64", "bernoulli_score_times_f32",
                 "bernoulli_score_scaled_f32"):
        assert hasattr(kernels.lib(), name)


# ---- 1. has_nan / all_finite / all_binary ---------------------------------------------------


def _elements(a):
    return [complex(v) if isinstance(v, complex) else v for v in np.asarray(a).ravel().tolist()]


def _truth(a):
    """(has_nan, all_finite, all_binary) of ``a``, element by element in Python."""
    els = _elements(a)
    kind = np.asarray(a).dtype.kind
    if kind == "c":
        nan = any(cmath.isnan(v) for v in els)
        finite = all(cmath.isfinite(v) for v in els)
    elif kind == "f":
        nan = any(v != v for v in els)
        finite = all(math.isfinite(v) for v in els)
    else:  # int, uint, bool: no NaN, no infinity
        nan, finite = False, True
    binary = all(v == 0 or v == 1 for v in els)
    return nan, finite, binary


def _answers(a):
    got = (kernels.has_nan(a), kernels.all_finite(a), kernels.all_binary(a))
    assert all(type(v) is bool for v in got), got  # Python bools, not numpy ones
    return got


ODD = [np.nan, np.inf, -np.inf, 0.5, 2.0, -1.0, -0.0, 0.0, 1.0, 1e-30, 3e38]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [37, 50])
def test_one_odd_element_at_every_position(dtype, n, path):
    sub = SUB32 if dtype == np.float32 else SUB64
    for fill in (0.0, 1.0, 0.25):
        for odd in ODD + [sub, -sub]:
            for i in range(n):
                a = np.full(n, fill, dtype)
                a[i] = odd
                assert _answers(a) == _truth(a), (fill, odd, i)


def test_one_odd_element_in_a_long_array_at_the_edges_of_blocks(path):
    for dtype in (np.float32, np.float64):
        n = 4133
        for i in (0, 1, 15, 16, 17, 31, 32, 63, 64, 1023, 1024, 4095, 4096, 4131, 4132):
            for odd in (np.nan, np.inf, -np.inf, 0.5):
                a = np.zeros(n, dtype)
                a[i] = odd
                assert _answers(a) == _truth(a), (dtype, i, odd)
        a = np.ones(n, dtype)
        a[::2] = 0
        assert _answers(a) == (False, True, True)


def test_the_compiled_path_answers_without_numpys_test(monkeypatch):
    """On contiguous float32/float64 arrays the C loops answer (numpy's test is never asked);
    on the layouts and dtypes the loops do not take, numpy's test answers."""
    assert kernels.status().startswith("compiled")
    asked = []
    for loop, fn in list(kernels._TESTS.items()):
        def spy(a, fn=fn, loop=loop):
            asked.append(loop)
            return fn(a)
        monkeypatch.setitem(kernels._TESTS, loop, spy)
    for dtype in (np.float32, np.float64):
        for a in (np.array([0.0, np.nan, 1.0], dtype), np.array(np.inf, dtype), np.zeros((3, 4), dtype)):
            assert _answers(a) == _truth(a)
    assert asked == []
    for a in (np.array([0.0, np.nan], np.float16), np.array([0, 2]), np.zeros((3, 4), F32).T,
              np.zeros(6, F32)[::2], np.zeros(0, F32)):
        assert _answers(a) == _truth(a)
    assert len(asked) == 3 * 5


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.complex64, np.complex128])
def test_other_float_dtypes(dtype, path):
    for odd in (np.nan, np.inf, -np.inf, 0.5, 2.0, -0.0, 1.0):
        for i in range(9):
            a = np.zeros(9, dtype)
            a[i] = odd
            assert _answers(a) == _truth(a), (odd, i)
    if np.dtype(dtype).kind == "c":
        for odd in (complex(0, np.nan), complex(0, np.inf), complex(1, 1e-30), complex(np.nan, 0)):
            a = np.ones(5, dtype)
            a[3] = odd
            assert _answers(a) == _truth(a), odd


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_])
def test_integer_and_boolean_arrays(dtype, path):
    info_max = 1 if dtype is np.bool_ else np.iinfo(dtype).max
    for values in ([0, 1, 1, 0], [0, 0], [1], [0, 2], [info_max, 0], [1, 1, 1]):
        a = np.array(values).astype(dtype)
        got = _answers(a)
        assert got == _truth(a), values
        assert got[:2] == (False, True)
    if dtype is not np.bool_ and np.dtype(dtype).kind == "i":
        a = np.array([0, -1, 1], dtype)
        assert _answers(a) == (False, True, False)


def test_zero_d_scalars_and_empty_arrays(path):
    for v in (np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 0.5, 2.0, SUB32):
        for a in (np.array(v, F32), np.array(v, np.float64), np.float32(v), np.float64(v), v, [1.0, v, 0.0]):
            assert _answers(a) == _truth(a), (v, type(a))
    assert _answers(np.array(True)) == (False, True, True)
    assert _answers(np.array(7)) == (False, True, False)
    for shape in ((0,), (3, 0), (0, 0, 2)):
        for dtype in (np.float32, np.float64, np.float16, np.int32, np.bool_):
            assert _answers(np.zeros(shape, dtype)) == (False, True, True), (shape, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_arrays(dtype, path):
    rng = np.random.default_rng(0)
    for odd in (np.nan, np.inf, -np.inf, 0.5, 2.0):
        for i, j in ((0, 0), (2, 5), (6, 10), (3, 7)):
            base = (rng.random((7, 11)) < 0.5).astype(dtype)
            base[i, j] = odd
            views = [base.T, base[::2], base[:, ::3], base[::-1, ::-1], base[1:, 2:9],
                     np.asfortranarray(base), base.T[::2, 1:], base.reshape(-1)[::5]]
            for v in views:
                assert _answers(v) == _truth(v), (odd, i, j, v.strides)
        # a strided view that skips the odd element, over an array that holds it
        a = np.zeros(20, dtype)
        a[1] = odd
        assert _answers(a[::2]) == (False, True, True)
        assert _answers(a[1::2]) == _truth(a[1::2]) != (False, True, True)
    for v in (np.nan, np.inf, 0.5, 0.0, 1.0):
        b = np.broadcast_to(np.array(v, dtype), (4, 6))
        assert _answers(b) == _truth(b), v
        row = np.zeros((1, 9), dtype)
        row[0, 4] = v
        b = np.broadcast_to(row, (5, 9))
        assert _answers(b) == _truth(b), v
    be = np.array([0.0, 1.0, np.nan], dtype).astype(np.dtype(dtype).newbyteorder(">"))
    assert _answers(be) == (True, False, False)
    assert _answers(be[:2]) == (False, True, True)


def test_float32_values_around_the_limits(path):
    big = np.finfo(F32).max
    for v, expect in ((big, (False, True, False)), (-big, (False, True, False)),
                      (np.float32(np.inf), (False, False, False))):
        a = np.zeros(19, F32)
        a[17] = v
        assert _answers(a) == expect
    # NaNs with other payloads and the sign bit set are NaNs
    raw = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF], np.uint32)
    for bits in raw:
        a = np.ones(21, F32)
        a[20] = np.array(bits, np.uint32).view(F32)
        assert _answers(a) == (True, False, False), hex(int(bits))


_SUBPROCESS_SWEEP = r"""
import cmath, json, math, sys
import numpy as np
import scg.kernels as k
bad = []
for dtype in (np.float32, np.float64):
    for n in (37, 50):
        for fill in (0.0, 1.0):
            for odd in (np.nan, np.inf, -np.inf, 0.5, 2.0, -0.0, 1.0, 1e-40 if dtype == np.float32 else 1e-310):
                for i in range(n):
                    a = np.full(n, fill, dtype)
                    a[i] = odd
                    els = a.tolist()
                    truth = (any(v != v for v in els), all(math.isfinite(v) for v in els),
                             all(v == 0 or v == 1 for v in els))
                    got = (k.has_nan(a), k.all_finite(a), k.all_binary(a))
                    if got != truth:
                        bad.append([str(dtype), n, fill, repr(odd), i])
# unaligned (a float32 view one byte into a buffer) and byte-swapped arrays
for dtype in (np.float32, np.float64):
    size = np.dtype(dtype).itemsize
    for offset in (1, 2, 3):
        buf = bytearray(size * 41 + offset)
        a = np.frombuffer(buf, dtype, count=41, offset=offset)
        a = np.ndarray(a.shape, a.dtype, buffer=buf, offset=offset)
        for i in (0, 17, 40):
            a[:] = 1.0
            a[i] = np.nan
            if (k.has_nan(a), k.all_finite(a), k.all_binary(a)) != (True, False, False):
                bad.append(["unaligned", str(dtype), offset, i])
        a[:] = 0.0
        if (k.has_nan(a), k.all_finite(a), k.all_binary(a)) != (False, True, True):
            bad.append(["unaligned zeros", str(dtype), offset])
print(json.dumps({"status": k.status(), "bad": bad[:5], "nbad": len(bad)}))
"""


@pytest.mark.parametrize("env", ["numpy", ""], ids=["SCG_KERNELS=numpy", "default"])
def test_every_position_in_a_fresh_process(env):
    """The sweep (and unaligned arrays, which the loops take as they are contiguous) in a fresh
    process: with SCG_KERNELS=numpy (numpy's tests) and by default (the loops)."""
    e = {key: v for key, v in os.environ.items() if key != "SCG_KERNELS"}
    if env:
        e["SCG_KERNELS"] = env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    e["PYTHONPATH"] = root + os.pathsep + e.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _SUBPROCESS_SWEEP], env=e, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["status"].startswith("numpy (SCG_KERNELS=numpy)" if env else "compiled"), got["status"]
    assert got["nbad"] == 0, got


# ---- the callers of the checks ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("zero_first", [False, True])
def test_where_with_one_branch_zero_on_large_arrays(dtype, zero_first, path):
    """ops.where(cond, a, 0) on 1024+ elements multiplies by the mask when a is all finite (an
    all_finite check): an inf or NaN where the mask drops it must still give 0, not NaN."""
    rng = np.random.default_rng(1)
    for shape in ((2000,), (40, 50)):
        for odd in (None, np.inf, -np.inf, np.nan):
            a = rng.standard_normal(shape).astype(dtype)
            cond = rng.random(shape) < 0.5
            if odd is not None:
                a.flat[7], cond.flat[7] = odd, zero_first  # dropped
                a.flat[1500], cond.flat[1500] = odd, not zero_first  # kept
            keep = cond if not zero_first else ~cond
            expect = np.array([v if k else 0.0 for v, k in zip(a.ravel().tolist(), keep.ravel().tolist())],
                              dtype).reshape(shape)
            out = (ops.where(cond, 0.0, scg.Tensor(a)) if zero_first else ops.where(cond, scg.Tensor(a), 0.0))
            assert out.dtype == dtype and out.shape == shape
            np.testing.assert_array_equal(out.data, expect)


def _logsumexp_ref(row):
    row = np.asarray(row, LD)
    if np.isnan(row).any():
        return np.nan
    if np.isposinf(row).any():
        return np.inf
    if np.isneginf(row).all():
        return -np.inf
    m = row[np.isfinite(row)].max()
    return m + np.log(np.sum(np.exp(row - m)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_with_rows_that_are_not_all_finite(dtype, path):
    rows = [[0.0, 1.0, 2.0], [np.inf, 1.0, 2.0], [-np.inf] * 3, [np.nan, 1.0, 2.0], [-np.inf, 3.0, 1e4],
            [-1e4, -1e4 - 1, -np.inf], [5.0, -np.inf, 5.0], [88.0, 89.0, 90.0]]
    x = np.array(rows, dtype)
    out = ops.logsumexp(scg.Tensor(x), axis=1)
    ref = np.array([_logsumexp_ref(r) for r in rows], LD)
    assert out.dtype == dtype and out.shape == (len(rows),)
    np.testing.assert_array_equal(np.isnan(out.data), np.isnan(ref))
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(out.data[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)].astype(dtype))
    tol = 4 * float(np.finfo(dtype).eps) * np.abs(ref[finite]).astype(np.float64)
    assert np.all(np.abs(out.data[finite].astype(LD) - ref[finite]) <= tol)
    # the gradient of a row of only -inf is 0 (no NaN), of the others softmax
    xt = scg.tensor(np.array([[-np.inf] * 3, [0.0, 1.0, -np.inf]], dtype), requires_grad=True)
    (g,) = scg.grad(ops.logsumexp(xt, axis=1).sum(), [xt])
    e = np.exp(np.array([0.0, 1.0], LD))
    np.testing.assert_allclose(g.data, np.array([[0, 0, 0], [e[0] / e.sum(), e[1] / e.sum(), 0]], np.float64),
                               rtol=4 * float(np.finfo(dtype).eps))


def test_parameters_and_values_with_a_nan_are_refused_by_name(path):
    for dtype in (np.float32, np.float64, np.float16):
        with pytest.raises(ValueError, match="parameter 'loc' contains NaN"):
            D.Normal(np.array([0.0, np.nan, 1.0], dtype), 1.0)
        with pytest.raises(ValueError, match="parameter 'logits' contains NaN"):
            D.Bernoulli(logits=np.broadcast_to(np.array(np.nan, dtype), (3, 4)))
        with pytest.raises(ValueError, match="value contains NaN"):
            D.Normal(np.zeros(3, dtype), 1.0).log_prob(np.array([0.0, 1.0, np.nan], dtype)[::-1])
        # inf is not NaN: infinite logits are taken (log_prob takes another form for them)
        lp = D.Bernoulli(logits=np.array([np.inf, -np.inf, 0.0], dtype)).log_prob(np.array([1.0, 1.0, 0.0], dtype))
        np.testing.assert_array_equal(lp.data, np.array([0.0, -np.inf, np.log(0.5)], dtype))
    assert D.Normal(np.arange(3), 1.0).batch_shape == (3,)  # integers: no NaN to find
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match="observe 'y': the observed value contains NaN"):
            g.observe("y", D.Normal(np.zeros(4), 1.0, validate_args=False), np.array([0.0, 1.0, 2.0, np.nan]))
        with pytest.raises(ValueError, match="outside the support"):
            g.observe("z", D.Normal(np.zeros(4), 1.0, validate_args=False), np.array([0.0, 1.0, 2.0, np.inf]))
        g.observe("w", D.Normal(np.zeros(4), 1.0), np.array([0, 1, 2, 3]))  # integer data: fine


# ---- 2. traced steps: the checks are guards ---------------------------------------------------


def _assert_same(a, b):
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, scg.Tensor):
        assert isinstance(b, scg.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a.data, b.data)
        assert np.array_equal(np.signbit(a.data), np.signbit(b.data))
    else:
        np.testing.assert_array_equal(a, b)


def _bernoulli_graph_step(validate=None, seed=0):
    """A step observing Bernoulli data through a Graph (decoder logits z @ w + b, float32), Adam."""
    rng = np.random.default_rng(seed)
    w = scg.tensor((rng.standard_normal((4, 6)) * 0.5).astype(F32), requires_grad=True)
    b = scg.tensor(np.zeros(6, F32), requires_grad=True)
    opt = scg.optim.Adam([w, b], lr=0.05)

    def step(z, x):
        g = scg.Graph()
        with g:
            logits = scg.tensor(z) @ w + b
            g.observe("x", D.Bernoulli(logits=logits, validate_args=validate), x)
        loss = g.surrogate().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, w.grad, b.grad

    return step, [w, b]


def _binary_data(i, shape=(5, 6)):
    r = np.random.default_rng(100 + i)
    return r.standard_normal((shape[0], 4)).astype(F32), (r.random(shape) < 0.5).astype(F32)


def _copies(params):
    return [p.data.copy() for p in params]


def test_a_traced_bernoulli_step_replays_bit_for_bit():
    es, ep = _bernoulli_graph_step()
    ts, tp = _bernoulli_graph_step()
    traced = scg.trace(ts)
    for i in range(7):
        _assert_same(es(*_binary_data(i)), traced(*_binary_data(i)))
        _assert_same(ep, tp)
    assert traced.stats == {"eager": 2, "replayed": 5}
    # the loss is -sum log p(x | logits), by brute force in float64 from the parameters before the step
    z, x = _binary_data(7)
    w, b = (p.data.astype(np.float64) for p in tp)
    l = z.astype(np.float64) @ w + b
    expect = -np.sum(np.where(x == 1, -np.logaddexp(0, -l), -np.logaddexp(0, l)))
    loss = traced(z, x)[0]
    assert abs(float(loss.data) - expect) <= 1e-5 * abs(expect)
    assert traced.stats["replayed"] == 6


def _refused_as_eagerly(eager, traced, traced_params, args, text):
    """The traced step raises the eager step's ValueError (which names ``text``) on ``args``, and
    its optimizer takes no step."""
    before = _copies(traced_params)
    with pytest.raises(ValueError) as eager_error:
        eager(*args)
    with pytest.raises(ValueError) as traced_error:
        traced(*args)
    assert str(traced_error.value) == str(eager_error.value)
    assert text in str(traced_error.value)
    _assert_same(before, _copies(traced_params))  # no optimizer step


@pytest.mark.parametrize("validate", [None, False], ids=["validated", "validate_args=False"])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64], ids=["float32 data", "float64 data"])
def test_nan_data_on_a_later_call_raises_the_eager_error_and_takes_no_step(validate, data_dtype):
    es, ep = _bernoulli_graph_step(validate)
    ts, tp = _bernoulli_graph_step(validate)
    traced = scg.trace(ts)

    def data(i):
        z, x = _binary_data(i)
        return z, x.astype(data_dtype)  # float64 data: converted to the distribution's float32

    for i in range(4):
        _assert_same(es(*data(i)), traced(*data(i)))
    assert traced.stats["replayed"] == 2
    for position in ((0, 0), (2, 3), (4, 5)):
        z, x = data(10)
        x[position] = np.nan
        _refused_as_eagerly(es, traced, tp, (z, x), "NaN")
        _assert_same(_copies(ep), _copies(tp))
    # and it goes on as before
    for i in range(4, 8):
        _assert_same(es(*data(i)), traced(*data(i)))
        _assert_same(ep, tp)
    assert traced.stats["replayed"] >= 5


@pytest.mark.parametrize("validate", [None, False], ids=["validated", "validate_args=False"])
def test_non_binary_observed_data_raises_the_eager_error_in_a_replay(validate):
    es, ep = _bernoulli_graph_step(validate)
    ts, tp = _bernoulli_graph_step(validate)
    traced = scg.trace(ts)
    for i in range(4):
        _assert_same(es(*_binary_data(i)), traced(*_binary_data(i)))
    for odd in (0.5, 2.0, -1.0):
        z, x = _binary_data(11)
        x[3, 2] = odd
        _refused_as_eagerly(es, traced, tp, (z, x), "outside the support")
    _assert_same(es(*_binary_data(20)), traced(*_binary_data(20)))
    _assert_same(ep, tp)


def _bernoulli_direct_step(seed=0, rows=32):
    """No graph: Bernoulli(validate_args=False).log_prob on data that may hold values other
    than 0 and 1; the impossible ones (-inf) are masked out of the loss. 32 x 40 values: over
    the size at which ops.where multiplies by the mask (after an all_finite check)."""
    rng = np.random.default_rng(seed)
    w = scg.tensor((rng.standard_normal((4, 40)) * 0.5).astype(F32), requires_grad=True)
    b = scg.tensor(np.zeros(40, F32), requires_grad=True)
    opt = scg.optim.Adam([w, b], lr=0.05)

    def step(z, x):
        logits = scg.tensor(z) @ w + b
        lp = D.Bernoulli(logits=logits, validate_args=False).log_prob(x)
        loss = -ops.where(lp > -np.inf, lp, 0.0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, lp, w.grad, b.grad

    return step, [w, b]


def _mixed_data(i, odd_count):
    r = np.random.default_rng(200 + i)
    z = r.standard_normal((32, 4)).astype(F32)
    x = (r.random((32, 40)) < 0.5).astype(F32)
    idx = r.choice(x.size, odd_count, replace=False)
    x.flat[idx] = r.choice(np.array([0.5, 2.0, -1.0, 0.25, 3.0], F32), odd_count)
    return z, x


def test_non_binary_data_with_validation_off_equals_eager_on_that_call_and_the_next():
    es, ep = _bernoulli_direct_step()
    ts, tp = _bernoulli_direct_step()
    traced = scg.trace(ts)
    plan = [0, 0, 0, 0, 3, 3, 5, 1, 0, 0, 7, 7, 0]  # odd values per call
    for i, odd_count in enumerate(plan):
        z, x = _mixed_data(i, odd_count)
        e, t = es(z, x), traced(z, x)
        _assert_same(e, t)
        _assert_same(ep, tp)
        lp = t[1].data
        assert np.array_equal(np.isneginf(lp), (x != 0) & (x != 1)), i  # -inf exactly there
        assert np.isfinite(t[0].data) and np.all(np.isfinite(t[2].data))
    assert traced.stats["replayed"] >= 4


# ---- 3. Bernoulli.log_prob without validation, values mixing {0, 1} and others ---------------


def _log_sigmoid_ld(l):
    l = np.asarray(l, dtype=LD)
    return -np.log1p(np.exp(-np.abs(l))) + np.minimum(l, 0)  # log sigmoid(l), longdouble


def _sigmoid_ld(l):
    l = np.asarray(l, dtype=LD)
    return 1 / (1 + np.exp(-l))


MIXED = np.array([0.0, 1.0, 0.5, 2.0, -1.0, -0.0, 1.0, 0.0, 1e-30, 0.999, 1.0001, 3.0, 0.0, 1.0,
                  -1e-30, 7.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("given", ["logits", "probs"])
def test_log_prob_without_validation_is_minus_inf_exactly_outside(dtype, given, path):
    rng = np.random.default_rng(3)
    n = MIXED.size * 4
    x = np.resize(MIXED, n).astype(dtype)
    l = rng.uniform(-9, 9, n).astype(dtype)
    inside = (x == 0) | (x == 1)
    if given == "logits":
        l[:4] = [30.0, -30.0, 0.0, -0.0]
        lp = D.Bernoulli(logits=l, validate_args=False).log_prob(x)
        ref = np.where(x == 1, _log_sigmoid_ld(l), _log_sigmoid_ld(-l.astype(LD)))
        scale = np.maximum(np.abs(ref), np.abs(l.astype(LD)))  # (x - [l > 0]) l - log1p(e^-|l|)
    else:
        p = _sigmoid_ld(l).astype(dtype)  # in (0, 1): every value 0 or 1 is possible
        p[:4] = [1e-6, 1 - 2 ** -20, 0.5, 0.25]
        lp = D.Bernoulli(probs=p, validate_args=False).log_prob(x)
        p_ld = p.astype(LD)
        ref = np.where(x == 1, np.log(p_ld), np.log1p(-p_ld))
        scale = np.abs(ref)  # relative to log p itself
    assert lp.dtype == dtype and lp.shape == (n,)
    assert np.array_equal(np.isneginf(lp.data), ~inside)
    err = np.abs(lp.data[inside].astype(LD) - ref[inside])
    tol = (1e-14 if dtype == np.float64 else 4 * EPS32) * scale[inside]
    assert np.all(err <= tol + 1e-300), (err / scale[inside]).max()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_prob_of_all_binary_values_is_the_log_likelihood(dtype, path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, (30, 7)).astype(dtype)
    x[0, 0] = -0.0  # a zero with its sign bit: binary
    l = rng.uniform(-12, 12, (30, 7)).astype(dtype)
    lp = D.Bernoulli(logits=l, validate_args=False).log_prob(x)
    ref = np.where(x == 1, _log_sigmoid_ld(l), _log_sigmoid_ld(-l.astype(LD)))
    assert np.all(np.isfinite(lp.data))
    tol = (1e-14 if dtype == np.float64 else 4 * EPS32) * np.maximum(np.abs(ref), np.abs(l.astype(LD)))
    assert np.all(np.abs(lp.data.astype(LD) - ref) <= tol)
    lp_v = D.Bernoulli(logits=l).log_prob(x)  # validation on: the same numbers
    _assert_same(lp, lp_v)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_gradient_in_the_logits_is_the_score_inside_and_zero_outside(dtype, weighted, path):
    rng = np.random.default_rng(5)
    n = MIXED.size * 3
    x = np.resize(MIXED, n).astype(dtype)
    l_np = rng.uniform(-8, 8, n).astype(dtype)
    l = scg.tensor(l_np, requires_grad=True)
    lp = D.Bernoulli(logits=l, validate_args=False).log_prob(x)
    w = rng.uniform(-2, 2, n).astype(dtype) if weighted else np.ones(n, dtype)
    if weighted:
        (gl,) = scg.grad(lp, [l], grad_outputs=scg.tensor(w))
    else:
        (gl,) = scg.grad(lp.sum(), [l])
    assert gl.dtype == dtype and gl.shape == (n,)
    inside = (x == 0) | (x == 1)
    ref = np.where(inside, w.astype(LD) * (x.astype(LD) - _sigmoid_ld(l_np)), 0)
    tol = (1e-15 if dtype == np.float64 else 4 * EPS32) * np.abs(w) + 1e-300
    assert np.all(np.abs(gl.data.astype(LD) - ref) <= tol)
    assert np.all(gl.data[~inside] == 0)
    # the same through the negated sum (the seed is a broadcast of one number, negated)
    lp2 = D.Bernoulli(logits=l, validate_args=False).log_prob(x)
    (gneg,) = scg.grad((-lp2).sum(), [l])
    ref = np.where(inside, -(x.astype(LD) - _sigmoid_ld(l_np)), 0)
    assert np.all(np.abs(gneg.data.astype(LD) - ref) <= (1e-15 if dtype == np.float64 else 4 * EPS32))
    assert np.all(gneg.data[~inside] == 0)


def test_the_gradient_at_a_nan_or_infinite_value_outside_the_support_is_zero():
    l = scg.tensor(np.array([0.3, -2.0, 5.0, 1.0]), requires_grad=True)
    lp = D.Bernoulli(logits=l, validate_args=False).log_prob(np.array([0.0, np.nan, np.inf, -np.inf]))
    assert np.array_equal(np.isneginf(lp.data), [False, True, True, True])
    with np.errstate(invalid="ignore"):
        (gl,) = scg.grad(lp.sum(), [l])
    np.testing.assert_array_equal(gl.data[1:], 0.0)
    np.testing.assert_allclose(gl.data[0], 0.0 - 1 / (1 + np.exp(-0.3)), rtol=1e-12)  # x = 0: -sigmoid(l)


@pytest.mark.parametrize("odd", [0.5, 2.0, -1.0, 1e-30, 3.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_under_validation_a_non_binary_value_raises_naming_it(odd, dtype, path):
    x = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype)
    x[4] = odd
    d = D.Bernoulli(logits=np.linspace(-2, 2, 6).astype(dtype))
    with pytest.raises(ValueError, match="outside the support") as e:
        d.log_prob(x)
    assert repr(dtype(odd).item()) in str(e.value) or str(dtype(odd)) in str(e.value), str(e.value)
    # the first value outside is the one named
    x[1] = 9.0
    with pytest.raises(ValueError, match="9.0"):
        d.log_prob(x)
    x[:] = [0.0, 1.0, -0.0, 0.0, 1.0, 1.0]
    assert np.all(np.isfinite(d.log_prob(x).data))
    with pytest.raises(ValueError, match="NaN"):
        d.log_prob(np.array([0.0, np.nan, 1.0, 0.0, 1.0, 1.0], dtype))


# ---- 4. negative ------------------------------------------------------------------------------


_old_negative = primitive("negative", np.negative, lambda g, ans, x: -g)  # the previous definition


def _broadcasts():
    return [
        np.broadcast_to(np.float32(2.5), (3, 4)),
        np.broadcast_to(np.float32(-0.0), (7,)),
        np.broadcast_to(np.float32(0.0), (2, 2)),
        np.broadcast_to(np.float32(np.inf), (5,)),
        np.broadcast_to(np.float32(np.nan), (2, 3, 4)),
        np.broadcast_to(np.float32(1.5), (1,)),
        np.broadcast_to(np.float32(3.0), (0, 3)),
        np.broadcast_to(np.float64(-7.25), (4, 1, 2)),
        np.broadcast_to(np.float16(0.1), (6,)),
        np.broadcast_to(np.int32(5), (3,)),
        np.broadcast_to(np.int8(-128), (4,)),
        np.broadcast_to(np.float32(1.0), (3, 4))[::2],  # a slice of a broadcast is a broadcast
        np.broadcast_to(np.arange(3, dtype=F32), (4, 3)),  # partly broadcast (strides 0, 4)
        np.broadcast_to(np.arange(4, dtype=F32)[:, None], (4, 5)),  # (4, 0)
    ]


@pytest.mark.parametrize("i", range(len(_broadcasts())))
def test_negative_of_a_broadcast_is_right(i):
    x = _broadcasts()[i]
    keep = x.copy()
    out = ops.negative(scg.Tensor(x))
    prev = _old_negative(scg.Tensor(x))
    assert out.shape == x.shape and out.dtype == x.dtype == prev.dtype
    assert type(out.data) is type(prev.data) is np.ndarray
    flat = x.reshape(-1).tolist()
    if x.dtype.kind == "f":
        expect = np.array([-v for v in flat], dtype=x.dtype).reshape(x.shape)
        assert np.array_equal(np.signbit(out.data), np.signbit(expect))
        np.testing.assert_array_equal(out.data, expect)
    else:
        info = np.iinfo(x.dtype)
        span = info.max - info.min + 1
        expect = np.array([((-v - info.min) % span) + info.min for v in flat], dtype=x.dtype).reshape(x.shape)
        np.testing.assert_array_equal(out.data, expect)
    np.testing.assert_array_equal(out.data, prev.data)
    np.testing.assert_array_equal(x, keep)  # the input untouched
    # later use in arithmetic
    if x.dtype.kind == "f" and x.size:
        r = np.arange(x.size, dtype=x.dtype).reshape(x.shape)
        with np.errstate(invalid="ignore"):
            s = (out + scg.Tensor(r)) * 2
            np.testing.assert_array_equal(s.data, (expect + r) * 2)
            np.testing.assert_array_equal(ops.negative(out).data, keep)
        assert s.data.flags.writeable


def test_negative_of_zero_d_values_is_what_np_negative_gave():
    for v in (np.float32(3.5), np.array(3.5, F32), np.array(-0.0, np.float64), np.float64(np.inf),
              np.array(2, np.int64), np.array(1.0, np.float16)):
        out, prev = ops.negative(scg.Tensor(v)), _old_negative(scg.Tensor(v))
        assert out.shape == prev.shape == ()
        assert out.dtype == prev.dtype
        assert type(out.data) is type(prev.data)
        assert out.data.tobytes() == prev.data.tobytes()
        assert float(out.data) == -float(v)


def test_negative_of_ordinary_arrays_is_a_fresh_writable_array():
    x = np.arange(6, dtype=F32).reshape(2, 3)
    for v in (x, x.T, x[:, ::2], x[::-1]):
        out = ops.negative(scg.Tensor(v))
        np.testing.assert_array_equal(out.data, np.array([[-e for e in row] for row in v.tolist()], F32))
        assert out.data.flags.writeable and out.dtype == F32


def _leaf(shape=(2, 3), dtype=F32):
    return scg.tensor(np.arange(np.prod(shape), dtype=dtype).reshape(shape) - 2, requires_grad=True)


@pytest.mark.parametrize("dtype", [F32, np.float64])
def test_gradients_through_negative(dtype):
    cases = [
        (lambda x: -(x.sum()), lambda x: np.full(x.shape, -1.0)),
        (lambda x: (-x).sum(), lambda x: np.full(x.shape, -1.0)),
        (lambda x: (-(x * 2)).sum(), lambda x: np.full(x.shape, -2.0)),
        (lambda x: (-x).sum() + (x * 3).sum(), lambda x: np.full(x.shape, 2.0)),  # two paths add
        (lambda x: ((-x) * (-x)).sum(), lambda x: 2 * x),
        (lambda x: (-(-x)).mean(), lambda x: np.full(x.shape, 1 / x.size)),
        (lambda x: (-x.sum(0)).sum(), lambda x: np.full(x.shape, -1.0)),
        (lambda x: (-x).sum() * 3 - (-x).sum(), lambda x: np.full(x.shape, -2.0)),
    ]
    for f, expect in cases:
        x = _leaf(dtype=dtype)
        (g,) = scg.grad(f(x), [x])
        assert g.shape == x.shape and g.dtype == dtype
        want = expect(x.data.astype(np.float64)).astype(dtype)  # exact here, but 1/6 rounded to dtype
        np.testing.assert_array_equal(g.data, want)
        # into .grad, twice (accumulated): a writable array of its own each time
        f(x).backward()
        f(x).backward()
        np.testing.assert_array_equal(x.grad.data, 2 * want)
        assert x.grad.data.flags.writeable and x.grad.data.base is None
        x.grad.data *= 0.5  # a user's in-place change of .grad
        np.testing.assert_array_equal(x.grad.data, want)


def test_second_order_gradients_through_negative():
    x = _leaf(dtype=np.float64)
    (g,) = scg.grad((-(x * x)).sum(), [x], create_graph=True)  # -2x
    np.testing.assert_array_equal(g.data, -2 * x.data)
    (h,) = scg.grad((-g).sum(), [x])  # d/dx sum(2x) = 2
    np.testing.assert_array_equal(h.data, np.full(x.shape, 2.0))
    x = _leaf(dtype=np.float64)
    s, s2, n = x.data.sum(), (x.data ** 2).sum(), x.data.size
    (g,) = scg.grad((-x).sum() * (x * x).sum(), [x], create_graph=True)  # -s2 - 2 x_j s
    np.testing.assert_allclose(g.data, -s2 - 2 * x.data * s, rtol=1e-15)
    (h,) = scg.grad(g.sum(), [x])  # d/dx_j (-n s2 - 2 s^2) = -2 n x_j - 4 s
    np.testing.assert_allclose(h.data, -2 * n * x.data - 4 * s, rtol=1e-15)


def _negation_step(seed=0):
    rng = np.random.default_rng(seed)
    w = scg.tensor(rng.standard_normal((3, 5)).astype(F32), requires_grad=True)
    opt = scg.optim.Adam([w], lr=0.01)

    def step(x):
        y = scg.tensor(x) * w
        loss = -(y.sum()) + (-(w * 2)).sum() * 0.25 + ((-w) * (-w)).sum() + (-ops.tanh(y)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, w.grad

    return step, [w]


def test_a_traced_step_with_negations_equals_eager_bit_for_bit():
    es, ep = _negation_step()
    ts, tp = _negation_step()
    traced = scg.trace(ts)
    for i in range(7):
        x = np.random.default_rng(i).standard_normal((3, 5)).astype(F32)
        _assert_same(es(x), traced(x))
        _assert_same(ep, tp)
    assert traced.stats["replayed"] == 5


# ---- 5. bernoulli_score_times -------------------------------------------------------------------


def _score_times_ref(g, x, l):
    """g (x - sigmoid(l)) in longdouble, and the scale of its rounding, |g| max(|x|, sigmoid(l))."""
    g, x = np.asarray(g, LD), np.asarray(x, LD)
    s = _sigmoid_ld(l)
    return g * (x - s), np.abs(g) * np.maximum(np.abs(x), s)


L_EDGES = np.array([-1e4, -88.0, -30.0, -17.0, -1.5, -1e-30, -0.0, 0.0, 1e-30, 0.3, 1.0, 17.0, 30.0,
                    88.0, 1e4, -5.0, 5.0])


def _inputs(shape, dtype, seed, binary=True):
    rng = np.random.default_rng(seed)
    l = rng.uniform(-10, 10, shape).astype(dtype)
    l.reshape(-1)[: min(l.size, L_EDGES.size)] = L_EDGES[: min(l.size, L_EDGES.size)]
    x = (rng.random(shape) < 0.5).astype(dtype) if binary else rng.uniform(-2, 3, shape).astype(dtype)
    g = rng.uniform(-3, 3, shape).astype(dtype)
    g.reshape(-1)[:3] = [0.0, 1e-3, -2.5][: g.size]
    return g, x, l


def _check_close(out, g, x, l, ulps):
    ref, scale = _score_times_ref(g, x, l)
    eps = float(np.finfo(out.dtype).eps)
    tiny = float(np.finfo(out.dtype).tiny)
    err = np.abs(out.astype(LD) - ref)
    bad = err > ulps * eps * scale + tiny
    assert not bad.any(), (out[bad][:5], ref[bad][:5])


SIZES = [(1,), (15,), (16,), (17,), (37,), (3, 7), (65, 67), (4113,), (400, 784), ()]


@pytest.mark.parametrize("shape", SIZES, ids=str)
def test_score_times_values_with_g_an_array_or_one_number_spread(shape, path):
    g, x, l = _inputs(shape, F32, 1)
    out = ops.bernoulli_score_times(scg.Tensor(g), scg.Tensor(x), scg.Tensor(l))
    assert out.dtype == F32 and out.shape == shape
    _check_close(out.data, g, x, l, 4)
    for c in (F32(-0.25), F32(3.0), F32(1e-3), F32(0.0), F32(-1.0)):
        gb = np.broadcast_to(c, shape)
        out = ops.bernoulli_score_times(scg.Tensor(gb), scg.Tensor(x), scg.Tensor(l))
        assert out.dtype == F32 and out.shape == shape
        _check_close(out.data, gb, x, l, 4)
    # x not in {0, 1}: the same formula
    g, x, l = _inputs(shape, F32, 2, binary=False)
    _check_close(ops.bernoulli_score_times(scg.Tensor(g), scg.Tensor(x), scg.Tensor(l)).data, g, x, l, 4)


def test_score_times_float64_and_mixed_dtypes(path):
    for shape in ((37,), (6, 9)):
        g, x, l = _inputs(shape, np.float64, 3)
        out = ops.bernoulli_score_times(scg.Tensor(g), scg.Tensor(x), scg.Tensor(l))
        assert out.dtype == np.float64
        _check_close(out.data, g, x, l, 4)
        gb = np.broadcast_to(np.float64(-0.75), shape)
        _check_close(ops.bernoulli_score_times(scg.Tensor(gb), scg.Tensor(x), scg.Tensor(l)).data, gb, x, l, 4)
        # float64 g with float32 x, l: promoted, as numpy would
        out = ops.bernoulli_score_times(scg.Tensor(g), scg.Tensor(x.astype(F32)), scg.Tensor(l.astype(F32)))
        assert out.dtype == np.float64
        _check_close(out.data, g, x.astype(F32), l.astype(F32), 4 * EPS32 / np.finfo(np.float64).eps)


@pytest.mark.parametrize("gs, xs, ls", [((1, 9), (5, 9), (5, 9)), ((5, 1), (5, 9), (5, 9)), ((9,), (5, 9), (5, 9)),
                                        ((5, 9), (1, 9), (5, 9)), ((5, 9), (5, 9), (9,)), ((), (5, 9), (5, 9)),
                                        ((4, 1, 9), (5, 9), (1, 9))], ids=str)
def test_score_times_broadcasting(gs, xs, ls, path):
    for dtype in (F32, np.float64):
        g = _inputs(gs, dtype, 4)[0]
        x = _inputs(xs, dtype, 5)[1]
        l = _inputs(ls, dtype, 6)[2]
        out = ops.bernoulli_score_times(scg.Tensor(g), scg.Tensor(x), scg.Tensor(l))
        assert out.shape == np.broadcast_shapes(gs, xs, ls) and out.dtype == dtype
        G, X, L = np.broadcast_arrays(g, x, l)
        _check_close(out.data, G, X, L, 4)


def test_score_times_non_contiguous_inputs(path):
    g, x, l = _inputs((12, 10), F32, 7)
    for sl in ((slice(None, None, 2), slice(None)), (slice(None), slice(None, None, 3)),
               (slice(None, None, -1), slice(1, None))):
        for a, b, c in ((g[sl], x[sl], l[sl]), (g[sl].copy(), x[sl], l[sl].copy()),
                        (g[sl].copy(), x[sl].copy(), l[sl])):
            out = ops.bernoulli_score_times(scg.Tensor(a), scg.Tensor(b), scg.Tensor(c))
            _check_close(out.data, a, b, c, 4)
    a, b, c = g.T, x.T, l.T
    _check_close(ops.bernoulli_score_times(scg.Tensor(a), scg.Tensor(b), scg.Tensor(c)).data, a, b, c, 4)
    a = np.asfortranarray(g)
    _check_close(ops.bernoulli_score_times(scg.Tensor(a), scg.Tensor(x), scg.Tensor(l)).data, a, x, l, 4)
    # one number spread, read from inside a larger array (the pointer is not the array's start)
    row = np.random.default_rng(70).uniform(-2, 2, 10).astype(F32)
    spread = np.broadcast_to(row[None, :], (12, 10))[:, 4]
    assert spread.strides == (0,) and spread.shape == x[:, 0].shape
    xc, lc = np.ascontiguousarray(x[:, 0]), np.ascontiguousarray(l[:, 0])
    out = ops.bernoulli_score_times(scg.Tensor(spread), scg.Tensor(xc), scg.Tensor(lc))
    _check_close(out.data, np.full(12, row[4], F32), xc, lc, 4)
    # a row broadcast to the full shape (strides 0 and 4): not one number
    row = np.broadcast_to(g[:1], g.shape)
    _check_close(ops.bernoulli_score_times(scg.Tensor(row), scg.Tensor(x), scg.Tensor(l)).data, row, x, l, 4)


# (400, 784): over the size at which a fused loop is split over two threads (scg.parallel)
@pytest.mark.parametrize("shape", [(17,), (37,), (65, 67), (400, 784)], ids=str)
def test_score_times_is_the_product_of_the_score_and_g_to_the_bit(shape, path):
    g, x, l = _inputs(shape, F32, 8)
    for gg in (g, np.broadcast_to(F32(-1.0), shape), np.broadcast_to(F32(0.37), shape)):
        fused = ops.bernoulli_score_times(scg.Tensor(gg), scg.Tensor(x), scg.Tensor(l))
        apart = scg.Tensor(gg) * ops.bernoulli_score(scg.Tensor(x), scg.Tensor(l))
        assert fused.data.tobytes() == apart.data.tobytes()


def test_score_times_calls_the_fused_loop_on_float32(monkeypatch):
    assert kernels.status().startswith("compiled")
    calls = []
    real = kernels.bernoulli_score_times

    def spy(g, x, l, out):
        done = real(g, x, l, out)
        calls.append((done, not any(g.strides)))
        return done

    monkeypatch.setattr(kernels, "bernoulli_score_times", spy)
    g, x, l = _inputs((40,), F32, 9)
    ops.bernoulli_score_times(scg.Tensor(g), scg.Tensor(x), scg.Tensor(l))
    ops.bernoulli_score_times(scg.Tensor(np.broadcast_to(F32(2), (40,))), scg.Tensor(x), scg.Tensor(l))
    assert calls == [(True, False), (True, True)]
    # the backward pass of bernoulli_log_prob in l goes through it, the sum's seed as one number
    calls.clear()
    lt = scg.tensor(l, requires_grad=True)
    (gl,) = scg.grad(ops.bernoulli_log_prob(scg.Tensor(x), lt).sum(), [lt])
    (gn,) = scg.grad((-ops.bernoulli_log_prob(scg.Tensor(x), lt)).sum(), [lt])
    assert calls == [(True, True), (True, True)]
    ref = x.astype(LD) - _sigmoid_ld(l)
    assert np.all(np.abs(gl.data - ref) <= 4 * EPS32 * np.maximum(x, _sigmoid_ld(l)))
    assert np.all(np.abs(gn.data + ref) <= 4 * EPS32 * np.maximum(x, _sigmoid_ld(l)))


def test_score_times_gradcheck_float64_to_second_order():
    rng = np.random.default_rng(10)
    g, x, l = rng.uniform(-2, 2, (3, 4)), rng.uniform(-1, 2, (3, 4)), rng.uniform(-5, 5, (3, 4))
    assert scg.gradcheck(ops.bernoulli_score_times, [g, x, l], order=2)
    assert scg.gradcheck(ops.bernoulli_score_times, [g[:1], x, l[:, :1]], order=2)  # broadcast
    assert scg.gradcheck(ops.bernoulli_score_times, [g, x[0], l], order=2)


def test_score_times_vjps_by_hand():
    rng = np.random.default_rng(11)
    g, x, l = rng.uniform(-2, 2, (4, 5)), rng.uniform(-1, 2, (4, 5)), rng.uniform(-5, 5, (4, 5))
    ts = [scg.tensor(a, requires_grad=True) for a in (g, x, l)]
    w = rng.uniform(-1, 1, (4, 5))
    dg, dx, dl = scg.grad(ops.bernoulli_score_times(*ts), ts, grad_outputs=scg.tensor(w))
    s = _sigmoid_ld(l)
    np.testing.assert_allclose(dg.data, (w * (x - s)).astype(np.float64), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dx.data, w * g, rtol=1e-15)
    np.testing.assert_allclose(dl.data, (-w * g * s * (1 - s)).astype(np.float64), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("dtype", [F32, np.float64])
def test_score_times_into_a_buffer_gives_the_same_bits(dtype, path):
    for shape in ((37,), (65, 67), (4113,)):
        g, x, l = _inputs(shape, dtype, 12)
        for gg, xx, ll in ((g, x, l), (np.broadcast_to(dtype(-0.25), shape), x, l),
                           (g[..., :1] if len(shape) > 1 else g[:1], x, l),  # broadcasting g
                           (g, x[:1], l)):
            want = ops._bernoulli_score_times(gg, xx, ll)
            buf = np.full(np.broadcast_shapes(gg.shape, xx.shape, ll.shape), np.nan, dtype)
            keep = buf
            ops._bernoulli_score_times.into(gg, xx, ll, out=buf)
            assert keep is buf and buf.dtype == want.dtype
            assert buf.tobytes() == np.ascontiguousarray(want).tobytes()


@pytest.mark.parametrize("dtype", [F32, np.float64])
def test_second_derivative_of_the_log_likelihood_in_the_logits(dtype, path):
    rng = np.random.default_rng(13)
    l_np = np.concatenate([rng.uniform(-10, 10, 40), L_EDGES[1:-1]]).astype(dtype)
    x_np = rng.integers(0, 2, l_np.size).astype(dtype)
    s = _sigmoid_ld(l_np)
    slope = s * (1 - s)
    atol = 1e-15 if dtype == np.float64 else 4 * EPS32  # a few ulps of s (1 - s is exact for s >= 1/2)
    for weights in (None, rng.uniform(-2, 2, l_np.size).astype(dtype)):
        x = scg.tensor(x_np, requires_grad=True)
        l = scg.tensor(l_np, requires_grad=True)
        lp = ops.bernoulli_log_prob(x, l)
        if weights is None:
            (gl,) = scg.grad(lp.sum(), [l], create_graph=True)
            w = np.ones_like(l_np)
        else:
            wt = scg.tensor(weights, requires_grad=True)
            (gl,) = scg.grad((lp * wt).sum(), [l], create_graph=True)
            w = weights
        gll, glx = scg.grad(gl.sum(), [l, x])
        assert gll.dtype == dtype and glx.dtype == dtype
        assert np.all(np.abs(gll.data.astype(LD) - (-w.astype(LD) * slope)) <= atol * np.maximum(np.abs(w), 1) + 1e-300)
        np.testing.assert_array_equal(glx.data, w)  # d2/dl dx = w
        if weights is not None:
            lp = ops.bernoulli_log_prob(x, l)
            (gl,) = scg.grad((lp * wt).sum(), [l], create_graph=True)
            (glw,) = scg.grad(gl.sum(), [wt])  # d2/dl dw = x - sigmoid(l)
            ref = x_np.astype(LD) - s
            assert np.all(np.abs(glw.data.astype(LD) - ref) <= 4 * float(np.finfo(dtype).eps))
        # and through the negated sum (a broadcast seed, negated)
        lp = ops.bernoulli_log_prob(x, l)
        (gl,) = scg.grad((-lp).sum(), [l], create_graph=True)
        (gll,) = scg.grad(gl.sum(), [l])
        assert np.all(np.abs(gll.data.astype(LD) - slope) <= atol + 1e-300)
