"""Independent jobs (an estimator trained from one seed, a chunk of gradient runs) run
through a ``concurrent.futures.Executor``: in this process, in local worker processes, or
on an existing Dask cluster, with the same results from each.

* :func:`executor` opens one: ``workers=0`` runs every job here, in order (the default);
  ``workers=N`` starts N local processes (spawned, not forked: a forked child inherits the
  BLAS and worker threads of its parent mid-flight); ``scheduler="tcp://host:8786"`` submits to
  a running ``dask.distributed`` scheduler through its client's executor.
* :func:`spawn_seeds` gives each job its own seed from ``numpy.random.SeedSequence(seed)``,
  so a job computes the same numbers whichever executor, worker or order runs it.
* :func:`run_jobs` submits the jobs, shows a progress bar over them, hands each result to
  ``on_done`` as it arrives (so a caller can write it at once and a killed study keeps it),
  and reports a failed job by its key without losing the others.

A job is a function and its arguments, and every executor but the in-process one pickles
them: use functions defined at module level (or ``functools.partial`` of one).

Every job runs with one BLAS thread (threadpoolctl), wherever it runs. OpenBLAS splits some
matrix products across its threads and adds the parts, so the rounding of a float32 result
depends on how many threads it had: a job pinned to one gives the same bits in this process,
in a worker process and on a Dask worker (which starts with OMP_NUM_THREADS=1), and N workers
on N cores do not oversubscribe them.
"""

import concurrent.futures as cf
import contextlib
import os
import pickle
import sys
import traceback

import numpy as np


class InProcess(cf.Executor):
    """Runs each job when it is submitted, in this process: the default, and the reference the
    other executors must agree with. A job's exception is kept in its future, as a pool does."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # the caller reads it from the future, as from a pool's
            future.set_exception(e)
        return future


def pinned(fn, *args):
    """``fn(*args)`` with the BLAS libraries held to one thread (see the module docstring)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args)


def _worker_start():
    """In a worker process: scg's elementwise passes on one thread (N workers share the cores),
    and on Linux the worker dies with the process that started it, so a study killed with
    SIGKILL leaves no worker running its queued jobs into the folders a rerun will use."""
    os.environ["SCG_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # not glibc: the worker outlives a killed parent, as before
            pass


@contextlib.contextmanager
def executor(workers=0, scheduler=None):
    """An Executor for independent jobs, shut down on exit.

    workers: 0 (run here, in order) or N >= 1 local processes. scheduler: the address of a
    running Dask scheduler (``dask.distributed`` must be installed); then ``workers`` is ignored
    and the cluster's workers run the jobs."""
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError(
                "running jobs on a Dask cluster needs dask.distributed: pip install 'distributed>=2024.1'"
            ) from None
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as e:
            raise RuntimeError(f"could not reach the Dask scheduler at {scheduler!r}: {e}") from None
        try:
            yield client.get_executor()
        finally:
            client.close()
        return
    if workers is None or workers == 0:
        yield InProcess()
        return
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be 0 (in this process) or a number of processes >= 1, got {workers!r}")
    import multiprocessing

    pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_worker_start)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def spawn_seeds(seed, n):
    """``n`` independent integer seeds from ``SeedSequence(seed).spawn(n)`` (the same for the same
    ``seed``, whoever asks): job i's seed does not depend on how many jobs run or where."""
    return [int(child.generate_state(1, np.uint64)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


class JobFailed:
    """What :func:`run_jobs` keeps of a job that raised: its key, the error (as text and as the
    exception itself), and the traceback."""

    def __init__(self, key, exception, trace):
        self.key, self.exception, self.trace = key, exception, trace
        self.error = f"{type(exception).__name__}: {exception}"
        # the job (or its result) could not be sent between processes
        self.unpicklable = isinstance(exception, pickle.PicklingError) or "pickle" in str(exception).lower()
        if self.unpicklable:
            self.error += (" (a job sent to another process must pickle: use a function defined at module level, "
                           "or functools.partial of one, not a lambda or a nested function)")

    def __repr__(self):
        return f"JobFailed({self.key!r}, {self.error})"


def run_jobs(fn, jobs, pool, on_done=None, desc="jobs", progress=True):
    """Run ``fn(*args)`` for every ``(key, args)`` of ``jobs`` on the executor ``pool``, each
    with one BLAS thread.

    Returns ``(results, failures)``: ``{key: result}`` in the order of ``jobs`` and
    ``{key: JobFailed}``. ``on_done(key, result)`` is called in this process as each job finishes
    (in completion order). A failed job is reported on stderr with its key and the others
    go on. ``progress`` shows a bar over the jobs (tqdm)."""
    jobs = list(jobs)
    keys = [key for key, _ in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("run_jobs: every job needs its own key")
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="job")
    done, failures = {}, {}

    def finish(key, future):
        error = future.exception()
        if error is not None:
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            failures[key] = JobFailed(key, error, trace)
            print(f"job {key} failed: {failures[key].error}", file=sys.stderr, flush=True)
        else:
            done[key] = future.result()
            if on_done is not None:
                on_done(key, done[key])
        if bar is not None:
            bar.update()

    try:
        if isinstance(pool, InProcess):  # one at a time, so the bar moves as each finishes
            for key, args in jobs:
                finish(key, pool.submit(pinned, fn, *args))
        else:
            futures = {}
            for key, args in jobs:
                try:
                    futures[pool.submit(pinned, fn, *args)] = key
                except Exception as e:  # e.g. a job that cannot be pickled for a worker
                    raise RuntimeError(f"could not submit job {key}: {type(e).__name__}: {e}") from e
            for future in cf.as_completed(futures):
                finish(futures[future], future)
    finally:
        if bar is not None:
            bar.close()
    return {key: done[key] for key in keys if key in done}, failures
