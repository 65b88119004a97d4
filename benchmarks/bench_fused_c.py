"""How much fused loops would save over numpy's passes on the VAE step's elementwise work
(issue 21): softplus, the Bernoulli log-likelihood from logits with its gradient, and Adam,
each written once as one C loop (``fused_kernels.c``, compiled here with ``gcc -O3
-march=native -ffast-math`` so that glibc's vector expf/log1pf are used), timed beside the
numpy passes scg runs today, in one process, rounds interleaved. A measurement for a design
decision, not part of the library: needs gcc and glibc >= 2.35 (libmvec's log1pf).

Usage: python benchmarks/bench_fused_c.py [--batch 512] [--rounds 5] [--seconds 0.5]
"""

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import scg  # noqa: E402
from scg import ops  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    if shutil.which("gcc") is None:
        sys.exit("gcc not found: this measurement compiles fused_kernels.c")
    so = os.path.join(tempfile.mkdtemp(), "fused.so")
    subprocess.run(["gcc", "-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-shared", "-fPIC",
                    os.path.join(HERE, "fused_kernels.c"), "-o", so, "-lmvec", "-lm"], check=True)
    return ctypes.CDLL(so)


def timeit(f, seconds):
    f()
    t, k = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        f()
        k += 1
    return (time.perf_counter() - t) / k


def ulps(value, ref):
    return np.max(np.abs(value.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()
    lib = build()
    F = ctypes.POINTER(ctypes.c_float)

    def p(a):
        return a.ctypes.data_as(F)

    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, 784)) < 0.5).astype(np.float32)
    logits = (rng.standard_normal((args.batch, 784)) * 4).astype(np.float32)
    out, grad = np.empty_like(logits), np.empty_like(logits)
    n = ctypes.c_size_t(logits.size)

    def numpy_bce():  # the step's passes: x l - softplus(l); for the backward sigmoid(l) - x
        ops._softplus.into(logits, out)
        np.multiply(x, logits, out=grad)
        np.subtract(grad, out, out=out)
        ops._sigmoid.into(logits, grad)
        np.subtract(grad, x, out=grad)

    sizes = [784 * 400, 400, 400 * 40, 40, 20 * 400, 400, 400 * 784, 784]  # the VAE's parameters
    flat = rng.standard_normal(sum(sizes)).astype(np.float32)
    g = rng.standard_normal(flat.size).astype(np.float32)
    m, v = np.zeros_like(flat), np.zeros_like(flat)
    params = [scg.nn.Parameter(a.copy()) for a in np.split(flat, np.cumsum(sizes)[:-1])]
    for q, gq in zip(params, np.split(g, np.cumsum(sizes)[:-1])):
        q.grad = scg.tensor(gq)
    adam = scg.optim.Adam(params, lr=1e-3)
    f32 = ctypes.c_float
    pairs = {
        "softplus": (lambda: lib.softplus(p(logits), p(out), n), lambda: ops._softplus.into(logits, out)),
        "Bernoulli log-lik + grad": (lambda: lib.bce(p(x), p(logits), p(out), p(grad), n), numpy_bce),
        "Adam (652,000 parameters)": (
            lambda: lib.adam(p(flat), p(g), p(m), p(v), ctypes.c_size_t(flat.size), f32(0.9), f32(0.999),
                             f32(1e-3), f32(1e-8)), adam.step),
    }
    print(f"batch {args.batch}; {args.rounds} rounds of >= {args.seconds} s each, interleaved; median [min-max] ms")
    print(f"scg's elementwise passes run on {scg.parallel.threads()} threads; the C loops on one")
    for name, (c, py) in pairs.items():
        tc, tp = [], []
        for _ in range(args.rounds):
            tc.append(timeit(c, args.seconds) * 1e3)
            tp.append(timeit(py, args.seconds) * 1e3)
        print(f"{name:26s} C {np.median(tc):6.3f} [{min(tc):.3f}-{max(tc):.3f}]   numpy {np.median(tp):6.3f} "
              f"[{min(tp):.3f}-{max(tp):.3f}]   numpy / C {np.median(tp) / np.median(tc):.2f}")
    ref = np.logaddexp(0, logits.astype(np.float64))
    lib.softplus(p(logits), p(out), n)
    c_err = ulps(out, ref)
    print(f"softplus error against float64: C {c_err:.2f} ulps, numpy path {ulps(ops._softplus(logits), ref):.2f} ulps")


if __name__ == "__main__":
    main()
