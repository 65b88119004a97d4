"""Right or refused, on the command lines: bad data folders, runs already in --out, a second
run into the same folder, I/O and memory failures, checkpoints of the other model, diverged
models, interruptions (SIGTERM, kill -9) and their temporary files. Every refusal is one
line on stderr with a non-zero exit, never a traceback; nothing saved is lost."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scg
from models import cli, data, discrete_vae, training, vae

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = Path(data.SYSTEM_DIRS["fashion-mnist"])
TINY = ["--limit", "300", "--hidden", "16", "--latent", "2"]
TINY_DISCRETE = ["--estimator", "score-ma", "--limit", "300", "--hidden", "16", "--latents", "2", "--categories", "2"]
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}


def command(module, *args):
    return [sys.executable, "-m", f"models.{module}", *map(str, args)]


def run(module, *args, **kwargs):
    env = {**os.environ, **OFFLINE, **kwargs.pop("env", {})}
    return subprocess.run(command(module, *args), cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
                          **kwargs)


def assert_refused(r, *phrases, code=2):
    """A non-zero exit with one 'error:' line naming the problem, and no traceback."""
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for phrase in phrases:
        assert phrase in last, (phrase, last)


def train_in_process(capsys, code, *args):
    """``vae.main(["train", *args])`` in this process (so monkeypatches apply): it must exit
    with ``code``; returns the last line it wrote to stderr."""
    with pytest.raises(SystemExit) as e:
        vae.main(["train", *map(str, args)])
    assert e.value.code == code
    return capsys.readouterr().err.strip().splitlines()[-1]


def history(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def temp_files(out):
    return sorted(p.name for p in Path(out).iterdir() if p.name.startswith("."))


# The first 5,500 training and 500 test images (conftest.py's small_data): every run here uses
# --limit 300 (300 training, 100 validation, 200 test images, the validation ones drawn from
# 5,000 held out). A test about the size of the real set passes SCG_DATA="" (FULL_DATA).
SMALL_DATA = (5500, 500)
pytestmark = pytest.mark.usefixtures("small_data")


FULL_DATA = {"SCG_DATA": ""}  # env of a run that must see the system's whole fashion-mnist


@pytest.fixture(scope="module")
def vae_run(small_data, tmp_path_factory):
    """A finished one-epoch run, trained in this process (the tests read its files)."""
    out = tmp_path_factory.mktemp("vae-run") / "run"
    vae.main(["train", "--epochs", "1", *TINY, "--out", str(out)])
    assert cli.checkpoint_epoch(out / "checkpoint.npz") == 1
    return out


@pytest.fixture(scope="module")
def discrete_run(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dvae-run") / "run"
    discrete_vae.main(["train", "--epochs", "1", *TINY_DISCRETE, "--out", str(out)])
    assert cli.checkpoint_epoch(out / "checkpoint.npz") == 1
    return out


def copy_run(run_dir, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(run_dir, dest)
    return dest


# ---- --data-dir -------------------------------------------------------------------------------


def data_dir(kind, tmp_path):
    d = tmp_path / "data"
    if kind == "missing":
        return d
    d.mkdir()
    if kind == "incomplete":
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (d / name).symlink_to(SYSTEM / name)
    return d


@pytest.mark.parametrize("kind, phrase", [("missing", "does not exist"), ("empty", "holds none of its files"),
                                          ("incomplete", "missing: t10k-images-idx3-ubyte.gz")])
@pytest.mark.parametrize("module, extra", [("vae", TINY), ("discrete_vae", TINY_DISCRETE)])
def test_a_bad_data_dir_is_refused_naming_what_is_missing(module, extra, kind, phrase, tmp_path):
    out = tmp_path / "run"
    r = run(module, "train", "--epochs", "1", *extra, "--data-dir", data_dir(kind, tmp_path), "--out", out)
    assert_refused(r, "--data-dir", phrase)
    assert not (out / "checkpoint.npz").exists()


# ---- runs already in --out, and concurrent runs -------------------------------------------------


def test_training_into_a_finished_run_is_refused_without_resume_or_overwrite(vae_run, tmp_path):
    out = copy_run(vae_run, tmp_path)
    before = (out / "checkpoint.npz").read_bytes()
    r = run("vae", "train", "--epochs", "1", *TINY, "--out", out)
    assert_refused(r, "already holds a run (checkpoint after epoch 1)", "--resume", "--overwrite")
    assert (out / "checkpoint.npz").read_bytes() == before
    (out / "evaluation.json").write_text("{}")  # an old run's result must not survive --overwrite
    r = run("vae", "train", "--epochs", "1", *TINY, "--seed", "1", "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "checkpoint.npz").read_bytes() != before
    assert not (out / "evaluation.json").exists()


def test_discrete_training_into_a_finished_run_is_refused_without_overwrite(discrete_run, tmp_path):
    out = copy_run(discrete_run, tmp_path)
    before = (out / "checkpoint.npz").read_bytes()
    r = run("discrete_vae", "train", "--epochs", "1", *TINY_DISCRETE, "--out", out)
    assert_refused(r, "already holds a run (checkpoint after epoch 1)", "--overwrite")
    assert "--resume" not in r.stderr  # that command line cannot resume
    assert (out / "checkpoint.npz").read_bytes() == before


def wait_for(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# Runs ``scg-vae`` (as the console script does: the start-up guard, then ``models.vae.main``)
# until it reaches the point named by sys.argv[1] for the sys.argv[2]-th time, where it creates
# the file sys.argv[3] and waits there to be killed. Points: "step" (a training minibatch is
# drawn), "metrics" (an epoch's checkpoint is written, its metrics not yet), "checkpoint" (half
# of a checkpoint's bytes are in its temporary file), "validation" (an epoch's validation bound).
STOP_AT = """
import os, sys, time
from models import entry
entry.guard_startup()
import numpy as np
from models import training, vae
point, nth, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = []

def stop():
    seen.append(1)
    if len(seen) == nth:
        open(marker, "w").close()
        time.sleep(600)

def hook(real, before=stop):
    def hooked(*args, **kwargs):
        before(*args, **kwargs)
        return real(*args, **kwargs)
    return hooked

training_now = []
if point == "step":  # binarize also draws the held-out sets before training: count only in train_epoch
    real_epoch = training.train_epoch
    def train_epoch(*args, **kwargs):
        training_now.append(1)
        try:
            return real_epoch(*args, **kwargs)
        finally:
            training_now.clear()
    training.train_epoch = train_epoch
    training.binarize = hook(training.binarize, lambda *a, **k: training_now and stop())
elif point == "metrics":
    training.write_metrics = hook(training.write_metrics, lambda *a, **k: stop())
elif point == "checkpoint":
    real_savez = np.savez
    def savez(file, **arrays):
        seen.append(1)
        if len(seen) == nth:
            real_savez(file, **arrays)
            file.truncate(file.tell() // 2)
            file.flush()
            os.fsync(file.fileno())
            open(marker, "w").close()
            time.sleep(600)
        return real_savez(file, **arrays)
    np.savez = savez
elif point == "validation":
    vae.dataset_bound = hook(vae.dataset_bound, lambda *a, **k: stop())
sys.argv = ["scg-vae", *sys.argv[4:]]
vae.main()
"""


def stopped_at(point, nth, marker, *argv):
    """A Popen of ``scg-vae *argv`` that waits, alive, at ``point`` (see STOP_AT) once it
    has created ``marker``."""
    return subprocess.Popen([sys.executable, "-c", STOP_AT, point, str(nth), str(marker), *map(str, argv)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_second_run_into_the_same_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    # the first run waits in its first training step (holding the lock) instead of training on
    first = stopped_at("step", 1, tmp_path / "training", "train", "--epochs", "1000", *TINY, "--out", out)
    try:
        lock = out / cli.LOCK
        assert wait_for(lambda: lock.exists() and lock.read_text().strip() == str(first.pid))
        r = run("vae", "train", "--epochs", "1", *TINY, "--out", out, "--overwrite")
        assert_refused(r, f"in use by another run (pid {first.pid})")
        assert first.poll() is None  # the refused run did not end the first one
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
    assert lock.read_text().strip() == str(first.pid)  # a stale lock from a dead process...
    r = run("vae", "train", "--epochs", "1", *TINY, "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]  # ...is taken over
    assert len(history(out)) == 1 and not lock.exists()


# ---- I/O errors -------------------------------------------------------------------------------


def test_out_that_is_a_file_or_below_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("not a folder")
    assert_refused(run("vae", "train", *TINY, "--out", f), f"--out {f} is a file")
    assert_refused(run("vae", "train", *TINY, "--out", f / "run"), f"cannot create --out {f / 'run'}")
    assert f.read_text() == "not a folder"


def test_a_read_only_out_is_found_before_the_first_epoch(tmp_path, monkeypatch, capsys):
    out = tmp_path / "read-only"
    out.mkdir()
    if os.geteuid() != 0:
        out.chmod(0o555)
        try:
            r = run("vae", "train", "--epochs", "1", *TINY, "--out", out)
        finally:
            out.chmod(0o755)
        assert_refused(r, f"cannot write into --out {out}")
        assert '"epoch": 1' not in r.stdout and list(out.iterdir()) == []
        return
    # root writes through chmod, so make every file creation in ``out`` fail as on a read-only mount.
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if Path(path).parent == out and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    def no_epoch(*args, **kwargs):
        raise AssertionError("a training step ran before the read-only folder was found")

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(vae, "build_graph", no_epoch)
    last = train_in_process(capsys, 2, "--epochs", "1", *TINY, "--out", out)
    assert last == f"error: cannot write into --out {out}: Read-only file system"
    assert list(out.iterdir()) == []


def test_a_full_disk_gets_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    def full(file, **arrays):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), file.name)

    monkeypatch.setattr(np, "savez", full)
    out = tmp_path / "run"
    last = train_in_process(capsys, 1, "--epochs", "1", *TINY, "--out", out)
    assert last.startswith("error: ") and "No space left on device" in last
    assert list(out.iterdir()) == []  # no partial checkpoint, no temporary file, no lock


# ---- checkpoints of the other model, incomplete checkpoints --------------------------------------


def test_a_checkpoint_of_the_other_model_is_refused(vae_run, discrete_run):
    assert_refused(run("vae", "evaluate", "--out", discrete_run, "--k", "2"), "checkpoint of models.discrete_vae")
    assert_refused(run("vae", "sample", "--out", discrete_run), "checkpoint of models.discrete_vae")
    assert_refused(run("vae", "train", "--epochs", "2", *TINY, "--out", discrete_run, "--resume"),
                   "checkpoint of models.discrete_vae")
    assert_refused(run("discrete_vae", "evaluate", "--out", vae_run), "checkpoint of models.vae")


def rewrite_meta(path, edit):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    edit(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_checkpoint_missing_meta_keys_is_refused_naming_them(vae_run, tmp_path):
    out = copy_run(vae_run, tmp_path)

    def strip(meta):
        del meta["opt_step"], meta["config"]["latent"], meta["model"]  # an old or hand-made file

    rewrite_meta(out / "checkpoint.npz", strip)
    assert_refused(run("vae", "evaluate", "--out", out, "--k", "2"), "lacks opt_step, config.latent")
    assert_refused(run("vae", "train", "--epochs", "2", *TINY, "--out", out, "--resume"), "lacks opt_step")


# ---- memory --------------------------------------------------------------------------------------


def test_k_100000_is_refused_up_front_with_an_estimate(vae_run, tmp_path):
    out = tmp_path / "run"
    r = run("vae", "train", "--k", "100000", *TINY, "--out", out)
    assert_refused(r, "--k 100000", "GiB of memory", "is available")
    assert not out.exists()
    assert_refused(run("vae", "evaluate", "--out", vae_run, "--k", "100000000"), "--k 100000000", "GiB of memory")


def test_a_memory_error_in_a_step_gets_one_line(tmp_path, monkeypatch, capsys):
    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 38.3 GiB for an array with shape (100000, 128, 784)")

    monkeypatch.setattr(vae, "build_graph", too_big)
    out = tmp_path / "run"
    last = train_in_process(capsys, 1, "--epochs", "1", *TINY, "--out", out)
    assert last.startswith("error: out of memory") and "38.3 GiB" in last
    assert not (out / "checkpoint.npz").exists() and not (out / cli.LOCK).exists()


# ---- --valid, diverged models, sample --n -----------------------------------------------------------


@pytest.mark.parametrize("module, extra", [("vae", TINY), ("discrete_vae", TINY_DISCRETE)])
def test_valid_holding_out_every_training_image_is_refused(module, extra, tmp_path):
    r = run(module, "train", "--epochs", "1", *extra, "--valid", "60000", "--out", tmp_path / "run", env=FULL_DATA)
    assert_refused(r, "--valid 60000 holds out every training image (the training set has 60000)")


def poison(out):
    """Set one parameter of the checkpoint in ``out`` to NaN, as a diverged run leaves it."""
    path = out / "checkpoint.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    name = next(k for k in arrays if k.startswith("model/"))
    arrays[name] = np.full_like(arrays[name], np.nan)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return name[len("model/"):]


def test_evaluating_or_sampling_a_model_with_nan_parameters_is_refused(vae_run, discrete_run, tmp_path):
    out = copy_run(vae_run, tmp_path)
    (out / "evaluation.json").unlink(missing_ok=True)
    name = poison(out)
    assert_refused(run("vae", "evaluate", "--out", out, "--k", "2"), "not finite", name)
    assert_refused(run("vae", "sample", "--out", out, "--n", "4"), "not finite", name)
    assert not (out / "evaluation.json").exists()
    dout = tmp_path / "discrete"
    shutil.copytree(discrete_run, dout)
    name = poison(dout)
    assert_refused(run("discrete_vae", "evaluate", "--out", dout), "not finite", name)
    assert not (dout / "evaluation.json").exists()


def test_training_that_diverges_keeps_the_last_good_checkpoint(vae_run, tmp_path, monkeypatch, capsys):
    out = copy_run(vae_run, tmp_path)
    before = (out / "checkpoint.npz").read_bytes()
    monkeypatch.setattr(vae, "dataset_bound", lambda *a, **k: float("nan"))
    last = train_in_process(capsys, 2, "--epochs", "2", *TINY, "--out", out, "--resume")
    assert "epoch 2: the bound is not finite" in last and "checkpoint after epoch 1" in last
    assert (out / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("n", [10, 3, 2])
def test_sample_draws_n_images(vae_run, n, monkeypatch):
    drawn = []
    grid = training.image_grid

    def spy(images, rows, cols):
        drawn.append(min(len(images), rows * cols))
        return grid(images, rows, cols)

    monkeypatch.setattr(training, "image_grid", spy)
    vae.main(["sample", "--out", str(vae_run), "--n", str(n)])
    assert drawn == [n]


# ---- interruptions -------------------------------------------------------------------------------


def test_sigterm_leaves_one_line_the_last_checkpoint_and_no_temporary_files(tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "stderr"
    with open(log, "w") as err:
        p = subprocess.Popen(command("vae", "train", "--epochs", "1000", *TINY, "--out", out), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=err)
        try:
            assert wait_for(lambda: (out / "checkpoint.npz").exists())
            time.sleep(0.3)
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        finally:
            p.kill()
            p.wait()
    stderr = log.read_text()
    assert p.returncode == 143
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)")
    assert temp_files(out) == []
    assert cli.checkpoint_epoch(out / "checkpoint.npz") >= 1


def test_kill_9_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    """kill -9 from outside while a run trains (before its first checkpoint), between an
    epoch's checkpoint and its metrics, halfway through writing a checkpoint, and while it
    computes a validation bound; each time the run is started again (with --resume once there
    is a checkpoint) and it ends as the run that was never interrupted."""
    epochs = ["--epochs", "3"]
    reference, out = tmp_path / "reference", tmp_path / "run"
    vae.main(["train", *epochs, *TINY, "--out", str(reference)])  # in this process: only its numbers are used
    out.mkdir()
    # What a kill -9 during a checkpoint write left behind, by this version and by older ones.
    (out / f".checkpoint.npz.{dead_pid()}.tmp-k1ll3d00.npz").write_bytes(b"partial")
    (out / ".checkpoint.npz.a1b2c3d4.npz").write_bytes(b"partial")
    (out / f".metrics.jsonl.{dead_pid()}.tmp-k1ll3d00.jsonl").write_bytes(b"partial")
    rng = random.Random(11)
    # (point, its how-manieth occurrence in that launch, the checkpoint's epoch after the kill)
    kills = [("step", rng.randint(1, 3), None),  # epoch 1, step 1-3 of 3: no checkpoint yet
             ("metrics", 1, 1),  # epoch 1's checkpoint is written, its metrics are not
             ("checkpoint", 1, 1),  # epoch 2's checkpoint half-written: epoch 1's stays
             ("validation", 2, 2)]  # epoch 3: a validation bound (a launch validates once per epoch)
    for point, nth, epoch_after in kills:
        resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
        marker = tmp_path / f"at-{point}"
        p = stopped_at(point, nth, marker, "train", *epochs, *TINY, "--out", out, *resume)
        try:
            assert wait_for(lambda: marker.exists() or p.poll() is not None), point
            assert p.poll() is None and marker.exists(), (point, p.stderr.read()[-2000:])
            p.kill()
        finally:
            p.kill()
            p.wait()
            p.stderr.close()
        assert p.returncode == -signal.SIGKILL
        if epoch_after is None:
            assert not (out / "checkpoint.npz").exists()
        else:
            assert cli.checkpoint_epoch(out / "checkpoint.npz") == epoch_after, point
        if point == "metrics":
            assert not (out / "metrics.jsonl").exists()
        if point == "checkpoint":
            assert any(name.startswith(".checkpoint.npz.") for name in temp_files(out))
        assert (out / cli.LOCK).exists()  # the killed run's lock, for the next one to take over
    r = run("vae", "train", *epochs, *TINY, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert temp_files(out) == []  # no temporary file and no lock left
    assert [h["epoch"] for h in history(out)] == list(range(1, 4))
    for key in ("train_bound", "valid_bound"):
        assert [h[key] for h in history(out)] == [h[key] for h in history(reference)]
    with np.load(reference / "checkpoint.npz") as a, np.load(out / "checkpoint.npz") as b:
        for k in a.files:
            if k != "meta":
                np.testing.assert_array_equal(a[k], b[k])


# ---- absurd options: --seed, --lr, --temperature ------------------------------------------------


def refused_in_process(main, argv, capsys, code=2):
    """``main(argv)`` in this process must exit with ``code``; returns its last stderr line."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("module, argv", [
    ("vae", ["train", *TINY]), ("vae", ["evaluate", "--k", "2"]), ("vae", ["sample"]), ("vae", ["snr"]),
    ("discrete_vae", ["train", *TINY_DISCRETE]), ("discrete_vae", ["compare"]),
])
def test_a_negative_seed_is_refused_on_every_subcommand(module, argv, tmp_path, capsys):
    main = vae.main if module == "vae" else discrete_vae.main
    last = refused_in_process(main, [*argv, "--out", tmp_path / "run", "--seed", "-1"], capsys)
    assert "error: argument --seed: must be a non-negative integer" in last and last.endswith("got -1")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("lr", ["inf", "1e300", "nan", "0", "-1", "2", "1e-50"])
@pytest.mark.parametrize("module, extra", [("vae", TINY), ("discrete_vae", TINY_DISCRETE)])
def test_a_non_finite_or_absurd_lr_is_refused_up_front(module, extra, lr, tmp_path, capsys):
    main = vae.main if module == "vae" else discrete_vae.main
    last = refused_in_process(main, ["train", *extra, "--out", tmp_path / "run", "--lr", lr], capsys)
    assert "error: argument --lr: must be a finite number in [1.18e-38, 1]" in last and last.endswith(f"got {lr}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("temperature", ["inf", "1e-50", "0", "nan"])
def test_a_temperature_that_is_not_a_positive_finite_float32_is_refused(temperature, tmp_path, capsys):
    argv = ["train", *TINY_DISCRETE[2:], "--estimator", "gumbel", "--out", tmp_path / "run",
            "--temperature", temperature]
    last = refused_in_process(discrete_vae.main, argv, capsys)
    assert "error: argument --temperature: must be a finite number >= 1.18e-38" in last
    assert "float32" in last and last.endswith(f"got {temperature}")


@pytest.mark.parametrize("nan_after_step, where", [(2, "epoch 2, step 3/3: the parameters are not finite"),
                                                   (3, "epoch 2, step 3/3: the parameters are not finite after it")])
def test_a_loss_or_parameters_turning_nan_mid_epoch_stop_training_and_keep_the_checkpoint(
        vae_run, tmp_path, monkeypatch, capsys, nan_after_step, where):
    out = copy_run(vae_run, tmp_path)
    before = (out / "checkpoint.npz").read_bytes()
    step, calls = scg.optim.Adam.step, []

    def diverging(self):  # what --lr 0.9 can do a few steps in, made deterministic
        step(self)
        calls.append(1)
        if len(calls) == nan_after_step:
            self.params[0].data[...] = np.nan

    # an effect, so that a traced step (the default) replays it with the optimizer's step
    monkeypatch.setattr(scg.optim.Adam, "step", scg.effect(diverging))
    last = train_in_process(capsys, 2, "--epochs", "3", *TINY, "--out", out, "--resume")  # 300 images: 3 steps
    assert last.startswith(f"error: {where}") and "checkpoint after epoch 1" in last and "--lr" in last
    assert (out / "checkpoint.npz").read_bytes() == before
    assert temp_files(out) == []


def test_a_loss_that_is_infinite_is_caught_at_its_step(tmp_path, monkeypatch, capsys):
    real = vae.build_graph

    class Infinite:
        def __init__(self, g):
            self.g = g

        def surrogate(self):
            return self.g.surrogate() * np.float32(np.inf)

    monkeypatch.setattr(vae, "build_graph", lambda *a, **k: Infinite(real(*a, **k)))
    last = train_in_process(capsys, 2, "--epochs", "1", *TINY, "--out", tmp_path / "run")
    assert last.startswith("error: epoch 1, step 1/3: the loss is inf") and "no checkpoint was written" in last
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


# ---- damaged data files --------------------------------------------------------------------------


def data_copy(tmp_path, name, content):
    """A data folder with the system's files, ``name`` replaced by ``content``."""
    d = tmp_path / "data"
    d.mkdir()
    for f in data.FILES.values():
        if f != name:
            (d / f).symlink_to(SYSTEM / f)
    (d / name).write_bytes(content)
    return d


def test_a_corrupt_gzip_stream_is_refused_naming_the_file(tmp_path, capsys):
    raw = bytearray((SYSTEM / "train-labels-idx1-ubyte.gz").read_bytes())
    raw[200:260] = bytes(b ^ 0xFF for b in raw[200:260])  # zlib.error: invalid distance too far back
    d = data_copy(tmp_path, "train-labels-idx1-ubyte.gz", bytes(raw))
    last = train_in_process(capsys, 2, "--epochs", "1", *TINY, "--data-dir", d, "--out", tmp_path / "run")
    assert last.startswith(f"error: {d / 'train-labels-idx1-ubyte.gz'}: cannot read (Error -3 while decompressing")
    assert "corrupt" in last and not (tmp_path / "run").exists()


def test_images_of_another_size_are_refused_naming_the_file_and_28x28(tmp_path, capsys):
    import gzip

    x = data.read_idx(SYSTEM / "t10k-images-idx3-ubyte.gz")[:, :27, :]
    header = bytes([0, 0, 8, 3]) + np.array(x.shape, ">i4").tobytes()
    d = data_copy(tmp_path, "t10k-images-idx3-ubyte.gz", gzip.compress(header + x.tobytes(), compresslevel=1))
    last = train_in_process(capsys, 2, "--epochs", "1", *TINY, "--data-dir", d, "--out", tmp_path / "run")
    assert last == (f"error: {d / 't10k-images-idx3-ubyte.gz'}: images of 27x28 pixels (shape (10000, 27, 28)), "
                    f"expected 28x28; this is not a fashion-mnist file")
    assert not (tmp_path / "run").exists()


# ---- --resume from a damaged checkpoint ------------------------------------------------------------


def edit_checkpoint(path, edit):
    """Apply ``edit(arrays, meta)`` to checkpoint ``path`` in place."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    edit(arrays, meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def first(arrays, prefix):
    return next(k for k in sorted(arrays) if k.startswith(prefix))


def set_first(prefix, value):
    def edit(arrays, meta):
        name = first(arrays, prefix)
        arrays[name] = value(arrays[name])
    return edit


DAMAGE = {
    "nan parameter": (set_first("model/", lambda a: np.full_like(a, np.nan)), "the model's parameters are not finite"),
    "inf parameter": (set_first("model/", lambda a: np.full_like(a, np.inf)), "the model's parameters are not finite"),
    "wrong-shaped parameter": (set_first("model/", lambda a: np.zeros((3, 3), np.float32)),
                               "its arrays do not fit the model"),
    "missing parameter": (lambda arrays, meta: arrays.pop(first(arrays, "model/")), "missing keys"),
    "wrong-shaped optimizer array": (set_first("opt/", lambda a: np.zeros((3, 3), np.float32)),
                                     "its optimizer state cannot be used"),
    "missing optimizer array": (lambda arrays, meta: arrays.pop("opt/v/3"), "state 'v' has 3 entries for 8"),
    "missing optimizer state": (lambda arrays, meta: meta.__setitem__("opt_state_names", ["m"]),
                                "state v missing after"),
    "nan optimizer array": (set_first("opt/", lambda a: np.full_like(a, np.nan)), "the optimizer's state is not finite"),
    "bad rng state": (lambda arrays, meta: meta["rng"].__setitem__("state", "x"), "its random state cannot be restored"),
    "rng of another generator": (lambda arrays, meta: meta["rng"].__setitem__("bit_generator", "MT19937"),
                                 "its random state cannot be restored"),
    "epoch a string": (lambda arrays, meta: meta.__setitem__("epoch", "1"), 'its epoch must be an integer >= 0, got "1"'),
    "negative epoch": (lambda arrays, meta: meta.__setitem__("epoch", -3), "its epoch must be an integer >= 0, got -3"),
    "history not a list": (lambda arrays, meta: meta.__setitem__("history", {"a": 1}), "its history must be a list"),
    "lr -1": (lambda arrays, meta: meta["opt_hyper"].__setitem__("lr", -1), "lr must be positive and finite, got -1"),
    "lr nan": (lambda arrays, meta: meta["opt_hyper"].__setitem__("lr", float("nan")), "lr must be positive and finite"),
    "beta 1": (lambda arrays, meta: meta["opt_hyper"].__setitem__("betas", [0.9, 1.0]), "betas must be in [0, 1)"),
    "eps 0": (lambda arrays, meta: meta["opt_hyper"].__setitem__("eps", 0), "eps must be positive and finite, got 0"),
    "hyper not a dict": (lambda arrays, meta: meta.__setitem__("opt_hyper", "x"), "its opt_hyper must be a JSON object"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resuming_from_a_damaged_checkpoint_is_refused_and_it_stays(damage, vae_run, tmp_path, monkeypatch, capsys):
    out = copy_run(vae_run, tmp_path)
    edit, phrase = DAMAGE[damage]
    edit_checkpoint(out / "checkpoint.npz", edit)
    before = (out / "checkpoint.npz").read_bytes()
    monkeypatch.setattr(training, "train_epoch", lambda *a, **k: pytest.fail("trained from a damaged checkpoint"))
    last = train_in_process(capsys, 2, "--epochs", "2", *TINY, "--out", out, "--resume")
    assert last.startswith(f"error: {out / 'checkpoint.npz'}: ") and phrase in last, last
    assert (out / "checkpoint.npz").read_bytes() == before and temp_files(out) == []


# ---- evaluate / sample with hand-edited settings ---------------------------------------------------


@pytest.mark.parametrize("key, value, what", [("hidden", "16", 'hidden = "16" is not an integer >= 1'),
                                              ("latent", 0, "latent = 0 is not an integer >= 1"),
                                              ("likelihood", "poisson", "is not one of bernoulli, gaussian"),
                                              ("valid", 2.5, "valid = 2.5 is not an integer >= 0"),
                                              ("limit", -3, "limit = -3 is not an integer >= 1 or null")])
@pytest.mark.parametrize("command", [["evaluate", "--k", "2"], ["sample", "--n", "4"]])
def test_evaluate_and_sample_refuse_a_hand_edited_setting_naming_it(command, key, value, what, vae_run, tmp_path,
                                                                    capsys):
    out = copy_run(vae_run, tmp_path)
    edit_checkpoint(out / "checkpoint.npz", lambda arrays, meta: meta["config"].__setitem__(key, value))
    last = refused_in_process(vae.main, [*command, "--out", out], capsys)
    assert last.startswith(f"error: {out / 'checkpoint.npz'}: its setting {key}") and what in last, last


def test_discrete_evaluate_refuses_a_hand_edited_setting_naming_it(discrete_run, tmp_path, capsys):
    out = copy_run(discrete_run, tmp_path)
    edit_checkpoint(out / "checkpoint.npz", lambda arrays, meta: meta["config"].__setitem__("latents", 0))
    last = refused_in_process(discrete_vae.main, ["evaluate", "--out", out], capsys)
    assert "its setting latents = 0 is not an integer >= 1" in last


# ---- Ctrl-C while the command line imports numpy, scipy and scg -------------------------------------

# Sends a real SIGINT to the process at the moment the command line imports numpy (the first
# slow import), then runs the command line as ``python -m`` or the console script would.
INTERRUPT_AT_IMPORT = """
import builtins, os, runpy, signal, sys
real = builtins.__import__
def hook(name, *args, **kwargs):
    if name == "numpy":
        builtins.__import__ = real
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = hook
sys.argv = ["scg", "sample", "--out", "/nonexistent"]
{start}
"""


@pytest.mark.parametrize("start", ["runpy.run_module('models.vae', run_name='__main__', alter_sys=True)",
                                   "runpy.run_module('models.discrete_vae', run_name='__main__', alter_sys=True)",
                                   "from models.entry import vae; vae()", "from models.entry import dvae; dvae()"])
def test_ctrl_c_during_the_imports_exits_130_with_one_line(start):
    r = subprocess.run([sys.executable, "-c", INTERRUPT_AT_IMPORT.format(start=start)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 130, r.stderr[-2000:]
    assert r.stderr == "error: interrupted while starting; nothing was done\n"


BLAS_AT_IMPORT = """
import builtins, os, sys, runpy
real = builtins.__import__
def hook(name, *args, **kwargs):
    if name == "numpy":  # what OpenBLAS will read when numpy loads it
        print(os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset"), flush=True)
        os._exit(0)
    return real(name, *args, **kwargs)
builtins.__import__ = hook
sys.argv = ["scg", "--help"]
{start}
"""


@pytest.mark.parametrize("start", ["runpy.run_module('models.vae', run_name='__main__', alter_sys=True)",
                                   "runpy.run_module('models.discrete_vae', run_name='__main__', alter_sys=True)",
                                   "from models.entry import vae; vae()", "from models.entry import dvae; dvae()",
                                   "import models.vae"])
@pytest.mark.parametrize("user", [None, "100"])
def test_the_command_lines_let_idle_blas_threads_sleep_unless_the_user_says(start, user):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if user:
        env["OPENBLAS_THREAD_TIMEOUT"] = user
    r = subprocess.run([sys.executable, "-c", BLAS_AT_IMPORT.format(start=start)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    library = start == "import models.vae"  # imported as a library: the user's process, left alone
    assert r.stdout.strip() == (user or ("unset" if library else "4")), r.stderr[-2000:]


def test_importing_a_model_module_changes_no_signal_handler():
    code = "import signal, models.vae, models.discrete_vae; print(signal.getsignal(signal.SIGINT) is " \
           "signal.default_int_handler)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "True", r.stderr[-2000:]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the imports progress")
def test_a_real_ctrl_c_while_importing_ends_in_one_clean_line(tmp_path):
    """SIGINT once numpy's core is loaded (mapped into the process), so the guard is surely
    installed; scipy and scg are still importing then, or the command has begun: either
    way one line and status 130."""
    p = subprocess.Popen(command("vae", "train", "--epochs", "1000", *TINY, "--out", tmp_path / "run"), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        maps = Path(f"/proc/{p.pid}/maps")
        assert wait_for(lambda: "_multiarray_umath" in maps.read_text(), seconds=60)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] in ("error: interrupted while starting; nothing was done",
                                            "error: interrupted; the checkpoint of the last finished epoch is kept")


# ---- memory pre-flight of the discrete VAE -----------------------------------------------------------


@pytest.mark.parametrize("argv", [["train", "--latents", "1000000"],
                                  ["train", "--model", "bernoulli", "--estimator", "relax", "--latents", "1000000"],
                                  ["compare", "--latents", "100000000"]])
def test_a_discrete_model_too_big_for_memory_is_refused_before_it_is_built(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(discrete_vae, "make_model", lambda *a, **k: pytest.fail("the model was built"))
    last = refused_in_process(discrete_vae.main, [*argv, "--out", tmp_path / "run"], capsys)
    assert last.startswith("error: training --model") and "GiB of memory" in last and "is available" in last
    assert "parameters, gradients and Adam's state" in last and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind, latents, categories", [("categorical", 3, 5), ("categorical", 1, 16),
                                                       ("bernoulli", 7, 2)])
def test_the_memory_estimate_counts_the_parameters_of_the_model(kind, latents, categories):
    model = discrete_vae.make_model(kind, latents, categories, 9, rng=np.random.default_rng(0))
    size, encoder, total = discrete_vae.model_sizes(kind, latents, categories, 9)
    assert (size, encoder, total) == (model.latent_size, sum(p.data.size for p in model.encoder.parameters()),
                                      discrete_vae.parameter_count(model))


def test_the_default_discrete_runs_pass_the_memory_estimate():
    for argv in (["train"], ["train", "--model", "bernoulli", "--estimator", "relax"], ["compare"]):
        args = discrete_vae._resolve_latents(discrete_vae.parser().parse_args(argv))
        total, _ = discrete_vae.memory_needed(args, "relax" if "relax" in argv else "nvil")
        assert total < 4 * 2**30
