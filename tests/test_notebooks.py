"""Every tutorial notebook runs top to bottom in a Jupyter kernel as a user opens it; their
assert cells check the results (an estimator agrees with the exact gradient, the VAE bound
improves, ...), every cell that plots shows its figure, and nothing warns."""

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import scg

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# The scg these tests import (the checkout); the kernel must run the same one.
SCG_ROOT = Path(scg.__file__).resolve().parents[1]
PLOTS = re.compile(r"\bplt\.\w+\(")
PROBE = "import scg\nprint(scg.__file__)"


def test_there_are_six_tutorials():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reads_as_a_user_writes_it(path):
    book = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert not any(c.get("outputs") for c in book.cells if c.cell_type == "code"), "commit notebooks without outputs"
    assert "sys.path" not in code, "import scg from the installed package, not by editing sys.path"
    assert "matplotlib.use(" not in code, "let Jupyter choose the backend, so figures show inline"
    if PLOTS.search(code):
        assert "%matplotlib inline" in code


def stream_text(cell, name):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == name)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter/zmq start-up, not scg
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    book = nbformat.read(path, as_version=4)
    book.cells.append(nbformat.v4.new_code_cell(PROBE))  # which scg did the kernel import?
    # The kernel imports scg as a user's does (no sys.path edits in the notebook); PYTHONPATH
    # makes sure it is this checkout's, whichever scg the Python running the tests has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SCG_ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("MPLBACKEND", None)
    t0 = time.perf_counter()
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    assert time.perf_counter() - t0 < 600

    *cells, probe = book.cells
    assert Path(stream_text(probe, "stdout").strip()).resolve() == Path(scg.__file__).resolve()
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        assert not stream_text(cell, "stderr"), f"cell {i} wrote to stderr:\n{stream_text(cell, 'stderr')}"
        if PLOTS.search(cell.source):
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"cell {i} plots but shows no figure:\n{cell.source}"
