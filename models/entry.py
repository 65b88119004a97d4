"""The first code the command lines run: Ctrl-C while Python imports numpy, scipy and scg
(a second or so, before :func:`models.cli.run_command` takes over) ends the process with
one line and exit status 130, not a KeyboardInterrupt traceback.

Standard library only, so that it is in place before the slow imports. ``python -m
models.vae`` (``models.discrete_vae``) calls :func:`guard_startup` at the top of the
module; the console scripts ``scg-vae`` and ``scg-dvae`` are :func:`vae` and :func:`dvae`,
which call it before importing the model's module. Importing a model module as a library
changes no signal handler. (Ctrl-C while the interpreter itself starts, before any of this
runs, is Python's.)
"""

import importlib
import os
import signal
import sys
import threading

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def interrupted_while_starting(signum, frame):
    """The SIGINT handler until ``run_command`` replaces it: one line, exit 130.

    It ends the process at once (``os._exit``) rather than raising SystemExit: the signal can
    land inside an extension module's import (numpy's C core importing ``datetime``), which
    turns any exception raised there into an ImportError with a traceback. Nothing has been
    written yet, so there is nothing to clean up."""
    sys.stderr.write("error: interrupted while starting; nothing was done\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def guard_startup():
    """Make Ctrl-C end the process quietly (see the module docstring) while Ctrl-C still has
    Python's default meaning; a handler someone else installed is left alone."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupted_while_starting)


def quiet_blas_threads():
    """Let OpenBLAS's idle threads sleep at once after a matrix product
    (``OPENBLAS_THREAD_TIMEOUT=4``, unless the environment sets it), before numpy loads OpenBLAS.
    By default they spin for a while, and on a 2-core machine the spinning thread holds the core
    the next elementwise pass or the optimizer's second thread wants: the traced VAE step at
    batch 128 measured 0.86x PyTorch eager with it and 1.02x without (`python3
    benchmarks/bench_vae.py --batch 128 --threads`). The command lines own their process, so
    they set it; the library does not (it would change the BLAS of the user's whole program,
    and numpy is usually imported before scg anyway)."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def _run(module):
    guard_startup()
    quiet_blas_threads()
    return importlib.import_module(f"models.{module}").main()


def vae():
    """The console script ``scg-vae``: ``models.vae.main``, imported under the guard."""
    return _run("vae")


def dvae():
    """The console script ``scg-dvae``: ``models.discrete_vae.main``, imported under the guard."""
    return _run("discrete_vae")
