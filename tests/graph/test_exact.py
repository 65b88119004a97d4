"""Exact unbiasedness over random graphs: no Monte Carlo, no tolerance tuning.

Hypothesis draws small DAGs of Bernoulli and Categorical nodes (1-4 nodes, some in a
plate of size 1-3, some drawn with n=2, entering the plate again for every node and
cost) and costs built with arithmetic, indexing with a sample, comparisons and
``where``, some summed over the plate (coupling datapoints), some centred by the
plate mean, some averaged over a sample axis. The model is one function written
for two backends: scg (inside a Graph, values replayed) and plain numpy (values
given). For every joint outcome the test computes its probability in numpy and
replays it in scg; then

    sum_o p(o) * grad surrogate(o)       == grad E[cost]    (brute force, numpy)
    sum_o p(o) * (Hessian of dice(o)) v  == Hessian E[cost] v

to 1e-8. A mis-credited cost, a wrong axis or a wrong scale shows up as a hard
mismatch. The brute-force side never calls scg.
"""

import itertools

import numpy as np
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from scipy.special import expit as _sigmoid

import scg
import scg.distributions as D
from scg import ops
from scg.diagnostics import exact_gradient

from brute import central_differences

# ---- the random model ----------------------------------------------------------------------


@st.composite
def specs(draw):
    plate = draw(st.integers(1, 3))
    nodes = []
    for i in range(draw(st.integers(1, 4))):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        nodes.append({
            "kind": draw(st.sampled_from(["bern", "cat"])),
            "in_plate": draw(st.booleans()),
            "n": draw(st.sampled_from([None, None, 2])),
            "reads": [(j, draw(st.sampled_from(["scale", "where", "index", "compare"])),
                       draw(st.booleans())) for j in parents],  # (parent, how, sum over the plate)
        })
    costs = []
    for _ in range(draw(st.integers(1, 3))):
        reads = draw(st.lists(st.integers(0, len(nodes) - 1), min_size=1, max_size=3, unique=True))
        costs.append({
            "reads": [(j, draw(st.sampled_from(["scale", "where", "index", "compare"])), False) for j in reads],
            "post": draw(st.sampled_from(["none", "sum_plate", "center_plate", "mean_sample"])),
            "square": draw(st.booleans()),
        })
    seed = draw(st.integers(0, 2**16))
    return {"plate": plate, "nodes": nodes, "costs": costs, "seed": seed}


def _order(axes):
    """Canonical order of axis labels: sample axes newest first, then the plate."""
    return sorted(set(axes), key=lambda a: (a == "p", -a if a != "p" else 0))


def layouts(spec):
    """Axis labels of every node's value: ints are sample axes of that node, "p" the plate."""
    out = []
    for i, node in enumerate(spec["nodes"]):
        axes = []
        for j, _, reduce_plate in node["reads"]:
            axes += [a for a in out[j] if not (reduce_plate and a == "p")]
        if node["in_plate"]:
            axes.append("p")
        out.append(([i] if node["n"] else []) + _order(axes))
    return out


def constants(spec):
    rng = np.random.default_rng(spec["seed"])
    lays = layouts(spec)
    thetas, tables = [], {}
    for i, node in enumerate(spec["nodes"]):
        shape = (spec["plate"],) if node["in_plate"] else ()
        thetas.append(rng.normal(0, 0.8, shape + ((3,) if node["kind"] == "cat" else ())))
    for key in itertools.product(range(len(spec["nodes"]) + len(spec["costs"])), range(4)):
        tables[key] = rng.normal(0, 1.5, 3)
    return lays, thetas, tables


def model(spec, lays, thetas, tables, xp, draw, cost):
    """The model, for either backend. ``xp`` has ``tensor`` and ``where``; ``draw(i, logits)``
    returns node i's value; ``cost(name, value, in_plate)`` declares a cost."""
    size = {"p": spec["plate"]}
    for i, node in enumerate(spec["nodes"]):
        size[i] = 2

    def read(key, j, how, value):
        if how == "scale":
            return value * (1.0 + 0.5 * key[1]) if spec["nodes"][j]["kind"] == "bern" else value * 0.5
        if how == "where":
            return xp.where(value == 1, 1.5, -0.25 * (key[0] + 1))
        if how == "index":
            table = tables[key] if spec["nodes"][j]["kind"] == "cat" else tables[key][:2]
            return xp.tensor(table)[value.astype(np.int64)]
        return (value >= 1) * 0.75 - 0.3

    def combine(parts, target):
        out = 0.0
        for axes, v in parts:
            shape = tuple(size[a] if a in axes else 1 for a in target)
            out = out + (v.reshape(shape) if len(shape) else v)
        return out

    values = []
    for i, node in enumerate(spec["nodes"]):
        parts = []
        for k, (j, how, reduce_plate) in enumerate(node["reads"]):
            v, axes = read((i, k), j, how, values[j]), list(lays[j])
            if reduce_plate and "p" in axes:
                v = v.sum(axis=axes.index("p"))
                axes.remove("p")
            parts.append((axes, v))
        target = [a for a in lays[i] if a != i]
        shift = combine(parts, target)
        theta = thetas[i]
        if node["kind"] == "cat":
            shift = shift[..., None] if np.ndim(shift) or hasattr(shift, "shape") else shift
        values.append(draw(i, theta + shift))
    for c, spec_c in enumerate(spec["costs"]):
        parts = [(list(lays[j]), read((len(spec["nodes"]) + c, k), j, how, values[j]))
                 for k, (j, how, _) in enumerate(spec_c["reads"])]
        target = _order([a for axes, _ in parts for a in axes])
        value = combine(parts, target) + 0.1 * (c + 1)
        if spec_c["square"]:
            value = value * value
        post = spec_c["post"]
        if post == "sum_plate" and "p" in target:
            value = value.sum(axis=target.index("p"))
            target.remove("p")
        elif post == "center_plate" and "p" in target:
            value = value - value.mean(axis=target.index("p"), keepdims=True) * 0.5
        elif post == "mean_sample" and target and target[0] != "p":
            value = value.mean(axis=0)
            target = target[1:]
        if not hasattr(value, "shape") or value.shape != tuple(size[a] for a in target):
            value = value + np.zeros(tuple(size[a] for a in target))
        cost(f"c{c}", value, target)


# ---- brute force in numpy ----------------------------------------------------------------


class NumpyBackend:
    tensor = staticmethod(np.asarray)
    where = staticmethod(np.where)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _unbroadcast(a, shape):
    while a.ndim > len(shape):
        a = a.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and a.shape[i] != 1:
            a = a.sum(i, keepdims=True)
    return a


def value_shapes(spec, lays):
    return [tuple(spec["plate"] if a == "p" else 2 for a in lays[i]) for i in range(len(spec["nodes"]))]


def brute_force(spec, lays, thetas, tables):
    """[(probability, total cost, grad log p (flat), Hessian of log p (flat)), ...] over outcomes."""
    shapes = value_shapes(spec, lays)
    supports = [2 if n["kind"] == "bern" else 3 for n in spec["nodes"]]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    offsets = np.cumsum([0] + [t.size for t in thetas])
    out = []
    for combo in itertools.product(*[itertools.product(range(k), repeat=m) for k, m in zip(supports, sizes)]):
        vals = [np.asarray(c, dtype=np.int64).reshape(s) for c, s in zip(combo, shapes)]
        logp, grads, hess, total = 0.0, np.zeros(offsets[-1]), np.zeros((offsets[-1],) * 2), [0.0]

        def draw(i, logits):
            nonlocal logp
            v = vals[i]
            logits = np.asarray(logits, dtype=float)
            sl = slice(offsets[i], offsets[i + 1])
            if spec["nodes"][i]["kind"] == "bern":
                s = np.broadcast_to(_sigmoid(logits), v.shape)
                logp += np.sum(np.where(v == 1, np.log(s), np.log1p(-s)))
                grads[sl] += _unbroadcast(v - s, thetas[i].shape).ravel()
                hess[sl, sl] += np.diag(_unbroadcast(-s * (1 - s), thetas[i].shape).ravel())
                return v.astype(float)
            s = np.broadcast_to(_softmax(logits), v.shape + (3,))
            logp += np.sum(np.log(np.take_along_axis(s, v[..., None], -1)))
            grads[sl] += _unbroadcast(np.eye(3)[v] - s, thetas[i].shape).ravel()
            # each element e adds -(diag(s_e) - s_e s_e^T) to the block of the theta row it used
            rows = np.broadcast_to(np.arange(thetas[i].size // 3).reshape(thetas[i].shape[:-1]), v.shape)
            for e in np.ndindex(v.shape):
                se = s[e]
                r = offsets[i] + 3 * rows[e]
                hess[r : r + 3, r : r + 3] -= np.diag(se) - np.outer(se, se)
            return v

        def cost(name, value, target):
            scale = 0.5 ** sum(1 for a in target if a != "p")  # n=2 draws are averaged
            total[0] += scale * float(np.sum(value))

        model(spec, lays, thetas, tables, NumpyBackend, draw, cost)
        out.append((np.exp(logp), total[0], grads, hess, vals))
    return out


# ---- scg, replayed ----------------------------------------------------------------------------


class ScgBackend:
    tensor = staticmethod(scg.tensor)
    where = staticmethod(scg.where)


def scg_build(spec, lays, params, tables, replay=None):
    def build():
        g = scg.Graph(replay=replay)
        with g:
            def draw(i, logits):
                node = spec["nodes"][i]
                dist = D.Bernoulli(logits=logits) if node["kind"] == "bern" else D.Categorical(logits=logits)
                if node["in_plate"]:
                    with g.plate("p", spec["plate"]):
                        return g.sample(f"z{i}", dist, estimator=scg.ScoreFunction(), n=node["n"])
                return g.sample(f"z{i}", dist, estimator=scg.ScoreFunction(), n=node["n"])

            def cost(name, value, target):
                if "p" in target:
                    with g.plate("p", spec["plate"]):
                        g.cost(name, value)
                else:
                    g.cost(name, value)

            model(spec, lays, params, tables, ScgBackend, draw, cost)
        return g

    return build


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(specs())
def test_surrogate_and_dice_are_exactly_unbiased(spec):
    lays, thetas, tables = constants(spec)
    shapes = value_shapes(spec, lays)
    count = np.prod([(2 if n["kind"] == "bern" else 3) ** int(np.prod(s, dtype=np.int64))
                     for n, s in zip(spec["nodes"], shapes)])
    assume(count <= 128)
    outcomes = brute_force(spec, lays, thetas, tables)
    probs = np.array([o[0] for o in outcomes])
    assert np.isclose(probs.sum(), 1.0, rtol=0, atol=1e-12)
    exact = sum(p * c * gr for p, c, gr, _, _ in outcomes)
    v = np.random.default_rng(spec["seed"] + 1).normal(size=exact.shape)
    exact_hv = sum(p * c * (gr * (gr @ v) + h @ v) for p, c, gr, h, _ in outcomes)

    params = [scg.tensor(t, requires_grad=True) for t in thetas]
    vt = [scg.tensor(v[a:b].reshape(t.shape)) for t, a, b in
          zip(thetas, np.cumsum([0] + [t.size for t in thetas]), np.cumsum([t.size for t in thetas]))]
    mean_grad = np.zeros_like(exact)
    mean_hv = np.zeros_like(exact)
    for p, _, _, _, vals in outcomes:
        replay = {f"z{i}": val.astype(np.float64) if n["kind"] == "bern" else val
                  for i, (n, val) in enumerate(zip(spec["nodes"], vals))}
        g = scg_build(spec, lays, params, tables, replay)()
        mean_grad += p * np.concatenate([x.data.ravel() for x in scg.grad(g.surrogate(), params, retain_graph=True)])
        d1 = scg.grad(g.dice(), params, create_graph=True)
        dot = sum(scg.sum(a * b) for a, b in zip(d1, vt))
        if dot.requires_grad:
            mean_hv += p * np.concatenate([x.data.ravel() for x in scg.grad(dot, params)])
    np.testing.assert_allclose(mean_grad, exact, rtol=0, atol=1e-8)
    np.testing.assert_allclose(mean_hv, exact_hv, rtol=0, atol=1e-8)
    # exact_gradient enumerates the same outcomes itself
    got = np.concatenate([x.data.ravel() for x in exact_gradient(scg_build(spec, lays, params, tables), params)])
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-8)


# ---- independent nodes laid out by the allocation rule, no manual axes ----------------------
# Values combine by plain broadcasting. The brute force re-implements the layout rule (README,
# "Named axes" 1): the k-th allocated sample/support axis sits k positions left of the plate,
# a node's value is (its axis,) + a slot per earlier axis (size 1 unless it carries it) + batch.


@st.composite
def broadcast_specs(draw):
    nodes = []
    for i in range(draw(st.integers(1, 4))):
        enum = draw(st.booleans())
        nodes.append({
            "kind": draw(st.sampled_from(["bern", "cat"])),
            "enum": enum,
            "n": None if enum else draw(st.sampled_from([None, 2])),
            "parents": draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else [],
        })
    costs = [draw(st.lists(st.integers(0, len(nodes) - 1), min_size=1, max_size=3, unique=True))
             for _ in range(draw(st.integers(1, 2)))]
    # every node inside one plate or none: a value drawn outside a plate with a sample/support
    # axis needs a trailing size-1 axis to meet one drawn inside (README: "Plates broadcast")
    return {"plate": draw(st.integers(1, 2)), "plated": draw(st.booleans()), "nodes": nodes, "costs": costs,
            "seed": draw(st.integers(0, 2**16))}


def _carried_shape(carried, order, in_plate, plate):
    """The layout rule: lead axes ``carried`` (allocation indices) then the plate."""
    lead = 1 + max(carried) if carried else 0
    shape = [1] * lead
    for k in carried:
        shape[lead - 1 - k] = order[k]
    return tuple(shape) + ((plate,) if in_plate else ())


def _broadcast_model(spec, thetas, draw, cost, enum_size):
    """The model on plain broadcasting; ``draw(i, logits, shape)`` returns node i's value
    (``shape``: the brute force's layout, with size 1 for an enumerated node's own axis)."""
    order, carried, values = [], [], []
    for i, node in enumerate(spec["nodes"]):
        c = set()
        shift = 0.0
        for j in node["parents"]:
            c |= carried[j]
            shift = shift + values[j] * (0.7 - 0.3 * j)
        in_plate = spec["plated"]
        logits = thetas[i] + (shift[..., None] if node["kind"] == "cat" and np.ndim(shift) else shift)
        own = node["n"] or (enum_size.get(i, 0) if node["enum"] else None)
        if own or node["enum"]:
            c = c | {len(order)}
            order.append(own)
        shape = _carried_shape(c, order, in_plate, spec["plate"])
        carried.append(c)
        values.append(draw(i, logits, shape, in_plate))
    for k, reads in enumerate(spec["costs"]):
        v = 0.1 * (k + 1)
        for j in reads:
            v = v + values[j] * (1.0 + 0.5 * j)
        cost(f"c{k}", v * v, set().union(*(carried[j] for j in reads)), order)


def _broadcast_brute(spec, thetas):
    """E[total cost] by enumerating every element of every node (enumerated nodes as random)."""
    sizes = [2 if n["kind"] == "bern" else 3 for n in spec["nodes"]]
    enum_size = {i: 1 for i in range(len(spec["nodes"]))}  # an enumerated axis is one random value here
    shapes = []
    _broadcast_model(spec, [np.asarray(t) for t in thetas],
                     lambda i, logits, shape, in_plate: shapes.append(shape) or np.zeros(shape),
                     lambda *a: None, enum_size)
    total = 0.0
    for combo in itertools.product(*[itertools.product(range(k), repeat=int(np.prod(s, dtype=np.int64)))
                                     for k, s in zip(sizes, shapes)]):
        vals = [np.asarray(c, dtype=float).reshape(s) for c, s in zip(combo, shapes)]
        logp, acc = [0.0], [0.0]

        def draw(i, logits, shape, in_plate):
            v = vals[i]
            if spec["nodes"][i]["kind"] == "bern":
                s = np.broadcast_to(_sigmoid(np.asarray(logits)), v.shape)
                logp[0] += np.sum(np.where(v == 1, np.log(s), np.log1p(-s)))
            else:
                s = np.broadcast_to(_softmax(np.asarray(logits)), v.shape + (3,))
                logp[0] += np.sum(np.log(np.take_along_axis(s, v.astype(np.int64)[..., None], -1)))
            return v

        def cost(name, value, carried, order):
            scale = np.prod([0.5 for k in carried if order[k] == 2 and not _is_enum(spec, order, k)])
            acc[0] += scale * float(np.sum(value))

        _broadcast_model(spec, thetas, draw, cost, enum_size)
        total += np.exp(logp[0]) * acc[0]
    return total


def _is_enum(spec, order, k):
    """Whether allocated axis k belongs to an enumerated node (in the brute force, size 1)."""
    owners = [i for i, n in enumerate(spec["nodes"]) if n["n"] or n["enum"]]
    return spec["nodes"][owners[k]]["enum"]


def _broadcast_build(spec, params):
    def build():
        g = scg.Graph()
        with g:
            def draw(i, logits, shape, in_plate):
                node = spec["nodes"][i]
                dist = D.Bernoulli(logits=logits) if node["kind"] == "bern" else D.Categorical(logits=logits)
                est = scg.Enumerate() if node["enum"] else scg.ScoreFunction()
                if in_plate:
                    with g.plate("p", spec["plate"]):
                        v = g.sample(f"z{i}", dist, estimator=est, n=node["n"])
                else:
                    v = g.sample(f"z{i}", dist, estimator=est, n=node["n"])
                return ops.astype(v, np.float64)

            def cost(name, value, carried, order):
                g.cost(name, value)

            _broadcast_model(spec, params, draw, cost, {})
        return g

    return build


def _node(kind, enum=False, n=None, parents=()):
    return {"kind": kind, "enum": enum, "n": n, "parents": list(parents)}


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(broadcast_specs())
@example({"plate": 1, "plated": False, "seed": 1, "costs": [[0, 1]],  # two independent n=2 nodes
          "nodes": [_node("bern", n=2), _node("bern", n=2)]})
@example({"plate": 2, "plated": True, "seed": 2, "costs": [[0, 1, 2]],  # enumerated, n=2, enumerated
          "nodes": [_node("bern", enum=True), _node("bern", n=2), _node("cat", enum=True)]})
@example({"plate": 1, "plated": False, "seed": 3, "costs": [[1, 2]],  # a chain next to an independent node
          "nodes": [_node("cat", enum=True), _node("bern", enum=True, parents=[0]), _node("bern", enum=True)]})
def test_independent_nodes_need_no_manual_axes(spec):
    rng = np.random.default_rng(spec["seed"])
    thetas = [rng.normal(0, 0.8, (3,) if n["kind"] == "cat" else ()) for n in spec["nodes"]]  # plates broadcast
    shapes = []
    _broadcast_model(spec, thetas, lambda i, logits, shape, in_plate: shapes.append(shape) or np.zeros(shape),
                     lambda *a: None, {i: 1 for i in range(len(spec["nodes"]))})
    count = np.prod([(2 if n["kind"] == "bern" else 3) ** int(np.prod(s, dtype=np.int64))
                     for n, s in zip(spec["nodes"], shapes)])
    assume(count <= 96)
    params = [scg.tensor(t, requires_grad=True) for t in thetas]
    build = _broadcast_build(spec, params)
    if all(n["enum"] for n in spec["nodes"]):  # no randomness left: the objective is the expectation
        g = build()
        obj = g.objective()
        np.testing.assert_allclose(obj.item(), _broadcast_brute(spec, thetas), rtol=1e-11)
        got = scg.grad(obj, params)
    else:
        got = exact_gradient(build, params)
    for gr, fd in zip(got, central_differences(lambda *t: _broadcast_brute(spec, list(t)), thetas)):
        np.testing.assert_allclose(gr.data, fd, rtol=1e-5, atol=1e-7)
