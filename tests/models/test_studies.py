"""Estimator studies (``models.discrete_vae compare``) as a researcher runs them: jobs
(estimator x seed) give the same table in this process, in local worker processes and on a
real dask.distributed cluster; a killed study resumes without rerunning finished jobs; a
failed job is reported by estimator and seed while the others are kept; --draws matches the
cost of every row; --valid 0 trains on every image."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models import discrete_vae as dv
from models import training

ROOT = Path(__file__).resolve().parents[2]
STUDY = ["--model", "bernoulli", "--latents", "6", "--hidden", "8", "--limit", "200", "--valid", "100",
         "--batch-size", "100", "--epochs", "1", "--estimators", "rloo,disarm", "--seeds", "2", "--draws", "2"]
JOBS = 4


def args_for(*argv):
    return dv._resolve_latents(dv.parser().parse_args(["compare", *argv]))


def without_times(x):
    """compare.json without wall-clock measurements (the only thing an executor may change)."""
    if isinstance(x, dict):
        return {k: without_times(v) for k, v in x.items() if "seconds" not in k and k != "workers"}
    if isinstance(x, list):
        return [without_times(v) for v in x]
    return x


def table(out):
    return without_times(json.loads((Path(out) / "compare.json").read_text()))


# The first 1,000 training and 500 test images (conftest.py's small_data), for this module's
# studies, their worker processes and Dask workers (started from this process's environment):
# every study here reads at most 300 training and 200 test images.
SMALL_DATA = (1000, 500)
pytestmark = pytest.mark.usefixtures("small_data")


@pytest.fixture(scope="module")
def serial(small_data, tmp_path_factory):
    """The study run one job after another in this process: the reference."""
    out = tmp_path_factory.mktemp("serial")
    dv.compare(args_for(*STUDY, "--out", str(out)))
    return out


def test_the_same_table_in_process_in_two_processes_and_on_a_dask_cluster(serial, tmp_path):
    distributed = pytest.importorskip("distributed")
    dv.compare(args_for(*STUDY, "--workers", "2", "--out", str(tmp_path / "processes")))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dv.compare(args_for(*STUDY, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "dask")))
    reference = table(serial)
    assert [e["estimator"] for e in reference["estimators"]] == ["rloo", "disarm"]
    assert all(len(e["test_elbo"]["values"]) == 2 for e in reference["estimators"])
    assert table(tmp_path / "processes") == reference
    assert table(tmp_path / "dask") == reference


def test_seeds_come_from_a_seed_sequence(serial):
    result = json.loads((serial / "compare.json").read_text())
    expected = [int(c.generate_state(1, np.uint64)[0]) for c in np.random.SeedSequence(0).spawn(2)]
    assert result["seeds"] == expected and expected[0] != expected[1]
    for e in result["estimators"]:
        values = e["test_elbo"]["values"]
        assert e["test_elbo"]["mean"] == pytest.approx(np.mean(values))
        assert e["test_elbo"]["sd"] == pytest.approx(np.std(values, ddof=1)) and e["test_elbo"]["sd"] > 0
        assert e["seeds"] == expected
    md = (serial / "compare.md").read_text()
    assert "±" in md and "2 seed(s)" in md


def _study_command(out):
    return [sys.executable, "-m", "models.discrete_vae", "compare", *STUDY, "--out", str(out)]


def test_a_killed_study_resumes_without_rerunning_finished_jobs(serial, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_study_command(out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = out / "rloo" / "seed0" / "row.json"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.exists(), "the first job never finished"
    os.killpg(proc.pid, signal.SIGKILL)  # as a crash or a pre-empted node would
    proc.wait()
    assert not (out / "compare.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/row.json")}
    assert first in finished and len(finished) < JOBS
    r = subprocess.run(_study_command(out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for path, mtime in finished.items():  # reused, not rerun
        assert path.stat().st_mtime_ns == mtime
        name, seed = path.parent.parent.name, path.parent.name[len("seed"):]
        assert f"reusing {name} seed {seed}" in r.stdout
    assert table(out) == table(serial)


def test_a_failed_job_is_named_and_the_others_kept_then_rerun_alone(serial, tmp_path, monkeypatch):
    real = dv.train

    def flaky(sub):
        if sub.estimator == "rloo" and sub.out.endswith("seed1"):
            raise FloatingPointError("the bound diverged")
        return real(sub)

    monkeypatch.setattr(dv, "train", flaky)
    out = tmp_path / "f"
    with pytest.raises(dv.cli.CommandError, match=rf"1 of {JOBS} jobs failed \(rloo seed 1: FloatingPointError: "
                                                  r"the bound diverged\).*again reruns only the failed"):
        dv.compare(args_for(*STUDY, "--out", str(out)))
    result = json.loads((out / "compare.json").read_text())
    assert result["failed"] == [dict(estimator="rloo", seed_index=1, error="FloatingPointError: the bound diverged")]
    rloo = next(e for e in result["estimators"] if e["estimator"] == "rloo")
    assert len(rloo["test_elbo"]["values"]) == 1  # the seed that ran is kept
    monkeypatch.setattr(dv, "train", real)
    calls = []
    monkeypatch.setattr(dv, "train", lambda sub: calls.append((sub.estimator, sub.out)) or real(sub))
    dv.compare(args_for(*STUDY, "--out", str(out)))
    assert [(e, Path(o).name) for e, o in calls] == [("rloo", "seed1")]
    assert table(out) == table(serial)


def test_finished_jobs_are_reused_only_with_the_same_settings(serial, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(serial, out)
    args = args_for(*STUDY, "--out", str(out))
    assert all(dv._finished(dv.argparse.Namespace(**{**vars(args), "estimator": e, "seed": s, "out": str(
        out / e / f"seed{i}")})) is not None for e in ("rloo", "disarm") for i, s in enumerate(
        json.loads((serial / "compare.json").read_text())["seeds"]))
    changed = args_for(*[a if a != "200" else "300" for a in STUDY], "--out", str(out))  # --limit 300
    seed = json.loads((serial / "compare.json").read_text())["seeds"][0]
    with pytest.raises(dv.cli.CommandError, match="other settings"):
        dv._finished(dv.argparse.Namespace(**{**vars(changed), "estimator": "rloo", "seed": seed,
                                              "out": str(out / "rloo" / "seed0")}))
    (out / "rloo" / "seed0" / "row.json").write_text("{ torn")  # a job killed mid-write: rerun, not refused
    assert dv._finished(dv.argparse.Namespace(**{**vars(args), "estimator": "rloo", "seed": seed,
                                                 "out": str(out / "rloo" / "seed0")})) is None


@pytest.mark.parametrize("draws", [2, 4])
def test_draws_give_every_row_the_same_decoder_cost(draws):
    args = args_for("--model", "bernoulli", "--latents", "6", "--samples", "5", "--draws", str(draws))
    model = dv.make_model("bernoulli", 6, 2, 8)
    names, refused = dv.applicable(args)
    assert names == ["score-ma", "rloo", "vimco", "disarm", "arm", "gumbel"]
    assert set(refused) == {"nvil", "relax", "enumerate", *dv.VARIANTS}
    assert "costs 1 decoder pass" in refused["nvil"] and "costs 3 decoder pass" in refused["relax"]
    for name in names:
        choice = dv.choose_estimator(name, model, args)
        assert dv.decoder_passes(name, args) == draws and (choice.n or 1) == draws, name


def test_draws_refuse_what_cannot_match():
    model = dv.make_model("bernoulli", 6, 2, 8)
    with pytest.raises(ValueError, match="antithetic pairs: --draws must be even, got 3"):
        dv.choose_estimator("disarm", model, args_for("--model", "bernoulli", "--draws", "3"))
    with pytest.raises(ValueError, match="needs --draws >= 2"):
        dv.choose_estimator("rloo", model, args_for("--model", "bernoulli", "--draws", "1"))
    assert dv.choose_estimator("relax", model, args_for("--model", "bernoulli", "--draws", "3")).n is None


def test_unknown_or_unsuitable_estimators_are_refused_by_name(tmp_path):
    with pytest.raises(dv.cli.CommandError, match="--estimators: unknown reinforce"):
        dv.compare(args_for(*STUDY[:-6], "--estimators", "rloo,reinforce", "--out", str(tmp_path / "u")))
    with pytest.raises(dv.cli.CommandError, match="--estimators enumerate: .*needs --model categorical"):
        dv.compare(args_for(*STUDY[:-6], "--estimators", "enumerate", "--out", str(tmp_path / "u")))


def test_valid_0_trains_on_every_training_image(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.delenv("SCG_DATA")  # the whole data set (the run below reads the small copy)
        images = training.prepare("fashion-mnist", valid=0)
        assert len(images.train) == 60_000 and len(images.valid) == 0
        held = training.prepare("fashion-mnist", valid=5000)
        assert len(held.train) == 55_000
    out = tmp_path / "v0"
    r = subprocess.run([sys.executable, "-m", "models.discrete_vae", "train", "--model", "bernoulli", "--estimator",
                        "disarm", "--latents", "6", "--hidden", "8", "--limit", "200", "--valid", "0", "--epochs", "1",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["valid_bound"] is None and np.isfinite(row["train_bound"])
    assert (out / "learning_curve.png").stat().st_size > 0


def test_nvil_variants_run_only_when_named():
    args = args_for("--model", "bernoulli", "--latents", "6")
    names, _ = dv.applicable(args)
    assert "nvil" in names and not set(dv.VARIANTS) & set(names)
    named = args_for("--model", "bernoulli", "--latents", "6", "--estimators", "nvil,nvil-kl-outside,nvil-unnormalised")
    assert set(dv.VARIANTS) <= set(dv.applicable(named)[0])
    model = dv.make_model("bernoulli", 6, 2, 8)
    nvil, outside, raw = (dv.choose_estimator(n, model, args) for n in ("nvil", "nvil-kl-outside", "nvil-unnormalised"))
    # nvil and the unnormalised variant: the KL inside the signal (the one-sample bound over z)
    assert (nvil.n, nvil.bound) == (1, True) and (raw.n, raw.bound) == (1, True)
    assert (outside.n, outside.bound) == (None, False)  # ELBO costs: the analytic KL outside
    assert nvil.estimator.baseline.normalize == 0.9 and raw.estimator.baseline.normalize is None
    assert outside.estimator.baseline.normalize == 0.9


def test_a_finished_job_of_other_settings_is_refused_not_replaced(serial, tmp_path):
    import shutil

    out = tmp_path / "other"
    shutil.copytree(serial, out)
    before = {p: p.read_text() for p in out.glob("*/seed*/row.json")}
    with pytest.raises(dv.cli.CommandError, match=r"holds a finished job of other settings \(--lr 0.001 there, "
                                                  r"0.002 now\); pass --overwrite"):
        dv.compare(args_for(*STUDY, "--lr", "0.002", "--out", str(out)))
    assert {p: p.read_text() for p in out.glob("*/seed*/row.json")} == before  # nothing replaced
