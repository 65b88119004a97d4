"""The Tensor: an ndarray plus the record of the primitive that produced it.

A Tensor holds ``data`` (a numpy array) and, when it was computed from Tensors
that require gradients while recording is on, the primitive (``_op``), its
inputs (``_parents``) and its static arguments (``_static``). The reverse pass
in :mod:`scg.autodiff` walks these records.

This module holds the data and the record only. The operators and the methods
that compute (``+``, ``.sum()``, ``.reshape``, ``.T``, ...) are attached to the
class by :mod:`scg.ops`, next to the primitives they are, and ``.backward`` by
:mod:`scg.autodiff`; so the layers import one way: ops -> autodiff -> tensor.
``import scg`` loads them all.
"""

import numpy as np

from .context import state


class Tensor:
    """A numpy array that records how it was computed.

    Operators (attached by :mod:`scg.ops`) ``+ - * / ** @`` (and their reflected forms), unary ``-``,
    comparisons and indexing follow numpy's broadcasting and indexing rules.
    Python scalars take the dtype of the Tensor they meet, so float32 stays
    float32; numpy arrays and numpy scalars mix in as numpy would mix them.
    """

    __slots__ = ("_data", "_grad", "requires_grad", "_parents", "_op", "_static",
                 "_version", "_saved_versions", "__weakref__")

    # ``ndarray + Tensor`` must give numpy's operator back to us (``Tensor.__radd__``)
    # instead of numpy converting the Tensor through ``__array__``.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            _escape(data)  # a new leaf from a Tensor's value: its history is cut
            data = data.data
        if state.tracer is None or not isinstance(data, np.ndarray) or (dtype is not None and data.dtype != dtype):
            data = np.asarray(data, dtype=dtype)  # (a traced step's values, an ndarray subclass, stay as they are)
        if state.tracer is not None:
            state.tracer.note_created(self)
        if requires_grad and data.dtype.kind not in "fc":
            raise ValueError(
                f"only floating-point Tensors can require gradients, got dtype {data.dtype}"
            )
        self._data = data
        self._grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._op = None
        self._static = None
        self._version = 0
        self._saved_versions = None

    @property
    def data(self):
        """The value, a numpy array. While a traced step is recorded (scg.trace), a leaf's array
        is read through the recording, so that numpy run on it is recorded too."""
        d = self._data
        if state.tracer is not None and type(d) is np.ndarray:
            return state.tracer.tensor_data(self, d)
        return d

    @data.setter
    def data(self, value):
        if state.tracer is not None:  # a traced step replays the assignment
            state.tracer.note_data(self, value)
        self._data = value

    @property
    def grad(self):
        """The gradient accumulated by ``backward`` (a Tensor), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if state.tracer is not None:  # a traced step replays every store (scg.trace)
            state.tracer.note_grad(self, value)
        self._grad = value

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

    def __len__(self):
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        # numpy reading a Tensor (np.asarray(t), np.sum(t), ...) takes its value out of the
        # recorded world: a graph being built credits what depends on it conservatively.
        _escape(self)
        if dtype is not None and dtype != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def numpy(self):
        """The underlying ndarray (shared, not copied). Inside ``with g:`` this is a value
        leaving the graph, as ``item()`` is: see ``Graph`` (conservative credit, a warning)."""
        _escape(self)
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

    def requires_grad_(self, flag=True):
        """Set ``requires_grad`` in place (floating dtypes only); returns self."""
        if flag and self.data.dtype.kind not in "fc":
            raise ValueError(f"only floating-point Tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    def __pos__(self):
        return self


def _escape(t):
    """A value leaves the recorded world as a Python scalar: tell the graph being built."""
    if state.on_escape is not None:
        state.on_escape(t)


def tensor(data, requires_grad=False, dtype=None):
    """A new leaf Tensor holding a copy of ``data`` (array-like or Tensor)."""
    if isinstance(data, Tensor):
        _escape(data)  # a new leaf from a Tensor's value: its history is cut
        data = data.data
    return Tensor(np.array(data, dtype=dtype), requires_grad=requires_grad)

