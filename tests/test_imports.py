"""`import scg` loads only what the engine needs: drawing and progress bars come in
with the parts that draw or show progress."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tqdm", "matplotlib", "graphviz", "IPython")


def modules_after(statement):
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=True)
    return set(json.loads(r.stdout))


def test_import_scg_loads_no_drawing_or_progress_modules():
    loaded = modules_after("import scg, scg.distributions, scg.diagnostics")
    assert "scg" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_progress_bars_still_work_when_asked_for():
    loaded = modules_after(
        "import scg, scg.distributions as D\n"
        "mu = scg.tensor(0.0, requires_grad=True)\n"
        "def build():\n"
        "    g = scg.Graph()\n"
        "    with g:\n"
        "        g.cost('f', g.sample('z', D.Normal(mu, 1.0)) ** 2)\n"
        "    return g\n"
        "scg.diagnostics.gradient_stats(build, [mu], 3, progress=True)"
    )
    assert "tqdm" in loaded
