"""Honest side-by-side timing and memory of training steps.

Why it works this way: on a 2-core machine the BLAS/OpenMP threads of a process
that just finished a round keep spinning for a while, so an implementation timed
right after another one, while that one's process is still alive, is slowed (the
first harness kept every worker alive and overstated scg against PyTorch by up to
2x). So here **only one implementation process is alive at a time**: each round
starts a fresh process per implementation, which builds its step, warms up, times
at least ``seconds`` of steps, prints its figure and exits before the next one
starts. The order is rotated between rounds (so no implementation always runs
first or last) and the figure reported is the median over rounds.

A benchmark script defines ``FACTORIES = {name: factory}``, where
``factory(**config) -> step`` builds a step function returning the loss, and calls
``serve(FACTORIES)`` first thing in ``main`` (which handles the worker modes).
"""

import json
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np


def serve(factories):
    """If this process was started as a worker, do the work and exit."""
    if len(sys.argv) >= 3 and sys.argv[1] in ("--worker", "--memory-child"):
        mode, name = sys.argv[1], sys.argv[2]
        opts = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
        config = opts.pop("config", {})
        step = factories[name](**config)
        if mode == "--worker":
            print(json.dumps(_time_round(step, **opts)), flush=True)
        else:
            print(json.dumps(_memory(step, traced=name != "torch")), flush=True)
        sys.exit(0)


def _time_round(step, seconds, warmup, steps=None):
    """Warm up for ``warmup`` seconds (at least 3 steps), then time ``steps`` steps, or as
    many as fill ``seconds`` judging by the warm-up's speed; seconds per step."""
    losses = [step() for _ in range(3)]
    t0, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - t0 < warmup:
        step()
        n += 1
    per_step = (time.perf_counter() - t0) / n
    steps = steps or max(3, int(np.ceil(seconds / per_step)))
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"per_step": (time.perf_counter() - t0) / steps, "steps": steps, "losses": losses}


ENV = {}  # name -> environment variables its worker processes start with (set by a benchmark script)


def _run(script, mode, name, opts):
    out = subprocess.run([sys.executable, script, mode, name, json.dumps(opts)], capture_output=True,
                         text=True, env={**os.environ, **ENV.get(name, {})})
    if out.returncode:
        raise RuntimeError(f"the {name!r} worker of {script} failed:\n{out.stderr[-2000:]}")
    time.sleep(0.2)  # let the exited process's threads and pages go before the next one starts
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_steps(script, names, seconds=1.0, rounds=5, warmup=0.5, config=None):
    """Median seconds per step of each implementation, one process alive at a time.

    Returns ``({name: median s/step}, {name: [s/step of each round]}, {name: first 3 losses})``.
    Round r runs the implementations in ``names`` rotated by r, each in a fresh process."""
    times = {n: [] for n in names}
    losses = {}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            res = _run(script, "--worker", n, {"seconds": seconds, "warmup": warmup, "config": config or {}})
            times[n].append(res["per_step"])
            losses[n] = res["losses"]
    return {n: float(np.median(v)) for n, v in times.items()}, times, losses


def time_alone(script, name, steps=200, warmup_steps=20, config=None):
    """The check of the harness: one process, ``warmup_steps`` steps, then ``steps`` steps timed
    as one block (the protocol the issue used to show the old harness was wrong)."""
    probe = _run(script, "--worker", name, {"seconds": 0, "warmup": 0, "steps": 1, "config": config or {}})
    warmup = probe["per_step"] * warmup_steps
    return _run(script, "--worker", name, {"seconds": 0, "warmup": warmup, "steps": steps,
                                           "config": config or {}})["per_step"]


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory(step, traced):
    """Peak resident-set growth over 5 steps after one warm-up step (high-water mark reset
    just before), and for numpy-based steps the peak of arrays allocated in one step."""
    step()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    base = _status_bytes("VmRSS")
    for _ in range(5):
        step()
    rss = max(_status_bytes("VmHWM") - base, 0)
    peak = -1
    if traced:
        tracemalloc.start()
        step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {"rss": rss, "traced": peak}


def peak_memory(script, name, config=None):
    """(RSS growth bytes, traced array bytes or -1 for torch, which numpy's tracer cannot see)."""
    res = _run(script, "--memory-child", name, {"config": config or {}})
    return res["rss"], res["traced"]


def have_torch():
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        return False


def add_options(ap):
    """The timing options every benchmark script takes."""
    ap.add_argument("--rounds", type=int, default=5, help="rounds, each a fresh process per implementation")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds of steps per round")
    ap.add_argument("--check", action="store_true",
                    help="also time each implementation alone (200 steps after 20) and compare")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory table")
    ap.add_argument("--quick", action="store_true", help="2 short rounds, for a smoke run")


def report(script, factories, args, title, config=None, extra=()):
    """Print the timing (and memory) table for every available implementation; returns
    ``{name: median s/step}``. ``extra`` names reference rows ("floor") that are timed but
    get no memory figure."""
    names = [n for n in factories if not n.startswith("torch") or have_torch()]
    seconds, rounds = (0.2, 2) if args.quick else (args.seconds, args.rounds)
    print(f"\n== {title} ==")
    print(f"({rounds} rounds of >= {seconds:g} s per implementation, one process alive at a time, "
          f"order rotated; median, [min-max] over rounds)")
    times, each, losses = time_steps(script, names, seconds, rounds, config=config)
    for n in names:
        spread = f"[{min(each[n]) * 1e3:.2f}-{max(each[n]) * 1e3:.2f}]"
        print(f"{n:6s} {times[n] * 1e3:8.2f} ms/step {spread:>16s}   first losses {np.round(losses[n], 4)}")
    # A ratio per round (the two processes ran minutes apart at most), then their median: the
    # machine's slow and fast spells cancel better than in a ratio of medians.
    for ref, label in (("torch", "torch eager"), ("floor", "floor")):
        if ref not in times:
            if ref == "torch":
                print("torch not importable: `pip install torch==2.13.0` to compare with PyTorch eager")
            continue
        for n in names:
            if n.startswith("scg"):
                ratios = [a / b for a, b in zip(each[n], each[ref])]
                print(f"{n} / {label}: {np.median(ratios):.2f} (per round {min(ratios):.2f}-{max(ratios):.2f})")
    if "torch_floor" in times and "floor" in times:
        # what each framework spends beyond its own GEMMs (medians of per-round differences)
        for n, floor in [("torch", "torch_floor")] + [(n, "floor") for n in names if n.startswith("scg")]:
            if n in times:
                beyond = np.median([a - b for a, b in zip(each[n], each[floor])])
                print(f"{n} beyond its GEMMs ({floor}): {beyond * 1e3:.2f} ms/step")
    if args.check:
        print("each alone (200 steps after 20 warm-up, one process):")
        for n in names:
            alone = time_alone(script, n, config=config)
            print(f"{n:6s} {alone * 1e3:8.2f} ms/step alone, harness {times[n] / alone - 1:+.1%} from it")
    if not (args.no_memory or args.quick):
        print(f"{'':6s} {'RSS growth':>11s} {'peak of arrays allocated in a step':>36s}")
        for n in names:
            if n in extra:
                continue
            rss, traced = peak_memory(script, n, config)
            arrays = f"{traced / 2**20:8.2f} MiB" if traced >= 0 else "n/a (not traced)"
            print(f"{n:6s} {rss / 2**20:7.1f} MiB {arrays:>36s}")
    return times


__all__ = ["serve", "time_steps", "time_alone", "peak_memory", "have_torch", "add_options", "report", "os"]
