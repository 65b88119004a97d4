"""Speed and memory of the autodiff core, measured side by side in one run.

1. Per-operation overhead: forward + backward of elementwise ops on tiny arrays,
   against the same numpy calls (forward and the hand-written VJPs) without autodiff.
2. One training step of an MLP classifier 784-400-400-10 (batch 128, float32,
   Adam): scg, the same step written straightforwardly in numpy, and PyTorch
   eager on the CPU when ``torch`` is importable, timed by harness.py (one
   implementation process alive at a time, order rotated, medians).
3. Peak memory of one step for each (resident-set growth in a fresh subprocess).

Usage: python benchmarks/bench_core.py [--rounds 5] [--seconds 1.5] [--check] [--quick]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import scg  # noqa: E402

B, SIZES = 128, (784, 400, 400, 10)


# ---- 1. per-op overhead ---------------------------------------------------------


def op_overhead(n_ops=200, reps=30, rounds=5):
    """Microseconds per op (forward + backward) for scg and for bare numpy."""
    rng = np.random.default_rng(0)
    xd, yd = rng.standard_normal(10), rng.uniform(0.5, 1.5, 10)
    x, y = scg.tensor(xd, requires_grad=True), scg.tensor(yd, requires_grad=True)
    cases = {
        "mul": (lambda z: z * y, lambda z: (z * yd, lambda g: (g * yd, g * z))),
        "add": (lambda z: z + y, lambda z: (z + yd, lambda g: (g, g))),
        "tanh": (lambda z: scg.tanh(z), lambda z: (np.tanh(z), lambda g: (g * (1 - np.tanh(z) ** 2), None))),
        "exp": (lambda z: scg.exp(z * 0.0), None),
    }
    cases.pop("exp")
    results = {}
    for name, (scg_f, np_f) in cases.items():
        t_scg, t_np = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                z = x
                for _ in range(n_ops):
                    z = scg_f(z)
                z.sum().backward()
                x.grad = y.grad = None
            t_scg.append((time.perf_counter() - t0) / reps / n_ops)
            t0 = time.perf_counter()
            for _ in range(reps):
                z, tape = xd, []
                for _ in range(n_ops):
                    z, vjp = np_f(z)
                    tape.append(vjp)
                g = np.ones_like(z)
                for vjp in reversed(tape):
                    g, _ = vjp(g)
            t_np.append((time.perf_counter() - t0) / reps / n_ops)
        results[name] = (np.median(t_scg) * 1e6, np.median(t_np) * 1e6)
    return results


# ---- 2. the MLP step ------------------------------------------------------------


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((B, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], B)
    return x, y


def init_params(seed=0):
    rng = np.random.default_rng(seed)
    ps = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        b = 1 / np.sqrt(n_in)
        ps += [rng.uniform(-b, b, (n_in, n_out)).astype(np.float32), rng.uniform(-b, b, n_out).astype(np.float32)]
    return ps


def scg_step_factory(traced=False):
    scg.manual_seed(0)
    model = scg.nn.MLP(list(SIZES))
    for p, a in zip(model.parameters(), init_params()):
        p.data[...] = a
    opt = scg.optim.Adam(model.parameters(), lr=1e-3)
    x, y = make_data()
    onehot = np.eye(SIZES[-1], dtype=np.float32)[y]

    def step(x):
        logits = model(scg.Tensor(x))
        loss = -(scg.log_softmax(logits) * onehot).sum() / B
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step = scg.trace(step) if traced else step
    return lambda: step(x).item()


def scg_traced_step_factory():
    """The same step through ``scg.trace``: recorded twice, then replayed."""
    return scg_step_factory(traced=True)


def numpy_step_factory():
    """The step as one would write it by hand in numpy: clear, no buffer tricks."""
    ps = init_params()
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    x, y = make_data()
    onehot = np.eye(SIZES[-1], dtype=np.float32)[y]
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    t = [0]

    def step():
        W1, b_1, W2, b_2, W3, b_3 = ps
        a1 = x @ W1 + b_1
        h1 = np.maximum(a1, 0)
        a2 = h1 @ W2 + b_2
        h2 = np.maximum(a2, 0)
        logits = h2 @ W3 + b_3
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        loss = -(logp * onehot).sum() / B
        d3 = (np.exp(logp) - onehot) / B
        gW3, gb3 = h2.T @ d3, d3.sum(0)
        d2 = (d3 @ W3.T) * (a2 > 0)
        gW2, gb2 = h1.T @ d2, d2.sum(0)
        d1 = (d2 @ W2.T) * (a1 > 0)
        gW1, gb1 = x.T @ d1, d1.sum(0)
        t[0] += 1
        for p, g, m_, v_ in zip(ps, [gW1, gb1, gW2, gb2, gW3, gb3], ms, vs):
            m_[...] = b1 * m_ + (1 - b1) * g
            v_[...] = b2 * v_ + (1 - b2) * g * g
            m_hat = m_ / (1 - b1 ** t[0])
            v_hat = v_ / (1 - b2 ** t[0])
            p -= (lr * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
        return float(loss)

    return step


def torch_step_factory():
    import torch

    layers = []
    ps = init_params()
    for i in range(3):
        lin = torch.nn.Linear(SIZES[i], SIZES[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(ps[2 * i].T.copy()))
            lin.bias.copy_(torch.from_numpy(ps[2 * i + 1]))
        layers.append(lin)
        if i < 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = make_data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


FACTORIES = {"scg": scg_step_factory, "scg_traced": scg_traced_step_factory, "numpy": numpy_step_factory, "torch": torch_step_factory}


def main():
    harness.serve(FACTORIES)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_options(ap)
    args = ap.parse_args()

    print("== per-op overhead, forward + backward, arrays of 10 float64 ==")
    print(f"{'op':6s} {'scg us/op':>10s} {'numpy us/op':>12s} {'overhead us':>12s}")
    for name, (t_scg, t_np) in op_overhead(rounds=2 if args.quick else 5).items():
        print(f"{name:6s} {t_scg:10.2f} {t_np:12.2f} {t_scg - t_np:12.2f}")
    print("target: overhead <= 4 us per elementwise op")
    harness.report(__file__, FACTORIES, args,
                   f"MLP {'-'.join(map(str, SIZES))} step, batch {B}, float32, Adam")


if __name__ == "__main__":
    main()
