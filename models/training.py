"""What training a model on images needs, written once for every model in ``models/``:
the data (``prepare``, ``binarize``), the epoch loop with its progress bar (``fit``),
checkpoints and metrics, evaluation helpers (``batched_mean``, ``write_evaluation``), and
pictures (``image_grid``, ``plot_images``, ``plot_curve``).

A model file keeps the model, its graph and its command line; how a command line behaves
(errors, run folders, locks, pre-flight checks, atomic writes, argparse types) is
``models.cli``. This module is about learning; that one is about the process and its files.

Checkpoint format (``.npz``): ``model/<parameter name>`` arrays, ``opt/<state name>/<i>``
arrays (the optimizer's per-parameter state), and ``meta``, a JSON object stored as uint8
bytes: ``model`` (which command line wrote it), ``epoch``, ``config``, ``history``,
``opt_hyper``, ``opt_step``, ``opt_param_steps``, ``opt_state_names``, ``rng`` (the state
of the training generator).
"""

import json
import math
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

import scg
from models import data
from models.cli import CheckpointError, CommandError, atomic_write

# ---- data ----------------------------------------------------------------------------------


def binarize(x, rng):
    """A Bernoulli draw of every pixel: x (..., 784) in [0, 1] -> float32 in {0, 1}."""
    return (rng.random(x.shape) < x).astype(np.float32)


def split_train_valid(images, valid):
    """(x_valid, x_train): ``valid`` images held out by a fixed permutation (seed 12345)."""
    if valid >= len(images):
        raise CommandError(f"--valid {valid} holds out every training image (the training set has {len(images)}); "
                           f"choose a smaller --valid")
    perm = np.random.default_rng(12345).permutation(len(images))
    return images[perm[:valid]], images[perm[valid:]]


Images = namedtuple("Images", "train valid test test_binary test_labels")
Images.__doc__ = """Flattened images (n, 784) float32: ``train`` and ``test`` in [0, 1]; ``valid``
and ``test_binary`` binarized once (or in [0, 1] without held-out binarization);
``test_labels`` (n,) int64."""


def prepare(dataset, data_dir=None, valid=5000, limit=None, binarize_held_out=True):
    """The data set as :class:`Images`: ``valid`` training images held out for validation,
    the first ``limit`` training images (with ``limit // 10`` validation and ``limit // 5``
    test images, at least 100 and 200) when ``limit``. Held-out sets are binarized once with
    a fixed seed (2016), validation first, as Burda et al. (2016) do."""
    d = data.load(dataset, data_dir)
    # Split and cut the uint8 images first, then scale only what is kept (the same numbers:
    # the scaling is elementwise), not all 60,000 images (188 MB of float32) on every run.
    x_train = d["train_images"].reshape(len(d["train_images"]), -1)
    x_test = d["test_images"].reshape(len(d["test_images"]), -1)
    y_test = d["test_labels"].astype(np.int64)
    x_valid, x_train = split_train_valid(x_train, valid)
    if limit:
        x_train = x_train[:limit]
        x_valid = x_valid[: max(limit // 10, 100)]
        x_test, y_test = x_test[: max(limit // 5, 200)], y_test[: max(limit // 5, 200)]
    x_train, x_valid, x_test = (a.astype(np.float32) / 255 for a in (x_train, x_valid, x_test))
    x_test_binary = x_test
    if binarize_held_out:
        fixed = np.random.default_rng(2016)
        x_valid = binarize(x_valid, fixed)
        x_test_binary = binarize(x_test, fixed)
    return Images(x_train, x_valid, x_test, x_test_binary, y_test)


# ---- the epoch loop ----------------------------------------------------------------------------


def training_step(graph, opt, trace=True):
    """The step on a minibatch ``xb`` (B, 784): the surrogate of ``graph(xb)``, then, if its
    value is finite, a gradient of surrogate / B and a step of ``opt``; returns the surrogate
    (a Tensor whose value is the sampled objective).

    With ``trace`` it is an ``scg.trace`` step: recorded twice, then replayed (the same
    numbers, bit for bit, without rebuilding the graph); a model the recorder refuses (a
    baseline that reads its statistics as Python numbers, say) warns once and runs eagerly."""

    def step(xb):
        loss = graph(xb).surrogate()
        if not np.isfinite(loss.data):  # a branch on a value: a replay stops here and reruns eagerly
            return loss  # the caller stops with Diverged before any update
        opt.zero_grad()
        (loss / len(xb)).backward()
        opt.step()
        return loss

    return scg.trace(step, fallback=True) if trace else step


def train_epoch(graph, opt, x, batch_size, rng, dynamic=True, desc=None, step=None):
    """One pass over ``x`` (n, 784) in minibatches of a fresh permutation (``rng``), each
    binarized afresh when ``dynamic``: a :func:`training_step` (``step``, made eager from
    ``graph`` and ``opt`` when not given) on each. Returns the mean bound per image,
    -(sum of the minibatch objectives) / n."""
    from tqdm.auto import tqdm  # here, not at the top: a notebook that only builds graphs needs no ipywidgets

    step = step or training_step(graph, opt, trace=False)
    order = rng.permutation(len(x))
    total, seen = 0.0, 0
    steps = range(0, len(order), batch_size)
    bar = tqdm(steps, desc=desc, unit="batch")
    for n, i in enumerate(bar, 1):
        xb = x[order[i : i + batch_size]]
        if dynamic:
            xb = binarize(xb, rng)
        try:
            loss = step(xb)
        except ValueError:  # a distribution refusing NaN parameters: did the last step leave NaN weights?
            bad = not_finite(opt.params)
            if bad:
                bar.close()
                raise Diverged(n, len(steps), f"the parameters are not finite ({bad})") from None
            raise
        value = loss.item()  # the surrogate's value is the sampled objective
        if not math.isfinite(value):
            bar.close()
            raise Diverged(n, len(steps), f"the loss is {value}")
        total -= value
        seen += len(xb)
        bar.set_postfix(bound=f"{total / seen:.2f}")
    bad = not_finite(opt.params)  # the last step's update, which no loss has seen yet
    if bad:
        raise Diverged(len(steps), len(steps), f"the parameters are not finite after it ({bad})")
    return total / seen


def not_finite(params):
    """The indices of ``params`` (Tensors) holding NaN or infinity, as a short string ('' if none)."""
    bad = [str(i) for i, p in enumerate(params) if not np.isfinite(p.data).all()]
    return f"parameter(s) {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}" if bad else ""


class Diverged(CommandError):
    """Training produced a loss or parameters that are not finite, at ``step`` of ``steps``
    (minibatches of the epoch); :func:`fit` adds the epoch and which checkpoint is kept."""

    def __init__(self, step, steps, what, epoch=None, kept=""):
        self.step, self.steps, self.what = step, steps, what
        where = f"epoch {epoch}, step {step}/{steps}" if epoch is not None else f"step {step}/{steps}"
        super().__init__(f"{where}: {what}; training diverged{kept}; try a smaller --lr")


def fit(graph, model, opt, rng, x_train, *, epochs, batch_size, validate, out, config, kind, history=(),
        start=1, dynamic=True, tags=None, label="", trace=True):
    """Epochs ``start`` .. ``epochs`` of :func:`train_epoch` (its step traced unless ``trace``
    is False: see :func:`training_step`). After each: a metrics row
    ``{epoch, **tags, train_bound, **validate(epoch), seconds}`` is printed as JSON, refused if
    a bound is not finite (the last good checkpoint stays), then ``out/checkpoint.npz`` and
    ``out/metrics.jsonl`` are written. Returns the whole history (a list of rows)."""
    out = Path(out)
    history = list(history)
    step = training_step(graph, opt, trace)  # one for the run: its recordings are kept across epochs
    for epoch in range(start, epochs + 1):
        t0 = time.perf_counter()
        try:
            train_bound = train_epoch(graph, opt, x_train, batch_size, rng, dynamic,
                                      desc=f"{label}epoch {epoch}/{epochs}", step=step)
        except Diverged as e:
            raise Diverged(e.step, e.steps, e.what, epoch, f" and {kept(epoch, out / 'checkpoint.npz')}") from None
        row = dict(epoch=epoch, **(tags or {}), train_bound=train_bound, **validate(epoch))
        row["seconds"] = time.perf_counter() - t0
        check_diverged(row, epoch, out / "checkpoint.npz")
        history.append(row)
        print(json.dumps(row), flush=True)
        save_checkpoint(out / "checkpoint.npz", model, opt, rng, epoch, config, history, kind=kind)
        write_metrics(out / "metrics.jsonl", history)
    return history


def check_diverged(row, epoch, ckpt):
    """Refuse to save an epoch whose bound is NaN or infinite: the last good checkpoint stays."""
    bad = {k: row[k] for k in ("train_bound", "valid_bound") if row.get(k) is not None and not np.isfinite(row[k])}
    if bad:
        raise CommandError(f"epoch {epoch}: the bound is not finite ({bad}); training diverged and "
                           f"{kept(epoch, ckpt)}; try a smaller --lr")


def kept(epoch, ckpt):
    """What is left when epoch ``epoch`` fails: the previous epoch's checkpoint, or nothing."""
    return f"the checkpoint after epoch {epoch - 1} in {ckpt} is kept" if epoch > 1 else "no checkpoint was written"


# ---- evaluation --------------------------------------------------------------------------------


def batched_mean(bound, x, batch, desc=None):
    """The mean over ``x`` of ``bound(xb, i)`` (an ndarray (len(xb),) for the rows ``x[i : i +
    batch]``), computed ``batch`` rows at a time (a progress bar when ``desc``)."""
    starts = range(0, len(x), batch)
    if desc is not None:
        from tqdm.auto import tqdm  # only for a progress bar (see train_epoch)

        starts = tqdm(starts, desc=desc, leave=False, unit="batch")
    total = 0.0
    for i in starts:
        total += float(bound(x[i : i + batch], i).sum())
    return total / len(x)


def write_evaluation(out, result, bounds):
    """Print ``result`` as JSON and write it to ``out/evaluation.json``; refused (nothing
    written) when one of the keys ``bounds`` is not finite."""
    path = Path(out) / "evaluation.json"
    bad = {k: result[k] for k in bounds if not math.isfinite(result[k])}
    if bad:
        raise CommandError(f"the test bounds are not finite ({bad}); nothing was written to {path}")
    print(json.dumps(result))
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


# ---- checkpoints and metrics ------------------------------------------------------------------


def write_metrics(path, history):
    """One JSON object per epoch, one per line (written atomically)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(json.dumps(h) + "\n" for h in history)))


def save_checkpoint(path, model, opt, rng, epoch, config, history, kind):
    """Model and optimizer arrays plus a JSON ``meta`` (epoch, settings, history, random
    state, and ``model``: which command line wrote it), written atomically."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    for name, values in sd["state"].items():
        for i, a in enumerate(values):
            arrays[f"opt/{name}/{i}"] = a
    meta = dict(model=kind, epoch=epoch, config=config, history=history, opt_hyper=sd["hyper"], opt_step=sd["step"],
                opt_param_steps=sd["param_steps"], opt_state_names=sorted(sd["state"]), rng=rng.bit_generator.state)
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
    check_meta(path, meta)
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    opt_state = {"hyper": dict(meta["opt_hyper"]), "step": meta["opt_step"], "state": {}}
    if "opt_param_steps" in meta:  # absent in checkpoints from before per-parameter steps
        opt_state["param_steps"] = meta["opt_param_steps"]
    for name in meta["opt_state_names"]:
        i = 0
        values = []
        while f"opt/{name}/{i}" in arrays:
            values.append(arrays[f"opt/{name}/{i}"])
            i += 1
        opt_state["state"][name] = values
    if isinstance(opt_state["hyper"].get("betas"), list):
        opt_state["hyper"]["betas"] = tuple(opt_state["hyper"]["betas"])  # JSON made it a list
    return model_state, opt_state, meta["rng"], meta["epoch"], meta["config"], meta["history"]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# meta key -> (what it must be, test): a hand-edited or damaged checkpoint is refused naming the key.
META_TYPES = {
    "epoch": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "config": ("a JSON object", lambda v: isinstance(v, dict)),
    "history": ("a list of JSON objects (one per epoch)", lambda v: isinstance(v, list)
                and all(isinstance(h, dict) for h in v)),
    "opt_hyper": ("a JSON object", lambda v: isinstance(v, dict)),
    "opt_step": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "opt_state_names": ("a list of names", lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v)),
    "rng": ("a JSON object (a numpy bit generator's state)", lambda v: isinstance(v, dict)),
}


def check_meta(path, meta):
    """Refuse (CheckpointError naming the key) a checkpoint whose meta values have the wrong type."""
    for key, (what, ok) in META_TYPES.items():
        if not ok(meta[key]):
            raise CheckpointError(f"{path}: its {key} must be {what}, got {json.dumps(meta[key])[:60]}; "
                                  f"the checkpoint is damaged or was edited by hand")


def check_config(path, config, spec):
    """Refuse (CheckpointError naming the key and what it must be) a setting of ``config``
    that ``spec`` (key -> (what, test)) does not accept; keys absent from ``config`` are
    load_checkpoint's to refuse (or the model's defaults)."""
    for key, (what, ok) in spec.items():
        if key in config and not ok(config[key]):
            raise CheckpointError(f"{path}: its setting {key} = {json.dumps(config[key])} is not {what}; "
                                  f"the checkpoint is damaged or was edited by hand")


def positive_int(v):
    """For :func:`check_config` specs: an integer >= 1 (not a bool, not a string)."""
    return _is_int(v) and v >= 1


def nonnegative_int(v):
    return _is_int(v) and v >= 0


def optional_positive_int(v):
    return v is None or positive_int(v)


def optional_str(v):
    return v is None or isinstance(v, str)


def one_of(*choices):
    return lambda v: isinstance(v, str) and v in choices


# The settings every model's config holds, as check_config specs.
DATA_SPEC = {
    "dataset": (f"one of {', '.join(data.DATASETS)}", one_of(*data.DATASETS)),
    "data_dir": ("a folder name or null", optional_str),
    "valid": ("an integer >= 0", nonnegative_int),
    "limit": ("an integer >= 1 or null", optional_positive_int),
}


def resume(path, kind, model, opt, rng, config, ignore=("epochs",), defaults=None):
    """Continue a run from checkpoint ``path``: restore ``model``, ``opt`` and ``rng`` in place
    and return (first epoch to train, history so far). Refused when the checkpoint's settings
    differ from ``config`` (except the keys in ``ignore``); a setting the checkpoint predates
    counts as its value in ``defaults`` (what runs before that option did)."""
    model_state, opt_state, rng_state, epoch, saved, history = load_checkpoint(path, kind=kind)
    saved = {**(defaults or {}), **saved}
    changed = {k: (saved.get(k), v) for k, v in config.items() if k not in ignore and saved.get(k) != v}
    if changed:
        raise CommandError(f"--resume: the checkpoint was trained with different settings: {changed}")
    restore_model(path, model, model_state)
    try:
        opt.load_state_dict(opt_state)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its optimizer state cannot be used ({e})") from None
    bad = [f"{name}[{i}]" for name, values in opt.state.items() for i, a in enumerate(values)
           if not np.all(np.isfinite(a))]
    if bad:
        raise CheckpointError(f"{path}: the optimizer's state is not finite ({', '.join(bad[:5])}); "
                              f"the run diverged or the checkpoint is damaged")
    try:
        rng.bit_generator.state = rng_state
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(f"{path}: its random state cannot be restored ({type(e).__name__}: {e})") from None
    print(f"resuming after epoch {epoch} from {path}")
    return epoch + 1, history


def restore_model(path, model, model_state):
    """Load ``model_state`` into ``model``, refusing (one line) arrays that do not fit it and
    parameters that are not finite (a diverged run): what evaluating, sampling and resuming share."""
    try:
        model.load_state_dict(model_state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: its arrays do not fit the model its settings describe ({e})") from None
    bad = [name for name, v in model.state_dict().items() if not np.all(np.isfinite(v))]
    if bad:
        raise CheckpointError(f"{path}: the model's parameters are not finite ({', '.join(bad)}); "
                              f"the run diverged, so there is nothing meaningful to evaluate, sample or resume")


def load_model(path, kind, build, config_keys, config_spec=None):
    """(model, config, epoch) from checkpoint ``path``, the model made by ``build(config)``.
    Refuses other models' checkpoints, settings that ``config_spec`` (see :func:`check_config`)
    does not accept, arrays that do not fit the settings, and parameters that are not finite
    (a diverged run)."""
    model_state, _, _, epoch, config, _ = load_checkpoint(path, kind=kind, config_keys=config_keys)
    check_config(path, config, config_spec or {})
    model = build(config)
    restore_model(path, model, model_state)
    return model, config, epoch


# ---- pictures ----------------------------------------------------------------------------------


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use: the command lines that
    draw nothing do not pay for matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Write ``fig`` atomically in the format of ``path``'s suffix, then close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=Path(path).suffix[1:]))
    pyplot().close(fig)


def image_grid(images, rows, cols):
    """(n, 784) in [0, 1] -> one (rows*29 - 1, cols*29 - 1) image: 28x28 tiles, one-pixel gaps."""
    grid = np.zeros((rows * 29 - 1, cols * 29 - 1), dtype=np.float32)  # white gaps under gray_r
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        grid[r * 29 : r * 29 + 28, c * 29 : c * 29 + 28] = img.reshape(28, 28)
    return grid


def plot_images(images, rows, cols, path, title, figsize):
    """``images`` (n, 784) in [0, 1] as a rows x cols grid with a title, written to ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    ax.imshow(image_grid(images, rows, cols), cmap="gray_r")
    ax.set_title(title)
    ax.axis("off")
    save_figure(fig, path)


def plot_curve(history, path):
    """Train and validation bound per epoch from metrics rows, written to ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_bound"] for h in history], "o-", label="train bound")
    if any(h.get("valid_bound") is not None for h in history):  # --valid 0 holds out nothing
        ax.plot(epochs, [h["valid_bound"] for h in history], "s-", label="validation bound")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bound per image (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


CLASS_NAMES = {"fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                 "Sneaker", "Bag", "Ankle boot")}


def class_name(dataset, c):
    """The name of label ``c`` in ``dataset`` (the digit itself for MNIST)."""
    names = CLASS_NAMES.get(dataset, ())
    return names[c] if 0 <= c < len(names) else str(c)
