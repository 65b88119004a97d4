"""What the command lines (``models.vae``, ``models.discrete_vae``) share as command lines:
argparse types and the options every training command has, one-line errors, run folders
(a lock, no silent replacement of a run, no stale temporary files), pre-flight checks of
memory and disk, and atomic writes. What training itself shares (data, the epoch loop,
checkpoints, metrics, pictures) is ``models.training``.

Every refusal is a ``CommandError`` whose message names the problem and the way out;
``run_command`` prints it as one line on stderr and exits non-zero. Out-of-memory, I/O
errors and SIGTERM/Ctrl-C get one line too. Anything else is a bug and keeps its traceback.
"""

import argparse
import fcntl
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from models import data, entry


class CommandError(Exception):
    """A request the command refuses; the message says what is wrong and what to do."""


class CheckpointError(CommandError, ValueError):
    """A checkpoint that is missing, unreadable, or of another model."""


class Terminated(BaseException):
    """Raised by the SIGTERM handler, so that ``finally`` blocks (temporary files, the
    run lock) are cleaned up as for Ctrl-C."""


# ---- atomic writes and their temporary files ---------------------------------------------

# ".<name>.<pid>.tmp-<random><suffix>": the pid tells a later run whether the writer is alive.
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp-[A-Za-z0-9_]+(\.[A-Za-z0-9]+)?$")


def atomic_write(path, write):
    """``write(tmp_path)``, then move into place: a crash never leaves a half-written file,
    and the temporary file (named after this process's pid) is removed on any exception."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno is not None:  # name the file meant, not the temporary one
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def pid_alive(pid):
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder, owned=()):
    """Remove the temporary files of atomic writes into ``folder`` whose writer is dead
    (a kill -9 or power loss leaves them). Temporary files without a pid are removed only
    when the caller holds the folder's lock and names in ``owned`` the files that only it
    writes: ``.<name>.<random><suffix>`` for those names (as older versions of
    ``atomic_write`` named them) and ``.scg-render-*`` (``scg.viz.render``, for graph.svg).
    Returns the names removed."""
    removed = []
    for p in Path(folder).iterdir():
        m = TEMP_NAME.match(p.name)
        if m:
            stale = not pid_alive(int(m["pid"]))
        else:
            stale = any(re.fullmatch(rf"\.{re.escape(n)}\.[A-Za-z0-9_]{{8}}{re.escape(Path(n).suffix)}", p.name)
                        for n in owned) or (bool(owned) and p.name.startswith(".scg-render-"))
        if stale and p.is_file():
            try:
                p.unlink()
                removed.append(p.name)
            except FileNotFoundError:  # another run cleaned it first
                pass
    return removed


# ---- run folders ----------------------------------------------------------------------------

LOCK = ".lock"


def _acquire_lock(out):
    """An exclusive ``flock`` on ``out/.lock``, which holds the owner's pid. The kernel drops
    the lock when its process dies (kill -9 included), so a lock file left by a dead
    process is taken over, never waited on. Returns the open file descriptor."""
    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CommandError(f"cannot write into --out {out}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CommandError(
                f"--out {out} is in use by another run (pid {owner}); wait for it to finish or choose another --out"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:  # the owner removed it between our open and our flock
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _release_lock(out, fd):
    try:
        os.unlink(out / LOCK)  # while still holding it: nobody can take a lock on this inode afterwards
    except OSError:
        pass
    os.close(fd)


def _check_writable(out):
    """Create and remove a file in ``out``: a read-only folder is found before any work."""
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=f".write-test.{os.getpid()}.tmp-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise CommandError(f"cannot write into --out {out}: {e.strerror}") from None


def checkpoint_epoch(path):
    """The epoch recorded in checkpoint ``path``, or None if it cannot be read."""
    try:
        with np.load(path) as f:
            return json.loads(f["meta"].tobytes().decode())["epoch"]
    except Exception:
        return None


@contextmanager
def run_folder(out, resume=False, overwrite=False, outputs=(), can_resume=True):
    """Claim folder ``out`` for a training run: create it, lock it against a second run,
    check that it is writable, remove stale temporary files, and refuse to replace a run
    already there (``out/checkpoint.npz``) unless ``resume`` (continue it) or ``overwrite``
    (then the files named in ``outputs`` are removed first). Yields ``out`` as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"cannot create --out {out}: {e.strerror}") from None
    fd = _acquire_lock(out)
    try:
        _check_writable(out)
        removed = remove_stale_temps(out, owned=outputs)
        if removed:
            print(f"removed {len(removed)} temporary file(s) left by an interrupted run in {out}")
        ckpt = out / "checkpoint.npz"
        if ckpt.exists() and not (resume or overwrite):
            epoch = checkpoint_epoch(ckpt)
            what = f"a run (checkpoint after epoch {epoch})" if epoch is not None else f"a checkpoint ({ckpt.name})"
            way = "pass --resume to continue it or --overwrite to replace it" if can_resume else \
                "pass --overwrite to replace it"
            raise CommandError(f"--out {out} already holds {what}; {way}, or choose another --out")
        if overwrite:
            for name in outputs:
                (out / name).unlink(missing_ok=True)
        yield out
    finally:
        _release_lock(out, fd)


# ---- pre-flight checks ----------------------------------------------------------------------


def gib(nbytes):
    """A byte count for people: '1.5 GiB' or '300 MiB'."""
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def available_memory():
    """Bytes of memory available to this process (MemAvailable, capped by a cgroup limit), or None."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            avail = min(avail if avail is not None else np.inf, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def step_bytes(k, batch, hidden, latent, params, x_dim=784, backward=True):
    """Rough peak memory of one step of an MLP encoder/decoder model on a batch with ``k``
    draws per image: k*batch*(9*784 + 8*hidden + 8*latent) float32 activations with backward
    (measured on the VAE), about half without; plus parameters, gradients and Adam's two moments."""
    per_draw = 9 * x_dim + 8 * hidden + 8 * latent if backward else 5 * x_dim + 4 * hidden + 8 * latent
    return 4 * k * batch * per_draw + 16 * params


def check_memory(nbytes, what, advice):
    """Refuse up front when ``what`` needs more memory than is available."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise CommandError(f"{what} needs about {gib(nbytes)} of memory and {gib(avail)} is available; {advice}")


def check_disk(folder, nbytes, what):
    """Refuse up front when ``what`` needs more disk in ``folder`` than is free."""
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise CommandError(f"{what} needs about {gib(nbytes)} of disk in {folder} and {gib(free)} is free")


# ---- options -----------------------------------------------------------------------------------


def positive_int(s):
    """argparse type: an integer >= 1."""
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def nonnegative_int(s):
    """argparse type: an integer >= 0."""
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s}")
    return v


def seed(s):
    """argparse type: a seed of numpy's generators, an integer >= 0."""
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer (numpy's generators take no negative "
                                         f"seeds), got {s}")
    return v


FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # below this a float32 is subnormal, then 0


def float32_range(high=None):
    """argparse type: a float that stays a positive, finite number in float32 (at least
    FLOAT32_TINY, so 1e-50 does not become 0) and is at most ``high``."""

    def parse(s):
        v = float(s)
        if not (math.isfinite(v) and v >= FLOAT32_TINY and (high is None or v <= high)):
            allowed = f"in [{FLOAT32_TINY:.3g}, {high:g}]" if high is not None else f">= {FLOAT32_TINY:.3g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {allowed} (below {FLOAT32_TINY:.3g} a float32 "
                                             f"is subnormal or 0), got {s}")
        return v

    parse.__name__ = "float"  # argparse names the type in "invalid float value: 'x'"
    return parse


# Adam moves every weight by up to about lr per step: beyond 1 the weights (initialised
# within +-1/sqrt(fan-in)) are thrown around at the first step and training diverges.
MAX_LR = 1.0
learning_rate = float32_range(MAX_LR)


def add_run_options(p, resume=True):
    """--out's companions for training: --resume (if the model supports it) and --overwrite."""
    group = p.add_mutually_exclusive_group()
    if resume:
        group.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz")
    group.add_argument("--overwrite", action="store_true",
                       help="replace a run already in --out (otherwise training there is refused)")


def add_training_options(p, *, epochs, batch_size, out, resume=True):
    """The options of every training command: the data (--dataset, --data-dir, --valid,
    --limit), the optimization (--epochs, --batch-size, --lr, --seed) and the run (--out and
    its companions); the defaults that differ between models are arguments."""
    p.add_argument("--dataset", default="fashion-mnist", choices=data.DATASETS)
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (else SCG_DATA, cache, system)")
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--batch-size", type=positive_int, default=batch_size)
    p.add_argument("--lr", type=learning_rate, default=1e-3, help=f"Adam's step size, in (0, {MAX_LR:g}]")
    p.add_argument("--valid", type=nonnegative_int, default=5000,
                   help="training images held out for validation (0: train on every one, no validation bound)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N training images (and N/10 validation, N/5 test images, at least 100 "
                        "and 200)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--no-trace", dest="trace", action="store_false",
                   help="run every training step eagerly (by default scg.trace records the step twice, then "
                        "replays it: the same numbers, bit for bit, faster)")
    p.add_argument("--out", default=out)
    add_run_options(p, resume=resume)


# ---- running a command ----------------------------------------------------------------------


def _on_sigterm(signum, frame):
    raise Terminated()


def fail(message, code):
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_command(command, args):
    """Run ``command(args)``; refusals, out-of-memory, I/O errors and interruptions end with
    one line on stderr and a non-zero exit status (2 for refusals). Ctrl-C before this point
    (during the imports) is :mod:`models.entry`'s; from here on it is this function's."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        if previous_int is entry.interrupted_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return command(args)
    except (CommandError, data.DataError) as e:
        fail(str(e), 2)
    except MemoryError as e:
        fail(f"out of memory ({e}); try a smaller --batch-size or fewer samples per image", 1)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}", 1)
    except KeyboardInterrupt:
        fail("interrupted; the checkpoint of the last finished epoch is kept", 130)
    except Terminated:
        fail("terminated (SIGTERM); the checkpoint of the last finished epoch is kept", 143)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is entry.interrupted_while_starting:
            signal.signal(signal.SIGINT, previous_int)
