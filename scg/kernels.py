"""Fused C loops for the hot elementwise passes (softplus, sigmoid, the Bernoulli log-likelihood
from logits and its derivative, relu's backward pass, Adam) and for the validation checks on
large arrays (has_nan, all_finite, all_binary), with numpy as fallback.

numpy runs a composite such as softplus ``max(x, 0) + log1p(exp(-|x|))`` as five or six passes
over memory, and Adam's update as ten; on the VAE step these passes cost more than PyTorch's
whole step beyond its matrix products (issue 21). ``_kernels.c`` does each in one pass.

It is compiled on first use with the machine's C compiler (``$CC``, else ``cc``), for this CPU
(``-march=native``), into a cache directory (``$SCG_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/scg``,
else ``~/.cache/scg``), under a name that hashes the source, the flags, the compiler and the CPU,
so a changed file or machine builds afresh. Writes are atomic (parallel test workers may build
at once). Without a compiler, with a failed build, or with ``SCG_KERNELS=numpy``, every caller
runs its numpy passes instead: the same results within float rounding (Adam: to the bit),
only slower. ``status()`` says which is in use and why (``python -c "import scg.kernels as k;
print(k.status())"`` builds and prints it).

Each loop's wrapper returns True when it did the work, False when the caller must (a dtype or
layout the loops do not take): callers keep one numpy implementation beside one kernel call. The
checks answer themselves (numpy when the loops cannot), and are recorded by a traced step.
"""

import ctypes
import functools
import hashlib
import itertools
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading

import numpy as np
from scipy.special import expit

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_kernels.c")
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-fopenmp-simd",
         "-shared", "-fPIC"]
LIBS = ["-lmvec", "-lm"]

_lib = None
_state = None  # None: not tried yet; else the status line
_loading = threading.Lock()  # the optimizer's worker threads may ask at once


def _cpu_id():
    """What -march=native depends on: the CPU's feature flags (Linux), else the platform."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _cache_dir():
    d = os.environ.get("SCG_KERNEL_CACHE")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "scg")
    return d


def _private_dir(d):
    """Make ``d`` (mode 0700) if need be; True if this user owns it and nobody else may write
    to it. For the shared temporary directory: another user who made the directory first could
    otherwise put a library there for this process to load."""
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.stat(d)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _build(rebuild=False):
    """Compile (or find in the cache) the shared library; return (path, None) or (None, why).
    ``rebuild``: compile even if the cache holds a file of that name (it failed to load)."""
    cc = os.environ.get("CC") or "cc"
    try:
        cc_args = shlex.split(cc)  # CC="ccache gcc" or "gcc -m64", as make reads it
    except ValueError as e:
        return None, f"cannot read CC={cc!r}: {e}"
    cc_path = shutil.which(cc_args[0]) if cc_args else None
    if cc_path is None:
        return None, f"no C compiler ({cc!r} not found; install gcc, or set CC)"
    try:
        with open(SOURCE, "rb") as f:
            source = f.read()
    except OSError as e:
        return None, f"cannot read {SOURCE}: {e.strerror}"
    real = os.path.realpath(cc_path)
    key = hashlib.sha256(b"\0".join([source, " ".join(cc_args[1:] + FLAGS + LIBS).encode(), real.encode(),
                                     str(os.stat(real).st_mtime_ns).encode(), _cpu_id().encode(),
                                     platform.libc_ver()[1].encode()])).hexdigest()[:16]
    shared_tmp = os.path.join(tempfile.gettempdir(), f"scg-kernels-{os.getuid()}")
    for d in (_cache_dir(), shared_tmp):
        if d == shared_tmp and not _private_dir(d):
            continue
        path = os.path.join(d, f"kernels-{key}.so")
        if os.path.exists(path) and not rebuild:
            return path, None
        try:
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", prefix=".kernels-", dir=d)
            os.close(fd)
        except OSError:
            continue  # not writable: try the next place
        try:
            r = subprocess.run([cc_path, *cc_args[1:], *FLAGS, SOURCE, "-o", tmp, *LIBS], capture_output=True,
                               text=True, timeout=300)
            if r.returncode != 0:
                first = (r.stderr.strip().splitlines() or ["no message"])[0]
                return None, f"compiling {os.path.basename(SOURCE)} failed (exit status {r.returncode}): {first}"
            os.chmod(tmp, 0o755)  # mkstemp made it 0600: others sharing the cache could not load it
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())  # on disk before it gets its name: a torn library crashes dlopen
            os.replace(tmp, path)  # atomic: a neighbour building at once sees all or nothing
            return path, None
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"compiling {os.path.basename(SOURCE)} failed: {e}"
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return None, f"no writable cache directory ({_cache_dir()} or {shared_tmp})"


_SIGNATURES = {  # name -> argument types after the pointers and the length
    "softplus_f32": 2, "sigmoid_f32": 2, "bernoulli_log_prob_f32": 3, "bernoulli_score_f32": 3,
    "bernoulli_nll_f32": 3, "bernoulli_score_times_f32": 4, "bernoulli_score_scaled_f32": 4, "relu_grad_f32": 3,
    "relu_f32": 2, "bias_relu_f32": 3, "adam_f32": 4, "adam_f64": 4,
    **{f"{t}_{d}": 1 for t in ("any_nan", "any_nonfinite", "any_nonbinary") for d in ("f32", "f64")},
}


def _open(path):
    """Load the library and declare its functions; return (lib, None) or (None, why)."""
    try:
        lib = ctypes.CDLL(path)
        P, N = ctypes.c_void_p, ctypes.c_size_t
        for name, pointers in _SIGNATURES.items():
            f = getattr(lib, name)  # AttributeError: a library of another version
            f.argtypes = [P] * pointers + [N] * (2 if name == "bias_relu_f32" else 1)  # (rows, cols)
            if name.startswith("adam"):
                f.argtypes += [ctypes.c_float if name.endswith("32") else ctypes.c_double] * 7
            f.restype = ctypes.c_int if name.startswith("any_") or name == "bias_relu_f32" else None
    except (OSError, AttributeError) as e:
        return None, f"cannot load {path}: {e}"
    return lib, None


def _load():
    global _lib, _state
    if os.environ.get("SCG_KERNELS", "").lower() in ("numpy", "0", "off", "no"):
        _state = "numpy (SCG_KERNELS=numpy)"
        return
    path, why = _build()
    lib = None
    if path is not None:
        lib, why = _open(path)
        if lib is None:  # a cached file that does not load (damaged, or made by another build): once more
            path, why2 = _build(rebuild=True)
            if path is not None:
                lib, why = _open(path)
            else:
                why = f"{why}; rebuilding: {why2}"
    if lib is None:
        _state = f"numpy ({why})"
        return
    problem = _self_check(lib)
    if problem:
        _state = f"numpy (the compiled loops disagree with numpy: {problem})"
        return
    _lib = lib
    _state = f"compiled ({path})"  # last: lib() returns without the lock once this is set


def _self_check(k):
    """A broken compiler or vector math library must not give wrong numbers: compare every loop
    with numpy on values spanning the ranges that matter, before any caller uses them."""
    # 37 values: two full blocks of the vector loops and a padded tail (the blocks are 16)
    x = np.resize(np.array([-1e4, -88.0, -20.0, -1.5, -1e-8, 0.0, 1e-8, 0.3, 2.0, 20.0, 88.0, 1e4, -3.7],
                           np.float32), 37)
    y = (np.arange(x.size) % 2).astype(np.float32)  # every value with x = 0 and x = 1
    x64 = x.astype(np.float64)
    softplus = np.logaddexp(0.0, x64)
    sigmoid = expit(x64)
    log_p = np.where(y == 1, -np.logaddexp(0.0, -x64), -np.logaddexp(0.0, x64))
    out = np.empty_like(x)
    for name, args, ref, scale in [("softplus_f32", (x,), softplus, softplus),
                                   ("sigmoid_f32", (x,), sigmoid, sigmoid),
                                   # relative to log p itself: the likely outcome must keep its digits
                                   ("bernoulli_log_prob_f32", (y, x), log_p, np.abs(log_p)),
                                   ("bernoulli_score_f32", (y, x), y - sigmoid, np.maximum(y, sigmoid))]:
        getattr(k, name)(*[_ptr(a) for a in args], _ptr(out), x.size)
        if not np.all(np.abs(out - ref) <= 1e-6 * scale):  # a few ulps
            return f"{name[:-4]} gives {out} for {ref}"
    g = np.resize(np.array([-2.5, 0.0, 1e-3, 3.0], np.float32), x.size)
    for name, gs in (("bernoulli_score_times_f32", g), ("bernoulli_score_scaled_f32", g[3:4])):
        getattr(k, name)(_ptr(y), _ptr(x), _ptr(gs), _ptr(out), x.size)
        ref = np.broadcast_to(gs, x.shape) * (y - sigmoid)
        tol = 1e-6 * np.abs(np.broadcast_to(gs, x.shape)) * np.maximum(y, sigmoid) + np.finfo(np.float32).tiny
        if not np.all(np.abs(out - ref) <= tol):  # (tiny: a product rounded to a subnormal)
            return f"{name[:-4]} gives {out} for {ref}"
    k.relu_grad_f32(_ptr(y), _ptr(x), _ptr(out), x.size)
    if not np.array_equal(out, np.where(x > 0, y, 0)):
        return f"relu_grad gives {out}"
    k.bernoulli_log_prob_f32(_ptr(y), _ptr(x), _ptr(out), x.size)
    nll = np.empty_like(x)
    k.bernoulli_nll_f32(_ptr(y), _ptr(x), _ptr(nll), x.size)
    if not np.array_equal(nll.view(np.uint32), np.negative(out).view(np.uint32)):  # to the bit, zeros' signs too
        return f"bernoulli_nll gives {nll} where -bernoulli_log_prob gives {-out}"
    # relu to the bit, signs of zeros and NaN payloads included (compared as integers)
    r = np.concatenate([x, np.array([-0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45], np.float32)])
    r[-3] = np.frombuffer(np.uint32(0x7FC00123).tobytes(), np.float32)[0]  # a NaN with a payload
    rout = np.empty_like(r)
    k.relu_f32(_ptr(r), _ptr(rout), r.size)
    if not np.array_equal(rout.view(np.uint32), np.maximum(r, 0).view(np.uint32)):
        return f"relu gives {rout}"
    rows = x[:35].reshape(5, 7).copy()  # bias_relu: each row plus the bias, then relu; finite sums
    bias = np.array([-0.0, 0.0, 1e-45, -3.0, 20.0, -1e-8, 5e3], np.float32)
    rout = np.empty_like(rows)
    if k.bias_relu_f32(_ptr(rows), _ptr(bias), _ptr(rout), 5, 7) or not np.array_equal(
            rout.view(np.uint32), np.maximum(rows + bias, 0).view(np.uint32)):
        return f"bias_relu gives {rout}"
    for odd in (np.inf, -np.inf, np.nan, 3e38):  # a sum that is not finite (3e38 + 3e38 overflows) is reported
        bias[3] = odd
        rows[4, 3] = odd
        if not k.bias_relu_f32(_ptr(rows), _ptr(bias), _ptr(rout), 5, 7):
            return f"bias_relu does not report the sum {odd} + {odd}"
    for T, d in ((np.float32, "f32"), (np.float64, "f64")):
        for test, numpy_test in _TESTS.items():
            for fill, odd in itertools.product((0, 1), (0, 1, 0.5, 2, np.inf, -np.inf, np.nan, -0.0, 1e-40, 3e38)):
                for i in range(37):  # one odd element in every place: the blocks and the tail
                    a = np.full(37, fill, T)
                    a[i] = odd
                    if bool(getattr(k, f"{test}_{d}")(_ptr(a), a.size)) != numpy_test(a):
                        return f"{test}_{d} gives the wrong answer for {a}"
    for T, name in ((np.float32, "adam_f32"), (np.float64, "adam_f64")):
        p, g = x.astype(T), (x * 0.1 - 3).astype(T)
        m, v = g * T(0.5), g * g
        mine = [p.copy(), m.copy(), v.copy()]
        getattr(k, name)(*[_ptr(a) for a in (mine[0], g, mine[1], mine[2])], x.size,
                         *[T(c) for c in (0.9, 1 - 0.9, 0.999, 1 - 0.999, 1e-3, 1e-8, 1e-2)])
        g = g + T(1e-2) * p  # numpy's passes, as scg.optim.Adam runs them
        m = m * T(0.9) + g * T(1 - 0.9)
        v = v * T(0.999) + (g * g) * T(1 - 0.999)
        p = p - (m / (np.sqrt(v) + T(1e-8))) * T(1e-3)
        if not all(np.array_equal(a, b) for a, b in zip(mine, (p, m, v))):
            return f"{name} rounds otherwise than numpy"
    return None


def lib():
    """The loaded library, or None when numpy does the work (built on the first call)."""
    if _state is None:
        with _loading:
            if _state is None:
                _load()
    return _lib


def status():
    """'compiled (<path>)' or 'numpy (<why>)'."""
    lib()
    return _state


def _ptr(a):
    return a.__array_interface__["data"][0]


def _fits(dtype, *arrays):
    """numpy arrays, all of ``dtype``, C-contiguous and aligned (the C loops read them as arrays of
    their type), of one size; the first may be read-only, the rest are written."""
    n = getattr(arrays[0], "size", None)
    return all(isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.flags.aligned and a.size == n
               for a in arrays) and all(a.flags.writeable for a in arrays[1:])


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def _float32_loop(name, out, *inputs):
    """Run the float32 loop ``name`` of ``_kernels.c`` over ``inputs`` into ``out`` when all are
    float32, C-contiguous and of one size; True if it ran, False if the caller must."""
    k = lib()
    if k is None or not all(_fits(_F32, a, out) for a in inputs):
        return False
    getattr(k, name)(*[_ptr(a) for a in inputs], _ptr(out), out.size)
    return True


def softplus(x, out):
    """``out[...] = log(1 + exp(x))``."""
    return _float32_loop("softplus_f32", out, x)


def sigmoid(x, out):
    """``out[...] = 1 / (1 + exp(-x))``."""
    return _float32_loop("sigmoid_f32", out, x)


def bernoulli_log_prob(x, logits, out):
    """``out[...] = x logits - softplus(logits)`` (see ``scg.ops._bernoulli_log_prob``)."""
    return _float32_loop("bernoulli_log_prob_f32", out, x, logits)


def bernoulli_score(x, logits, out):
    """``out[...] = x - sigmoid(logits)``, d/dlogits of the above."""
    return _float32_loop("bernoulli_score_f32", out, x, logits)


def bernoulli_score_times(g, x, logits, out):
    """``out[...] = g (x - sigmoid(logits))``, where ``g`` has the size of ``x`` or is one float32
    number spread over it (strides all 0, as ``np.broadcast_to`` makes)."""
    k = lib()
    if k is None or not (_fits(_F32, x, out) and _fits(_F32, logits, out)) or g.dtype != _F32:
        return False
    if g.size == out.size and not any(g.strides) and g.size:
        k.bernoulli_score_scaled_f32(_ptr(x), _ptr(logits), _ptr(g), _ptr(out), out.size)
        return True
    if not _fits(_F32, g, out):
        return False
    k.bernoulli_score_times_f32(_ptr(x), _ptr(logits), _ptr(g), _ptr(out), out.size)
    return True


def relu_grad(g, x, out):
    """``out[...] = g where x > 0 else 0``."""
    return _float32_loop("relu_grad_f32", out, g, x)


def relu(x, out):
    """``out[...] = np.maximum(x, 0)``, to the bit."""
    return _float32_loop("relu_f32", out, x)


def bias_relu(x, b, out):
    """``out[...] = np.maximum(x + b, 0)``, to the bit, for ``x`` of shape (rows, cols) and ``b`` of
    shape (cols,). False also when a sum is not finite: the caller redoes it with numpy, whose
    add warns or raises as ``np.errstate`` says (the loop sets no flag numpy reads) and gives a
    NaN the bits numpy gives it."""
    k = lib()
    if k is None or x.ndim != 2 or b.shape != x.shape[1:] or not (_fits(_F32, x, out) and _fits(_F32, b)):
        return False
    return not k.bias_relu_f32(_ptr(x), _ptr(b), _ptr(out), x.shape[0], x.shape[1])


def bernoulli_nll(x, logits, out):
    """``out[...] = -(x logits - softplus(logits))``, the negation of ``bernoulli_log_prob``'s loop."""
    return _float32_loop("bernoulli_nll_f32", out, x, logits)


def adam(p, g, m, v, b1, b2, step, eps_hat, wd):
    """Adam's update of ``p, m, v`` in place from ``g`` (see ``_kernels.c``), float32 or float64,
    rounding as numpy's passes in ``scg.optim.Adam`` do (the coefficients are cast to the array's
    dtype the way numpy casts a Python float); True if done here."""
    k = lib()
    if k is None:
        return False
    if _fits(_F32, g, p, m, v):
        f, T = k.adam_f32, np.float32
    elif _fits(_F64, g, p, m, v):
        f, T = k.adam_f64, np.float64
    else:
        return False
    f(_ptr(p), _ptr(g), _ptr(m), _ptr(v), p.size, T(b1), T(1 - b1), T(b2), T(1 - b2), T(step),
      T(eps_hat), T(wd))
    return True


# ---- whole-array tests, for validation checks ----------------------------------------------------

_TESTS = {  # loop name -> the same test in numpy, for the fallback and the self-check
    "any_nan": lambda a: a.dtype.kind in "fc" and bool(np.isnan(a).any()),
    "any_nonfinite": lambda a: a.dtype.kind in "fc" and not bool(np.isfinite(a).all()),
    "any_nonbinary": lambda a: not bool(((a == 0) | (a == 1)).all()),
}


def _test(loop, a):
    """Whether some element of ``a`` fails the test ``loop`` (a Python bool).

    On a value of a traced step being recorded (``scg.trace``'s ``TracedArray``), the test is
    recorded as one guard through the value's ``_escape``, as ``bool()`` on it would be: a replay
    runs it again and, when the answer changed, runs the call eagerly (where the check raises).
    Called on a plain array, the loop is invisible to a recording, which is why this is the one
    way in."""
    escape = getattr(a, "_escape", None)
    if escape is not None:
        # one function per test (two recordings compare them); "bool (...)": a branch reads it
        return escape(_ON_PLAIN[loop], f"bool ({loop})")
    a = a if isinstance(a, np.ndarray) else np.asarray(a)
    k = lib()
    if k is not None and a.size and a.dtype in (_F32, _F64) and a.flags.c_contiguous and a.flags.aligned:
        return bool(getattr(k, f"{loop}_{'f32' if a.dtype == _F32 else 'f64'}")(_ptr(a), a.size))
    return _TESTS[loop](a)


_ON_PLAIN = {loop: functools.partial(_test, loop) for loop in _TESTS}


def has_nan(a):
    """Whether the array ``a`` holds a NaN (never for integer or boolean arrays); one read pass."""
    return _test("any_nan", a)


def all_finite(a):
    """Whether every element of ``a`` is finite (no NaN, no infinity); one read pass."""
    return not _test("any_nonfinite", a)


def all_binary(a):
    """Whether every element of ``a`` is 0 or 1 (a NaN is neither); one read pass."""
    return not _test("any_nonbinary", a)
