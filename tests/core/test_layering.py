"""The core is layered without a cycle: each module imports only the ones before it,
and Tensor's operators are the primitives themselves (no wrapper on the hot path)."""

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scg
from scg import autodiff, ops

ROOT = Path(__file__).resolve().parents[2]
CORE = ["context", "parallel", "kernels", "random", "tensor", "autodiff", "ops"]  # lowest layer first


def scg_imports(source, module):
    """The scg modules imported anywhere in ``source`` (also inside functions), as names
    relative to the package: ``from . import ops`` and ``import scg.ops`` both give "ops"."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("scg.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] == "scg":
                base = node.module.split(".")[1:]
            elif node.level == 1:
                base = node.module.split(".") if node.module else []
            elif node.level > 1:
                found.add(f"<outside the package, from {module}>")
                continue
            else:
                continue
            if base:
                found.add(base[0])
            else:  # from . import a, b
                found |= {a.name for a in node.names}
    return found


def layering_violations(sources):
    """``{module: source}`` of the core -> the imports that do not go to an earlier layer."""
    bad = []
    for i, module in enumerate(CORE):
        for target in sorted(scg_imports(sources[module], module)):
            if target not in CORE[:i]:
                bad.append(f"scg/{module}.py imports {target}")
    return bad


def core_sources():
    return {m: (ROOT / "scg" / f"{m}.py").read_text() for m in CORE}


def test_no_core_module_imports_a_later_layer_or_anything_outside_the_core():
    assert layering_violations(core_sources()) == []


@pytest.mark.parametrize("module, line, targets", [
    ("tensor", "from . import autodiff, ops", ["autodiff", "ops"]),  # the old cycle
    ("autodiff", "def f():\n    from . import ops\n", ["ops"]),  # a lazy import is still an edge
    ("tensor", "import scg.ops", ["ops"]),
    ("context", "from .graph import Graph", ["graph"]),
    ("ops", "from scg.distributions import Normal", ["distributions"]),
    ("random", "from .random import resolve", ["random"]),  # itself is not an earlier layer
])
def test_the_check_finds_an_import_of_a_later_layer(module, line, targets):
    sources = core_sources()
    sources[module] += "\n" + line + "\n"
    assert layering_violations(sources) == [f"scg/{module}.py imports {t}" for t in targets]


# Load the core modules under a bare package (so ``scg/__init__.py``, which imports them
# all, does not decide the order), in every order of the five, checking each time that
# Tensor has its operators once ops is in. Each interpreter starts fresh with one module
# first; between orders the scg modules are dropped from sys.modules.
ORDERS_SCRIPT = r"""
import importlib, itertools, json, sys, types
first, core, root = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
rest = [m for m in core if m != first]
done = 0
for order in itertools.permutations(rest):
    for name in [n for n in sys.modules if n == "scg" or n.startswith("scg.")]:
        del sys.modules[name]
    package = types.ModuleType("scg")
    package.__path__ = [root + "/scg"]
    sys.modules["scg"] = package
    for name in (first,) + order:
        importlib.import_module("scg." + name)
    Tensor = sys.modules["scg.tensor"].Tensor
    t = Tensor([1.0, 2.0], requires_grad=True)
    (t * t + 1.0).sum().backward()
    assert t.grad.data.tolist() == [2.0, 4.0], (first, order, t.grad)
    done += 1
print(done)
"""


@pytest.mark.parametrize("first", CORE)
def test_the_core_imports_in_any_order(first):
    r = subprocess.run([sys.executable, "-c", ORDERS_SCRIPT, first, json.dumps(CORE), str(ROOT)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == math.factorial(len(CORE) - 1)  # every order of the others


def test_operators_and_methods_are_the_functions_of_ops_themselves():
    # No wrapper in between: ``a * b`` calls the primitive directly.
    T = scg.Tensor
    pairs = {
        "__add__": ops.add, "__radd__": ops.add, "__sub__": ops.subtract,
        "__mul__": ops.multiply, "__rmul__": ops.multiply, "__truediv__": ops.divide,
        "__pow__": ops.power, "__matmul__": ops.matmul, "__neg__": ops.negative,
        "__getitem__": ops.getitem, "__lt__": ops.less, "__eq__": ops.equal,
        "sum": ops.sum, "mean": ops.mean, "max": ops.max, "exp": ops.exp, "log": ops.log,
        "detach": ops.stop_gradient, "backward": autodiff.backward,
    }
    for name, fn in pairs.items():
        assert getattr(T, name) is fn, name
    assert T.T.fget is ops.transpose
    assert T.__hash__ is object.__hash__  # assigning __eq__ after the class left hashing alone


def test_reflected_operators_put_the_tensor_on_the_right():
    x = scg.tensor([1.0, 2.0, 4.0], requires_grad=True)
    a = np.array([3.0, 5.0, 7.0])
    cases = [
        (lambda: a - x, a - x.data, -np.ones(3)),
        (lambda: a / x, a / x.data, -a / x.data ** 2),
        (lambda: a ** x, a ** x.data, a ** x.data * np.log(a)),
        (lambda: 2.0 - x, 2.0 - x.data, -np.ones(3)),
        (lambda: a + x, a + x.data, np.ones(3)),
        (lambda: a * x, a * x.data, a),
    ]
    for f, value, grad in cases:
        x.grad = None
        y = f()
        np.testing.assert_allclose(y.data, value, rtol=1e-15)
        y.sum().backward()
        np.testing.assert_allclose(x.grad.data, grad, rtol=1e-15)
    m = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal((m @ x).data, m @ x.data)  # __rmatmul__


# ---- no import cycle anywhere in the package ------------------------------------------------


def module_graph():
    """{module: set of modules it imports} over every file of the package, counting imports
    inside functions too. ``from .. import ops`` is an edge to scg.ops (the submodule), as
    import-graph tools count it; a name that is not a submodule is an edge to the package."""
    pkg = ROOT / "scg"
    files = {}
    for path in pkg.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = (path, parts[-1] == "__init__")
    edges = {}
    for name, (path, is_pkg) in files.items():
        here = name if is_pkg else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "scg"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.split(".")[0] == "scg":
                    target = node.module
                else:
                    continue
                for a in node.names:
                    found.add(f"{target}.{a.name}" if f"{target}.{a.name}" in files else target)
        edges[name] = {t for t in found if t in files and t != name}
    return edges


def cycles(edges):
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_anywhere_in_the_package():
    edges = module_graph()
    assert len(edges) > 40 and "scg.estimators.base" in edges and "scg.distributions.bernoulli" in edges
    assert cycles(edges) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = module_graph()
    edges["scg.axes"] = edges["scg.axes"] | {"scg.graph"}  # the old _bits circle
    assert any("scg.graph" in c and "scg.axes" in c for c in cycles(edges))


def test_graph_layer_imports_downward():
    """The estimators and pictures never import the builder or the compiler; the compiler
    never imports the builder (they are handed what they need: scg.axes, scg.nodes)."""
    edges = module_graph()
    for name, targets in edges.items():
        if name.startswith("scg.estimators") or name in ("scg.viz", "scg.compiler", "scg.axes", "scg.nodes"):
            assert not targets & {"scg.graph", "scg.diagnostics"}, name
        if name.startswith("scg.estimators") or name in ("scg.viz", "scg.axes", "scg.nodes"):
            assert "scg.compiler" not in targets, name
