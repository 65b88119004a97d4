"""README's commands work the way a new user meets them.

The slow test runs README's first command in a clean clone, in a fresh terminal whose
`python3` refuses `pip install` outside a virtual environment (PEP 668, as Debian's and
Ubuntu's own Python): `bash scripts/setup.sh` makes `.venv` and installs scg into it, and
the main job then runs through `.venv/bin/` (on a small `--limit`). It needs what CI has:
git, the package registry (pip fills the new `.venv`: half a minute or so), and Debian's
graphviz and dataset-fashion-mnist. The fast tests check setup.sh's choices (python3-venv
through apt, an active environment, a second run) with stand-ins for apt-get and Python."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
MAIN_JOB = BASH_BLOCKS[0].strip()
TEST_COMMAND = next(c for c in BASH_BLOCKS if "pytest" in c).strip()
# Appended to README's own `train` and `evaluate` (argparse keeps the last value of an option).
SMALL = {"train": "--epochs 1 --limit 1200 --valid 200 --hidden 50", "evaluate": "--k 5 --limit 200"}
OUTPUTS = ("checkpoint.npz", "metrics.jsonl", "evaluation.json", "learning_curve.png", "samples.png",
           "reconstructions.png", "latent.png", "graph.svg")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def externally_managed(python):
    """True if ``python``'s standard library carries PEP 668's EXTERNALLY-MANAGED marker."""
    r = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                       capture_output=True, text=True)
    return r.returncode == 0 and (Path(r.stdout.strip()) / "EXTERNALLY-MANAGED").is_file()


def stock_python():
    """The distribution's own python3 where there is one (Debian/Ubuntu: /usr/bin/python3,
    externally managed), else the interpreter behind this test's Python."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK) and externally_managed(candidate):
            ok = subprocess.run([candidate, "-c", "import sys; assert sys.version_info >= (3, 10)"])
            if ok.returncode == 0:
                return candidate
    base = getattr(sys, "_base_executable", sys.executable)
    return base if os.access(base, os.X_OK) else sys.executable


def user_environment(bin_dir):
    """A fresh terminal: no active virtual environment, `python3` from ``bin_dir``, the
    system's PATH, and pip refusing to install outside a virtual environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "CONDA_PREFIX",
                        "PYENV_VERSION", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "MPLBACKEND")}
    env["PATH"] = f"{bin_dir}:{SYSTEM_PATH}"
    env["PIP_REQUIRE_VIRTUALENV"] = "true"
    return env


def clean_clone(dest):
    """A clone of this checkout's HEAD, with the uncommitted changes to tracked files applied
    (so the test checks what is on disk, not just the last commit) and nothing untracked."""
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", ROOT, dest], check=True)
    subprocess.run(["git", "-C", dest, "checkout", "-q", "--detach", head], check=True)
    diff = subprocess.run(["git", "-C", ROOT, "diff", "--binary", "HEAD"], capture_output=True, check=True).stdout
    if diff:
        subprocess.run(["git", "-C", dest, "apply", "--whitespace=nowarn"], input=diff, check=True)


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci_lines
    commands = [ln for ln in ci_lines if ln and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert commands == [TEST_COMMAND]


def test_readme_commands_run_through_the_project_environment():
    for command in (MAIN_JOB, TEST_COMMAND):
        first, *rest = command.split(" && ")
        assert first == ("bash scripts/setup.sh --dev" if command == TEST_COMMAND else "bash scripts/setup.sh")
        assert rest and all(part.startswith(".venv/bin/") for part in rest), command


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_readme_main_job_in_a_clean_clone_with_a_python_that_refuses_pip(tmp_path):
    clone, bin_dir = tmp_path / "checkout", tmp_path / "bin"
    clean_clone(clone)
    bin_dir.mkdir()
    python = stock_python()
    (bin_dir / "python3").symlink_to(python)
    env = user_environment(bin_dir)

    # The premise: outside a virtual environment this Python's pip refuses to install.
    refused = subprocess.run(["python3", "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps", "scg"],
                             cwd=clone, env=env, capture_output=True, text=True)
    assert refused.returncode != 0, refused.stdout + refused.stderr

    parts = MAIN_JOB.split(" && ")
    for i, part in enumerate(parts):
        command = part.split()
        if len(command) > 1 and command[1] in SMALL:
            parts[i] = f"{part} {SMALL[command[1]]}"
    r = subprocess.run(["bash", "-c", " && ".join(parts)], cwd=clone, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"{' && '.join(parts)}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-5000:]}"

    venv = clone / ".venv"
    assert (venv / "pyvenv.cfg").is_file() and not venv.is_symlink()
    assert (venv / "bin" / "python").resolve() == Path(python).resolve()  # made by that Python
    run = clone / "runs" / "vae"
    for name in OUTPUTS:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["test_log_likelihood"] > result["test_elbo"] > -600
    # the installed package is the clone's, imported without the checkout on sys.path
    where = subprocess.run([venv / "bin" / "python", "-c", "import scg; print(scg.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(clone.resolve())


def test_pyproject_license_is_an_spdx_expression_and_the_clis_are_console_scripts():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["scripts"] == {"scg-vae": "models.entry:vae", "scg-dvae": "models.entry:dvae"}


# ---- setup.sh's decisions, with stand-ins for apt-get, dpkg and Python (fast, no network) ----------

STUB_PYTHON = r"""#!/usr/bin/env bash
# stands in for a Python: logs its command line; `venv` needs python3-venv (ensurepip)
echo "$0 $*" >> "$STUB_LOG"
has_venv() { [ -e "$STUB_DIR/python3-venv" ]; }
case "$1 $2" in
    "-c import ensurepip"*) has_venv; exit ;;
    "-m venv") has_venv || { echo "ensurepip is not available" >&2; exit 1; }
               dest="${@: -1}"; mkdir -p "$dest/bin"; cp "$0" "$dest/bin/python"; echo "home = stub" > "$dest/pyvenv.cfg" ;;
    "-m pip") case "$0" in */python3) echo "error: externally-managed-environment" >&2; exit 1 ;; esac ;;
    "-c "*) echo "$(cd "$(dirname "$0")/.." && pwd)" ;;
esac
"""
STUB_APT = """#!/usr/bin/env bash
echo "apt-get $*" >> "$STUB_LOG"
case " $* " in *" install "*" python3-venv "*) touch "$STUB_DIR/python3-venv" ;; esac
"""
STUB_DPKG = """#!/usr/bin/env bash
echo "dpkg $*" >> "$STUB_LOG"
"""  # every system package is installed


def stub_project(tmp_path, python3_venv_installed, active_env=None):
    """A project holding only scripts/setup.sh, and the environment of a fresh terminal whose
    python3, apt-get, dpkg and sudo are the stand-ins above."""
    project, stubs = tmp_path / "project", tmp_path / "stubs"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    stubs.mkdir()
    for name, text in (("python3", STUB_PYTHON), ("apt-get", STUB_APT), ("dpkg", STUB_DPKG),
                       ("sudo", '#!/usr/bin/env bash\nexec "$@"\n')):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    if python3_venv_installed:
        (stubs / "python3-venv").touch()
    env = {"PATH": f"{stubs}:{SYSTEM_PATH}", "HOME": str(tmp_path), "STUB_LOG": str(tmp_path / "log"),
           "STUB_DIR": str(stubs)}
    if active_env is not None:
        (active_env / "bin").mkdir(parents=True)
        shutil.copy(stubs / "python3", active_env / "bin" / "python")
        env["VIRTUAL_ENV"] = str(active_env)
    return project, env


def run_setup(tmp_path, project, env, *args):
    """Run setup.sh with ``args``; the commands the stand-ins saw, with tmp_path cut off."""
    log = Path(env["STUB_LOG"])
    log.write_text("")
    r = subprocess.run(["bash", project / "scripts" / "setup.sh", *args], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return [ln.replace(str(tmp_path), "") for ln in log.read_text().splitlines()]


PIP_INTO_DOT_VENV = [".venv/bin/python -m pip install -q --upgrade pip",
                     ".venv/bin/python -m pip install -q -e ."]


def test_setup_installs_python3_venv_when_python_cannot_make_a_venv(tmp_path):
    project, env = stub_project(tmp_path, python3_venv_installed=False)
    log = run_setup(tmp_path, project, env)
    apt = [ln for ln in log if ln.startswith("apt-get")]
    assert apt == ["apt-get update -qq", "apt-get install -y -qq python3-venv"], log
    assert "/stubs/python3 -m venv --clear .venv" in log
    assert [ln for ln in log if " -m pip install" in ln] == PIP_INTO_DOT_VENV, log  # never the system Python's pip


def test_setup_makes_the_venv_once_and_needs_no_apt_when_python_can(tmp_path):
    project, env = stub_project(tmp_path, python3_venv_installed=True)
    log = run_setup(tmp_path, project, env)
    assert not any(ln.startswith("apt-get") for ln in log), log
    assert sum(" -m venv " in ln for ln in log) == 1
    assert [ln for ln in log if " -m pip install" in ln] == PIP_INTO_DOT_VENV, log
    again = run_setup(tmp_path, project, env)  # a second run reuses .venv
    assert not any(" -m venv " in ln for ln in again) and [ln for ln in again if " -m pip install" in ln] == PIP_INTO_DOT_VENV


def test_setup_installs_into_an_active_venv_and_links_dot_venv_to_it(tmp_path):
    active = tmp_path / "elsewhere"
    project, env = stub_project(tmp_path, python3_venv_installed=False, active_env=active)
    log = run_setup(tmp_path, project, env)
    assert (project / ".venv").is_symlink() and (project / ".venv").resolve() == active.resolve()
    assert not any(" -m venv " in ln or ln.startswith("apt-get") for ln in log), log
    assert [ln for ln in log if " -m pip install" in ln] == [ln.replace(".venv", "/elsewhere", 1) for ln in PIP_INTO_DOT_VENV]


def test_setup_installs_the_dev_extra_only_with_dev_and_refuses_an_unknown_option(tmp_path):
    project, env = stub_project(tmp_path, python3_venv_installed=True)
    log = run_setup(tmp_path, project, env, "--dev")
    assert [ln for ln in log if " -m pip install" in ln] == [PIP_INTO_DOT_VENV[0], ".venv/bin/python -m pip install -q -e .[dev]"]
    Path(env["STUB_LOG"]).write_text("")
    r = subprocess.run(["bash", project / "scripts" / "setup.sh", "--devv"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option '--devv'" in r.stderr
    r = subprocess.run(["bash", project / "scripts" / "setup.sh", "--dev", "x"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "one option at most" in r.stderr
    assert Path(env["STUB_LOG"]).read_text() == ""  # both refused before running anything
