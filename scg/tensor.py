"""The Tensor: an ndarray plus the record of the primitive that produced it.

A Tensor holds ``data`` (a numpy array) and, when it was computed from Tensors
that require gradients while recording is on, the primitive (``_op``), its
inputs (``_parents``) and its static arguments (``_static``). The reverse pass
in :mod:`scg.autodiff` walks these records. Every operator and method here is
a thin call into :mod:`scg.ops`, where each primitive is defined once.
"""

import numpy as np


class Tensor:
    """A numpy array that records how it was computed.

    Operators ``+ - * / ** @`` (and their reflected forms), unary ``-``,
    comparisons and indexing follow numpy's broadcasting and indexing rules.
    Python scalars take the dtype of the Tensor they meet, so float32 stays
    float32; numpy arrays and numpy scalars mix in as numpy would mix them.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_op", "_static",
                 "_version", "_saved_versions", "__weakref__")

    # ``ndarray + Tensor`` must give numpy's operator back to us (``Tensor.__radd__``)
    # instead of numpy converting the Tensor through ``__array__``.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        data = np.asarray(data, dtype=dtype)
        if requires_grad and data.dtype.kind not in "fc":
            raise ValueError(
                f"only floating-point Tensors can require gradients, got dtype {data.dtype}"
            )
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._op = None
        self._static = None
        self._version = 0
        self._saved_versions = None

    # ---- array-like properties -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def is_leaf(self):
        """True for Tensors created by the user (not by a recorded primitive)."""
        return self._op is None

    @property
    def version(self):
        """How many times ``data`` was changed in place (by an optimizer step, say).

        A recorded primitive remembers the versions of its inputs, and the reverse
        pass refuses to run if one changed since: its VJP would read new values.
        Code that writes into ``data`` in place calls ``_bump()`` afterwards.
        """
        return self._version

    def _bump(self):
        """Declare that ``data`` was just changed in place (see ``version``)."""
        self._version += 1

    @property
    def T(self):
        return ops.transpose(self)

    def __len__(self):
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and dtype != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def numpy(self):
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def item(self):
        """The value of a one-element Tensor as a Python scalar."""
        _escape(self)
        return self.data.item()

    def __float__(self):
        _escape(self)
        return float(self.data)

    def __int__(self):
        _escape(self)
        return int(self.data)

    def __bool__(self):
        _escape(self)
        return bool(self.data)

    __hash__ = object.__hash__

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = f", dtype={self.data.dtype}" if self.data.dtype != np.float64 else ""
        if self._op is not None:
            extra += f", op={self._op.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ---- autodiff entry points -------------------------------------------------
    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` (same shape as self) weights the output; it may be omitted only
        for a one-element Tensor. The recorded graph is freed unless
        ``retain_graph`` (or ``create_graph``) is set.
        """
        autodiff.backward(self, grad, retain_graph=retain_graph, create_graph=create_graph)

    def detach(self):
        """The same values in a Tensor that does not require grad (``scg.stop_gradient``)."""
        return ops.stop_gradient(self)

    def requires_grad_(self, flag=True):
        """Set ``requires_grad`` in place (floating dtypes only); returns self."""
        if flag and self.data.dtype.kind not in "fc":
            raise ValueError(f"only floating-point Tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    # ---- operators -------------------------------------------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.subtract(self, other)

    def __rsub__(self, other):
        return ops.subtract(other, self)

    def __mul__(self, other):
        return ops.multiply(self, other)

    def __rmul__(self, other):
        return ops.multiply(other, self)

    def __truediv__(self, other):
        return ops.divide(self, other)

    def __rtruediv__(self, other):
        return ops.divide(other, self)

    def __pow__(self, other):
        return ops.power(self, other)

    def __rpow__(self, other):
        return ops.power(other, self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __neg__(self):
        return ops.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return ops.abs(self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    # Comparisons give boolean Tensors that carry no gradient (recorded while a graph
    # is built, so it sees that the result depends on the operands).
    def __lt__(self, other):
        return ops.less(self, other)

    def __le__(self, other):
        return ops.less_equal(self, other)

    def __gt__(self, other):
        return ops.greater(self, other)

    def __ge__(self, other):
        return ops.greater_equal(self, other)

    def __eq__(self, other):
        return ops.equal(self, other)

    def __ne__(self, other):
        return ops.not_equal(self, other)

    # ---- methods ---------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (see ``scg.sum``)."""
        return ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis`` (see ``scg.mean``)."""
        return ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        """Maximum over ``axis``; ties share the gradient."""
        return ops.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        """Minimum over ``axis``."""
        return ops.min(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        """The same elements in a new shape: ``t.reshape(2, 3)`` or ``t.reshape((2, 3))``."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return ops.reshape(self, tuple(shape))

    def transpose(self, *axes):
        """Permute axes (reverse them when none are given)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]
        return ops.transpose(self, tuple(axes) if axes else None)

    def astype(self, dtype):
        """Convert to ``dtype``; the gradient is converted back."""
        return ops.astype(self, dtype)

    def exp(self):
        """exp(t) elementwise."""
        return ops.exp(self)

    def log(self):
        """Natural log elementwise."""
        return ops.log(self)

    def sqrt(self):
        """Square root elementwise."""
        return ops.sqrt(self)

    def tanh(self):
        """tanh(t) elementwise."""
        return ops.tanh(self)

    def sigmoid(self):
        """1 / (1 + exp(-t)) elementwise."""
        return ops.sigmoid(self)

    def relu(self):
        """max(t, 0) elementwise."""
        return ops.relu(self)

    def softplus(self):
        """log(1 + exp(t)) elementwise, stable."""
        return ops.softplus(self)

    def abs(self):
        """|t| elementwise."""
        return ops.abs(self)

    def clip(self, lo=None, hi=None):
        """Clamp to [lo, hi]; the gradient passes where t is inside."""
        return ops.clip(self, lo, hi)

    def logsumexp(self, axis=None, keepdims=False):
        """log(sum(exp(t))) over ``axis``, computed stably."""
        return ops.logsumexp(self, axis=axis, keepdims=keepdims)

    def softmax(self, axis=-1):
        """exp(t) / sum(exp(t)) along ``axis``."""
        return ops.softmax(self, axis=axis)

    def log_softmax(self, axis=-1):
        """t - logsumexp(t) along ``axis``."""
        return ops.log_softmax(self, axis=axis)


def _escape(t):
    """A value leaves the recorded world as a Python scalar: tell the graph being built."""
    if autodiff.state.on_escape is not None:
        autodiff.state.on_escape(t)


def tensor(data, requires_grad=False, dtype=None):
    """A new leaf Tensor holding a copy of ``data`` (array-like or Tensor)."""
    if isinstance(data, Tensor):
        data = data.data
    return Tensor(np.array(data, dtype=dtype), requires_grad=requires_grad)


from . import autodiff, ops  # noqa: E402  (the operators above call into these)
