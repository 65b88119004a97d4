"""A variational autoencoder (Kingma & Welling 2014) and its importance-weighted bound
(IWAE, Burda et al. 2016), defined with scg.Graph and trained on real images.

    python -m models.vae train --out runs/vae                    # Fashion-MNIST, 784-400-20, 30 epochs
    python -m models.vae evaluate --out runs/vae --k 500         # test ELBO and log-likelihood
    python -m models.vae sample --out runs/vae --n 64            # a grid of samples

Model: q(z|x) = N(mu(x), diag sigma(x)^2) from an MLP encoder (sigma through softplus),
p(z) = N(0, I), p(x|z) = Bernoulli(logits(z)) from an MLP decoder (or a Gaussian with a
learned per-pixel scale). Training minimizes the negative bound per datapoint:
-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)) (KL analytic by default), or for k > 1
-L_k = -E[log (1/k) sum_j p(x, z_j) / q(z_j|x)]. Binarization is dynamic (a fresh
Bernoulli draw of each image every time it is used) unless --binarize static.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import scg
import scg.distributions as D
from models import data
from models.cli import CheckpointError, CommandError, atomic_write  # noqa: F401 (atomic_write: public here too)
from models import cli

# ---- the model ----------------------------------------------------------------------


class VAE(scg.nn.Module):
    """Encoder MLP x -> (mu, sigma) of q(z|x); decoder MLP z -> logits (or mean) of p(x|z).

    Shapes: x (B, 784); z (B, latent) or (k, B, latent).
    """

    def __init__(self, x_dim=784, hidden=400, latent=20, likelihood="bernoulli", rng=None):
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.latent, self.likelihood = latent, likelihood
        self.encoder = scg.nn.MLP([x_dim, hidden, 2 * latent], rng=rng)
        self.decoder = scg.nn.MLP([latent, hidden, x_dim], rng=rng)
        if likelihood == "gaussian":
            self.log_scale = scg.nn.Parameter(np.full(x_dim, -1.0, dtype=np.float32))

    def q(self, x):
        h = self.encoder(x)
        mu, pre = h[..., : self.latent], h[..., self.latent :]
        return D.Normal(mu, scg.softplus(pre) + 1e-4)

    def p_x(self, z):
        """p(x|z), one distribution per pixel: batch shape z.shape[:-1] + (784,)."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return D.Bernoulli(logits=out)
        return D.Normal(out, scg.exp(self.log_scale))

    def log_likelihood(self, x, z):
        """log p(x|z) summed over pixels: shape z.shape[:-1]."""
        return self.p_x(z).log_prob(x).sum(-1)


def build_graph(model, x, k=1, kl="analytic", rng=None):
    """The stochastic computation graph of one minibatch ``x`` (B, 784): a plate over the
    data, the latent z as a reparameterized node, and the negative bound as costs.

    k == 1: x observed under p(x|z) (the cost -log p(x|z)) and the cost "kl" (analytic or
    Monte Carlo), so the negative ELBO reads -E_q[log p(x|z)] + KL(q || p);
    k > 1: z has k samples and the cost is "neg_iwae" = -log mean_j w_j.
    """
    if kl not in ("analytic", "mc"):
        raise ValueError(f"kl must be 'analytic' or 'mc', got {kl!r}")
    b = x.shape[0]
    g = scg.Graph("vae" if k == 1 else f"iwae_k{k}", rng=rng)
    prior = D.Normal(np.zeros((b, model.latent), np.float32), np.ones((b, model.latent), np.float32))
    with g:
        xin = g.input("image", x)
        with g.plate("data", b):
            q = model.q(xin)
            g.deterministic("encoder", q.loc)
            if k == 1:
                z = g.sample("z", q)
                g.observe("x", model.p_x(z), xin)
                if kl == "analytic":
                    g.cost("kl", D.kl_divergence(q, prior).sum(-1))
                else:
                    g.cost("kl", (q.log_prob(z) - prior.log_prob(z)).sum(-1))
            else:
                z = g.sample("z", q, n=k)
                log_w = model.log_likelihood(xin, z) + (prior.log_prob(z) - q.log_prob(z)).sum(-1)
                g.cost("neg_iwae", -(scg.logsumexp(log_w, axis=0) - math.log(k)))
    return g


def bound(model, x, k=1, kl="analytic", rng=None):
    """The per-datapoint bound (ELBO for k=1, L_k otherwise) as an ndarray (B,), no gradients."""
    with scg.no_grad():
        xt = scg.Tensor(x)
        q = model.q(xt)
        prior = D.Normal(np.zeros_like(q.loc.data), np.ones_like(q.loc.data))
        rng = scg.random.resolve(rng)
        if k == 1 and kl == "analytic":
            z = q.rsample(rng=rng)
            return (model.log_likelihood(xt, z) - D.kl_divergence(q, prior).sum(-1)).data
        z = q.rsample((k,), rng=rng)
        log_w = model.log_likelihood(xt, z) + (prior.log_prob(z) - q.log_prob(z)).sum(-1)
        return (scg.logsumexp(log_w, axis=0) - math.log(k)).data


def dataset_bound(model, x, k, batch=500, kl="analytic", rng=None, desc=None):
    """Mean per-datapoint bound over ``x`` in batches (a progress bar when ``desc``)."""
    total = 0.0
    step = max(1, batch // max(k, 1)) if k > 1 else batch
    for i in tqdm(range(0, len(x), step), desc=desc, disable=desc is None, leave=False, unit="batch"):
        total += float(bound(model, x[i : i + step], k=k, kl=kl, rng=rng).sum())
    return total / len(x)


# ---- checkpoints ----------------------------------------------------------------------


def write_metrics(path, history):
    """One JSON object per epoch, one per line (written atomically)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(json.dumps(h) + "\n" for h in history)))


def save_checkpoint(path, model, opt, rng, epoch, config, history, kind="vae"):
    """Model and optimizer arrays plus a JSON ``meta`` (epoch, settings, history, random
    state, and ``model``: which command line wrote it)."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    for name, values in sd["state"].items():
        for i, a in enumerate(values):
            arrays[f"opt/{name}/{i}"] = a
    meta = dict(model=kind, epoch=epoch, config=config, history=history, opt_hyper=sd["hyper"], opt_step=sd["step"],
                opt_param_steps=sd["param_steps"],
                opt_state_names=sorted(sd["state"]), rng=rng.bit_generator.state)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


META_KEYS = ("epoch", "config", "history", "opt_hyper", "opt_step", "opt_state_names", "rng")


def load_checkpoint(path, kind=None, config_keys=()):
    """(model_state, optimizer_state_dict, rng_state, epoch, config, history).

    Raises CheckpointError if the file is missing or unreadable, was written by another
    model's command line than ``kind``, or lacks a meta key or one of ``config_keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train a model with this --out first")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable scg checkpoint ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a readable scg checkpoint (its meta is not a JSON object)")
    if kind and meta.get("model", kind) != kind:
        raise CheckpointError(f"{path} is a checkpoint of models.{meta['model']}, not models.{kind}; "
                              f"use python -m models.{meta['model']}")
    missing = [k for k in META_KEYS if k not in meta]
    missing += [f"config.{k}" for k in config_keys if k not in meta.get("config", {})]
    if missing:
        of = f" of models.{kind}" if kind else ""
        raise CheckpointError(f"{path} is not a complete scg checkpoint{of}: it lacks {', '.join(missing)}")
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    opt_state = {"hyper": meta["opt_hyper"], "step": meta["opt_step"], "state": {}}
    if "opt_param_steps" in meta:  # absent in checkpoints from before per-parameter steps
        opt_state["param_steps"] = meta["opt_param_steps"]
    for name in meta["opt_state_names"]:
        i = 0
        values = []
        while f"opt/{name}/{i}" in arrays:
            values.append(arrays[f"opt/{name}/{i}"])
            i += 1
        opt_state["state"][name] = values
    opt_state["hyper"]["betas"] = tuple(opt_state["hyper"].get("betas", (0.9, 0.999)))
    return model_state, opt_state, meta["rng"], meta["epoch"], meta["config"], meta["history"]


# ---- pictures -------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    plt = _plt()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=Path(path).suffix[1:]))
    plt.close(fig)


def image_grid(images, rows, cols):
    """(n, 784) in [0, 1] -> one (rows*28, cols*28) image."""
    grid = np.zeros((rows * 29 - 1, cols * 29 - 1), dtype=np.float32)  # white gaps under gray_r
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        grid[r * 29 : r * 29 + 28, c * 29 : c * 29 + 28] = img.reshape(28, 28)
    return grid


def decode_mean(model, z):
    with scg.no_grad():
        out = model.decoder(scg.Tensor(z.astype(np.float32))).data
    return 1 / (1 + np.exp(-out)) if model.likelihood == "bernoulli" else np.clip(out, 0, 1)


def plot_samples(model, path, n=64, rng=None):
    """n samples in a grid of ceil(sqrt(n)) columns (the last row may be part empty)."""
    rng = scg.random.resolve(rng)
    z = rng.standard_normal((n, model.latent)).astype(np.float32)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5 * rows / cols))
    ax.imshow(image_grid(decode_mean(model, z), rows, cols), cmap="gray_r")
    ax.set_title("samples: mean of p(x|z), z ~ N(0, I)")
    ax.axis("off")
    save_figure(fig, path)


def plot_reconstructions(model, x, path, n=16):
    with scg.no_grad():
        mu = model.q(scg.Tensor(x[:n])).loc.data
    recon = decode_mean(model, mu)
    both = np.concatenate([x[:n], recon])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 1.4))
    ax.imshow(image_grid(both, 2, n), cmap="gray_r")
    ax.set_title("test images (top) and reconstructions from the posterior mean (bottom)")
    ax.axis("off")
    save_figure(fig, path)


def plot_latent(model, x, labels, path):
    """2-D latent: the decoded manifold; otherwise the posterior means projected on their
    two principal components, coloured by class."""
    plt = _plt()
    if model.latent == 2:
        from scipy.stats import norm

        grid = norm.ppf(np.linspace(0.05, 0.95, 15))
        z = np.array([[a, b] for b in grid[::-1] for a in grid], dtype=np.float32)
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(image_grid(decode_mean(model, z), 15, 15), cmap="gray_r")
        ax.set_title("decoded latent manifold")
        ax.axis("off")
    else:
        with scg.no_grad():
            mu = model.q(scg.Tensor(x)).loc.data
        centred = mu - mu.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        p = centred @ vt[:2].T
        fig, ax = plt.subplots(figsize=(7, 5))
        for c in np.unique(labels):
            pts = p[labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=3, color=plt.cm.tab10(int(c) % 10), label=_class_name(int(c)))
        ax.legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
        ax.set_title(f"posterior means, {len(x)} test images (2 principal components)", fontsize=10)
        fig.tight_layout()
    save_figure(fig, path)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def _class_name(c):
    return FASHION_CLASSES[c] if 0 <= c < len(FASHION_CLASSES) else str(c)


def plot_curve(history, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_bound"] for h in history], "o-", label="train bound")
    ax.plot(epochs, [h["valid_bound"] for h in history], "s-", label="validation bound")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bound per image (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


# ---- the command line -------------------------------------------------------------------


def prepare(args, rng):
    """Train/validation/test arrays in [0, 1] (and test labels), as the config asks."""
    d = data.load(args.dataset, args.data_dir)
    x_train = d["train_images"].reshape(len(d["train_images"]), -1).astype(np.float32) / 255
    x_test = d["test_images"].reshape(len(d["test_images"]), -1).astype(np.float32) / 255
    y_test = d["test_labels"].astype(np.int64)
    x_valid, x_train = cli.split_train_valid(x_train, args.valid)
    if args.limit:
        x_train = x_train[: args.limit]
        x_valid = x_valid[: max(args.limit // 10, 100)]
        x_test, y_test = x_test[: max(args.limit // 5, 200)], y_test[: max(args.limit // 5, 200)]
    if args.likelihood == "bernoulli":
        # Held-out sets are binarized once with a fixed seed (Burda et al. 2016).
        fixed = np.random.default_rng(2016)
        x_valid = (fixed.random(x_valid.shape) < x_valid).astype(np.float32)
        x_test_bin = (fixed.random(x_test.shape) < x_test).astype(np.float32)
        if args.binarize == "static":
            x_train = (np.random.default_rng(0).random(x_train.shape) < x_train).astype(np.float32)
    else:
        x_test_bin = x_test
    return x_train, x_valid, x_test, x_test_bin, y_test


def parameter_count(hidden, latent, x_dim=784, likelihood="bernoulli"):
    """Number of scalars in VAE(x_dim, hidden, latent, likelihood)."""
    encoder = x_dim * hidden + hidden + hidden * 2 * latent + 2 * latent
    decoder = latent * hidden + hidden + hidden * x_dim + x_dim
    return encoder + decoder + (x_dim if likelihood == "gaussian" else 0)


def step_bytes(k, batch, hidden, latent, params, x_dim=784, backward=True):
    """Rough peak memory of one step on a batch: k*batch*(9*784 + 8*hidden + 8*latent) float32
    activations with backward (measured), about half without; plus parameters, gradients and
    Adam's two moments."""
    per_draw = 9 * x_dim + 8 * hidden + 8 * latent if backward else 5 * x_dim + 4 * hidden + 8 * latent
    return 4 * k * batch * per_draw + 16 * params


OUTPUTS = ("checkpoint.npz", "metrics.jsonl", "evaluation.json", "learning_curve.png", "samples.png",
           "reconstructions.png", "latent.png", "graph.svg")


def train(args):
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    params = parameter_count(args.hidden, args.latent, likelihood=args.likelihood)
    cli.check_memory(step_bytes(args.k, args.batch_size, args.hidden, args.latent, params),
                     f"a training step with --k {args.k} --batch-size {args.batch_size} --hidden {args.hidden}",
                     "choose a smaller --k, --batch-size or --hidden")
    x_train, x_valid, x_test, x_test_bin, y_test = prepare(args, np.random.default_rng(args.seed))
    with cli.run_folder(args.out, resume=args.resume, overwrite=args.overwrite, outputs=OUTPUTS) as out:
        ckpt = out / "checkpoint.npz"
        cli.check_disk(out, 2 * 12 * params, "a checkpoint (written beside the previous one)")
        rng = np.random.default_rng(args.seed)
        scg.manual_seed(args.seed)
        model = VAE(hidden=args.hidden, latent=args.latent, likelihood=args.likelihood, rng=rng)
        opt = scg.optim.Adam(model.parameters(), lr=args.lr)
        history, start = [], 1
        if args.resume:
            model_state, opt_state, rng_state, epoch, saved, history = load_checkpoint(ckpt, kind="vae")
            changed = {k: (saved.get(k), v) for k, v in config.items() if k not in ("epochs",) and saved.get(k) != v}
            if changed:
                raise CommandError(f"--resume: the checkpoint was trained with different settings: {changed}")
            model.load_state_dict(model_state)
            opt.load_state_dict(opt_state)
            rng.bit_generator.state = rng_state
            start = epoch + 1
            print(f"resuming after epoch {epoch} from {ckpt}")
        dynamic = args.likelihood == "bernoulli" and args.binarize == "dynamic"
        for epoch in range(start, args.epochs + 1):
            t0 = time.perf_counter()
            order = rng.permutation(len(x_train))
            total, seen = 0.0, 0
            bar = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch}/{args.epochs}", unit="batch")
            for i in bar:
                xb = x_train[order[i : i + args.batch_size]]
                if dynamic:
                    xb = (rng.random(xb.shape) < xb).astype(np.float32)
                g = build_graph(model, xb, k=args.k, kl=args.kl, rng=rng)
                loss = g.surrogate()
                opt.zero_grad()
                (loss / len(xb)).backward()
                opt.step()
                total -= loss.item()
                seen += len(xb)
                bar.set_postfix(bound=f"{total / seen:.2f}")
            valid_bound = dataset_bound(model, x_valid, k=args.k, kl=args.kl, rng=np.random.default_rng(epoch))
            row = dict(epoch=epoch, train_bound=total / seen, valid_bound=valid_bound,
                       seconds=time.perf_counter() - t0)
            cli.check_diverged(row, epoch, ckpt)
            history.append(row)
            print(json.dumps(row), flush=True)
            save_checkpoint(ckpt, model, opt, rng, epoch, config, history)
            write_metrics(out / "metrics.jsonl", history)
        write_pictures(model, args, out, history, x_test, y_test, x_test_bin)
    return model, history


def write_pictures(model, args, out, history, x_test, y_test, x_test_bin):
    if history:
        plot_curve(history, out / "learning_curve.png")
    plot_samples(model, out / "samples.png", rng=np.random.default_rng(0))
    plot_reconstructions(model, x_test_bin if args.likelihood == "bernoulli" else x_test, out / "reconstructions.png")
    n = min(len(x_test), 5000)
    plot_latent(model, x_test_bin[:n], y_test[:n], out / "latent.png")
    g = build_graph(model, x_test_bin[:8], k=args.k, kl=args.kl, rng=np.random.default_rng(0))
    g.render(out / "graph.svg", format="svg")


def model_from_checkpoint(out):
    """(model, config, epoch) from ``out/checkpoint.npz``; refuses other models' checkpoints
    and models with non-finite parameters."""
    path = Path(out) / "checkpoint.npz"
    model_state, _, _, epoch, config, history = load_checkpoint(
        path, kind="vae", config_keys=("hidden", "latent", "likelihood", "dataset", "valid", "binarize"))
    model = VAE(hidden=config["hidden"], latent=config["latent"], likelihood=config["likelihood"])
    try:
        model.load_state_dict(model_state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: its arrays do not fit the model its settings describe ({e})") from None
    cli.check_finite(model, path)
    return model, config, epoch


def evaluate(args):
    model, config, epoch = model_from_checkpoint(args.out)
    cfg = argparse.Namespace(**{**config, "data_dir": args.data_dir or config.get("data_dir"),
                                "limit": args.limit if args.limit is not None else config.get("limit")})
    step = max(1, 500 // args.k)
    cli.check_memory(step_bytes(args.k, step, config["hidden"], config["latent"], 0, backward=False),
                     f"evaluating with --k {args.k}", "choose a smaller --k")
    _, _, _, x_test_bin, _ = prepare(cfg, None)
    rng = np.random.default_rng(args.seed)
    elbo = dataset_bound(model, x_test_bin, k=1, rng=rng, desc="test ELBO")
    ll = dataset_bound(model, x_test_bin, k=args.k, rng=rng, desc=f"test log-likelihood (k={args.k})")
    result = dict(epoch=epoch, test_elbo=elbo, test_log_likelihood=ll, k=args.k, n_test=len(x_test_bin))
    if not (math.isfinite(elbo) and math.isfinite(ll)):
        raise CommandError(f"the test bounds are not finite (ELBO {elbo}, log-likelihood {ll}); "
                           f"nothing was written to {Path(args.out) / 'evaluation.json'}")
    print(json.dumps(result))
    atomic_write(Path(args.out) / "evaluation.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


def sample(args):
    model, _, _ = model_from_checkpoint(args.out)
    path = Path(args.out) / "samples.png"
    plot_samples(model, path, n=args.n, rng=np.random.default_rng(args.seed))
    print(f"wrote {args.n} samples to {path}")


CONFIG_KEYS = ("dataset", "data_dir", "epochs", "batch_size", "lr", "latent", "hidden", "k", "kl",
               "likelihood", "binarize", "seed", "valid", "limit")


def positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def positive_float(s):
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {s}")
    return v


def add_run_options(p, resume=True):
    """--out's companions for training: --resume (if the model supports it) and --overwrite."""
    group = p.add_mutually_exclusive_group()
    if resume:
        group.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz")
    group.add_argument("--overwrite", action="store_true",
                       help="replace a run already in --out (otherwise training there is refused)")


def parser():
    ap = argparse.ArgumentParser(prog="python -m models.vae", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a VAE (or IWAE with --k > 1)")
    t.add_argument("--dataset", default="fashion-mnist", choices=data.DATASETS)
    t.add_argument("--data-dir", default=None, help="folder with the IDX files (else SCG_DATA, cache, system)")
    t.add_argument("--epochs", type=positive_int, default=30)
    t.add_argument("--batch-size", type=positive_int, default=128)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument("--latent", type=positive_int, default=20, help="latent dimensions (2 draws the manifold)")
    t.add_argument("--hidden", type=positive_int, default=400)
    t.add_argument("--k", type=positive_int, default=1, help="importance samples: 1 = ELBO, >1 = IWAE bound")
    t.add_argument("--kl", default="analytic", choices=("analytic", "mc"))
    t.add_argument("--likelihood", default="bernoulli", choices=("bernoulli", "gaussian"))
    t.add_argument("--binarize", default="dynamic", choices=("dynamic", "static"))
    t.add_argument("--valid", type=positive_int, default=5000, help="training images held out for validation")
    t.add_argument("--limit", type=positive_int, default=None, help="use only the first N training images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/vae")
    add_run_options(t)
    e = sub.add_parser("evaluate", help="test ELBO and importance-sampled log-likelihood")
    e.add_argument("--out", default="runs/vae")
    e.add_argument("--k", type=positive_int, default=500, help="importance samples for log p(x)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--limit", type=positive_int, default=None)
    e.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("sample", help="a grid of samples from a trained model")
    s.add_argument("--out", default="runs/vae")
    s.add_argument("--n", type=positive_int, default=64)
    s.add_argument("--seed", type=int, default=0)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    cli.run_command({"train": train, "evaluate": evaluate, "sample": sample}[args.command], args)


if __name__ == "__main__":
    main()
