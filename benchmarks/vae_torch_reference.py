"""The same VAE, protocol and epochs as `python -m models.vae train` in PyTorch eager,
to compare the test bound and log-likelihood (target: within 1 nat of scg).

Same data (Fashion-MNIST, validation split by the same permutation, dynamic
binarization of training images, test images binarized once with the same seed),
architecture (784-400-20 MLPs, softplus scale), Adam 1e-3, batch 128.

Usage: python benchmarks/vae_torch_reference.py [--epochs 30] [--k 1] [--eval-k 500]
Prints one JSON line; compare with `python -m models.vae evaluate`.
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main():
    import torch

    from models import data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--eval-k", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    d = data.load("fashion-mnist")
    x = d["train_images"].reshape(60000, -1).astype(np.float32) / 255
    perm = np.random.default_rng(12345).permutation(len(x))
    x_train = x[perm[5000:]]
    x_test = d["test_images"].reshape(10000, -1).astype(np.float32) / 255
    fixed = np.random.default_rng(2016)
    _ = fixed.random((5000, 784))  # the validation set's draw, as in models.vae
    x_test = torch.from_numpy((fixed.random(x_test.shape) < x_test).astype(np.float32))
    L = 20
    enc = torch.nn.Sequential(torch.nn.Linear(784, 400), torch.nn.ReLU(), torch.nn.Linear(400, 2 * L))
    dec = torch.nn.Sequential(torch.nn.Linear(L, 400), torch.nn.ReLU(), torch.nn.Linear(400, 784))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    F = torch.nn.functional

    def bound(xb, k):
        h = enc(xb)
        mu, sigma = h[:, :L], F.softplus(h[:, L:]) + 1e-4
        if k == 1:
            z = mu + sigma * torch.randn_like(mu)
            rec = -F.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").sum(-1)
            kl = (0.5 * (mu * mu + sigma * sigma - 1) - torch.log(sigma)).sum(-1)
            return rec - kl
        z = mu + sigma * torch.randn((k,) + mu.shape)
        logits = dec(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, xb.expand(k, *xb.shape), reduction="none").sum(-1)
        log_pz = (-0.5 * z * z - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_qz = (-0.5 * ((z - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(log_px + log_pz - log_qz, 0) - math.log(k)

    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order), 128):
            xb = x_train[order[i : i + 128]]
            xb = torch.from_numpy((rng.random(xb.shape) < xb).astype(np.float32))
            loss = -bound(xb, args.k).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        elbo = float(torch.cat([bound(x_test[i : i + 500], 1) for i in range(0, 10000, 500)]).mean())
        ll = float(torch.cat([bound(x_test[i : i + 1], args.eval_k) for i in range(10000)]).mean())
    print(json.dumps(dict(framework="torch", epochs=args.epochs, k=args.k, test_elbo=elbo,
                          test_log_likelihood=ll, eval_k=args.eval_k)))


if __name__ == "__main__":
    main()
