"""Graphviz pictures of stochastic computation graphs, their surrogates and plain
autodiff expressions.

Schulman et al.'s notation: stochastic nodes are circles, deterministic values
boxes, costs diamonds; inputs (data) are parallelograms and parameters
hexagons. An edge that carries a pathwise gradient is solid; one that carries
none (out of a score-function sample, or only through ``stop_gradient``) is
dashed. Plates are clusters labelled with their size. A stochastic node's outline
takes its estimator's ``color`` (a class attribute of :class:`scg.estimators.Estimator`,
inherited by subclasses), so a new estimator draws without a change here.
"""

import os
import tempfile

import graphviz

from .autodiff import FREED
from .axes import bit_indices
from .tensor import Tensor

DEFAULT_COLOR = "#555555"  # for an estimator-like object without a ``color``
INSTALL_HINT = (
    "Graphviz's `dot` executable was not found: install Graphviz (Debian/Ubuntu: "
    "`apt-get install graphviz`; macOS: `brew install graphviz`). The DOT source is "
    "still available from g.to_graphviz().source."
)


def _shape(t):
    return "x".join(str(n) for n in t.shape) if t.shape else "scalar"


def _color(node):
    return getattr(node.estimator, "color", DEFAULT_COLOR)


COST_KINDS = ("cost", "observed", "bound")  # the kinds of CostNode (scg.nodes)


def _family(dist):
    """The family's name; a distribution a plate expanded is named by what the model wrote."""
    if type(dist).__name__ == "ExpandedDistribution":
        return _family(dist.base_dist)
    return type(dist).__name__


def _label(node):
    kind = getattr(node, "kind", None)
    if kind == "stochastic":
        lines = [node.name, f"{_family(node.dist)} [{_shape(node.value)}]", node.estimator.describe()]
        return "\n".join(lines)
    if kind == "observed":
        return f"{node.name}\n{_family(node.dist)} [{_shape(node.observed)}]\nobserved"
    if kind == "bound":
        return f"{node.name}\n[{_shape(node.value)}]\n-log mean exp(log w) over {node.over.name}"
    return f"{node.name}\n[{_shape(node.value)}]"


def _attrs(kind, node=None):
    """Graphviz attributes of a node of ``kind`` (a stochastic node's outline from ``node``'s estimator)."""
    if kind == "stochastic":
        c = _color(node)
        return dict(shape="ellipse", style="filled", fillcolor="white", color=c, penwidth="2", fontcolor="black")
    if kind in ("cost", "bound"):
        return dict(shape="diamond", style="filled", fillcolor="#fbe3e3", color="#b03030")
    if kind == "observed":  # a shaded circle, as in graphical-model notation
        return dict(shape="ellipse", style="filled", fillcolor="#bbbbbb", color="#b03030", penwidth="2")
    if kind == "input":
        return dict(shape="parallelogram", style="filled", fillcolor="#eeeeee")
    if kind == "param":
        return dict(shape="hexagon", style="filled", fillcolor="#fff6d5")
    return dict(shape="box", style="rounded,filled", fillcolor="#f4f8ff")


def _refuse_freed(t, g):
    """Raise if a backward pass freed ``t``'s record: drawing on would silently drop edges."""
    if t._op is FREED:
        raise RuntimeError(
            f"cannot draw graph {g.name!r}: a backward pass freed the records of how its values were "
            f"computed, so its edges are gone. Draw it before backward() (or pass retain_graph=True "
            f"to backward())"
        )


def _named_tensors(g):
    """id(tensor) -> node for every named node's value."""
    named = {}
    for node in g.nodes.values():
        if node.kind not in COST_KINDS:
            named[id(node.value)] = node
    return named


def _sources(g, start, named, stop_op, leaves=None):
    """Named nodes upstream of tensors ``start`` without passing another named node:
    {name: pathwise} where pathwise says some path avoids ``stop_gradient``. With
    ``leaves`` (a dict, filled in), unnamed leaves that require grad (parameters the model
    did not register with ``g.param``) count as sources too, keyed ``param:<id>``."""
    found = {}
    seen = set()
    stack = [(t, False) for t in start]
    while stack:
        t, stopped = stack.pop()
        key = (id(t), stopped)
        if key in seen:
            continue
        seen.add(key)
        node = named.get(id(t))
        if node is not None:
            found[node.name] = found.get(node.name, False) or not stopped
            continue
        if leaves is not None and t._op is None and t.requires_grad:
            k = f"param:{id(t)}"
            leaves[k] = t
            found[k] = found.get(k, False) or not stopped
            continue
        _refuse_freed(t, g)
        through_stop = stopped or t._op is stop_op
        for p in t._parents:
            stack.append((p, through_stop))
    return found


def _edges(g, leaves=None):
    """(source name, target name, pathwise) for the default detail level; parameters the
    model did not name are collected in ``leaves`` ({key: Tensor}) and drawn as sources."""
    from .ops import _stop

    named = _named_tensors(g)
    edges = []
    for node in g.nodes.values():
        _refuse_freed(node.value, g)  # the walk below starts from its inputs
        if node.kind == "stochastic":
            start = list(node.value._parents)
            if node.log_prob is not None:
                _refuse_freed(node.log_prob, g)
                start += [p for p in node.log_prob._parents if p is not node.value]
        elif node.kind in COST_KINDS:
            own = named.get(id(node.value))
            start = [node.value] if own is not None else list(node.value._parents)
        elif node.kind == "deterministic":
            start = list(node.value._parents)
        else:
            continue
        for src, pathwise in _sources(g, start, named, _stop, leaves).items():
            if src == node.name:
                continue
            s = g.nodes.get(src)
            if s is not None and s.kind == "stochastic" and not s.value.requires_grad:
                pathwise = False  # a score-function or enumerated sample carries no gradient
            edges.append((src, node.name, pathwise))
    return edges


class _Clusters:
    """One graphviz cluster per nesting of plates, labelled "name (size)" or, for a
    subsampled plate, "name (B of N)"."""

    def __init__(self, dot):
        self.dot, self.made = dot, {}

    def __call__(self, plates):
        if not plates:
            return self.dot
        key = tuple(p.name for p in plates)
        if key not in self.made:
            parent = self(plates[:-1])
            p = plates[-1]
            sub = graphviz.Digraph(name=f"cluster_{'_'.join(key)}")
            size = f"{p.size} of {p.full_size}" if p.full_size != p.size else f"{p.size}"
            sub.attr(label=f"{p.name} ({size})", style="rounded", color="#888888", labeljust="r", fontsize="10")
            self.made[key] = (sub, parent)
        return self.made[key][0]

    def attach(self):
        """Add the clusters to their parents, innermost first so each lands inside its parent."""
        for key in sorted(self.made, key=len, reverse=True):
            sub, parent = self.made[key]
            parent.subgraph(sub)


def _add_nodes(dot, g, ids, stats, stat_name, clusters):
    for node in g.nodes.values():
        attrs = _attrs(node.kind, node)
        label = _label(node)
        if stats is not None and node.name in stats:
            value = float(stats[node.name])
            label += f"\n{stat_name} {value:.3g}"
            attrs["fillcolor"] = _heat(value, stats)
            attrs["style"] = "filled"
        clusters(getattr(node, "plates", ())).node(ids[node.name], label, **attrs)


def _param_label(t):
    name = getattr(t, "name", None)
    return f"{name}\n[{_shape(t)}]" if isinstance(name, str) else f"param\n[{_shape(t)}]"


def _heat(value, stats):
    """White (lowest) to red (highest) on a log scale across the overlay's values."""
    import math

    vals = [abs(float(v)) for v in stats.values() if float(v) > 0]
    if not vals or value <= 0:
        return "#ffffff"
    lo, hi = math.log(min(vals)), math.log(max(vals))
    f = 0.0 if hi == lo else (math.log(value) - lo) / (hi - lo)
    g_b = int(255 - 175 * f)
    return f"#ff{g_b:02x}{g_b:02x}"


def graph_to_dot(g, detail="nodes", view="model", stats=None, stat_name="Var", rankdir="LR"):
    """Draw graph ``g``.

    ``detail``: "nodes" (named nodes only, the arithmetic between them collapsed) or
    "ops" (every recorded primitive). ``view``: "model"; "surrogate" adds, for
    every score-function node, the costs it is credited with and its baseline;
    "dice" adds DiCE's magic-box factors. ``stats``: {node name: number}, e.g. the
    gradient variance per node, shown and used to colour the nodes.
    """
    if detail not in ("nodes", "ops"):
        raise ValueError(f"detail must be 'nodes' or 'ops', got {detail!r}")
    if view not in ("model", "surrogate", "dice"):
        raise ValueError(f"view must be 'model', 'surrogate' or 'dice', got {view!r}")
    dot = graphviz.Digraph(name=g.name)
    dot.attr(rankdir=rankdir, fontname="Helvetica", fontsize="11", label=f"{g.name} ({view})", labelloc="t")
    dot.attr("node", fontname="Helvetica", fontsize="10")
    dot.attr("edge", arrowsize="0.7")
    ids = {name: f"n{i}" for i, name in enumerate(g.nodes)}
    clusters = _Clusters(dot)
    if detail == "ops":
        return _ops_dot(dot, g, ids, clusters)
    _add_nodes(dot, g, ids, stats, stat_name, clusters)
    leaves = {}
    edges = _edges(g, leaves)
    # Parameters not registered with g.param are drawn all the same: one hexagon per node they
    # feed (a network's weights and biases read as one "params" source, not a dozen).
    fed = {}
    for src, dst, pathwise in edges:
        if src in leaves:
            fed.setdefault(dst, []).append((leaves[src], pathwise))
            continue
        dot.edge(ids[src], ids[dst], style="solid" if pathwise else "dashed",
                 color="black" if pathwise else "#999999")
    for dst, params in fed.items():
        pid = f"p_{ids[dst]}"
        if len(params) == 1:
            label = _param_label(params[0][0])
        elif len(params) <= 3:
            label = "params\n" + ", ".join(f"[{_shape(t)}]" for t, _ in params)
        else:
            label = f"params\n{len(params)} tensors, {sum(t.size for t, _ in params)} values"
        dot.node(pid, label, **_attrs("param"))
        pathwise = any(p for _, p in params)
        dot.edge(pid, ids[dst], style="solid" if pathwise else "dashed", color="black" if pathwise else "#999999")
    clusters.attach()
    if view == "surrogate":
        credit = g.credit()
        for w in g.stochastic:
            if not w.estimator.score:
                continue
            colour = _color(w)  # credit and baseline edges in the colour of the node's estimator
            for c in credit.credited(w.name):
                dot.edge(ids[c], ids[w.name], style="dotted", color=colour, constraint="false",
                         label="credit", fontsize="8", fontcolor=colour)
            baseline = getattr(w.estimator, "baseline", None)
            if baseline is not None:
                bid = f"b_{ids[w.name]}"
                dot.node(bid, f"baseline\n{baseline.describe()}", shape="note", fontsize="9",
                         style="filled", fillcolor="#fff0dd")
                dot.edge(bid, ids[w.name], style="dotted", color=colour, arrowhead="odot")
    elif view == "dice":
        for c in g.costs:
            ups = [g.stochastic[i].name for i in bit_indices(c.info.anc & g.score_mask)]
            if not ups:
                continue
            mid = f"m_{ids[c.name]}"
            dot.node(mid, "magic box\nexp(tau - stop_grad(tau))\ntau = sum log p(" + ", ".join(ups) + ")",
                     shape="box", style="dashed", fontsize="9")
            for u in ups:
                dot.edge(ids[u], mid, style="dotted", color="#8e44ad")
            dot.edge(mid, ids[c.name], style="dotted", color="#8e44ad", label="x", fontsize="8")
    return dot


def _plates_of(g, t):
    """The plates whose axes ``t`` carries, outermost first (where the ops view draws it)."""
    try:
        return tuple(d for d in g.tracker.info(t, strict=False).dims if d is not None and d.kind == "plate")
    except ValueError:
        return ()


def _ops_dot(dot, g, ids, clusters):
    """Every recorded tensor between the named nodes, primitives as small boxes (inside the
    plates whose axes they carry)."""
    named = _named_tensors(g)
    for c in g.costs:
        named.setdefault(id(c.value), c)
    _add_nodes(dot, g, ids, None, "", clusters)
    seen = {}
    stack = [c.value for c in g.costs] + [s.value for s in g.stochastic]
    stack += [s.log_prob for s in g.stochastic if s.log_prob is not None]

    def key(t):
        node = named.get(id(t))
        return ids[node.name] if node is not None else f"t{id(t)}"

    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen[id(t)] = t
        _refuse_freed(t, g)
        k = key(t)
        if id(t) not in named:
            if t._op is None and t.requires_grad:
                dot.node(k, _param_label(t), **_attrs("param"))
            else:
                label = t._op.name if t._op is not None else "leaf"
                clusters(_plates_of(g, t)).node(k, f"{label}\n[{_shape(t)}]", shape="box", fontsize="8",
                                                height="0.2")
        for p in t._parents:
            dot.edge(key(p), k, style="solid" if p.requires_grad else "dashed",
                     color="black" if p.requires_grad else "#999999")
            if named.get(id(p)) is None or named[id(p)].kind == "stochastic":
                stack.append(p)
    clusters.attach()
    return dot


def expression_to_dot(output, rankdir="LR"):
    """Draw the autodiff record behind a Tensor (no Graph needed): every primitive
    as a box, leaves that require grad as hexagons, constants as parallelograms."""
    if not isinstance(output, Tensor):
        raise TypeError(f"expected a Tensor, got {type(output).__name__}")
    dot = graphviz.Digraph(name="expression")
    dot.attr(rankdir=rankdir)
    dot.attr("node", fontname="Helvetica", fontsize="10")
    seen = set()
    stack = [output]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        k = f"t{id(t)}"
        if t._op is not None:
            dot.node(k, f"{t._op.name}\n[{_shape(t)}]", shape="box", style="rounded")
        elif t.requires_grad:
            dot.node(k, f"leaf\n[{_shape(t)}]", shape="hexagon", style="filled", fillcolor="#fff6d5")
        else:
            dot.node(k, f"const\n[{_shape(t)}]", shape="parallelogram")
        for p in t._parents:
            dot.edge(f"t{id(p)}", k, style="solid" if p.requires_grad else "dashed")
            stack.append(p)
    return dot


def render(dot, path, format="svg"):
    """Write ``dot`` to ``path`` in ``format`` (svg, png, pdf) atomically; returns the path."""
    if format not in ("svg", "png", "pdf"):
        raise ValueError(f"format must be 'svg', 'png' or 'pdf', got {format!r}")
    path = os.fspath(path)
    try:
        data = dot.pipe(format=format)
    except graphviz.ExecutableNotFound:
        raise RuntimeError(INSTALL_HINT) from None
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".scg-render-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mimebundle(g, include=None, exclude=None):
    """What Jupyter shows for a Graph: its SVG, or the hint when ``dot`` is missing."""
    dot = g.to_graphviz()
    try:
        return {"image/svg+xml": dot.pipe(format="svg").decode("utf-8"), "text/plain": repr(g)}
    except graphviz.ExecutableNotFound:
        return {"text/plain": f"{g!r}\n{INSTALL_HINT}"}
