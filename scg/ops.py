"""Every primitive once: its numpy forward and, next to it, its VJPs.

A VJP is ``vjp(g, ans, *inputs, **static) -> Tensor | None`` and is written with
the differentiable operations of this module, so gradients can be differentiated
again. Composite functions (mean, softmax, logsumexp, ...) are plain functions
of primitives and need no VJP of their own.

The end of the module attaches the operators and methods to :class:`scg.tensor.Tensor`:
each is the function defined here, assigned directly (no wrapper on the hot path).
"""

import builtins

import numpy as np
import scipy.special as sp

from . import kernels, parallel
from .autodiff import primitive
from .context import state
from .tensor import Tensor


def unbroadcast(g, shape):
    """Sum ``g`` over the axes along which an input of ``shape`` was broadcast
    (leading axes it lacks, and its axes of length 1), then give it ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1
    )
    if axes:
        g = sum(g, axis=axes, keepdims=True)
    return reshape(g, shape) if g.shape != shape else g

# ---- elementwise arithmetic -------------------------------------------------------

add = primitive(
    "add",
    np.add,
    lambda g, ans, x, y: unbroadcast(g, x.shape),
    lambda g, ans, x, y: unbroadcast(g, y.shape),
)
subtract = primitive(
    "subtract",
    np.subtract,
    lambda g, ans, x, y: unbroadcast(g, x.shape),
    lambda g, ans, x, y: unbroadcast(-g, y.shape),
)
multiply = primitive(
    "multiply",
    np.multiply,
    lambda g, ans, x, y: unbroadcast(g * y, x.shape),
    lambda g, ans, x, y: unbroadcast(g * x, y.shape),
)
divide = primitive(
    "divide",
    np.true_divide,
    lambda g, ans, x, y: unbroadcast(g / y, x.shape),
    lambda g, ans, x, y: unbroadcast(-g * ans / y, y.shape),
)


def _negative(x):
    """-x. A broadcast of one value (what a sum's gradient is: its seed spread over the summed
    array) stays a broadcast: the gradient of a negated cost, -log p(x | z) over a batch of
    images, is then one number and not a pass writing B x 784 of them."""
    if x.ndim and x.size and not builtins.any(x.strides):
        return np.broadcast_to(np.negative(x[(0,) * x.ndim]), x.shape)
    return np.negative(x)


_negative.into = lambda x, out: np.negative(x, out=out)
negative = primitive("negative", _negative, lambda g, ans, x: -g)


def _power_vjp_base(g, ans, x, y):
    # d(x^y)/dx = y x^(y-1) is 0 for y == 0, also at x == 0 where x^(y-1) is inf: there
    # x is replaced by 1, so that no 0 * inf gives NaN, in this order or the next.
    shape = x.shape
    singular = (x.data == 0) & (y.data == 0)
    if singular.any():
        x = where(singular, 1, x)
    return unbroadcast(g * y * x ** (y - 1), shape)


def _power_vjp_exponent(g, ans, x, y):
    # d(x^y)/dy = x^y log x; taken as 0 where x == 0 (the limit for y > 0).
    safe_log = log(where(x.data > 0, x, 1))
    return unbroadcast(g * ans * safe_log, y.shape)


power = primitive("power", np.power, _power_vjp_base, _power_vjp_exponent)


def _maximum_vjp(first):
    # Ties send the gradient to the first argument.
    def vjp(g, ans, x, y):
        mask = x.data >= y.data if first else x.data < y.data
        return unbroadcast(where(mask, g, 0), (x if first else y).shape)

    return vjp


def _minimum_vjp(first):
    def vjp(g, ans, x, y):
        mask = x.data <= y.data if first else x.data > y.data
        return unbroadcast(where(mask, g, 0), (x if first else y).shape)

    return vjp


maximum = primitive("maximum", np.maximum, _maximum_vjp(True), _maximum_vjp(False))
minimum = primitive("minimum", np.minimum, _minimum_vjp(True), _minimum_vjp(False))

# ---- elementwise functions --------------------------------------------------------

exp = primitive("exp", np.exp, lambda g, ans, x: g * ans)
def _log(x):
    """Natural log; log(0) = -inf without a warning (log-densities meet it routinely)."""
    with np.errstate(divide="ignore"):
        return np.log(x)


def _log_into(x, out):
    with np.errstate(divide="ignore"):
        np.log(x, out=out)


_log.into = _log_into  # a traced step (scg.trace) writes into the buffer of the last call
log = primitive("log", _log, lambda g, ans, x: g / x)
log1p = primitive("log1p", np.log1p, lambda g, ans, x: g / (1 + x))
expm1 = primitive("expm1", np.expm1, lambda g, ans, x: g * (ans + 1))
sqrt = primitive("sqrt", np.sqrt, lambda g, ans, x: g * 0.5 / ans)
tanh = primitive("tanh", np.tanh, lambda g, ans, x: g * (1 - ans * ans))
arctan = primitive("arctan", np.arctan, lambda g, ans, x: g / (1 + x * x))
tan = primitive("tan", np.tan, lambda g, ans, x: g * (1 + ans * ans))


def _rows(f, x, out, *more):
    """parallel.rows, with the later threshold of a fused loop (scg.kernels) where one runs:
    ~3x faster than numpy's passes, its hand-off to a second thread pays from ~250k elements
    (measured on the VAE's pixel logits: 100k elements 93 us on one thread, 118 us on two)."""
    fused = x.dtype == np.float32 and kernels.lib() is not None
    return parallel.rows(f, x, out, *more, min_size=1 << 18 if fused else parallel.MIN_SIZE)


def _sigmoid_into(x, out):
    if kernels.sigmoid(x, out):  # one fused pass (scg/_kernels.c) for float32
        return
    np.negative(x, out=out)
    with np.errstate(over="ignore", under="ignore"):  # exp(-x) = inf for x << 0: 1/inf = 0, as it should
        np.exp(out, out=out)
        out += 1
        np.reciprocal(out, out=out)


def _sigmoid(x):
    """1 / (1 + exp(-x)), in place after the first pass and on worker threads for large
    arrays (scg.parallel): several times faster than scipy's expit on a batch of float32
    pixel logits (one fused pass for float32, scg.kernels), within 3 ulps in float64 and 4
    in float32 (tests/core/test_ops.py)."""
    if x.ndim == 0 or x.size < 4096:
        return sp.expit(x)
    return _rows(_sigmoid_into, x, np.empty_like(x))


_sigmoid.into = lambda x, out: sp.expit(x, out=out) if x.ndim == 0 or x.size < 4096 else \
    _rows(_sigmoid_into, x, out)  # the same arithmetic as _sigmoid, to the bit
sigmoid = primitive("sigmoid", _sigmoid, lambda g, ans, x: g * ans * (1 - ans))


def _log1p_unit(e):
    """log(1 + e) for e in [0, 1], in place, within 4 ulps (3.4 measured against float64).
    numpy's log1p is scalar code (~40 ns per element here, most of a VAE step's softplus),
    while log is vectorized: with u = 1 + e rounded, d = u - 1 is exact (u in [1, 2]) and
    e - d is what the rounding dropped, so log1p(e) = log(u) + log(1 + (e - d) / u)
    = log(u) + (e - d) / u to working precision (the square of (e - d) / u < 2^-24 is far
    below it); where u rounds to 1 that is 0 + e, as it should be. Six passes, no mask
    (the quotient form log(u) e / d needed a masked divide where d = 0, and was ~25% slower)."""
    u = e + 1
    d = u - 1
    np.subtract(e, d, out=d)
    d /= u
    np.log(u, out=e)
    e += d
    return e


def _softplus_into(x, out):
    if kernels.softplus(x, out):  # one fused pass (scg/_kernels.c) for float32
        return
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    _log1p_unit(out)
    out += np.maximum(x, 0)


def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): stable for large |x|, in place
    after the first pass (np.logaddexp is an order of magnitude slower), on worker
    threads for large arrays (scg.parallel)."""
    if x.ndim == 0:
        return np.logaddexp(0, x)
    return _rows(_softplus_into, x, np.empty_like(x))


_softplus.into = lambda x, out: _rows(_softplus_into, x, out)
softplus = primitive("softplus", _softplus, lambda g, ans, x: g * sigmoid(x))


def _same(x, y):
    return x.shape == y.shape and x.ndim > 0 and x.dtype == y.dtype


def _fused(loop, on_rows, broadcast, doc):
    """The forward (with ``.into`` for a traced step) of an elementwise primitive of several
    inputs: the fused loop ``kernels.<loop>`` for float32 inputs of one shape, else
    ``on_rows(*inputs, out)``, both on blocks of rows (scg.parallel), and for inputs of other
    shapes or dtypes numpy's broadcasting form ``broadcast(*inputs)``. ``on_rows`` may run in a
    task of the thread pool, so it must not hand work to the pool itself."""
    def into_rows(*blocks):  # the inputs' blocks, then out's
        if not getattr(kernels, loop)(*blocks):  # looked up per call: tests spy on it
            on_rows(*blocks)

    def fits(xs):
        return builtins.all(_same(x, xs[-1]) for x in xs[:-1])  # (ops.all is the primitive)

    def forward(*xs):
        if fits(xs):
            return _rows(into_rows, xs[0], np.empty_like(xs[-1]), *xs[1:])
        return broadcast(*xs)

    def into(*xs, out):  # the same arithmetic as the call, to the bit
        if fits(xs):
            _rows(into_rows, xs[0], out, *xs[1:])
        else:
            np.copyto(out, broadcast(*xs))

    forward.into = into
    forward.__doc__ = doc
    return forward


# The Bernoulli log-likelihood from logits, x l - softplus(l), and its derivative in l,
# x - sigmoid(l), each one primitive: on a VAE's pixels these are the largest elementwise
# passes of the step, and as one fused loop each (scg.kernels, float32 arrays of one shape)
# they take a third of the time of the composite's eight numpy passes, forward and backward.

def _bernoulli_log_prob_numpy(x, l):
    """(x - [l > 0]) l - log1p(exp(-|l|)), broadcast: see _bernoulli_log_prob."""
    if x.dtype == bool:  # (bool - bool is not defined in numpy)
        x = x.astype(np.result_type(l.dtype, np.float16))
    e = np.abs(l.reshape(-1))  # 1-d, so that the passes below can run in place (also for 0-d l)
    np.negative(e, out=e)
    np.exp(e, out=e)
    return np.subtract((x - (l > 0)) * l, _log1p_unit(e).reshape(l.shape))


def _score_on_rows(x, l, out):
    _sigmoid_into(l, out)  # numpy's passes on this block (_sigmoid would hand work to the pool)
    np.subtract(x, out, out=out)


_bernoulli_log_prob = _fused(
    "bernoulli_log_prob", lambda x, l, out: np.copyto(out, _bernoulli_log_prob_numpy(x, l)),
    _bernoulli_log_prob_numpy,
    """``x l - softplus(l)`` (log sigmoid(l) at x = 1, log sigmoid(-l) at x = 0), broadcast,
    computed as ``(x - [l > 0]) l - log1p(exp(-|l|))``: at x in {0, 1} the first term is exactly
    0 for the likely outcome, so a confident correct prediction keeps its digits (-2.06e-9 at
    l = 20 in float32, where the first form cancels to 0). At l = +-inf: -inf for the outcome the
    logit rules out, NaN (0 inf) for the certain one (Bernoulli.log_prob takes another form
    there). The fused and the numpy paths differ by a few ulps of max(|x l|, softplus(l)), not of
    the result, where the two terms cancel.""")
_bernoulli_nll = _fused(
    "bernoulli_nll", lambda x, l, out: np.negative(_bernoulli_log_prob_numpy(x, l), out=out),
    lambda x, l: np.negative(_bernoulli_log_prob_numpy(x, l)),
    """``-bernoulli_log_prob(x, l)`` to the bit: not a primitive, but what a traced step (scg.trace)
    runs in place of the log-likelihood and its negation (graph.observe's cost) when nothing else
    reads the log-likelihood, one pass instead of two.""")
_bernoulli_score = _fused(
    "bernoulli_score", _score_on_rows, lambda x, l: x - _sigmoid(l),
    """``x - sigmoid(l)``, broadcast: d/dl of ``bernoulli_log_prob(x, l)`` (the paths differ by a
    few ulps of sigmoid(l)).""")


def _score_times_on_rows(g, x, l, out):
    _sigmoid_into(l, out)  # numpy's passes on this block (not _sigmoid: see _fused)
    np.subtract(x, out, out=out)
    np.multiply(g, out, out=out)


_bernoulli_score_times = _fused(
    "bernoulli_score_times", _score_times_on_rows, lambda g, x, l: g * (x - _sigmoid(l)),
    """``g (x - sigmoid(l))``, broadcast: the backward pass of ``bernoulli_log_prob`` in l with its
    incoming gradient multiplied in. For float32 arrays of one shape one fused pass (scg.kernels),
    g of that shape or one number spread over it (a sum's seed): the product is not a pass of its
    own. The paths differ by a few ulps of g sigmoid(l).""")


def _sigmoid_slope(l):
    s = sigmoid(l)
    return s * (1 - s)


bernoulli_score = primitive(
    "bernoulli_score", _bernoulli_score,
    lambda g, ans, x, l: unbroadcast(g, x.shape),
    lambda g, ans, x, l: unbroadcast(-g * _sigmoid_slope(l), l.shape),
)
bernoulli_score_times = primitive(
    "bernoulli_score_times", _bernoulli_score_times,
    lambda gg, ans, g, x, l: unbroadcast(gg * bernoulli_score(x, l), g.shape),
    lambda gg, ans, g, x, l: unbroadcast(gg * g, x.shape),
    lambda gg, ans, g, x, l: unbroadcast(-gg * g * _sigmoid_slope(l), l.shape),
)
bernoulli_log_prob = primitive(
    "bernoulli_log_prob", _bernoulli_log_prob,
    lambda g, ans, x, l: unbroadcast(g * l, x.shape),
    lambda g, ans, x, l: unbroadcast(bernoulli_score_times(g, x, l), l.shape),
)


# Elements from which relu's C loops (relu, bias add + relu) beat numpy: a call through ctypes
# costs ~4.5 us, so below ~10,000 float32 numpy's one or two passes are faster (measured: relu of
# 800 elements 4.7 us against 1.1, of 25,600 6.8 against 10.2; bias add + relu 6.5 against 2.2,
# and 9.5 against 15.4). Both give the same bits (kernels' self-check), so the cut changes no result.
_RELU_LOOP_FROM = 1 << 13


def _relu(x):
    """max(x, 0) elementwise as np.maximum computes it (NaN stays, -0 gives +0; the gradient at 0
    is taken as 0): one C loop for large float32 arrays (scg.kernels, 2.3-2.7x numpy's
    NaN-propagating maximum)."""
    if x.dtype == np.float32 and x.size >= _RELU_LOOP_FROM:
        out = np.empty_like(x)
        if kernels.relu(x, out):
            return out
    return np.maximum(x, 0)


_relu.into = lambda x, out: (x.size >= _RELU_LOOP_FROM and kernels.relu(x, out)) or np.maximum(x, 0, out=out)


def _bias_relu(x, b):
    """``relu(x + b)`` for ``x`` of shape (rows, cols) and ``b`` of (cols,), both of one dtype:
    not a primitive, but what a traced step (scg.trace) runs in place of the pair ``add`` then
    ``relu`` when nothing else reads the sum (a dense layer and its activation). Each element is
    rounded as the pair rounds it: one C loop for float32, else numpy's two passes in one buffer."""
    out = np.empty(x.shape, x.dtype)
    _bias_relu.into(x, b, out=out)
    return out


def _bias_relu_into(x, b, out):
    if not (x.size >= _RELU_LOOP_FROM and kernels.bias_relu(x, b, out)):
        np.add(x, b, out=out)
        np.maximum(out, 0, out=out)


_bias_relu.into = _bias_relu_into


def _relu_grad_numpy(g, x):
    return _where(g, np.zeros((), g.dtype), x > 0)


_relu_grad = _fused(
    "relu_grad", lambda g, x, out: np.copyto(out, _relu_grad_numpy(g, x)), _relu_grad_numpy,
    """``g`` where ``x > 0``, else 0: relu's backward pass (the gradient at 0 taken as 0), one
    fused pass for float32 arrays of one shape (scg.kernels) where numpy's where makes four.""")
# The mask carries no gradient: d/dg is the mask again, d/dx is 0 almost everywhere.
relu_grad = primitive("relu_grad", _relu_grad, lambda gg, ans, g, x: relu_grad(gg, x),
                      lambda gg, ans, g, x: None)
# The backward pass reads relu's output, not its input (ans > 0 exactly where x > 0, NaN
# included): the input then has one reader, so a traced step can fuse it with what made it.
relu = primitive("relu", _relu, lambda g, ans, x: relu_grad(g, ans))
abs = primitive("abs", np.abs, lambda g, ans, x: g * np.sign(x.data))


def _polygamma(x, n):
    """The n-th derivative of digamma, in the dtype of x."""
    return np.asarray(sp.polygamma(n, x), dtype=x.dtype)


polygamma_ = primitive(
    "polygamma", _polygamma, lambda g, ans, x, n: g * polygamma_(x, n=n + 1)
)
digamma = primitive("digamma", sp.digamma, lambda g, ans, x: g * polygamma_(x, n=1))
lgamma = primitive("lgamma", sp.gammaln, lambda g, ans, x: g * digamma(x))


def polygamma(n, x):
    """psi^(n)(x), the n-th derivative of the digamma function."""
    return digamma(x) if n == 0 else polygamma_(x, n=int(n))


cos = primitive("cos", np.cos, lambda g, ans, x: -g * sin(x))
sin = primitive("sin", np.sin, lambda g, ans, x: g * cos(x))

# Exponentially scaled modified Bessel functions i0e(x) = e^(-|x|) I0(x), i1e(x) = e^(-|x|) I1(x)
# (finite where I0, I1 overflow). From I0' = I1 and I1' = I0 - I1 / x:
#   i0e' = i1e - sign(x) i0e,   i1e' = i0e - i1e / x - sign(x) i1e   (1/2 at x = 0, as I1(x) / x -> 1/2).


def _i1e_over_x(x):
    """i1e(x) / x, with its limit 1/2 at x = 0."""
    zero = equal(x, 0)
    return where(zero, 0.5, i1e(x) / where(zero, 1.0, x))


i0e = primitive("i0e", sp.i0e, lambda g, ans, x: g * (i1e(x) - np.sign(x.data) * ans))
i1e = primitive("i1e", sp.i1e, lambda g, ans, x: g * (i0e(x) - _i1e_over_x(x) - np.sign(x.data) * ans))


def _special(fn):
    """A scipy.special ufunc whose result keeps the dtype of its (first) input."""
    return lambda x, *rest: np.asarray(fn(x, *rest), dtype=np.result_type(x, *rest))


# The error function, the standard normal CDF and their inverses (CDFs and quantiles of the
# Gaussian families); each derivative is a Gaussian density at the input or at the output.
_TWO_OVER_SQRT_PI = 2 / np.sqrt(np.pi)
_SQRT_2PI = np.sqrt(2 * np.pi)
erf = primitive("erf", _special(sp.erf), lambda g, ans, x: g * (_TWO_OVER_SQRT_PI * exp(-x * x)))
erfinv = primitive("erfinv", _special(sp.erfinv), lambda g, ans, x: g * (exp(ans * ans) / _TWO_OVER_SQRT_PI))
ndtr = primitive("ndtr", _special(sp.ndtr), lambda g, ans, x: g * (exp(-0.5 * x * x) / _SQRT_2PI))
ndtri = primitive("ndtri", _special(sp.ndtri), lambda g, ans, x: g * (_SQRT_2PI * exp(0.5 * ans * ans)))
ndtr.__doc__ = "Phi(x), the standard normal CDF (accurate in the lower tail, unlike (1 + erf(x/sqrt 2))/2)."
ndtri.__doc__ = "Phi^-1(p), the standard normal quantile."


def _where(x, y, cond):
    # np.where runs a scalar loop on this kind of machine (~8x a multiply on float32),
    # and where(mask, g, 0) is the backward of relu and of where itself. With one branch
    # 0, the product with the mask is the same value unless the other branch holds inf or
    # NaN (inf * 0 = NaN): those go to np.where.
    if cond.dtype == bool:
        for a, b, first in ((x, y, True), (y, x, False)):
            if b.ndim == 0 and b == 0 and a.dtype.kind == "f" and a.size >= 1024:
                if kernels.all_finite(a):
                    out = a * (cond if first else ~cond)
                    if out.dtype == a.dtype:  # a broadcast against cond may still be promoted
                        return out
                break
    return np.where(cond, x, y)


_where_p = primitive(
    "where",
    _where,
    lambda g, ans, x, y, cond: unbroadcast(_where_p(g, 0, cond), x.shape),
    lambda g, ans, x, y, cond: unbroadcast(_where_p(0, g, cond), y.shape),
    lambda g, ans, x, y, cond: None,
)


def where(cond, x, y):
    """Elementwise ``x`` where ``cond`` else ``y``; ``cond`` carries no gradient (but a
    stochastic graph sees that the result depends on it)."""
    return _where_p(x, y, cond)


# Comparisons: boolean results, no gradient; recorded so a graph sees what they read.
def _no_grad_vjp(g, ans, x, y):
    return None


less = primitive("less", np.less, _no_grad_vjp, _no_grad_vjp)
less_equal = primitive("less_equal", np.less_equal, _no_grad_vjp, _no_grad_vjp)
greater = primitive("greater", np.greater, _no_grad_vjp, _no_grad_vjp)
greater_equal = primitive("greater_equal", np.greater_equal, _no_grad_vjp, _no_grad_vjp)
equal = primitive("equal", np.equal, _no_grad_vjp, _no_grad_vjp)
not_equal = primitive("not_equal", np.not_equal, _no_grad_vjp, _no_grad_vjp)

# Logic and integer tests, for support checks of values that may be samples: recorded (no
# gradient) so that a mask computed from a sampled value stays in the graph. ``floor`` is
# piecewise constant: its derivative is zero wherever it exists.
logical_and = primitive("logical_and", np.logical_and, _no_grad_vjp, _no_grad_vjp)
logical_or = primitive("logical_or", np.logical_or, _no_grad_vjp, _no_grad_vjp)
logical_not = primitive("logical_not", np.logical_not, lambda g, ans, x: None)
isfinite = primitive("isfinite", np.isfinite, lambda g, ans, x: None)
floor = primitive("floor", np.floor, lambda g, ans, x: None)


def astype(x, dtype):
    """``x`` converted to ``dtype``; the gradient is converted back."""
    return _astype(x, dtype=np.dtype(dtype))


_astype = primitive(
    "astype",
    lambda x, dtype: x.astype(dtype, copy=False),
    lambda g, ans, x, dtype: _astype(g, dtype=x.dtype),
)

# ---- reductions and shapes -----------------------------------------------------------


def _kept_shape(shape, axis):
    """The shape of a reduction over ``axis`` with keepdims=True."""
    if axis is None:
        return (1,) * len(shape)
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = {a % len(shape) for a in axes}
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _reduced_shape(shape, axis):
    """The shape of a reduction over ``axis`` with keepdims=False."""
    if axis is None:
        return ()
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = {a % len(shape) for a in axes}
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _sum_vjp(g, ans, x, axis, keepdims):
    if not keepdims:
        g = reshape(g, _kept_shape(x.shape, axis))
    return broadcast_to(g, x.shape)


def _sum_forward(x, axis, keepdims):
    return np.sum(x, axis=axis, keepdims=keepdims)


_sum_forward.into = lambda x, axis, keepdims, out: np.sum(x, axis=axis, keepdims=keepdims, out=out)
_sum = primitive("sum", _sum_forward, _sum_vjp)
def _broadcast_to(x, shape):
    """``x`` broadcast to ``shape`` (numpy's rules); the gradient sums back."""
    return np.broadcast_to(x, shape)


broadcast_to = primitive(
    "broadcast_to",
    _broadcast_to,
    lambda g, ans, x, shape: unbroadcast(g, x.shape),
)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (int, tuple or None for all)."""
    return _sum(x, axis=_axis(axis), keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``: sum / number of elements reduced."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    axis = _axis(axis)
    n = x.data.size // builtins.max(int(np.prod(_kept_shape(x.shape, axis))), 1) if x.ndim else 1
    return _sum(x, axis=axis, keepdims=keepdims) / builtins.max(n, 1)


def _max_vjp(g, ans, x, axis, keepdims):
    # Ties share the gradient equally.
    kept = _kept_shape(x.shape, axis)
    mask = x.data == ans.data.reshape(kept)
    share = (mask / mask.sum(axis=axis, keepdims=True)).astype(x.dtype)
    return broadcast_to(reshape(g, kept), x.shape) * share


_max = primitive(
    "max", lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims), _max_vjp
)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``; tied maxima share the gradient."""
    return _max(x, axis=_axis(axis), keepdims=keepdims)


def _first_max(x):
    return np.arange(x.shape[-1]) == np.argmax(x, axis=-1)[..., None]


# One-hot (boolean, no gradient) of the first largest element along the last axis: a pivot
# chosen from a parameter's values, recorded so that it keeps the parameter's named axes.
first_max = primitive("first_max", _first_max, lambda g, ans, x: None)

_all = primitive("all", lambda x, axis, keepdims: np.all(x, axis=axis, keepdims=keepdims),
                 lambda g, ans, x, axis, keepdims: None)
_any = primitive("any", lambda x, axis, keepdims: np.any(x, axis=axis, keepdims=keepdims),
                 lambda g, ans, x, axis, keepdims: None)


def all(x, axis=None, keepdims=False):
    """Whether every element along ``axis`` is true (boolean, no gradient; recorded)."""
    return _all(x, axis=_axis(axis), keepdims=keepdims)


def any(x, axis=None, keepdims=False):
    """Whether some element along ``axis`` is true (boolean, no gradient; recorded)."""
    return _any(x, axis=_axis(axis), keepdims=keepdims)


def min(x, axis=None, keepdims=False):
    """Minimum over ``axis``."""
    return -max(-x if isinstance(x, Tensor) else -np.asarray(x), axis=axis, keepdims=keepdims)


def _reshape(x, shape):
    """``x`` with a new ``shape`` (same number of elements)."""
    return np.reshape(x, shape)


reshape = primitive(
    "reshape",
    _reshape,
    lambda g, ans, x, shape: reshape(g, x.shape),
)


def _transpose_vjp(g, ans, x, axes):
    return transpose(g, None if axes is None else tuple(np.argsort(axes)))


_transpose = primitive("transpose", lambda x, axes: np.transpose(x, axes), _transpose_vjp)


def transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is None)."""
    return _transpose(x, axes=None if axes is None else tuple(axes))


def swapaxes(x, a, b):
    """``x`` with axes ``a`` and ``b`` exchanged."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def _is_basic_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return builtins.all(
        p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts
    )


def _scatter(g, index, shape):
    """Zeros of ``shape`` with ``g`` added at ``index`` (repeated indices accumulate)."""
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic_index(index):
        out[index] = g
    else:
        np.add.at(out, index, g)
    return out


def _scatter_into(g, index, shape, out):
    out.fill(0)
    if _is_basic_index(index):
        out[index] = g
    else:
        np.add.at(out, index, g)


_scatter.into = _scatter_into
scatter = primitive(
    "scatter", _scatter, lambda g, ans, x, index, shape: _getitem(g, index=index)
)


class _GetitemVJPs:
    """The gradient goes to the indexed array (input 0); Tensor indices (inputs 1...)
    are integers and get none."""

    def __getitem__(self, i):
        return _getitem_vjp if i == 0 else _no_grad_vjp_any


def _getitem_vjp(g, ans, x, *index_tensors, index):
    return scatter(g, index=_fill_index(index, index_tensors), shape=x.shape)


def _no_grad_vjp_any(*args, **kwargs):
    return None


_TENSOR_SLOT = object()  # marks where a Tensor index goes in the static index template


def _fill_index(template, arrays):
    """The index with the Tensor slots of ``template`` filled from ``arrays`` (ndarrays or Tensors)."""
    if not arrays:
        return template
    it = iter(a.data if isinstance(a, Tensor) else a for a in arrays)
    if template is _TENSOR_SLOT:
        return next(it)
    return tuple(next(it) if p is _TENSOR_SLOT else p for p in template)


_getitem = primitive("getitem", lambda x, *index_arrays, index: x[_fill_index(index, index_arrays)])
_getitem.vjps = _GetitemVJPs()


def _split_index(index):
    """(template, Tensor indices): Tensors in the index become positional inputs of the
    primitive (so a graph sees that the result depends on them), lists become arrays."""
    if isinstance(index, Tensor):
        return _TENSOR_SLOT, (index,)
    if isinstance(index, list):
        return np.asarray(index), ()
    if isinstance(index, tuple):
        tensors = tuple(i for i in index if isinstance(i, Tensor))
        if tensors:
            return tuple(_TENSOR_SLOT if isinstance(i, Tensor) else i for i in index), tensors
    return index, ()


def getitem(x, index):
    """``x[index]`` for basic and integer-array indexing (indices may be Tensors)."""
    template, tensors = _split_index(index)
    return _getitem(x, *tensors, index=template)


def _concatenate_vjp(i):
    def vjp(g, ans, *xs, axis):
        ax = axis % ans.ndim
        start = int(builtins.sum(x.shape[ax] for x in xs[:i]))
        index = (slice(None),) * ax + (slice(start, start + xs[i].shape[ax]),)
        return _getitem(g, index=index)

    return vjp


class _ConcatVJPs:
    """VJPs for any number of concatenated inputs, made on demand."""

    def __getitem__(self, i):
        return _concatenate_vjp(i)


_concatenate = primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis))
_concatenate.vjps = _ConcatVJPs()


def concatenate(xs, axis=0):
    """Join a sequence of tensors along an existing axis."""
    return _concatenate(*xs, axis=axis)


def stack(xs, axis=0):
    """Join a sequence of same-shape tensors along a new axis."""
    xs = [x if isinstance(x, Tensor) else Tensor(x) for x in xs]
    if not xs:
        raise ValueError("stack: need at least one tensor")
    ax = axis % (xs[0].ndim + 1)
    return concatenate([reshape(x, x.shape[:ax] + (1,) + x.shape[ax:]) for x in xs], axis=ax)


def expand_dims(x, axis):
    """``x`` with a new axis of length 1 at ``axis``."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    ax = axis % (x.ndim + 1)
    return reshape(x, x.shape[:ax] + (1,) + x.shape[ax:])


def squeeze(x, axis):
    """``x`` without ``axis``, which must have length 1."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    ax = axis % x.ndim
    if x.shape[ax] != 1:
        raise ValueError(f"squeeze: axis {axis} has length {x.shape[ax]}, not 1 (shape {x.shape})")
    return reshape(x, x.shape[:ax] + x.shape[ax + 1 :])


# ---- linear algebra ---------------------------------------------------------------


def _matmul_forward(a, b):
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("the primitive needs two operands with ndim >= 2")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"inner dimensions differ: {a.shape[-1]} (last of first) vs {b.shape[-2]} "
            f"(second-to-last of second)"
        )
    return _matmul_into(a, b, None)


_THREADED_PRODUCT = 1 << 18  # multiply-adds from which OpenBLAS hands a product to its threads


def _matmul_into(a, b, out):
    out = np.matmul(a, b, out=out)
    if out.size * a.shape[-1] >= _THREADED_PRODUCT:
        parallel.blas_ran()
    return out


def _mT(x):
    return transpose(x) if x.ndim == 2 else swapaxes(x, -1, -2)


_matmul_forward.into = _matmul_into
_matmul = primitive(
    "matmul",
    _matmul_forward,
    lambda g, ans, a, b: unbroadcast(_matmul(g, _mT(b)), a.shape),
    lambda g, ans, a, b: unbroadcast(_matmul(_mT(a), g), b.shape),
)


def matmul(a, b):
    """Matrix product with numpy's rules: batched over leading axes, 1-D operands
    promoted to a row (first) or column (second) vector and the axis dropped."""
    a = a if isinstance(a, Tensor) else Tensor(a)
    b = b if isinstance(b, Tensor) else Tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one axis, got shapes {a.shape} and {b.shape}")
    if a.ndim >= 2 and b.ndim >= 2:
        return _matmul(a, b)
    out = _matmul(reshape(a, (1,) + a.shape) if a.ndim == 1 else a,
                  reshape(b, b.shape + (1,)) if b.ndim == 1 else b)
    if b.ndim == 1:
        out = squeeze(out, -1)
    if a.ndim == 1:
        out = squeeze(out, -1 if b.ndim == 1 else -2)
    return out


# ---- composites -------------------------------------------------------------------


def clip(x, lo=None, hi=None):
    """Elementwise clamp to [lo, hi]; gradient passes where x is inside."""
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def _xlogy_vjp_y(g, ans, x, y):
    # d/dy = x / y; at x == y == 0 (where 0 log 0 is taken as 0) it is taken as 0 too.
    both_zero = (x.data == 0) & (y.data == 0)
    return unbroadcast(g * x / where(both_zero, 1, y), y.shape)


def _xlogy(x, y):
    """x * log(y), with 0 * log(0) = 0. Only that value is special: d/dx = log(y)
    everywhere (so d log_prob / d concentration of a Gamma is right at concentration 1)."""
    return sp.xlogy(x, y)


xlogy = primitive(
    "xlogy",
    _xlogy,
    lambda g, ans, x, y: unbroadcast(g * log(y), x.shape),
    _xlogy_vjp_y,
)


_stop = primitive("stop_gradient", lambda x: x, lambda g, ans, x: None)


def stop_gradient(x):
    """The value of ``x`` as a new Tensor that does not require grad: no gradient
    (of any order) flows back through it. While a stochastic Graph is being built
    the link to ``x`` is still recorded, because the value still depends on ``x``."""
    if not isinstance(x, Tensor):
        return Tensor(np.asarray(x))
    out = Tensor(x.data)
    if state.track:
        out._parents, out._op, out._static = (x,), _stop, {}
    return out


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over ``axis``, computed stably by shifting by the max.

    The shift is constant for differentiation: the result does not depend on it. It is
    a recorded value (``stop_gradient(max(x))``), not a bare array, so that inside a
    stochastic graph the named axes of ``x`` it keeps stay named.
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    axis = _axis(axis)
    if not x.size:
        m = Tensor(np.zeros(_kept_shape(x.shape, axis), x.dtype))
    else:
        m = stop_gradient(max(x, axis=axis, keepdims=True))
    # A row of only -inf gives -inf with gradient 0 (as torch): compute it on a row of
    # zeros and put -inf in afterwards, so that no inf * 0 gives NaN in any order.
    empty = (m.data == -np.inf).any()
    if empty:
        is_empty = equal(m, -np.inf)
        x = where(is_empty, 0, x)
    if not kernels.all_finite(m.data):
        m = where(less(abs(m), np.inf), m, 0)
    out = log(sum(exp(x - m), axis=axis, keepdims=True)) + m
    if empty:
        out = where(is_empty, -np.inf, out)
    return out if keepdims else reshape(out, _reduced_shape(x.shape, axis))


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``."""
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed as exp(log_softmax(x))."""
    return exp(log_softmax(x, axis=axis))


# ---- Tensor operators and methods ------------------------------------------------------
# Assigned directly, so ``a * b`` calls the primitive with no call in between. add and
# multiply commute exactly in floating point (and their VJPs are symmetric), so their
# reflected forms are the primitives themselves; the others swap their operands.


def _rsubtract(x, y):
    return subtract(y, x)


def _rdivide(x, y):
    return divide(y, x)


def _rpower(x, y):
    return power(y, x)


def _rmatmul(x, y):
    return matmul(y, x)


def _reshape_method(x, *shape):
    """The same elements in a new shape: ``t.reshape(2, 3)`` or ``t.reshape((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return reshape(x, tuple(shape))


def _transpose_method(x, *axes):
    """Permute axes (reverse them when none are given): ``t.transpose(1, 0)`` or ``t.transpose((1, 0))``."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    return transpose(x, tuple(axes) if axes else None)


for _name, _fn in {
    "__add__": add, "__radd__": add,
    "__sub__": subtract, "__rsub__": _rsubtract,
    "__mul__": multiply, "__rmul__": multiply,
    "__truediv__": divide, "__rtruediv__": _rdivide,
    "__pow__": power, "__rpow__": _rpower,
    "__matmul__": matmul, "__rmatmul__": _rmatmul,
    "__neg__": negative, "__abs__": abs, "__getitem__": getitem,
    # Comparisons give boolean Tensors without gradient (recorded while a graph is built).
    "__lt__": less, "__le__": less_equal, "__gt__": greater, "__ge__": greater_equal,
    "__eq__": equal, "__ne__": not_equal,
    "__and__": logical_and, "__rand__": logical_and, "__or__": logical_or, "__ror__": logical_or,
    "__invert__": logical_not, "all": all, "any": any,
    "sum": sum, "mean": mean, "max": max, "min": min, "logsumexp": logsumexp,
    "softmax": softmax, "log_softmax": log_softmax,
    "reshape": _reshape_method, "transpose": _transpose_method, "astype": astype,
    "exp": exp, "log": log, "sqrt": sqrt, "tanh": tanh, "sigmoid": sigmoid, "relu": relu,
    "softplus": softplus, "abs": abs, "clip": clip, "detach": stop_gradient,
}.items():
    setattr(Tensor, _name, _fn)
Tensor.T = property(transpose, doc="The Tensor with its axes reversed.")
del _name, _fn
