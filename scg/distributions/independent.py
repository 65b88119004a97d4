"""Independent(base_distribution, reinterpreted_batch_ndims): batch axes read as one event.

With n = ``reinterpreted_batch_ndims``, the rightmost n batch axes of the base move into
the event: ``batch_shape = base.batch_shape[:-n]``, ``event_shape = base.batch_shape[-n:]
+ base.event_shape``. The elements are independent, so ``log_prob`` and ``entropy`` are
the base's summed over those n axes; draws, mean and variance are the base's.
"""

import itertools

import numpy as np

from ..tensor import Tensor
from . import constraints
from .constraints import Constraint
from .distribution import Distribution, Wrapper, broadcast, register_wrapper, sum_rightmost
from .kl import kl_divergence, register_kl


@register_wrapper
class Independent(Wrapper):
    """``base_distribution`` with its rightmost ``reinterpreted_batch_ndims`` batch axes
    reinterpreted as event axes (``Normal(mu, sigma)`` with mu of shape (B, D) and
    n = 1: B independent D-dimensional diagonal Gaussians)."""

    def __init__(self, base_distribution, reinterpreted_batch_ndims, validate_args=None):
        if not isinstance(base_distribution, Distribution):
            raise ValueError(
                f"Independent: parameter 'base_distribution' must be a Distribution; "
                f"got {type(base_distribution).__name__}"
            )
        n = reinterpreted_batch_ndims
        batch = base_distribution.batch_shape
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(batch):
            raise ValueError(
                f"Independent: parameter 'reinterpreted_batch_ndims' must be an integer from 0 to "
                f"the number of batch axes of the base, {len(batch)} (batch_shape {batch}); got {n!r}"
            )
        self.base_dist = base_distribution
        self.reinterpreted_batch_ndims = n
        split = len(batch) - n
        super().__init__(
            batch[:split],
            batch[split:] + base_distribution.event_shape,
            base_distribution.dtype,
            base_distribution._validate if validate_args is None else validate_args,
        )

    @property
    def support(self):
        """The base's support on every element of the reinterpreted axes (a plain-string
        support, the older form, is passed on as it is)."""
        base = self.base_dist.support
        return constraints.independent(base, self.reinterpreted_batch_ndims) if isinstance(base, Constraint) else base

    #: the most joint support points ``enumerate_support`` lays out (K^E for E elements of K values)
    enumerate_limit = 2 ** 16

    def sample(self, sample_shape=(), rng=None):
        return self.base_dist.sample(sample_shape, rng=rng)

    def rsample(self, sample_shape=(), rng=None):
        return self.base_dist.rsample(sample_shape, rng=rng)

    def log_prob(self, value):
        return sum_rightmost(self.base_dist.log_prob(value), self.reinterpreted_batch_ndims)

    def entropy(self):
        return sum_rightmost(self.base_dist.entropy(), self.reinterpreted_batch_ndims)

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def variance(self):
        return self.base_dist.variance

    @property
    def mode(self):
        return self.base_dist.mode

    def enumerate_support(self, expand=True):
        """Every joint value of the event on a new leading axis: (K^E,) + batch + event, for
        E elements of the reinterpreted axes each with the base's K values (in
        lexicographic order, the last element fastest). Above ``enumerate_limit`` values
        ``ValueError`` gives the count."""
        n = self.reinterpreted_batch_ndims
        if n == 0:
            return self.base_dist.enumerate_support(expand=expand)
        base = self.base_dist
        values = base.enumerate_support(expand=False)  # (Kb,) + (1,) * len(base batch) + base event
        k = values.shape[0]
        inner = base.batch_shape[len(base.batch_shape) - n:]
        elements = int(np.prod(inner))
        count = k ** elements
        if count > self.enumerate_limit:
            raise ValueError(
                f"the joint support of Independent({type(base).__name__}) over its event {inner} has "
                f"{k}^{elements} = {count} values, above the limit of {self.enumerate_limit} "
                f"(Independent.enumerate_limit); use a score-function estimator, or enumerate fewer elements"
            )
        choice = np.array(list(itertools.product(range(k), repeat=elements)), dtype=np.intp).reshape(count, elements)
        points = values.data.reshape((k,) + tuple(base.event_shape))[choice]  # (K^E, E) + base event
        shape = (count,) + (1,) * len(self.batch_shape) + tuple(inner) + tuple(base.event_shape)
        out = Tensor(np.ascontiguousarray(points.reshape(shape)))
        return broadcast(out, (count,) + self.batch_shape + self.event_shape) if expand else out

    def __repr__(self):
        return f"Independent({self.base_dist!r}, {self.reinterpreted_batch_ndims})"


@register_kl(Independent, Independent)
def _kl_independent_independent(p, q):
    # the elements are independent: the base's KL summed over the reinterpreted axes
    n = p.reinterpreted_batch_ndims
    if n != q.reinterpreted_batch_ndims:
        raise NotImplementedError(
            f"no closed-form KL divergence between Independent distributions reinterpreting "
            f"{n} and {q.reinterpreted_batch_ndims} batch axes; make the two agree (.to_event(n))"
        )
    return sum_rightmost(kl_divergence(p.base_dist, q.base_dist), n)
