"""Train an MLP classifier on Fashion-MNIST with the scg core (a demo of the core
until the VAE lands): ``python -m models.classifier --epochs 2 --out runs/classifier``.

Writes ``metrics.jsonl`` (one line per epoch), ``learning_curve.png`` and
``model.npz`` to ``--out`` (each written atomically).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import scg
from models import data


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then move the file into place, so a crash never
    leaves a half-written ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cross_entropy(logits, onehot):
    """Mean over the batch of -log softmax(logits)[label]; logits (B, C), onehot (B, C)."""
    return -(scg.log_softmax(logits, axis=-1) * onehot).sum() / logits.shape[0]


def accuracy(model, x, y, batch=1000):
    correct = 0
    with scg.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(scg.Tensor(x[i : i + batch])).data.argmax(-1) == y[i : i + batch]).sum())
    return correct / len(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist", choices=data.DATASETS)
    ap.add_argument("--data-dir", default=None, help="folder with the IDX files (else SCG_DATA, cache, system)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, nargs="+", default=[400, 400])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    ap.add_argument("--out", default="runs/classifier")
    args = ap.parse_args(argv)

    scg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    d = data.load(args.dataset, args.data_dir)
    x_train = d["train_images"].reshape(len(d["train_images"]), -1).astype(np.float32) / 255
    y_train = d["train_labels"].astype(np.int64)
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    x_test = d["test_images"].reshape(len(d["test_images"]), -1).astype(np.float32) / 255
    y_test = d["test_labels"].astype(np.int64)
    n_classes = 10
    eye = np.eye(n_classes, dtype=np.float32)

    model = scg.nn.MLP([x_train.shape[1], *args.hidden, n_classes])
    opt = scg.optim.Adam(model.parameters(), lr=args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = []
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        t0, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch}", unit="batch")
        for i in bar:
            idx = order[i : i + args.batch_size]
            loss = cross_entropy(model(scg.Tensor(x_train[idx])), eye[y_train[idx]])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        row = dict(epoch=epoch, train_loss=total / seen, test_accuracy=accuracy(model, x_test, y_test),
                   seconds=time.perf_counter() - t0)
        history.append(row)
        print(json.dumps(row))
    atomic_write(out / "metrics.jsonl", lambda p: Path(p).write_text("".join(json.dumps(r) + "\n" for r in history)))
    atomic_write(out / "model.npz", lambda p: _save_npz(p, model.state_dict()))
    _plot(history, out / "learning_curve.png")
    print(f"test accuracy {history[-1]['test_accuracy']:.4f}; wrote {out}/")


def _save_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _plot(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(5, 3.2))
    epochs = [r["epoch"] for r in history]
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [r["test_accuracy"] for r in history], "s--", color="C1", label="test accuracy")
    ax2.set_ylabel("test accuracy")
    fig.legend(loc="center right")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
