"""Memory-bound and transcendental elementwise work split over worker threads.

numpy releases the GIL inside its ufunc loops, but runs each loop on one core. For
the few passes that dominate a training step once the matrix products are done
(the optimiser's update, softplus and sigmoid over a batch of pixel logits) the work
is cut into independent pieces and run on ``threads()`` workers, the calling thread
being one of them. The pieces are disjoint, and each runs the same numpy calls it
would run alone, so the result is exactly the single-threaded one. Small arrays stay
on one thread (a hand-off costs ~10-20 us).
"""

import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

MIN_SIZE = 1 << 16  # elements below which one thread is faster
_CORES = min(2, os.cpu_count() or 1)  # read once: os.cpu_count() costs tens of microseconds
_pool = None
_blas_busy_until = 0.0  # perf_counter() time until which BLAS's idle threads may still spin


def threads():
    """Workers to use: ``SCG_NUM_THREADS``, else ``OMP_NUM_THREADS`` (a user who limits BLAS
    to one thread wants no other threads either), else up to 2 (this project's machines
    have 2 cores; more only adds memory traffic to a memory-bound pass), but 1 shortly after
    a matrix product (see :func:`blas_ran`)."""
    for var in ("SCG_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    if _blas_busy_until and time.perf_counter() < _blas_busy_until:
        return 1
    return _CORES


def _atoi(s):
    """C's atoi, as OpenBLAS reads its variables: leading blanks, a sign, ASCII digits; else 0."""
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", s or "")
    return int(m.group(1)) if m else 0


def _spin_seconds():
    """How long OpenBLAS's idle threads spin after a product: 2^OPENBLAS_THREAD_TIMEOUT cycles
    (a value <= 0 means its default, 28, ~0.1 s; clamped to 4..30), counted at 2 GHz to be safe;
    0 when BLAS runs on one thread (OPENBLAS_NUM_THREADS, else GOTO_NUM_THREADS, else
    OMP_NUM_THREADS: the first above 0), which has no idle threads."""
    counts = [_atoi(os.environ.get(v)) for v in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")]
    if next((n for n in counts if n > 0), 0) == 1:
        return 0.0
    t = _atoi(os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
    return 2.0 ** (28 if t <= 0 else min(max(t, 4), 30)) / 2e9


_SPIN = _spin_seconds()  # OpenBLAS reads the variables once, when it loads (with numpy, before scg): so do we


def blas_ran():
    """Note that a matrix product just ran (scg.ops.matmul calls this for products of at least
    2^18 multiply-adds, where OpenBLAS starts using its threads). BLAS's idle threads then
    spin on the other core for a while (OpenBLAS: ~0.1 s by default), and a pass split onto
    that core waits for the spinner: measured in the VAE step at batch 512 (401,408 pixel
    logits, right after the decoder's product), the Bernoulli log-likelihood took 610-645 us on
    two threads and 440-465 us on one, Adam 730-780 us and 560-590 us. So until then,
    ``threads()`` is 1. Results do not depend on it: every split gives the same bits."""
    global _blas_busy_until
    if _SPIN:
        _blas_busy_until = time.perf_counter() + _SPIN


_inside = threading.local()  # .on: this thread is running a task of run()


def run(tasks):
    """Call every function in ``tasks`` (no arguments), the first on this thread and the rest
    on the pool, and return when all are done (re-raising the first error). Called from inside
    a task, it runs them in turn on this thread: a task waiting for the pool's only worker,
    which waits for the pool, would never return."""
    global _pool
    if len(tasks) == 1 or getattr(_inside, "on", False):
        for t in tasks:
            t()
        return
    if _pool is None or _pool._max_workers < len(tasks) - 1:
        _pool = ThreadPoolExecutor(len(tasks) - 1, thread_name_prefix="scg")
    futures = [_pool.submit(_marked, t) for t in tasks[1:]]
    try:
        _marked(tasks[0])
    finally:
        for f in futures:
            f.result()


def _marked(task):
    _inside.on = True
    try:
        task()
    finally:
        _inside.on = False


def rows(f, x, out, *more, min_size=MIN_SIZE):
    """``f(x[a:b], *[m[a:b] for m in more], out[a:b])`` for row ranges that cover ``x`` (which
    ``f`` must treat elementwise; ``more`` are further inputs of x's shape), on ``threads()``
    workers when ``x`` has ``min_size`` elements or more; returns ``out``."""
    n = threads() if x.size >= min_size else 1
    if n < 2 or x.ndim == 0 or x.shape[0] < n:
        f(x, *more, out)
        return out
    cuts = [x.shape[0] * k // n for k in range(n + 1)]
    run([lambda a=a, b=b: f(x[a:b], *[m[a:b] for m in more], out[a:b])
         for a, b in zip(cuts[:-1], cuts[1:])])
    return out
