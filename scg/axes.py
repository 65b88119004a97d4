"""Named axes and stochastic ancestry of the values in a graph, tracked op by op.

While a :class:`scg.Graph` is being built every operation is recorded (see
:func:`scg.autodiff.record`), so for any value the graph can walk back to the
samples it was computed from. This module does that walk once per value
(memoized, iterative: linear in the size of the graph) and, for each value,
works out an :class:`Info`:

* ``dims``: one entry per axis, a :class:`Dim` (a named axis) or None (unnamed);
* ``anc`` / ``direct``: bitsets of the stochastic nodes upstream, and of those
  reached without passing another stochastic node;
* ``mixed``: for a named axis D, the upstream stochastic nodes that reach this
  value through an operation that removed D (a reduction, an index, a reshape or
  a concatenation across it): each element along D may depend on all of their
  elements along D, so none of them is credited element by element along D.

The axis rule (also in README, "Named axes"):

1. A named axis is a plate, the sample axis of an ``n=K`` node or the support axis
   of an enumerated (or marginalized) node. A value's axes are its sample/support
   axes, then its plates (outermost first), then the rest of its batch and its event.
   Sample/support axes are allocated leftwards, as Pyro allocates enumeration dims:
   the k-th allocated in a graph sits k positions left of the plates, so a new node's
   value is (its axis,) + one slot per axis allocated before (that axis where it depends
   on it, else size 1) + plates + the rest, and independent nodes never share a
   position. ``Graph._lead_length`` reads the rule back from a value's named axes.
   Inside a plate a distribution whose batch lacks the plate's axis is expanded to it
   (``Graph._batch_layout``).
2. Each recorded primitive maps its inputs' named axes to its output by its own
   rule (the table at the bottom). Broadcasting primitives align positions from
   the right, as numpy does. At one position a named axis may meet the same axis,
   a missing or size-1 axis (broadcast), or an unnamed axis of the same size: a
   plate adopts it (data laid out along the plate), a sample or support axis
   refuses it (a coincidence of sizes, not an intent). Two different named axes at
   one position are refused.
3. Transposes permute names; reductions, indexing, reshapes and concatenation
   that remove a named axis record the mixing described above.
4. A primitive with no rule refuses inputs that carry named axes.

Sizes never decide which axis is which, except where rule 2 adopts an unnamed
axis into a plate of the same size.
"""

import numpy as np

from .autodiff import FREED
from .ops import _TENSOR_SLOT


class AxisError(ValueError):
    """A graph whose named axes cannot be tracked exactly (the message says how to fix it)."""


class Dim:
    """A named axis: ``kind`` is "plate", "sample" (``n=K``) or "enumerate" (a support).

    ``scale`` multiplies costs that carry a subsampled plate (full size / batch size)."""

    __slots__ = ("name", "size", "kind", "scale", "indices", "full_size")

    def __init__(self, name, size, kind, scale=1.0, indices=None, full_size=None):
        self.name, self.size, self.kind, self.scale, self.indices = name, size, kind, scale, indices
        self.full_size = size if full_size is None else full_size

    def describe(self):
        """How error messages name this axis."""
        if self.kind == "plate":
            return f"plate '{self.name}' (size {self.size})"
        if self.kind == "sample":
            return f"the sample axis of '{self.name}' (n={self.size})"
        return f"the support axis of enumerated '{self.name}' (size {self.size})"

    def __repr__(self):
        return f"{self.kind}:{self.name}[{self.size}]"


ANY = Dim("*", 0, "any")  # key of ``mixed`` for ancestry that escaped as a Python scalar


class Info:
    """What the graph knows of one value (see the module docstring)."""

    __slots__ = ("dims", "anc", "direct", "mixed")

    def __init__(self, dims, anc=0, direct=0, mixed=None):
        self.dims, self.anc, self.direct, self.mixed = dims, anc, direct, mixed

    def named(self):
        """The named axes in position order."""
        return tuple(d for d in self.dims if d is not None)

    def mixed_along(self, dim):
        """Bitset of upstream nodes not credited element by element along ``dim``."""
        if not self.mixed:
            return 0
        return self.mixed.get(dim, 0) | self.mixed.get(ANY, 0)


class Tracker:
    """Computes and memoizes :class:`Info` for the Tensors of one graph."""

    def __init__(self):
        self.memo = {}  # id(tensor) -> Info
        self.keep = []  # the tensors whose ids are in memo, so the ids stay valid

    def set(self, t, info):
        """Record what is known of ``t`` (a sampled value, whose axes the graph assigns)."""
        self.memo[id(t)] = info
        self.keep.append(t)

    def info(self, t, strict=True):
        """The Info of ``t``. ``strict=False`` lets unnamed axes of the same size take any
        named axis they meet: for the inside of a distribution's ``sample``/``log_prob``,
        which line a fresh draw up with the parameters by construction (torch's shape rules)."""
        memo = self.memo
        got = memo.get(id(t))
        if got is not None:
            return got
        stack = [t]
        while stack:
            x = stack[-1]
            if id(x) in memo:
                stack.pop()
                continue
            pending = [p for p in x._parents if id(p) not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            memo[id(x)] = _compute(x, [memo[id(p)] for p in x._parents], strict)
            self.keep.append(x)
        return memo[id(t)]


# ---- shared vocabulary: bitsets of nodes, values laid out on named axes ----------------------


def bit_indices(x):
    """Indices of the set bits of a non-negative int, lowest first (one step per set bit)."""
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


def reduce_unnamed(a, pos_dims):
    """``a`` (ndarray or Tensor, one entry of ``pos_dims`` per axis) summed over its
    unnamed axes: what is left has the named axes, in position order."""
    axes = tuple(i for i, d in enumerate(pos_dims) if d is None)
    return a.sum(axis=axes) if axes else a


def to_positions(a, named, pos_dims):
    """``a`` (axes ``named``, each present in ``pos_dims``) laid out on ``pos_dims``: its
    axes in that order, size-1 axes elsewhere, ready to broadcast."""
    present = [d for d in pos_dims if d is not None and d in named]
    order = [named.index(d) for d in present]
    if order != sorted(order):
        a = a.transpose(tuple(order))
    size = dict(zip(present, a.shape))  # after the transpose a's axes are in ``present`` order
    shape = tuple(size[d] if d is not None and d in named else 1 for d in pos_dims)
    return a.reshape(shape) if a.shape != shape else a


def _compute(x, infos, strict=True):
    op = x._op
    if op is None:
        return Info((None,) * x.ndim)
    if op is FREED:
        raise RuntimeError(
            "a value in the graph was computed by operations whose records were freed by an earlier "
            "backward(); declare every sample and cost of a graph before differentiating it"
        )
    anc = direct = 0
    mixed = None
    for inf in infos:
        anc |= inf.anc
        direct |= inf.direct
        if inf.mixed:
            mixed = dict(mixed) if mixed else {}
            for d, bits in inf.mixed.items():
                mixed[d] = mixed.get(d, 0) | bits
    if not any(d is not None for inf in infos for d in inf.dims):
        return Info((None,) * x.ndim, anc, direct, mixed)  # the common, cheap case
    rule = RULES.get(op.name)
    if rule is None:
        named = [d.describe() for inf in infos for d in inf.dims if d is not None]
        raise AxisError(
            f"'{op.name}' has no rule for named axes, and its inputs carry {', '.join(named)}; "
            f"apply it outside the graph or to values without named axes"
        )
    dims, dropped = rule(x, x._parents, infos, x._static or {}, strict)
    for k, d in dropped:
        mixed = dict(mixed) if mixed else {}
        mixed[d] = mixed.get(d, 0) | infos[k].anc
    return Info(tuple(dims), anc, direct, mixed)


def _what(x, xs):
    return f"'{x._op.name}' (inputs of shapes {', '.join(str(p.shape) for p in xs)})"


def join(out_shape, shapes, dims_list, what, strict=True):
    """Named axes of a broadcast of arrays of ``shapes`` with ``dims_list``, right-aligned."""
    n = len(out_shape)
    out = [None] * n
    for shape, dims in zip(shapes, dims_list):
        off = n - len(shape)
        for p, d in enumerate(dims):
            if d is None:
                continue
            q = off + p
            if shape[p] != out_shape[q]:
                raise AxisError(
                    f"in {what}: {d.describe()} is broadcast to size {out_shape[q]} at axis {q}; "
                    f"a named axis of size 1 cannot stand for {out_shape[q]} elements"
                )
            if out[q] is None:
                out[q] = d
            elif out[q] is not d:
                raise AxisError(
                    f"in {what}: {out[q].describe()} and {d.describe()} meet at the same position "
                    f"(axis {q} of the result). Named axes line up by position from the right, as numpy "
                    f"broadcasts; give one operand trailing size-1 axes (e.g. x[..., None]) so that "
                    f"each named axis has its own position"
                )
    for q, d in enumerate(out):
        if not strict or d is None or d.kind == "plate" or out_shape[q] == 1:
            continue
        for shape, dims in zip(shapes, dims_list):
            p = q - (n - len(shape))
            if p >= 0 and dims[p] is None and shape[p] == out_shape[q]:
                raise AxisError(
                    f"in {what}: {d.describe()} meets an unnamed axis of the same size at axis {q} of "
                    f"the result, so the result would mix them up. Give the other operand a size-1 axis "
                    f"there, or the sampled value trailing size-1 axes (e.g. z[..., None]), so each "
                    f"axis has its own position"
                )
    return out


# ---- rules: (out, inputs, infos, static, strict) -> (dims of out, [(input, dropped Dim)]) ----


def _elementwise(x, xs, infos, static, strict):
    return join(x.shape, [p.shape for p in xs], [i.dims for i in infos], _what(x, xs), strict), []


def _reduction(x, xs, infos, static, strict):
    (src,), (inf,) = xs, infos
    axis, keepdims = static.get("axis"), static.get("keepdims", False)
    axes = set(range(src.ndim)) if axis is None else {a % src.ndim for a in np.atleast_1d(axis).tolist()}
    dims, dropped = [], []
    for p, d in enumerate(inf.dims):
        if p in axes:
            if d is not None:
                dropped.append((0, d))
            if keepdims:
                dims.append(None)
        else:
            dims.append(d)
    return dims, dropped


def _along_last(x, xs, infos, static, strict):
    """first_max: the shape is kept, and each element depends on its whole last axis."""
    dims = list(infos[0].dims)
    if dims and dims[-1] is not None:
        return dims[:-1] + [None], [(0, dims[-1])]
    return dims, []


def _transpose(x, xs, infos, static, strict):
    axes = static.get("axes")
    src_dims = infos[0].dims
    order = range(len(src_dims) - 1, -1, -1) if axes is None else axes
    return [src_dims[a] for a in order], []


def _reshape(x, xs, infos, static, strict):
    # A named axis of size 1 is dropped (marked mixed, which for one element changes
    # nothing): where size-1 axes are added or removed its place would be a guess. Except
    # a sample axis (n=1) among the leading axes whose sizes are unchanged, which a C-order
    # reshape leaves in place: a one-sample bound over a node with a flattened event needs
    # it. (A size-1 plate stays dropped: kept, it could not broadcast against other axes.)
    shape, new = xs[0].shape, x.shape
    k = 0
    while k < len(shape) and k < len(new) and shape[k] == new[k]:
        k += 1
    kept = [n != 1 or (q < k and d is not None and d.kind == "sample")
            for q, (n, d) in enumerate(zip(shape, infos[0].dims))]
    old = [(n, d if keep else None) for keep, n, d in zip(kept, shape, infos[0].dims)]
    dropped = [(0, d) for keep, d in zip(kept, infos[0].dims) if not keep and d is not None]
    i = j = 0
    dims = []
    while i < len(old) and j < len(new):
        size, d = old[i]
        if size == new[j]:
            dims.append(d)
            i, j = i + 1, j + 1
        elif size == 1 and d is None:
            i += 1
        elif new[j] == 1:
            dims.append(None)
            j += 1
        else:
            break
    dropped += [(0, d) for _, d in old[i:] if d is not None]
    return dims + [None] * (len(new) - j), dropped


def _full_slice(s, n):
    return range(*s.indices(n)) == range(n)


def _getitem(x, xs, infos, static, strict):
    src, src_dims = xs[0], infos[0].dims
    template = static["index"]
    parts = template if isinstance(template, tuple) else (template,)
    tensors = iter(zip(xs[1:], infos[1:]))
    items = []  # (kind, (shape, dims) for arrays)
    for p in parts:
        if p is _TENSOR_SLOT:
            t, inf = next(tensors)
            items.append(("bool" if t.dtype == bool else "arr", (t.shape, inf.dims)))
        elif p is None or p is Ellipsis:
            items.append(("new" if p is None else "ellipsis", None))
        elif isinstance(p, slice):
            items.append(("slice", p))
        elif isinstance(p, (int, np.integer)):
            items.append(("int", None))
        else:
            a = np.asarray(p)
            items.append(("bool" if a.dtype == bool else "arr", (a.shape, (None,) * a.ndim)))
    if any(k == "bool" for k, _ in items):
        # A mask: the result's one axis runs over the selected elements, whatever they were.
        dropped = [(k, d) for k, inf in enumerate(infos) for d in inf.dims if d is not None]
        return [None] * x.ndim, dropped
    if any(k == "arr" for k, _ in items):  # with arrays present numpy treats integers as 0-d arrays
        items = [("arr", ((), ())) if k == "int" else (k, v) for k, v in items]
    used = sum(1 for k, _ in items if k in ("slice", "int", "arr"))
    fill = [("slice", slice(None))] * (src.ndim - used)
    e = next((i for i, (k, _) in enumerate(items) if k == "ellipsis"), len(items))
    items[e : e + 1] = fill
    dims, dropped, adv_at, adv = [], [], [], []
    ax = 0
    for k, v in items:
        d = src_dims[ax] if k != "new" else None
        if k == "new":
            dims.append(None)
            continue
        if k == "slice" and (d is None or _full_slice(v, src.shape[ax])):
            dims.append(d)
        else:
            if d is not None:
                dropped.append((0, d))
            if k == "slice":
                dims.append(None)
            elif k == "arr":
                adv_at.append(len(dims))
                adv.append(v)
                dims.append("ADV")
        ax += 1
    if adv:
        rest = [d for d in dims if d != "ADV"]
        first = adv_at[0] if _contiguous(adv_at) else 0
        block_shape = x.shape[first : first + x.ndim - len(rest)]
        block = join(block_shape, [s for s, _ in adv], [ds for _, ds in adv], _what(x, xs), strict)
        dims = rest[:first] + block + rest[first:]
    if len(dims) != x.ndim:  # a form of indexing not modelled above
        named = [d for d in src_dims if d is not None]
        if named:
            raise AxisError(f"in {_what(x, xs)}: cannot follow {named[0].describe()} through this index")
        dims = [None] * x.ndim
    return dims, dropped


def _contiguous(positions):
    return positions == list(range(positions[0], positions[0] + len(positions)))


def _concatenate(x, xs, infos, static, strict):
    ax = static["axis"] % x.ndim
    dropped = [(k, inf.dims[ax]) for k, inf in enumerate(infos) if inf.dims[ax] is not None]
    shapes = [p.shape[:ax] + p.shape[ax + 1 :] for p in xs]
    rest = join(x.shape[:ax] + x.shape[ax + 1 :], shapes,
                [inf.dims[:ax] + inf.dims[ax + 1 :] for inf in infos], _what(x, xs), strict)
    return rest[:ax] + [None] + rest[ax:], dropped


def _matmul(x, xs, infos, static, strict):
    (a, b), (ia, ib) = xs, infos
    batch = join(x.shape[:-2], [a.shape[:-2], b.shape[:-2]], [ia.dims[:-2], ib.dims[:-2]], _what(x, xs),
                 strict)
    dropped = [(k, d) for k, d in ((0, ia.dims[-1]), (1, ib.dims[-2])) if d is not None]
    return batch + [ia.dims[-2], ib.dims[-1]], dropped


def _solve(x, xs, infos, static, strict):
    """solve_triangular(L, B): batch axes broadcast; each column of the result mixes B's column."""
    (a, b), (ia, ib) = xs, infos
    batch = join(x.shape[:-2], [a.shape[:-2], b.shape[:-2]], [ia.dims[:-2], ib.dims[:-2]], _what(x, xs),
                 strict)
    dropped = [(k, d) for k, d in ((0, ia.dims[-2]), (0, ia.dims[-1]), (1, ib.dims[-2])) if d is not None]
    return batch + [None, ib.dims[-1]], dropped


def _matrix_function(x, xs, infos, static, strict):
    """cholesky(A) and the like: batch axes kept, the two matrix axes mixed."""
    dims = infos[0].dims
    return list(dims[:-2]) + [None, None], [(0, d) for d in dims[-2:] if d is not None]


ELEMENTWISE = (
    "add subtract multiply divide negative power maximum minimum exp log log1p expm1 sqrt tanh "
    "sigmoid softplus bernoulli_log_prob bernoulli_score bernoulli_score_times relu relu_grad abs polygamma digamma lgamma where astype "
    "stop_gradient broadcast_to "
    "less less_equal greater greater_equal equal not_equal logical_and logical_or logical_not isfinite floor "
    "standard_gamma log_standard_gamma xlogy arctan tan gammainc gammaincc cos sin i0e i1e von_mises_angle erf erfinv ndtr ndtri"
).split()
RULES = {name: _elementwise for name in ELEMENTWISE}
RULES.update(sum=_reduction, max=_reduction, all=_reduction, any=_reduction, first_max=_along_last,
             transpose=_transpose, reshape=_reshape, getitem=_getitem, concatenate=_concatenate, matmul=_matmul, solve_triangular=_solve,
             cholesky=_matrix_function)
