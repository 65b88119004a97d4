"""Constraint objects: where a distribution's values (``support``) and parameters
(``arg_constraints``) live, with torch.distributions' names.

A constraint ``c`` has ``c.check(value)``: a boolean array of value's shape with the
rightmost ``c.event_dim`` axes reduced (all of them must hold), computed by recorded
operations when ``value`` is a Tensor (it may be a sampled value, which a graph follows)
and by numpy otherwise. ``str(c)`` is the human-readable text error messages quote
("x >= 0"); a family whose text differs from the default gives its own with
``c.described(text)``. ``is_discrete`` says whether the set is countable.

==========================  =============================================  ===========
constraint                  the set                                        event_dim
==========================  =============================================  ===========
real                        the real numbers (NaN excluded)                0
positive, nonnegative       x > 0, x >= 0                                  0
greater_than(a)             x > a           (greater_than_eq: x >= a)      0
less_than(b)                x < b                                          0
unit_interval               0 <= x <= 1                                    0
interval(a, b)              a <= x <= b                                    0
half_open_interval(a, b)    a <= x < b                                     0
left_open_interval(a, b)    a < x <= b                                     0
open_interval(a, b)         a < x < b                                      0
boolean                     {0, 1}                                         0
nonnegative_integer         0, 1, 2, ...                                   0
integer_interval(a, b)      a, a + 1, ..., b                               0
simplex                     x_k >= 0, sum_k x_k = 1                        1
open_simplex                x_k > 0, sum_k x_k = 1                         1
one_hot                     one-hot vectors                                1
multinomial(n)              non-negative integer vectors summing to n      1
positive_definite           symmetric positive-definite matrices           2
lower_cholesky              lower triangular, positive diagonal            2
independent(c, n)           c on every element of n more rightmost axes    c's + n
==========================  =============================================  ===========

A plain string is still accepted wherever a support is read (:func:`as_text`): families
added with string supports keep working.
"""

import copy

import numpy as np

from .. import ops
from ..tensor import Tensor


def _is_tensor(x):
    return isinstance(x, Tensor)


def _all(ok, axes):
    """``ok`` with its rightmost ``axes`` axes reduced by 'all' (recorded for Tensors)."""
    if axes == 0:
        return ok
    axis = tuple(range(-axes, 0))
    return ops.all(ok, axis=axis) if _is_tensor(ok) else np.all(ok, axis=axis)


class Constraint:
    """Base class: ``check(value)`` (boolean array, event axes reduced), ``str()``,
    ``event_dim`` and ``is_discrete``."""

    event_dim = 0
    is_discrete = False
    _text = None

    def check(self, value):
        """Boolean array (a boolean Tensor for a Tensor value): value satisfies the
        constraint, shape value.shape[:ndim - event_dim]."""
        raise NotImplementedError(f"{type(self).__name__} does not implement check")

    def described(self, text):
        """This constraint with ``text`` as its ``str()`` (the wording of a family's messages)."""
        out = copy.copy(self)
        out._text = text
        return out

    def _default_text(self):
        return type(self).__name__

    def __str__(self):
        return self._text if self._text is not None else self._default_text()

    def __repr__(self):
        return f"<constraint {self}>"

    def __eq__(self, other):
        if isinstance(other, str):  # code written against string supports keeps working
            return str(self) == other
        return self is other

    def __hash__(self):
        return id(self)


def _value(x):
    """A Tensor stays a Tensor (its comparisons are recorded); anything else an ndarray."""
    return x if _is_tensor(x) else np.asarray(x)


class _Real(Constraint):
    def check(self, value):
        x = _value(value)
        return x == x  # False only at NaN

    def _default_text(self):
        return "the real numbers"


class _GreaterThan(Constraint):
    def __init__(self, lower_bound, inclusive=False):
        self.lower_bound, self.inclusive = lower_bound, inclusive

    def check(self, value):
        x = _value(value)
        return (x >= self.lower_bound) if self.inclusive else (x > self.lower_bound)

    def _default_text(self):
        return f"x {'>=' if self.inclusive else '>'} {_num(self.lower_bound)}"


class _LessThan(Constraint):
    def __init__(self, upper_bound):
        self.upper_bound = upper_bound

    def check(self, value):
        return _value(value) < self.upper_bound

    def _default_text(self):
        return f"x < {_num(self.upper_bound)}"


class _Interval(Constraint):
    """lower <= x <= upper, with either end open when ``closed`` says so."""

    def __init__(self, lower_bound, upper_bound, closed=(True, True)):
        self.lower_bound, self.upper_bound, self.closed = lower_bound, upper_bound, tuple(closed)

    def check(self, value):
        x = _value(value)
        low = (x >= self.lower_bound) if self.closed[0] else (x > self.lower_bound)
        high = (x <= self.upper_bound) if self.closed[1] else (x < self.upper_bound)
        return low & high

    def _default_text(self):
        lo, hi = _num(self.lower_bound), _num(self.upper_bound)
        if self.closed == (False, False):
            return f"the open interval ({lo}, {hi})"
        return f"{lo} {'<=' if self.closed[0] else '<'} x {'<=' if self.closed[1] else '<'} {hi}"


def _is_integer(x):
    """x is a finite integer value (any numeric dtype)."""
    with np.errstate(invalid="ignore"):
        if _is_tensor(x):
            return ops.isfinite(x) & ops.equal(ops.floor(x), x)
        return np.isfinite(x) & (np.floor(x) == x)


class _IntegerInterval(Constraint):
    is_discrete = True

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound, self.upper_bound = lower_bound, upper_bound

    def check(self, value):
        x = _value(value)
        with np.errstate(invalid="ignore"):
            return _is_integer(x) & (x >= self.lower_bound) & (x <= self.upper_bound)

    def _default_text(self):
        return f"the integers {_num(self.lower_bound)}..{_num(self.upper_bound)}"


class _IntegerGreaterThan(Constraint):
    """lower_bound, lower_bound + 1, ... (inclusive)."""

    is_discrete = True

    def __init__(self, lower_bound):
        self.lower_bound = lower_bound

    def check(self, value):
        x = _value(value)
        with np.errstate(invalid="ignore"):
            return _is_integer(x) & (x >= self.lower_bound)

    def _default_text(self):
        return "the non-negative integers" if self.lower_bound == 0 else f"the integers >= {self.lower_bound}"


class _Boolean(_IntegerInterval):
    def __init__(self):
        super().__init__(0, 1)

    def check(self, value):
        x = _value(value)
        return (x == 0) | (x == 1)

    def _default_text(self):
        return "{0, 1}"


class _Simplex(Constraint):
    """x_k >= 0 (> 0 when ``open``) summing to one on the last axis, within the simplex
    tolerance of :func:`sums_to_one`."""

    event_dim = 1

    def __init__(self, open=False):
        self.open = open

    def check(self, value):
        x = value if _is_tensor(value) else Tensor(np.asarray(value))
        positive = (x > 0) if self.open else (x >= 0)
        ok = ops.all(positive, axis=-1) & sums_to_one(x)
        return ok if _is_tensor(value) else ok.data

    def _default_text(self):
        return "the open simplex" if self.open else "the simplex (x_k >= 0, sum_k x_k = 1, along the last axis)"


class _OneHot(Constraint):
    event_dim = 1
    is_discrete = True

    def check(self, value):
        x = _value(value)
        hot = x == 1
        if _is_tensor(x):
            return ops.all(hot | (x == 0), axis=-1) & (ops.sum(x, axis=-1) == 1)
        return np.all(hot | (x == 0), axis=-1) & (np.sum(x, axis=-1) == 1)

    def _default_text(self):
        return "one-hot vectors"


class _Multinomial(Constraint):
    """Vectors of non-negative integers summing to ``total_count`` (last axis)."""

    event_dim = 1
    is_discrete = True

    def __init__(self, total_count):
        self.total_count = total_count

    def check(self, value):
        x = _value(value)
        with np.errstate(invalid="ignore"):
            count = _is_integer(x) & (x >= 0)
        if _is_tensor(x):
            return ops.all(count, axis=-1) & (ops.sum(x, axis=-1) == self.total_count)
        return np.all(count, axis=-1) & (np.sum(x, axis=-1) == self.total_count)

    def _default_text(self):
        return f"non-negative integer vectors summing to {self.total_count}"


def sums_to_one(x, *dtypes):
    """Boolean Tensor (recorded), shape x.shape[:-1]: whether each x[..., :] (a Tensor or an
    array) sums to one, summed in float64, within ``simplex_tolerance`` for the coarsest
    float dtype among x's and ``dtypes`` (the one simplex test of Categorical, Dirichlet and
    the relaxation). Parameter checks read its ``.data``."""
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    k = x.shape[-1]
    floats = [np.dtype(d) for d in (x.dtype,) + dtypes if np.dtype(d).kind == "f"] or [np.dtype(np.float64)]
    tol = max(simplex_tolerance(k, d) for d in floats)
    return ops.abs(ops.sum(ops.astype(x, np.float64), axis=-1) - 1) <= tol


def simplex_tolerance(k, dtype):
    """How far from one a sum of ``k`` probabilities of ``dtype`` may be (summed in float64).

    Rounding each of k values normalised in ``dtype`` moves their sum by about
    sqrt(k) eps when the errors are independent (k eps at worst, never seen in
    practice); allow 16 sqrt(k) eps, and never less than torch's 1e-6. Float32 at
    k = 10,000 allows 1.9e-4 (a sum of 1.9 used to pass: the bound grew as 1e-4 k)."""
    return max(1e-6, 16 * np.sqrt(k) * float(np.finfo(dtype).eps))


def _matrix(value):
    return np.asarray(value.data if _is_tensor(value) else value)


class _LowerCholesky(Constraint):
    """Lower-triangular matrices with a positive diagonal (last two axes). Parameters
    only: read as numbers, not recorded."""

    event_dim = 2

    def check(self, value):
        m = _matrix(value)
        diag = np.diagonal(m, axis1=-2, axis2=-1)
        return np.all(np.triu(m, 1) == 0, axis=(-2, -1)) & np.all(diag > 0, axis=-1)

    def _default_text(self):
        return "lower-triangular matrices with a positive diagonal"


class _CorrCholesky(Constraint):
    """Cholesky factors of correlation matrices: lower triangular, positive diagonal, rows of
    unit norm (to ``tol``: 1e-6 in float64, 1e-3 in float32). Recorded for Tensors."""

    event_dim = 2

    def check(self, value):
        x = _value(value)
        d = x.shape[-1]
        upper = np.triu(np.ones((d, d), dtype=bool), 1)
        tol = 1e-6 if x.dtype == np.float64 else 1e-3
        if _is_tensor(x):
            diag = ops.getitem(x, (Ellipsis, np.arange(d), np.arange(d)))
            norms = ops.sum(x * x, axis=-1)
            return (ops.all(ops.equal(ops.where(upper, x, 0.0), 0), axis=(-2, -1))
                    & ops.all(ops.greater(diag, 0), axis=-1) & ops.all(ops.less_equal(ops.abs(norms - 1), tol), axis=-1))
        diag = np.diagonal(x, axis1=-2, axis2=-1)
        return (np.all(np.where(upper, x, 0) == 0, axis=(-2, -1)) & np.all(diag > 0, axis=-1)
                & np.all(np.abs((x * x).sum(-1) - 1) <= tol, axis=-1))

    def _default_text(self):
        return ("lower-triangular matrices with positive diagonal and rows of unit norm (Cholesky factors of "
                "correlation matrices)")


class _PositiveDefinite(Constraint):
    """Symmetric positive-definite matrices (last two axes), symmetric to 64 eps of the
    largest entry. Parameters only: read as numbers, not recorded."""

    event_dim = 2

    def check(self, value):
        m = _matrix(value)
        tol = 64 * np.finfo(m.dtype if m.dtype.kind == "f" else np.float64).eps
        tol = tol * np.maximum(np.abs(m).max(axis=(-2, -1), keepdims=True, initial=0), 1)
        symmetric = np.all(np.abs(m - np.swapaxes(m, -1, -2)) <= tol, axis=(-2, -1))
        with np.errstate(invalid="ignore"):
            eig = np.linalg.eigvalsh(np.where(symmetric[..., None, None], m, np.eye(m.shape[-1])))
        return symmetric & np.all(eig > 0, axis=-1)

    def _default_text(self):
        return "symmetric positive-definite matrices"


class _Independent(Constraint):
    """``base_constraint`` on every element of ``reinterpreted_batch_ndims`` more rightmost axes."""

    def __init__(self, base_constraint, reinterpreted_batch_ndims):
        self.base_constraint = base_constraint
        self.reinterpreted_batch_ndims = reinterpreted_batch_ndims

    @property
    def event_dim(self):
        return self.base_constraint.event_dim + self.reinterpreted_batch_ndims

    @property
    def is_discrete(self):
        return self.base_constraint.is_discrete

    def check(self, value):
        return _all(self.base_constraint.check(value), self.reinterpreted_batch_ndims)

    def _default_text(self):
        return str(self.base_constraint)


def _num(v):
    """A bound as text: 0 rather than 0.0, parameter arrays by shape."""
    if _is_tensor(v) or (isinstance(v, np.ndarray) and v.ndim > 0):
        return f"array{tuple(np.shape(v))}"
    v = float(np.asarray(v))
    return str(int(v)) if v.is_integer() else repr(v)


# ---- the constraints, by torch's names --------------------------------------------------

real = _Real()
positive = _GreaterThan(0.0)
nonnegative = _GreaterThan(0.0, inclusive=True)
unit_interval = _Interval(0.0, 1.0)
boolean = _Boolean()
nonnegative_integer = _IntegerGreaterThan(0)
simplex = _Simplex()
open_simplex = _Simplex(open=True)
one_hot = _OneHot()
positive_definite = _PositiveDefinite()
lower_cholesky = _LowerCholesky()
corr_cholesky = _CorrCholesky()
real_vector = _Independent(real, 1)


def greater_than(lower_bound):
    return _GreaterThan(lower_bound)


def greater_than_eq(lower_bound):
    return _GreaterThan(lower_bound, inclusive=True)


def less_than(upper_bound):
    return _LessThan(upper_bound)


def interval(lower_bound, upper_bound):
    return _Interval(lower_bound, upper_bound)


def half_open_interval(lower_bound, upper_bound):
    return _Interval(lower_bound, upper_bound, closed=(True, False))


def left_open_interval(lower_bound, upper_bound):
    return _Interval(lower_bound, upper_bound, closed=(False, True))


def open_interval(lower_bound, upper_bound):
    return _Interval(lower_bound, upper_bound, closed=(False, False))


def integer_interval(lower_bound, upper_bound):
    return _IntegerInterval(lower_bound, upper_bound)


def multinomial(total_count):
    return _Multinomial(total_count)


def independent(base_constraint, reinterpreted_batch_ndims):
    return _Independent(base_constraint, reinterpreted_batch_ndims)


def as_text(support):
    """A support's human-readable text, whether a Constraint or a plain string."""
    return str(support)
