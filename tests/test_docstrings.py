"""Every public name has a docstring, so help(scg.Graph) and friends are useful."""

import inspect

import scg
import scg.distributions
import scg.estimators
import scg.graph
import scg.nn
import scg.optim
import scg.viz


def test_every_public_name_is_documented():
    missing = set()
    for mod in (scg, scg.distributions, scg.nn, scg.optim, scg.diagnostics, scg.viz, scg.estimators, scg.graph):
        for name in dir(mod):
            obj = getattr(mod, name)
            if name.startswith("_") or inspect.ismodule(obj) or not getattr(obj, "__module__", "").startswith("scg"):
                continue
            if callable(obj) and not inspect.getdoc(obj):
                missing.add(f"{obj.__module__}.{name}")
            if inspect.isclass(obj):
                for m in dir(obj):
                    v = getattr(obj, m)
                    if not m.startswith("_") and callable(v) and not inspect.getdoc(v):
                        missing.add(f"{obj.__module__}.{name}.{m}")
    assert not missing, sorted(missing)


def test_graph_help_explains_the_surrogate():
    doc = inspect.getdoc(scg.Graph.surrogate)
    assert "unbiased" in doc and "rao_blackwellize" in doc
