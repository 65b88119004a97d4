"""Side-by-side timing and memory of training steps, each implementation in its own
worker process (so numpy's and torch's thread pools never compete); the parent
alternates rounds between the workers and reports medians.

A benchmark script defines ``FACTORIES = {name: () -> step_function}`` and calls
``serve(FACTORIES)`` first thing in ``main`` (which handles the worker modes).
"""

import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np


def serve(factories):
    """If this process was started as a worker, do the work and exit."""
    if len(sys.argv) == 3 and sys.argv[1] in ("--worker", "--memory-child"):
        mode, name = sys.argv[1], sys.argv[2]
        (_worker if mode == "--worker" else _memory_child)(factories[name])
        sys.exit(0)


def _worker(factory):
    """Print the first 3 losses, then for each line N on stdin the seconds N steps took."""
    f = factory()
    print(" ".join(f"{f():.6f}" for _ in range(3)), flush=True)
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        print(time.perf_counter() - t0, flush=True)


def time_steps(script, names, steps, rounds):
    """({name: median seconds per step}, {name: first three losses})."""
    procs = {
        n: subprocess.Popen([sys.executable, script, "--worker", n], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
        for n in names
    }
    try:
        losses = {n: [float(v) for v in p.stdout.readline().split()] for n, p in procs.items()}
        times = {n: [] for n in names}
        for _ in range(rounds):
            for n, p in procs.items():
                p.stdin.write(f"{steps}\n")
                p.stdin.flush()
                times[n].append(float(p.stdout.readline()) / steps)
    finally:
        for p in procs.values():
            p.stdin.close()
            p.wait()
    return {n: float(np.median(v)) for n, v in times.items()}, losses


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(factory):
    """Peak resident-set growth over 5 steps after one warm-up step (high-water mark reset
    just before), and for numpy-based steps the peak of arrays allocated in one step."""
    f = factory()
    f()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    base = _status_bytes("VmRSS")
    for _ in range(5):
        f()
    rss = max(_status_bytes("VmHWM") - base, 0)
    tracemalloc.start()
    f()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(rss, traced)


def peak_memory(script, name):
    """(RSS growth bytes, traced array bytes or -1 for torch, which numpy's tracer cannot see)."""
    out = subprocess.run([sys.executable, script, "--memory-child", name], capture_output=True, text=True,
                         check=True)
    rss, traced = out.stdout.strip().splitlines()[-1].split()
    return int(rss), (int(traced) if name != "torch" else -1)


def have_torch():
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        return False


def report(script, factories, steps, rounds, title):
    """Print the timing and memory table for every available implementation."""
    names = [n for n in factories if n != "torch" or have_torch()]
    print(f"\n== {title} ==")
    times, losses = time_steps(script, names, steps, rounds)
    for n in names:
        print(f"{n:6s} {times[n] * 1e3:8.2f} ms/step   {times[n] / times['numpy']:5.2f}x numpy   "
              f"first losses {np.round(losses[n], 4)}")
    if "torch" in times:
        print(f"scg / torch eager: {times['scg'] / times['torch']:.2f}  (target <= 1.0)")
    else:
        print("torch not importable: `pip install torch==2.13.0` to compare with PyTorch eager")
    print(f"{'':6s} {'RSS growth':>11s} {'peak of arrays allocated in a step':>36s}")
    for n in names:
        rss, traced = peak_memory(script, n)
        arrays = f"{traced / 2**20:8.2f} MiB" if traced >= 0 else "n/a (not traced)"
        print(f"{n:6s} {rss / 2**20:7.1f} MiB {arrays:>36s}")
    return times


__all__ = ["serve", "time_steps", "peak_memory", "have_torch", "report", "os"]
