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

from models import cli, data, training, vae

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


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae-run") / "run"
    r = run("vae", "train", "--epochs", "1", *TINY, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def discrete_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dvae-run") / "run"
    r = run("discrete_vae", "train", "--epochs", "1", *TINY_DISCRETE, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
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


def test_a_second_run_into_the_same_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(command("vae", "train", "--epochs", "1000", *TINY, "--out", out), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = out / cli.LOCK
        assert wait_for(lambda: lock.exists() and lock.read_text().strip() == str(first.pid))
        r = run("vae", "train", "--epochs", "1", *TINY, "--out", out, "--overwrite")
        assert_refused(r, f"in use by another run (pid {first.pid})")
    finally:
        first.kill()
        first.wait()
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
    r = run(module, "train", "--epochs", "1", *extra, "--valid", "60000", "--out", tmp_path / "run")
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
    epochs = ["--epochs", "12"]
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert run("vae", "train", *epochs, *TINY, "--out", reference).returncode == 0
    out.mkdir()
    # What a kill -9 during a checkpoint write left behind, by this version and by older ones.
    (out / f".checkpoint.npz.{dead_pid()}.tmp-k1ll3d00.npz").write_bytes(b"partial")
    (out / ".checkpoint.npz.a1b2c3d4.npz").write_bytes(b"partial")
    (out / f".metrics.jsonl.{dead_pid()}.tmp-k1ll3d00.jsonl").write_bytes(b"partial")
    rng = random.Random(11)
    for _ in range(4):
        resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
        p = subprocess.Popen(command("vae", "train", *epochs, *TINY, "--out", out, *resume), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 5.0))
        p.kill()
        p.wait()
    resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
    r = run("vae", "train", *epochs, *TINY, "--out", out, *resume)
    assert r.returncode == 0, r.stderr[-2000:]
    assert temp_files(out) == []  # no temporary file and no lock left
    assert [h["epoch"] for h in history(out)] == list(range(1, 13))
    for key in ("train_bound", "valid_bound"):
        assert [h[key] for h in history(out)] == [h[key] for h in history(reference)]
    with np.load(reference / "checkpoint.npz") as a, np.load(out / "checkpoint.npz") as b:
        for k in a.files:
            if k != "meta":
                np.testing.assert_array_equal(a[k], b[k])
