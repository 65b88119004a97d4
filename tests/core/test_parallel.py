"""scg/parallel.py: work split over threads must give exactly the one-thread result,
cover every row once, and report a worker's error."""

import threading

import numpy as np
import pytest

import scg
from scg import parallel


@pytest.mark.parametrize("shape", [(300, 784), (70_000,), (3, 40_000), (1, 100_000)])
@pytest.mark.parametrize("fn", [scg.softplus, scg.sigmoid])
def test_threaded_elementwise_is_bit_for_bit_the_single_thread_result(monkeypatch, shape, fn):
    x = (np.random.default_rng(0).standard_normal(shape) * 30).astype(np.float32)
    outs = []
    for n in ("1", "2", "3"):
        monkeypatch.setenv("SCG_NUM_THREADS", n)
        outs.append(fn(scg.Tensor(x)).data)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_rows_covers_every_row_once(monkeypatch):
    monkeypatch.setenv("SCG_NUM_THREADS", "3")
    x = np.zeros((100, 1000))
    seen = []

    def f(a, out):
        seen.append(len(a))
        out += 1

    out = parallel.rows(f, x, np.zeros_like(x))
    assert (out == 1).all() and sorted(seen) == [33, 33, 34]


def test_a_worker_error_is_raised_in_the_caller(monkeypatch):
    monkeypatch.setenv("SCG_NUM_THREADS", "2")

    def boom():
        raise ValueError("worker failed")

    with pytest.raises(ValueError, match="worker failed"):
        parallel.run([lambda: None, boom])


def test_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("SCG_NUM_THREADS", "3")
    assert parallel.threads() == 3
    monkeypatch.delenv("SCG_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert parallel.threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert 1 <= parallel.threads() <= 2


def _finishes(f, seconds=30):
    """Run f on a daemon thread; True if it returned within the time (a deadlock never does)."""
    done = threading.Event()
    threading.Thread(target=lambda: (f(), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_rows_inside_a_task_of_rows_runs_in_turn_instead_of_waiting_forever(monkeypatch):
    # The pool has one worker on two threads: a task that handed work to the pool and waited
    # would wait for itself.
    monkeypatch.setenv("SCG_NUM_THREADS", "2")
    x = np.arange(8 * 1000, dtype=np.float64).reshape(8, -1)
    out = np.empty_like(x)

    def outer(a, o):
        parallel.rows(lambda b, p: np.multiply(b, 2, out=p), a, o, min_size=1)

    assert _finishes(lambda: parallel.rows(outer, x, out, min_size=1)), "nested parallel.rows deadlocked"
    np.testing.assert_array_equal(out, 2 * x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bernoulli_log_prob_on_the_numpy_path_splits_over_threads_without_deadlock(monkeypatch, dtype):
    # float64 (and float32 without the fused loops) run softplus's numpy passes on each block.
    from scg import kernels
    monkeypatch.setenv("SCG_NUM_THREADS", "2")
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_state", "numpy (forced by a test)")
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((512, 784)) * 3).astype(dtype)
    x = (rng.random((512, 784)) < 0.4).astype(dtype)
    got = {}
    d = scg.distributions.Bernoulli(logits=scg.Tensor(logits))
    assert _finishes(lambda: got.update(lp=d.log_prob(x).data,
                                        score=scg.ops.bernoulli_score(scg.Tensor(x), scg.Tensor(logits)).data))
    l64 = logits.astype(np.float64)
    ref = np.where(x == 1, -np.logaddexp(0, -l64), -np.logaddexp(0, l64))
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got["lp"], ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(got["score"], x - 1 / (1 + np.exp(-l64)), rtol=tol, atol=tol)


DEFAULT_SPIN = 2.0 ** 28 / 2e9


@pytest.mark.parametrize("env, seconds", [
    ({}, DEFAULT_SPIN), ({"OPENBLAS_THREAD_TIMEOUT": "4"}, 16 / 2e9), ({"OPENBLAS_THREAD_TIMEOUT": "40"}, 2.0 ** 30 / 2e9),
    # read with C's atoi, as OpenBLAS does: <= 0 (or no digits) is its default, 28
    ({"OPENBLAS_THREAD_TIMEOUT": "0"}, DEFAULT_SPIN), ({"OPENBLAS_THREAD_TIMEOUT": "-3"}, DEFAULT_SPIN),
    ({"OPENBLAS_THREAD_TIMEOUT": "\u00b2"}, DEFAULT_SPIN), ({"OPENBLAS_THREAD_TIMEOUT": "\u0664"}, DEFAULT_SPIN),
    ({"OPENBLAS_THREAD_TIMEOUT": " 4"}, 16 / 2e9), ({"OPENBLAS_THREAD_TIMEOUT": "4x"}, 16 / 2e9),
    ({"OPENBLAS_THREAD_TIMEOUT": "+5"}, 32 / 2e9), ({"OPENBLAS_THREAD_TIMEOUT": "2"}, 16 / 2e9),
    # BLAS on one thread: nothing spins (the first of the three variables above 0 decides)
    ({"OPENBLAS_NUM_THREADS": "1"}, 0.0), ({"OMP_NUM_THREADS": "1"}, 0.0), ({"GOTO_NUM_THREADS": "1"}, 0.0),
    ({"OPENBLAS_NUM_THREADS": " 01"}, 0.0), ({"OPENBLAS_NUM_THREADS": "0", "OMP_NUM_THREADS": "1"}, 0.0),
    ({"OPENBLAS_NUM_THREADS": "", "OMP_NUM_THREADS": "1"}, 0.0),
    ({"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, DEFAULT_SPIN)])
def test_how_long_blas_threads_spin_is_read_as_openblas_reads_it(monkeypatch, env, seconds):
    for var in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert parallel._spin_seconds() == seconds


def test_right_after_a_matrix_product_passes_stay_on_one_thread(monkeypatch):
    """BLAS's idle threads spin on the other core after a product: threads() is 1 until they
    stop, then the cores again; the matmul primitive (call and traced .into) says when it ran."""
    for var in ("SCG_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(parallel, "_CORES", 2)
    monkeypatch.setattr(parallel, "_SPIN", 0.3)
    monkeypatch.setattr(parallel, "_blas_busy_until", 0.0)
    assert parallel.threads() == 2
    small = np.ones((8, 8), np.float32)  # below 2^18 multiply-adds OpenBLAS keeps a product on one thread
    scg.ops.matmul(scg.tensor(small), scg.tensor(small))
    scg.ops._matmul_forward.into(small, small, out=np.empty((8, 8), np.float32))
    assert parallel.threads() == 2
    a = np.ones((64, 64), np.float32)  # 2^18 multiply-adds
    for product in (lambda: scg.ops.matmul(scg.tensor(a), scg.tensor(a.T)),
                    lambda: scg.ops._matmul_forward.into(a, a.T, out=np.empty((64, 64), np.float32))):
        monkeypatch.setattr(parallel, "_blas_busy_until", 0.0)
        product()
        assert parallel.threads() == 1
        monkeypatch.setenv("SCG_NUM_THREADS", "2")  # a user's explicit choice still holds
        assert parallel.threads() == 2
        monkeypatch.delenv("SCG_NUM_THREADS")
        parallel._blas_busy_until -= 0.31  # the spin is over
        assert parallel.threads() == 2
    monkeypatch.setattr(parallel, "_SPIN", 0.0)  # BLAS on one thread: nothing spins
    monkeypatch.setattr(parallel, "_blas_busy_until", 0.0)
    scg.ops.matmul(scg.tensor(a), scg.tensor(a.T))
    assert parallel.threads() == 2


def test_adam_gives_the_same_bits_whether_a_product_just_ran_or_not(monkeypatch):
    """Adam's update is dealt to threads() workers, which now changes within a run (1 right after
    a product, else 2): both plans give the plain loop's bits, and each plan is kept."""
    monkeypatch.delenv("SCG_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(parallel, "_CORES", 2)
    results = []
    for spin in (0.0, 10.0):
        monkeypatch.setattr(parallel, "_SPIN", spin)
        monkeypatch.setattr(parallel, "_blas_busy_until", 0.0)
        rng = np.random.default_rng(0)
        p = scg.nn.Parameter(rng.standard_normal((600, 300)), dtype=np.float32)
        opt = scg.optim.Adam([p], lr=1e-2)
        for _ in range(3):
            loss = (scg.ops.matmul(p, scg.tensor(np.ones((300, 8), np.float32))) ** 2).sum()  # 2^20 multiply-adds
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert list(opt._plans)[0][0] == (1 if spin else 2)
        results.append(p.data.copy())
    assert np.array_equal(results[0], results[1])


def test_an_optimizer_pickled_before_it_kept_plans_still_steps():
    """An Adam pickled by an earlier version holds ``_plan``, not ``_plans``: its first step
    must still update the parameter (and count one step)."""
    import pickle

    p = scg.tensor(np.ones((4, 3), np.float32), requires_grad=True)
    opt = scg.optim.Adam([p], lr=0.1)
    del opt._plans
    opt._plan = None
    p, opt = pickle.loads(pickle.dumps((p, opt)))
    p.grad = scg.Tensor(np.ones((4, 3), np.float32))
    opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.1, rtol=1e-6)  # Adam's first step moves by lr
