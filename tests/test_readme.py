"""The README's Python examples run as written, and its commands match .ci/run."""

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    # the tour's graph computed a gradient for both parameters
    assert namespace["mu"].grad is not None and namespace["logit"].grad is not None
    assert np.isclose(namespace["loss"].item(), namespace["value"].item())
    assert namespace["step"].stats == {"eager": 3, "replayed": 1}
    # the bias check of a leave-one-out baseline found none
    assert namespace["check"].unbiased() and namespace["check"].max_abs < 1e-12


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    test_cmd = next(c for c in commands if "pytest" in c).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    setup, _, run = test_cmd.partition(" && ")
    assert setup in ci and run in ci
