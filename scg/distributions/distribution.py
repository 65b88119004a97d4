"""The Distribution base class and the helpers every family shares.

Shapes follow ``torch.distributions``: a draw with ``sample_shape`` has shape
``sample_shape + batch_shape + event_shape``; ``log_prob`` sums over the event
axes and returns ``sample_shape + batch_shape``.
"""

import copy
import functools

import numpy as np

from .. import context, kernels, ops
from ..autodiff import no_grad
from . import constraints
from .constraints import simplex_tolerance, sums_to_one  # (their home: the simplex constraint uses them)
from ..random import resolve
from ..tensor import Tensor


class Distribution:
    """Base class. Subclasses set ``has_rsample`` / ``has_enumerate_support`` and
    implement what they support; the rest raises a message naming alternatives."""

    has_rsample = False
    has_enumerate_support = False
    #: where values live: a :mod:`~scg.distributions.constraints` object (a plain string, the
    #: older form, is still accepted: messages only format it)
    support = constraints.real
    #: parameter name -> constraint, as torch's (descriptive: each family checks its own
    #: parameters once, in its constructor, with messages naming them)
    arg_constraints = {}
    _untyped = None  # the parameters as given, when none had a float dtype (see _follow)

    def __init__(self, batch_shape=(), event_shape=(), dtype=np.float64, validate_args=None):
        self.batch_shape = tuple(batch_shape)
        self.event_shape = tuple(event_shape)
        self.dtype = np.dtype(dtype)
        self._validate = context.state.validate_args if validate_args is None else validate_args

    @staticmethod
    def set_default_validate_args(value):
        """When True, ``log_prob`` raises ``ValueError`` for values outside the
        support instead of returning -inf."""
        context.set_default("validate_args", bool(value))

    # ---- sampling --------------------------------------------------------------
    def _extended_shape(self, sample_shape=()):
        if isinstance(sample_shape, int):
            sample_shape = (sample_shape,)
        return tuple(sample_shape) + self.batch_shape + self.event_shape

    def sample(self, sample_shape=(), rng=None):
        """A draw of shape ``sample_shape + batch_shape + event_shape`` carrying no gradient.

        ``rng`` is a ``numpy.random.Generator`` (default: the library's, seeded by
        ``scg.manual_seed``)."""
        if not self.has_rsample:
            raise NotImplementedError(f"{type(self).__name__} must implement sample()")
        with no_grad():
            return Tensor(self.rsample(sample_shape, rng=rng).data)

    def rsample(self, sample_shape=(), rng=None):
        """A reparameterized draw: gradients flow from it into the parameters."""
        raise NotImplementedError(
            f"{type(self).__name__} has no reparameterized sample (has_rsample is False). "
            f"Use sample() with a score-function estimator (scg.ScoreFunction), exact "
            f"enumeration (scg.Enumerate) where the support is finite, or a continuous "
            f"relaxation (RelaxedBernoulli / RelaxedOneHotCategorical, scg.GumbelSoftmax)."
        )

    # ---- densities and moments -------------------------------------------------
    def log_prob(self, value):
        """log p(value), summed over the event axes: shape sample_shape + batch_shape.
        -inf outside the support (ValueError under validation)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement log_prob")

    def entropy(self):
        """H = -E[log p(x)], shape batch_shape."""
        raise NotImplementedError(f"{type(self).__name__} does not implement entropy")

    def perplexity(self):
        """exp(H), shape batch_shape (where the family has an entropy)."""
        return ops.exp(self.entropy())

    def cdf(self, value):
        """F(value) = P(X <= value), shape sample_shape + batch_shape; differentiable in the
        value and the parameters. Outside the support: 0 below it, 1 above (ValueError under
        validation)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement cdf")

    def icdf(self, value):
        """The quantile F^-1(value) for probabilities ``value`` in [0, 1], shape sample_shape +
        batch_shape; differentiable in the value and the parameters. Under validation a value
        outside [0, 1] raises ValueError."""
        raise NotImplementedError(f"{type(self).__name__} does not implement icdf")

    @property
    def mode(self):
        """The most likely value, shape batch_shape + event_shape (NaN where there is none, as torch)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement mode")

    @property
    def mean(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement mean")

    @property
    def variance(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement variance")

    @property
    def stddev(self):
        return ops.sqrt(self.variance)

    def enumerate_support(self, expand=True):
        """Every value of a finite support on a new leading axis: (K,) + batch_shape +
        event_shape (batch axes of size 1 unless ``expand``)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no finite support to enumerate "
            f"(has_enumerate_support is False)"
        )

    def relaxed(self, temperature):
        """A continuous relaxation of this distribution at ``temperature`` > 0 with pathwise
        samples (what ``scg.GumbelSoftmax`` draws from): Bernoulli -> RelaxedBernoulli,
        Categorical and OneHotCategorical -> RelaxedOneHotCategorical (registered by the
        relaxed families' modules, :func:`register_relaxation`). Families without one raise
        ``NotImplementedError`` naming the family."""
        for family in type(self).__mro__:
            if family in _RELAXATIONS:
                return _RELAXATIONS[family](self, temperature)
        names = sorted(f.__name__ for f in _RELAXATIONS)
        names = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names) or "none"
        raise NotImplementedError(
            f"{type(self).__name__} has no continuous relaxation (relaxed() is defined for {names})"
        )

    # ---- helpers for subclasses ------------------------------------------------
    def _follow(self, other):
        """This distribution in the float dtype of ``other`` (a dtype, or a value that has
        one) when none of its parameters had a float dtype of its own, else itself.

        The rule, as for the core's operators: Python numbers (and lists of them) take the
        dtype of what they meet. A distribution built only from them is float64 (numpy's
        default) on its own, and follows a float value in ``log_prob`` and the other
        distribution in ``kl_divergence``: ``Normal(0.0, 1.0).log_prob(z32)`` is float32."""
        dtype = other if isinstance(other, np.dtype) else getattr(other, "dtype", None)
        if self._untyped is None or dtype is None or np.dtype(dtype).kind != "f" or dtype == self.dtype:
            return self
        args = {name: np.asarray(v, dtype=dtype) for name, v in self._untyped.items()}
        return type(self)(**args, validate_args=self._validate)

    def _rng(self, rng):
        return resolve(rng)

    def _lenient(self):
        """This distribution with value validation off (a shallow copy sharing the parameters):
        for the library's own sums over a grid that reaches outside some batch elements'
        supports, where -inf is meant (Binomial's entropy)."""
        if not self._validate:
            return self
        out = copy.copy(self)
        out._validate = False
        return out

    def _value(self, value, method="log_prob"):
        """``value`` as a Tensor in the distribution's dtype (floating values keep theirs);
        under validation, NaN raises ``ValueError`` (naming ``method``)."""
        if not isinstance(value, Tensor) and not (isinstance(value, np.ndarray) and value.dtype.kind == "f"):
            value = np.asarray(value, dtype=self.dtype)  # scalars, lists, integer/bool arrays
        value = value if isinstance(value, Tensor) else Tensor(value)
        if self._validate and kernels.has_nan(value.data):  # NaN is in no support
            raise ValueError(
                f"{type(self).__name__}.{method}: value contains NaN, which is outside the "
                f"support, {self.support}"
            )
        return value

    def _support(self, value, inside, method="log_prob"):
        """``inside`` (a boolean Tensor computed from ``value`` by recorded operations, so a
        graph sees that it depends on a sampled value), as it is (it broadcasts against the
        batch shape where it is used); under validation a value outside the support raises ``ValueError``. Use it with
        :func:`outside_is_impossible`, which puts -inf where it is False."""
        inside = inside if isinstance(inside, Tensor) else Tensor(np.asarray(inside, dtype=bool))
        # Not broadcast to the batch shape as a Tensor: a fresh axis of the batch's size would be
        # an unnamed axis to a graph, and would collide with a named one (a sample or enumeration
        # axis) that the parameters carry. The ops that use ``inside`` broadcast it themselves.
        if self._validate and not inside.data.all():
            shape = np.broadcast_shapes(inside.shape, self.batch_shape)
            ok = np.broadcast_to(inside.data, shape)
            event = value.shape[value.ndim - len(self.event_shape):] if self.event_shape else ()
            bad = np.broadcast_to(value.data, shape + event)[~ok]
            raise ValueError(
                f"{type(self).__name__}.{method}: value {bad[0] if event else bad.flat[0]!r} is outside "
                f"the support, {self.support}"
            )
        return inside

    def _cdf_value(self, value, support=None):
        """(``value`` as a Tensor, the boolean Tensor of where it is in ``support``, default
        the family's) for ``cdf``: one vectorised test, refused under validation."""
        x = self._value(value, "cdf")
        support = self.support if support is None else support
        return x, self._support(x, support.check(x), method="cdf")

    def _level(self, value):
        """``value`` as a Tensor of probabilities for ``icdf``; under validation a value
        outside [0, 1] raises ValueError (one vectorised test)."""
        p = self._value(value, "icdf")
        if self._validate:
            ok = (p.data >= 0) & (p.data <= 1)
            if not ok.all():
                bad = np.broadcast_to(p.data, ok.shape)[~ok].flat[0]
                raise ValueError(f"{type(self).__name__}.icdf: value {bad!r} is not a probability in [0, 1]")
        return p

    def to_event(self, reinterpreted_batch_ndims=None):
        """This distribution with its rightmost ``reinterpreted_batch_ndims`` batch axes
        declared part of the event (all of them when None): ``Independent(self, n)``,
        and ``self`` itself for n = 0."""
        n = len(self.batch_shape) if reinterpreted_batch_ndims is None else reinterpreted_batch_ndims
        return self if n == 0 else _WRAPPERS["Independent"](self, n)

    def expand(self, batch_shape):
        """This distribution with batch shape ``batch_shape`` (torch's meaning): the batch
        shape broadcasts to it from the right (new axes on the left, size-1 axes grown), and
        every new element is an independent copy. Returns ``self`` when the shape is unchanged."""
        batch_shape = (batch_shape,) if isinstance(batch_shape, (int, np.integer)) else tuple(batch_shape)
        return self if batch_shape == self.batch_shape else _WRAPPERS["ExpandedDistribution"](self, batch_shape)

    def __repr__(self):
        return f"{type(self).__name__}(batch_shape={self.batch_shape}, event_shape={self.event_shape})"


class Wrapper(Distribution):
    """Base of the distributions built around another one, ``base_dist`` (Independent,
    ExpandedDistribution): whether it samples pathwise, whether its support can be
    enumerated and what the support is are the base's."""

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self):
        return self.base_dist.has_enumerate_support

    @property
    def support(self):
        return self.base_dist.support


# ---- registries filled from the dependent side (as register_kl is), so no cycle ----------

_RELAXATIONS = {}  # family -> fn(dist, temperature), see register_relaxation
_WRAPPERS = {}  # "Independent", "ExpandedDistribution" -> class, for to_event() and expand()


def register_relaxation(family):
    """Decorator, used in the module of a relaxed family: ``fn(dist, temperature)`` is what
    ``dist.relaxed(temperature)`` returns for ``family`` and its subclasses. The relaxed
    module imports the family, never the other way round."""

    def decorate(fn):
        _RELAXATIONS[family] = fn
        return fn

    return decorate


def register_wrapper(cls):
    """Class decorator for the wrappers ``to_event()`` and ``expand()`` build (Independent,
    ExpandedDistribution), which import this module: it cannot import them."""
    _WRAPPERS[cls.__name__] = cls
    return cls


# ---- parameter handling -----------------------------------------------------------


def params(cls_name, **named):
    """Turn each named parameter into a float Tensor with one common dtype and check
    that their shapes broadcast. Returns (list of Tensors, broadcast shape, dtype).

    The dtype is the widest floating dtype among Tensor/array parameters (Python
    scalars follow it); float64 when every parameter is a Python scalar or integer.
    """
    dtypes = []
    for v in named.values():
        d = v.data.dtype if isinstance(v, Tensor) else getattr(v, "dtype", None)
        if d is not None and np.dtype(d).kind == "f":
            dtypes.append(np.dtype(d))
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    out = []
    for name, v in named.items():
        if isinstance(v, Tensor):
            if v.data.dtype != dtype:
                v = ops.astype(v, dtype)
        else:
            try:
                arr = np.asarray(v, dtype=dtype)
            except (TypeError, ValueError):
                raise ValueError(f"{cls_name}: parameter '{name}' is not numeric: {v!r}") from None
            v = Tensor(arr)
        if kernels.has_nan(v.data):
            raise ValueError(f"{cls_name}: parameter '{name}' contains NaN")
        out.append(v)
    try:
        shape = np.broadcast_shapes(*(t.shape for t in out))
    except ValueError:
        desc = ", ".join(f"{n} {t.shape}" for n, t in zip(named, out))
        raise ValueError(f"{cls_name}: parameter shapes do not broadcast: {desc}") from None
    return out, shape, dtype


def untyped(**named):
    """``named`` when no parameter has a float dtype of its own (Python numbers, lists,
    integers), else None: what ``Distribution._follow`` rebuilds a distribution from."""
    for v in named.values():
        d = v.data.dtype if isinstance(v, Tensor) else getattr(v, "dtype", None)
        if d is not None and np.dtype(d).kind == "f":
            return None
    return named


class LocationScale(Distribution):
    """Base of the location-scale families (Normal, Laplace, Cauchy): finite ``loc`` and
    positive finite ``scale``, broadcast together; ``rsample`` is ``loc + scale * eps`` with
    ``eps`` from the subclass's ``_standard(rng, shape)``."""

    has_rsample = True
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}

    def __init__(self, loc, scale, validate_args=None):
        name = type(self).__name__
        (self.loc, self.scale), shape, dtype = params(name, loc=loc, scale=scale)
        self._untyped = untyped(loc=loc, scale=scale)
        check_positive(name, "scale", self.scale)
        check(name, "loc", self.loc, np.isfinite(self.loc.data), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        eps = self._standard(self._rng(rng), self._extended_shape(sample_shape))
        return self.loc + self.scale * eps


def check(cls_name, name, tensor, condition, requirement):
    """Raise ``ValueError`` naming the parameter unless ``condition`` holds everywhere."""
    if not np.all(condition):
        bad = np.asarray(tensor.data)[~np.broadcast_to(condition, tensor.shape)]
        raise ValueError(f"{cls_name}: parameter '{name}' must be {requirement}; got {bad.flat[0]!r}")


def check_positive(cls_name, name, tensor):
    """Raise ``ValueError`` naming the parameter unless ``tensor`` is positive and finite."""
    check(cls_name, name, tensor, tensor.data > 0, "positive")
    check(cls_name, name, tensor, np.isfinite(tensor.data), "finite")


def follows_value_dtype(log_prob):
    """Decorator for a family's ``log_prob(self, value)``: evaluate it on
    ``self._follow(value)``, so that parameters given as Python numbers take the float
    dtype of the value (``Normal(0.0, 1.0).log_prob(z32)`` is float32)."""

    @functools.wraps(log_prob)
    def follow(self, value):
        return log_prob(self._follow(value), value)

    return follow


def probs_or_logits(cls_name, probs, logits):
    """Exactly one of ``probs`` and ``logits``: says which was given."""
    if (probs is None) == (logits is None):
        raise ValueError(f"{cls_name}: give exactly one of 'probs' and 'logits' (got {'both' if probs is not None else 'neither'})")
    return "probs" if probs is not None else "logits"


def broadcast(t, shape):
    """``t`` broadcast to ``shape`` (differentiably)."""
    return t if t.shape == tuple(shape) else ops.broadcast_to(t, tuple(shape))


def gather_last(t, index):
    """``t[..., index]`` elementwise: ``t`` (*B, K), integer ``index`` (*S, *B) -> (*S, *B),
    broadcasting ``t``'s batch axes against the index.

    Computed as ``sum_k where(index == k, t_k, 0)``: every step is an elementwise op or a
    sum over the last axis, so a graph follows a sampled index (and its named axes) through
    it, and a -inf entry that is not selected gives neither NaN values nor NaN gradients."""
    index = index if isinstance(index, Tensor) else Tensor(np.asarray(index))
    k = t.shape[-1]
    hit = ops.equal(ops.expand_dims(index, -1), np.arange(k))
    return ops.sum(ops.where(hit, t, 0), axis=-1)


def p_log_q(p, log_q):
    """p * log_q with 0 where p == 0 (so 0 * -inf = 0), value and gradients NaN-free. The
    test p == 0 is recorded: ``p`` may be a sampled value (a count)."""
    zero = ops.equal(p, 0)
    return ops.where(zero, 0, p * ops.where(zero, 0, log_q))


def is_count(x):
    """Boolean Tensor (recorded, no gradient): ``x`` is a finite non-negative integer, of any
    numeric dtype. Value checks use it as it is; parameter checks read its ``.data``."""
    with np.errstate(invalid="ignore"):
        return ops.isfinite(x) & ops.greater_equal(x, 0) & ops.equal(ops.floor(x), x)


def outside_is_impossible(inside, lp):
    """``lp`` with -inf where the boolean Tensor ``inside`` (from ``Distribution._support``)
    is False. When every value is inside, ``lp`` itself (no extra pass over the data)."""
    return lp if inside.data.all() else ops.where(inside, lp, -np.inf)


def relaxation_params(cls_name, temperature, base):
    """The temperature of a relaxation of ``base`` (checked positive and finite; a Python
    scalar takes base's dtype), and the broadcast batch shape and dtype of the two."""
    if not hasattr(temperature, "dtype"):
        temperature = np.asarray(temperature, dtype=base.dtype)
    (t,), _, _ = params(cls_name, temperature=temperature)
    check(cls_name, "temperature", t, np.isfinite(t.data) & (t.data > 0), "positive and finite")
    try:
        shape = np.broadcast_shapes(base.batch_shape, t.shape)
    except ValueError:
        raise ValueError(
            f"{cls_name}: parameter shapes do not broadcast: temperature {t.shape}, batch {base.batch_shape}"
        ) from None
    return t, shape, np.result_type(base.dtype, t.dtype)


def clamp_keeping_gradient(x, low=None, high=None):
    """``x`` with its values clipped into [low, high] (either may be None; arrays broadcast)
    by adding a constant, so the gradient stays that of ``x``: for draws that rounding put
    on or past the edge of a support, where a log-density would be infinite."""
    clipped = np.clip(x.data, low, high)
    return x if np.array_equal(clipped, x.data) else x + (clipped - x.data)


def keep_inside_unit_interval(y):
    """``y`` clipped into [tiny, largest float below 1] by ``clamp_keeping_gradient``: draws
    on (0, 1) that rounded to 0 or 1 (sigmoids, Beta ratios)."""
    one = y.dtype.type(1)
    return clamp_keeping_gradient(y, np.finfo(y.dtype).tiny, np.nextafter(one, 0 * one))


def log_beta(a):
    """log B(a) = sum_k lgamma(a_k) - lgamma(sum_k a_k) over the last axis of ``a`` (..., K):
    shape (...). The Beta function B(a, b) is the case K = 2 (stack a and b on a new last axis)."""
    return ops.sum(ops.lgamma(a), axis=-1) - ops.lgamma(ops.sum(a, axis=-1))


def sum_rightmost(t, n):
    """``t`` summed over its rightmost ``n`` axes (``t`` itself for n = 0)."""
    return ops.sum(t, axis=tuple(range(-n, 0))) if n > 0 else t


class BaseParams:
    """For a family built on a Bernoulli or Categorical kept in ``self._base`` (Binomial,
    Geometric, OneHotCategorical, Multinomial and the relaxed families): its ``probs`` and
    ``logits`` are the base's, however it was given."""

    @property
    def probs(self):
        return self._base.probs

    @property
    def logits(self):
        return self._base.logits
