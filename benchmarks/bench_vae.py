"""The VAE training step (784-400-20, float32, Adam, Bernoulli likelihood, analytic KL)
in scg, written straightforwardly by hand in numpy, and in PyTorch eager (when
installed), side by side in one run (see harness.py), at batch sizes 32, 128 and 512;
plus the floor: the step's 11 matmuls alone, with preallocated outputs (no
framework can do the step faster than its GEMMs); seconds per Fashion-MNIST epoch
(55,000 training images) and memory.

Usage: python benchmarks/bench_vae.py [--batch 32 128 512] [--rounds 5] [--seconds 1.5] [--check]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import scg  # noqa: E402

X, H, L = 784, 400, 20
TRAIN = 55_000


def batch(B):
    """B real Fashion-MNIST images, binarized with a fixed seed."""
    from models import data

    imgs = data.load("fashion-mnist")["train_images"][:B].reshape(B, -1).astype(np.float32) / 255
    return (np.random.default_rng(0).random(imgs.shape) < imgs).astype(np.float32)


def init(seed=0):
    rng = np.random.default_rng(seed)
    ps = []
    for n_in, n_out in [(X, H), (H, 2 * L), (L, H), (H, X)]:
        b = 1 / np.sqrt(n_in)
        ps += [rng.uniform(-b, b, (n_in, n_out)).astype(np.float32), rng.uniform(-b, b, n_out).astype(np.float32)]
    return ps


def scg_factory(batch_size=128, traced=False):
    B = batch_size
    from models.vae import VAE, build_graph

    model = VAE(hidden=H, latent=L)
    for p, a in zip(model.parameters(), init()):
        p.data[...] = a
    opt = scg.optim.Adam(model.parameters(), lr=1e-3)
    x = batch(B)
    rng = np.random.default_rng(1)

    def step(x):
        loss = build_graph(model, x, rng=rng).surrogate() / B
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step = scg.trace(step) if traced else step
    return lambda: step(x).item()


def scg_traced_factory(batch_size=128):
    """The same step through ``scg.trace``: recorded twice, then replayed."""
    return scg_factory(batch_size, traced=True)


def numpy_factory(batch_size=128):
    """The step as one would write it by hand: forward, hand-derived backward, Adam."""
    B = batch_size
    ps = init()
    ms, vs = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    x = batch(B)
    rng = np.random.default_rng(1)
    t = [0]

    def softplus(a):
        return np.logaddexp(0, a)

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    def step():
        W1, b1, W2, b2, W3, b3, W4, b4 = ps
        a1 = x @ W1 + b1
        h1 = np.maximum(a1, 0)
        enc = h1 @ W2 + b2
        mu, pre = enc[:, :L], enc[:, L:]
        sigma = softplus(pre) + 1e-4
        eps = rng.standard_normal(mu.shape, dtype=np.float32)
        z = mu + sigma * eps
        a3 = z @ W3 + b3
        h3 = np.maximum(a3, 0)
        logits = h3 @ W4 + b4
        rec = -(x * logits - softplus(logits)).sum(1)
        kl = (0.5 * (mu * mu + sigma * sigma - 1) - np.log(sigma)).sum(1)
        loss = float((rec + kl).mean())
        d_logits = (sigmoid(logits) - x) / B
        gW4, gb4 = h3.T @ d_logits, d_logits.sum(0)
        d_a3 = (d_logits @ W4.T) * (a3 > 0)
        gW3, gb3 = z.T @ d_a3, d_a3.sum(0)
        d_z = d_a3 @ W3.T
        d_mu = d_z + mu / B
        d_sigma = d_z * eps + (sigma - 1 / sigma) / B
        d_enc = np.concatenate([d_mu, d_sigma * sigmoid(pre)], axis=1)
        gW2, gb2 = h1.T @ d_enc, d_enc.sum(0)
        d_a1 = (d_enc @ W2.T) * (a1 > 0)
        gW1, gb1 = x.T @ d_a1, d_a1.sum(0)
        t[0] += 1
        for p, g, m, v in zip(ps, [gW1, gb1, gW2, gb2, gW3, gb3, gW4, gb4], ms, vs):
            m[...] = 0.9 * m + 0.1 * g
            v[...] = 0.999 * v + 0.001 * g * g
            p -= (1e-3 * (m / (1 - 0.9 ** t[0])) / (np.sqrt(v / (1 - 0.999 ** t[0])) + 1e-8)).astype(np.float32)
        return loss

    return step


def torch_factory(batch_size=128):
    B = batch_size
    import torch

    ps = init()
    lin = []
    for i, (n_in, n_out) in enumerate([(X, H), (H, 2 * L), (L, H), (H, X)]):
        layer = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(ps[2 * i].T.copy()))
            layer.bias.copy_(torch.from_numpy(ps[2 * i + 1]))
        lin.append(layer)
    params = [p for layer in lin for p in layer.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.from_numpy(batch(B))
    torch.manual_seed(1)
    F = torch.nn.functional

    def step():
        enc = lin[1](F.relu(lin[0](x)))
        mu, sigma = enc[:, :L], F.softplus(enc[:, L:]) + 1e-4
        z = mu + sigma * torch.randn_like(mu)
        logits = lin[3](F.relu(lin[2](z)))
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = (0.5 * (mu * mu + sigma * sigma - 1) - torch.log(sigma)).sum(1)
        loss = (rec + kl).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def _eleven_matmuls(matmul, asarray, batch_size):
    """The step's 11 matmuls (4 forward; 4 weight gradients; 3 input gradients) into
    preallocated outputs, with ``matmul(a, b, out=)`` and arrays made by ``asarray`` (numpy's
    or PyTorch's): the GEMM time a framework's step pays."""
    B = batch_size
    W1, _, W2, _, W3, _, W4, _ = (asarray(a) for a in init())
    x = asarray(batch(B))
    h1, enc, z, h3, lg = (asarray(np.zeros((B, n), np.float32)) for n in (H, 2 * L, L, H, X))
    d_enc, d_h1, d_z, d_h3 = (asarray(np.ones((B, n), np.float32)) for n in (2 * L, H, L, H))
    gW = [asarray(np.zeros(w.shape, np.float32)) for w in (W1, W2, W3, W4)]
    z[...] = 0.1

    def step():
        matmul(x, W1, out=h1)
        matmul(h1, W2, out=enc)
        matmul(z, W3, out=h3)
        matmul(h3, W4, out=lg)
        matmul(h3.T, lg, out=gW[3])
        matmul(lg, W4.T, out=d_h3)
        matmul(z.T, d_h3, out=gW[2])
        matmul(d_h3, W3.T, out=d_z)
        matmul(h1.T, d_enc, out=gW[1])
        matmul(d_enc, W2.T, out=d_h1)
        matmul(x.T, d_h1, out=gW[0])
        return 0.0

    return step


def floor_factory(batch_size=128):
    """numpy's GEMM floor: no framework on numpy can do the step faster than its GEMMs."""
    return _eleven_matmuls(np.matmul, np.asarray, batch_size)


def torch_floor_factory(batch_size=128):
    """The same 11 matmuls in PyTorch (its BLAS, its threads): what PyTorch's step pays for
    GEMMs, beside numpy's ``floor``, so that the gap between the frameworks splits into GEMM
    time and everything else."""
    import torch

    return _eleven_matmuls(torch.matmul, torch.from_numpy, batch_size)


FACTORIES = {"scg": scg_factory, "scg_traced": scg_traced_factory, "numpy": numpy_factory, "torch": torch_factory,
             "floor": floor_factory}
# Rows only printed with --torch-floor (they need PyTorch).
TORCH_FLOOR = {"torch_floor": torch_floor_factory}


# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after a GEMM, on the core the
# elementwise passes' second thread needs; this row makes them sleep after 2^4.
# BLAS on one thread (the elementwise passes keep two), and the reverse (--threads adds these rows).
harness.ENV["scg_traced_blas1"] = {"OPENBLAS_NUM_THREADS": "1"}
harness.ENV["scg_traced_scg1"] = {"SCG_NUM_THREADS": "1"}
THREAD_ROWS = ("scg_traced_blas_sleep", "scg_traced_blas1", "scg_traced_scg1")


def main():
    harness.serve({**FACTORIES, **TORCH_FLOOR, **{name: scg_traced_factory for name in THREAD_ROWS}})
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512], help="batch sizes")
    ap.add_argument("--threads", action="store_true",
                    help="add the traced step under three thread settings: OpenBLAS's idle threads sleeping at "
                         "once (OPENBLAS_THREAD_TIMEOUT=4), BLAS on one thread, scg's passes on one thread")
    ap.add_argument("--torch-floor", action="store_true",
                    help="add PyTorch's own GEMM floor (the same 11 matmuls through torch.matmul)")
    harness.add_options(ap)
    args = ap.parse_args()
    factories = dict(FACTORIES)
    if args.torch_floor:
        factories.update(TORCH_FLOOR)
    if args.threads:
        factories.update({name: scg_traced_factory for name in THREAD_ROWS})
    for B in args.batch:
        times = harness.report(__file__, factories, args, f"VAE {X}-{H}-{L} step, batch {B}, float32, Adam",
                               config={"batch_size": B}, extra=("floor", "torch_floor"))
        steps = -(-TRAIN // B)
        print(f"seconds per epoch ({steps} steps): "
              + ", ".join(f"{n} {t * steps:.1f}" for n, t in times.items() if n not in ("floor", "torch_floor")))


if __name__ == "__main__":
    main()
