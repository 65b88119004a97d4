"""Reverse-mode automatic differentiation: recording primitives and the reverse pass.

A primitive is a numpy ``forward`` plus one VJP per positional input. A VJP
receives ``(g, ans, *inputs, **static)`` as Tensors and returns the gradient
for its input as a Tensor (or ``None`` for zero), computed with differentiable
operations, so running the reverse pass while recording (``create_graph``)
yields a graph that can be differentiated again.

The reverse pass is one topological sort (iterative, so a chain of any length
works) and one loop over the nodes in reverse order.

This module knows no primitive (they are defined in :mod:`scg.ops`, which imports
this one); the switches it reads (``grad_enabled``, ``anomaly``, ``track``) live in
:mod:`scg.context`.
"""

import numpy as np

from .context import pop, push, state, switched
from .tensor import Tensor


class no_grad(switched):
    """Context manager (and decorator) in which no operation is recorded."""

    def __init__(self):
        super().__init__("no_grad", grad_enabled=False)

    def __call__(self, fn):
        kind = type(self)

        def wrapper(*args, **kwargs):
            with kind():
                return fn(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


class enable_grad(no_grad):
    """Context manager (and decorator) that turns recording back on (e.g. inside ``no_grad``)."""

    def __init__(self):
        switched.__init__(self, "enable_grad", grad_enabled=True)


class detect_anomaly(switched):
    """Context manager: raise ``FloatingPointError`` naming the primitive as soon as a
    forward value contains NaN or a gradient contains NaN or Inf.

    Infinite forward values are allowed because valid models produce them (a log-prob
    of -inf for an impossible value, a -inf logit); an infinite gradient is not valid.
    """

    def __init__(self):
        super().__init__("detect_anomaly", anomaly=True)


def is_grad_enabled():
    """Whether operations are being recorded (False inside ``no_grad``)."""
    return state.grad_enabled


# ---- defining and recording primitives -------------------------------------------


def _lift(args):
    """Tensors pass through; anything else becomes a constant Tensor. Python
    scalars take the floating dtype of the first floating Tensor argument."""
    dtype = None
    for a in args:
        if isinstance(a, Tensor) and a.data.dtype.kind == "f":
            dtype = a.data.dtype
            break
    out = []
    for a in args:
        if isinstance(a, Tensor):
            out.append(a)
        elif dtype is not None and type(a) in (float, int, bool):
            out.append(Tensor(np.asarray(a, dtype=dtype)))
        else:
            out.append(Tensor(a))
    return out


def _shapes(xs):
    return ", ".join(str(x.data.shape) for x in xs)


def _wrap(data):
    """A constant Tensor around the ndarray ``data``, without Tensor's input checks."""
    t = Tensor.__new__(Tensor)
    t._data = data
    t._grad = None
    t.requires_grad = False
    t._parents = ()
    t._op = None
    t._static = None
    t._version = 0
    t._saved_versions = None
    return t


def record(op, data, xs, static):
    """Wrap ``data`` as the output of primitive ``op`` applied to Tensors ``xs``."""
    if not isinstance(data, np.ndarray):  # (a traced step's values are an ndarray subclass)
        data = np.asarray(data)
    t = _wrap(data)
    # Only floating-point outputs carry gradients (a comparison or an integer cast
    # of a Tensor that requires grad does not).
    if state.grad_enabled and data.dtype.kind in "fc":
        for x in xs:
            if x.requires_grad:
                t.requires_grad = True
                # The VJPs read the inputs' values: remember which versions they saw.
                t._saved_versions = [x._version for x in xs]
                break
    if t.requires_grad or state.track:
        # While a stochastic graph is being built the link is kept whatever the dtype
        # and even under no_grad, so the graph sees every value that depends on a sample.
        t._parents = tuple(xs)
        t._op = op
        t._static = static
    if state.anomaly and data.dtype.kind in "fc" and np.isnan(data).any():
        raise FloatingPointError(
            f"detect_anomaly: '{op.name}' produced NaN from inputs of shapes {_shapes(xs)}"
        )
    return t


def primitive(name, forward, *vjps):
    """Define a primitive: ``forward(*arrays, **static) -> array`` and one VJP per input.

    The returned function accepts Tensors, arrays or scalars positionally and
    static (non-differentiable) arguments as keywords.
    """

    def op(*args, **static):
        xs = args
        for a in args:
            if not isinstance(a, Tensor):
                xs = _lift(args)
                break
        try:
            if state.tracer is None:
                out = forward(*[x._data for x in xs], **static)
            else:  # recording a traced step (scg.trace)
                out = state.tracer.primitive(name, forward, xs, static)
        except (ValueError, IndexError, TypeError) as e:
            message = f"{name}: invalid input(s) of shapes {_shapes(xs)}: {e}"
            graph = state.graph  # inside a stochastic graph: which named axes met, as its AxisError
            refusal = graph.axes_refusal(xs, message) if graph is not None and isinstance(e, ValueError) else None
            raise (refusal or type(e)(message)) from None
        return record(op, out, xs, static)

    op.name = name
    op.vjps = vjps
    op.__name__ = name
    op.__qualname__ = name
    op.__doc__ = forward.__doc__
    return op


def _raise_freed():
    raise RuntimeError(
        "trying to differentiate through a graph a second time, but its records were freed "
        "by the first backward pass; pass retain_graph=True the first time"
    )


class _Freed:
    """The ``_op`` of a record whose inputs a backward pass has dropped."""

    name = "freed"
    vjps = ()


FREED = _Freed()


def _check_versions(node):
    """Raise if an input of ``node`` was changed in place after ``node`` was recorded."""
    for i, (p, v) in enumerate(zip(node._parents, node._saved_versions)):
        if p._version != v:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: input {i} of '{node._op.name}' (shape {p.shape}, {p.dtype}) "
                f"is at version {p._version}; expected version {v}. Recompute the forward pass "
                f"after changing it (e.g. after optimizer.step())"
            )


# ---- the reverse pass ----------------------------------------------------------


def _toposort(roots):
    """Nodes that require grad, reachable from ``roots``, each after all of its inputs."""
    order, seen = [], set()
    stack = [(r, False) for r in roots]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            if p.requires_grad and id(p) not in seen:
                stack.append((p, False))
    return order


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _seed_grads(outputs, grad_outputs):
    grads = {}
    for i, (o, go) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(o, Tensor):
            raise TypeError(f"outputs[{i}] is a {type(o).__name__}, not a Tensor")
        if go is None:
            if o.data.size != 1:
                raise RuntimeError(
                    f"gradient can only be implicitly created for a one-element output; "
                    f"outputs[{i}] has shape {o.shape}, so pass grad (backward) or "
                    f"grad_outputs (grad) of that shape"
                )
            go = Tensor(np.ones_like(o.data))
        else:
            go = go if isinstance(go, Tensor) else Tensor(np.asarray(go, dtype=o.data.dtype))
            if go.shape != o.shape:
                raise ValueError(
                    f"grad for outputs[{i}] has shape {go.shape} but the output has shape {o.shape}"
                )
        if o.requires_grad:
            grads[id(o)] = grads[id(o)] + go if id(o) in grads else go
    return grads


def _run(outputs, grads, wanted, retain_graph, create_graph):
    """Propagate ``grads`` (id -> Tensor) from ``outputs`` back through the graph.

    ``wanted`` is a set of ids whose total gradient is returned (in a dict), or
    ``None`` to accumulate into ``.grad`` of every leaf. Only nodes with a path
    to something wanted are visited.
    """
    order = _toposort([o for o in outputs if o.requires_grad])
    if wanted is not None:
        # Keep only nodes that lead to a wanted tensor: one forward sweep over the order.
        # A freed record has lost its inputs, so it may lead anywhere: keep it (to raise).
        leads = set()
        for node in order:
            if id(node) in wanted or node._op is FREED or any(id(p) in leads for p in node._parents):
                leads.add(id(node))
    else:
        leads = None
    results = {}
    # The VJPs are recorded only when the result is to be differentiated again.
    frame = push("backward (create_graph)" if create_graph else "backward", grad_enabled=create_graph)
    try:
        for i in range(len(order) - 1, -1, -1):
            node = order[i]
            order[i] = None
            g = grads.pop(id(node), None)
            if g is None:
                continue
            op = node._op
            if wanted is not None and id(node) in wanted:
                results[id(node)] = g
            if op is None:
                if wanted is None:
                    _accumulate_leaf(node, g, create_graph)
                continue
            if op is FREED:
                # Its inputs are gone: stopping here would silently drop their gradients.
                # (Harmless only when this tensor is the one input asked for.)
                if wanted is None or wanted != {id(node)}:
                    _raise_freed()
                continue
            parents, static = node._parents, node._static
            if node._saved_versions != [p._version for p in parents]:
                _check_versions(node)
            for j, p in enumerate(parents):
                if not p.requires_grad or (leads is not None and id(p) not in leads):
                    continue
                try:
                    gj = op.vjps[j](g, node, *parents, **static)
                except FloatingPointError as e:  # raised by detect_anomaly inside the VJP
                    raise FloatingPointError(
                        f"detect_anomaly: the gradient through '{op.name}' (input {j}) contains NaN "
                        f"or Inf ({e})"
                    ) from None
                if gj is None:
                    continue
                if state.anomaly and not np.isfinite(gj.data).all():
                    raise FloatingPointError(
                        f"detect_anomaly: the gradient through '{op.name}' (input {j}) "
                        f"contains NaN or Inf"
                    )
                k = id(p)
                if k not in grads:
                    grads[k] = gj
                elif create_graph:
                    grads[k] = grads[k] + gj
                else:  # nothing records this sum: add the arrays, skip the primitive's bookkeeping
                    # (np.add of two 0-d arrays returns a numpy scalar: keep an ndarray, as record does)
                    grads[k] = _wrap(np.asanyarray(np.add(grads[k].data, gj.data)))
            if not retain_graph:
                node._parents = ()
                node._op = FREED
                node._static = None
    finally:
        pop(frame)
    return results


def _as_leaf_dtype(g, leaf, create_graph):
    """``g`` in the dtype of ``leaf``: a float32 parameter met by a float64 constant gets a
    float32 gradient (as torch does), whichever backward path produced it."""
    if g.data.dtype == leaf.data.dtype:
        return g
    if create_graph:
        return g.astype(leaf.data.dtype)  # the recorded primitive (a method attached by ops)
    return _wrap(g.data.astype(leaf.data.dtype))


def _accumulate_leaf(leaf, g, create_graph):
    if state.tracer is not None:  # a traced step: the store must start from no gradient
        state.tracer.check_accumulation(leaf)
    g = _as_leaf_dtype(g, leaf, create_graph)
    if not create_graph:
        data = g.data
        if not data.flags.writeable or data.base is not None:
            data = data.copy()  # never leave a broadcast view or alias in .grad
        g = Tensor(data)
    leaf.grad = g if leaf.grad is None else leaf.grad + g


def backward(output, grad=None, retain_graph=False, create_graph=False):
    """Accumulate d(output)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

    ``grad`` (shaped like ``output``) weights the output; it may be omitted only for a
    one-element output. The recorded graph is freed unless ``retain_graph`` (or
    ``create_graph``) is set. Also the method ``Tensor.backward``.
    """
    if not output.requires_grad:
        raise RuntimeError(
            "backward() on a Tensor that does not require grad: nothing it was computed "
            "from has requires_grad=True (or it was computed under no_grad)"
        )
    grads = _seed_grads([output], [grad])
    _run([output], grads, None, retain_graph or create_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None):
    """Gradients of ``sum(outputs * grad_outputs)`` with respect to each of ``inputs``.

    Returns a list of Tensors shaped like ``inputs`` (zeros where an input does
    not influence the outputs). With ``create_graph=True`` the results are
    recorded and can be differentiated again. ``.grad`` is not touched.
    """
    single_out = not isinstance(outputs, (list, tuple))
    outputs = _as_list(outputs)
    inputs = _as_list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    else:
        grad_outputs = [grad_outputs] if single_out else _as_list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs[{i}] is a {type(x).__name__}, not a Tensor")
        if not x.requires_grad:
            raise ValueError(
                f"inputs[{i}] (shape {x.shape}) does not require grad, so there is no gradient "
                f"with respect to it; create it with requires_grad=True"
            )
    if retain_graph is None:
        retain_graph = create_graph
    grads = _seed_grads(outputs, grad_outputs)
    results = _run(outputs, grads, {id(x) for x in inputs}, retain_graph, create_graph)
    out = []
    for x in inputs:
        r = results.get(id(x))
        out.append(_as_leaf_dtype(r, x, create_graph) if r is not None else Tensor(np.zeros_like(x.data)))
    return out


# The method is the function itself (no wrapper on the hot path); see scg.tensor.
Tensor.backward = backward
