"""Pictures of graphs: the DOT structure (read back through Graphviz's JSON output),
rendered SVG/PNG files, and the messages when Graphviz is missing."""

import json
import xml.etree.ElementTree as ET

import graphviz
import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import viz
from scg.estimators import Estimator


def layout(dot):
    """{'nodes': {name: obj}, 'clusters': {label: [node names]}, 'edges': [(tail, head, style)]}."""
    j = json.loads(dot.pipe(format="json"))
    objs = j["objects"]
    by_gvid = {o["_gvid"]: o for o in objs}
    nodes = {o["label"].split("\n")[0]: o for o in objs if not o["name"].startswith("cluster_")}
    clusters = {
        o["label"]: [by_gvid[i]["label"].split("\n")[0] for i in o.get("nodes", [])]
        for o in objs if o["name"].startswith("cluster_")
    }
    names = {o["_gvid"]: o["label"].split("\n")[0] for o in objs}
    edges = [(names[e["tail"]], names[e["head"]], e.get("style", "solid")) for e in j.get("edges", [])]
    all_nodes = [o for o in objs if not o["name"].startswith("cluster_")]
    return {"nodes": nodes, "all": all_nodes, "clusters": clusters, "edges": edges}


def two_stage_discrete():
    l1 = scg.tensor(0.3, requires_grad=True)
    g = scg.Graph("two-stage")
    with g:
        theta = g.param("theta", l1)
        b1 = g.sample("b1", D.Bernoulli(logits=theta), estimator=scg.ScoreFunction(scg.MovingAverageBaseline(0.9)))
        b2 = g.sample("b2", D.Bernoulli(logits=theta + b1), estimator=scg.ScoreFunction())
        g.cost("c1", b1 * 2.0)
        g.cost("c2", (b2 - 0.5) ** 2)
    return g


def vae_graph(batch=4):
    scg.manual_seed(0)
    enc, dec = scg.nn.MLP([6, 5, 4]), scg.nn.MLP([2, 5, 6])
    x = (np.random.default_rng(0).random((batch, 6)) > 0.5).astype(np.float32)
    g = scg.Graph("vae")
    with g:
        xin = g.input("x", x)
        with g.plate("data", batch):
            h = g.deterministic("encoder", enc(xin))
            mu, log_sigma = h[:, :2], h[:, 2:]
            z = g.sample("z", D.Normal(mu, scg.exp(log_sigma)))
            logits = g.deterministic("decoder", dec(z))
            g.cost("reconstruction", -(xin * logits - scg.softplus(logits)).sum(-1))
            g.cost("kl", (0.5 * (mu * mu + scg.exp(2 * log_sigma) - 1) - log_sigma).sum(-1))
    return g


def test_two_stage_discrete_graph_structure():
    lay = layout(two_stage_discrete().to_graphviz())
    nodes, edges = lay["nodes"], set(lay["edges"])
    assert nodes["b1"]["shape"] == "ellipse" and nodes["b2"]["shape"] == "ellipse"
    assert nodes["c1"]["shape"] == "diamond" and nodes["c2"]["shape"] == "diamond"
    assert nodes["theta"]["shape"] == "hexagon"
    assert "Bernoulli" in nodes["b1"]["label"] and "ScoreFunction(MovingAverage(0.9))" in nodes["b1"]["label"]
    # Score-function samples carry no pathwise gradient: dashed; parameters: solid.
    assert ("b1", "b2", "dashed") in edges and ("b1", "c1", "dashed") in edges
    assert ("b2", "c2", "dashed") in edges
    assert ("theta", "b1", "solid") in edges and ("theta", "b2", "solid") in edges
    assert not any(t == "b2" and h == "c1" for t, h, _ in edges)


def test_vae_graph_reads_as_a_handful_of_nodes():
    lay = layout(vae_graph().to_graphviz())
    # the networks' weights, never registered with g.param, as one hexagon per network
    assert set(lay["nodes"]) == {"x", "encoder", "z", "decoder", "reconstruction", "kl", "params"}
    hexagons = [o for o in lay["all"] if o.get("shape") == "hexagon"]
    # encoder 6*5+5 + 5*4+4 = 59 values, decoder 2*5+5 + 5*6+6 = 51
    assert sorted(o["label"] for o in hexagons) == ["params\n4 tensors, 51 values", "params\n4 tensors, 59 values"]
    edges = {(t, h) for t, h, _ in lay["edges"]}
    assert {("x", "encoder"), ("encoder", "z"), ("z", "decoder"), ("decoder", "reconstruction"),
            ("x", "reconstruction"), ("encoder", "kl"), ("params", "encoder"), ("params", "decoder")} == edges
    styles = {(t, h): s for t, h, s in lay["edges"]}
    assert styles[("z", "decoder")] == "solid"  # reparameterized: pathwise
    assert lay["nodes"]["x"]["shape"] == "parallelogram"
    assert lay["nodes"]["encoder"]["shape"] == "box"
    assert sorted(lay["clusters"]["data (4)"]) == sorted(["encoder", "z", "decoder", "reconstruction", "kl"])


def test_nested_plates_are_nested_clusters():
    g = scg.Graph()
    with g:
        with g.plate("outer", 2):
            with g.plate("inner", 3):
                z = g.sample("z", D.Normal(np.zeros((2, 3)), 1.0))
                g.cost("f", z * z)
    dot = g.to_graphviz()
    lay = layout(dot)
    assert "outer (2)" in lay["clusters"] and "inner (3)" in lay["clusters"]
    assert set(lay["clusters"]["inner (3)"]) == {"z", "f"}
    src = dot.source
    assert src.index("cluster_outer") < src.index("cluster_outer_inner")


def test_every_estimator_kind_is_labelled_and_coloured():
    logit = scg.tensor(np.zeros(3), requires_grad=True)
    g = scg.Graph()
    with g:
        a = g.sample("a", D.Normal(0.0, 1.0))
        b = g.sample("b", D.Bernoulli(logits=0.2), estimator=scg.ScoreFunction(scg.LeaveOneOutBaseline()), n=3)
        with g.plate("p", 3):
            c = g.sample("c", D.Bernoulli(logits=logit), estimator=scg.Enumerate())
            d = g.sample("d", D.Bernoulli(logits=logit), estimator=scg.GumbelSoftmax(0.5, straight_through=True))
            g.cost("f", c * d + a)
        g.cost("h", b)
    lay = layout(g.to_graphviz())
    labels = {k: v["label"] for k, v in lay["nodes"].items()}
    assert "Reparam" in labels["a"]
    assert "ScoreFunction(LeaveOneOut)" in labels["b"]
    assert "Enumerate" in labels["c"]
    assert "GumbelSoftmax(T=0.5, straight_through)" in labels["d"]
    colors = {lay["nodes"][k]["color"] for k in "abcd"}
    assert len(colors) == 4
    styles = {(t, h): s for t, h, s in lay["edges"]}
    assert styles[("d", "f")] == "solid" and styles[("c", "f")] == "dashed"


def test_surrogate_view_shows_credit_and_baseline():
    g = two_stage_discrete()
    dot = g.to_graphviz(view="surrogate")
    lay = layout(dot)
    credit = {(t, h) for t, h, s in lay["edges"] if s == "dotted" and h in ("b1", "b2") and t in ("c1", "c2")}
    assert credit == {("c1", "b1"), ("c2", "b1"), ("c2", "b2")}  # b2 is not credited with c1
    assert any("baseline" in n["label"] and "MovingAverage" in n["label"] for n in lay["nodes"].values()
               if "label" in n)


def test_dice_view_draws_magic_boxes():
    lay = layout(two_stage_discrete().to_graphviz(view="dice"))
    boxes = [n for n in lay["all"] if n["label"].startswith("magic box")]
    assert len(boxes) == 2
    assert any("b1, b2" in b["label"] for b in boxes)


def test_variance_overlay_annotates_and_colours():
    g = two_stage_discrete()
    lay = layout(g.to_graphviz(stats={"b1": 0.5, "b2": 0.001}))
    assert "Var 0.5" in lay["nodes"]["b1"]["label"] and "Var 0.001" in lay["nodes"]["b2"]["label"]
    assert lay["nodes"]["b1"]["fillcolor"] != lay["nodes"]["b2"]["fillcolor"]


def test_ops_detail_shows_every_primitive():
    g = two_stage_discrete()
    collapsed = layout(g.to_graphviz())
    full = layout(g.to_graphviz(detail="ops"))
    assert len(full["nodes"]) > len(collapsed["nodes"])
    assert any(n.startswith("add") for n in full["nodes"])


def test_plain_expression_can_be_drawn():
    x = scg.tensor([1.0, 2.0], requires_grad=True)
    y = (scg.exp(x) * 3.0).sum()
    lay = layout(viz.expression_to_dot(y))
    assert {"sum", "multiply", "exp", "leaf"} <= set(lay["nodes"])


def test_render_svg_and_png(tmp_path):
    g = vae_graph()
    svg = g.render(tmp_path / "vae.svg", format="svg")
    root = ET.parse(svg).getroot()
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for name in ("encoder", "decoder", "reconstruction", "kl"):
        assert name in text
    png = tmp_path / "vae.png"
    g.render(png, format="png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 200 < width < 5000 and 100 < height < 5000
    with pytest.raises(ValueError, match="format"):
        g.render(tmp_path / "x.gif", format="gif")


def test_jupyter_bundle_is_svg():
    bundle = vae_graph()._repr_mimebundle_()
    assert bundle["image/svg+xml"].lstrip().startswith(("<?xml", "<svg"))


def test_missing_dot_is_explained(monkeypatch):
    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    g = vae_graph()
    assert "digraph" in g.to_graphviz().source  # the DOT source needs no executable
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        g.render("unused.svg")
    assert "apt-get install graphviz" in g._repr_mimebundle_()["text/plain"]


def test_thousand_node_graph_renders(tmp_path):
    theta = scg.tensor(0.1, requires_grad=True)
    g = scg.Graph()
    with g:
        prev = theta
        for i in range(500):
            prev = g.sample(f"z{i}", D.Normal(prev, 1.0), estimator=scg.ScoreFunction())
            g.cost(f"c{i}", prev * prev)
    assert len(g.nodes) == 1000
    out = g.render(tmp_path / "big.svg")
    assert ET.parse(out).getroot().tag.endswith("svg")


def test_overlay_from_measured_node_gradient_variance():
    from scg.diagnostics import node_gradient_stats

    m1 = scg.tensor(0.5, requires_grad=True)
    m2 = scg.tensor(0.5, requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            a = g.sample("a", D.Normal(m1, 1.0))
            b = g.sample("b", D.Normal(m2, 1.0), estimator=scg.ScoreFunction())
            g.cost("fa", (a - 1) ** 2)
            g.cost("fb", (b - 1) ** 2)
        return g

    scg.manual_seed(0)
    n = 2000
    stats = node_gradient_stats(build, n)
    # Pathwise: d/dloc (a - 1)^2 = 2 (a - 1), variance 4 Var(a) = 4 (SE of a sample variance ~ 4 sqrt(2/n)).
    assert abs(stats["a"] - 4.0) < 4 * 4.0 * np.sqrt(2 / n)
    assert stats["b"] > 2 * stats["a"]  # the score function is noisier here
    lay = layout(build().to_graphviz(stats=stats))
    assert "Var" in lay["nodes"]["a"]["label"] and "Var" in lay["nodes"]["b"]["label"]


def test_a_new_estimator_class_draws_in_its_own_colour_without_changes_to_viz():
    class Pathwise(scg.Reparam):  # a new estimator that says how it is drawn
        color = "#123456"

    class Quieter(scg.ScoreFunction):  # a variant that says nothing: its parent's colour
        def describe(self):
            return "Quieter"

    class Bare(Estimator):  # straight from the base: the base's grey
        def draw(self, dist, n, rng):
            return dist.rsample((n,) if n else (), rng=rng)

    g = scg.Graph()
    with g:
        a = g.sample("a", D.Normal(0.0, 1.0), estimator=Pathwise())
        b = g.sample("b", D.Bernoulli(logits=0.2), estimator=Quieter())
        c = g.sample("c", D.Normal(0.0, 1.0), estimator=Bare())
        g.cost("f", a + b + c)
    lay = layout(g.to_graphviz(view="surrogate"))
    colour = {k: lay["nodes"][k]["color"] for k in "abc"}
    assert colour == {"a": "#123456", "b": scg.ScoreFunction.color, "c": Estimator.color}
    assert len({"#123456", scg.ScoreFunction.color, Estimator.color}) == 3
    assert "Quieter" in lay["nodes"]["b"]["label"] and "Bare" in lay["nodes"]["c"]["label"]
    j = json.loads(g.to_graphviz(view="surrogate").pipe(format="json"))
    names = {o["_gvid"]: o["label"].split("\n")[0] for o in j["objects"]}
    credit = [e for e in j["edges"] if e.get("label") == "credit"]
    assert {(names[e["tail"]], names[e["head"]]) for e in credit} == {("f", "b")}
    assert {e["color"] for e in credit} == {scg.ScoreFunction.color}  # credit edges: the estimator's colour


def test_builtin_estimators_each_have_their_own_colour():
    kinds = [scg.Reparam, scg.ScoreFunction, scg.Enumerate, scg.GumbelSoftmax, Estimator]
    assert len({k.color for k in kinds}) == len(kinds)


def test_a_bound_is_drawn_as_a_cost_with_its_edges():
    """A cost declared with g.bound is a diamond fed by what its log-weights depend on."""
    g = scg.Graph("iwae")
    with g:
        loc = g.param("loc", scg.tensor(np.zeros(2), requires_grad=True))
        z = g.sample("z", D.Normal(loc, 1.0), n=3)
        g.bound("neg_iwae", D.Normal(z, 1.0).log_prob(np.ones(2)) - D.Normal(loc, 1.0).log_prob(z), over="z")
    dot = g.to_graphviz().source
    ids = {name: f"n{i}" for i, name in enumerate(["loc", "z", "neg_iwae"])}
    node = dot[dot.index(f"\t{ids['neg_iwae']} [label="):]
    node = node[: node.index("\n\t", 1)]  # statements are separated by a newline and a tab
    assert "shape=diamond" in node and "over z" in node
    assert f"{ids['z']} -> {ids['neg_iwae']}" in dot and f"{ids['loc']} -> {ids['neg_iwae']}" in dot


def test_drawing_after_backward_is_refused_not_drawn_without_edges():
    mu = scg.tensor(1.0, requires_grad=True)
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(mu, 1.0))
        g.cost("c", (z - 3.0) ** 2)
    before = g.to_graphviz().source
    assert "->" in before  # z -> c
    g.surrogate().backward()
    for detail in ("nodes", "ops"):
        with pytest.raises(RuntimeError, match="freed .* Draw it before backward"):
            g.to_graphviz(detail=detail)
    g2 = scg.Graph()
    with g2:
        z = g2.sample("z", D.Normal(mu, 1.0))
        g2.cost("c", (z - 3.0) ** 2)
    g2.surrogate().backward(retain_graph=True)
    assert g2.to_graphviz().source.count("->") == before.count("->")
