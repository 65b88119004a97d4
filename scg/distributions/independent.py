"""Independent(base_distribution, reinterpreted_batch_ndims): batch axes read as one event.

With n = ``reinterpreted_batch_ndims``, the rightmost n batch axes of the base move into
the event: ``batch_shape = base.batch_shape[:-n]``, ``event_shape = base.batch_shape[-n:]
+ base.event_shape``. The elements are independent, so ``log_prob`` and ``entropy`` are
the base's summed over those n axes; draws, mean and variance are the base's.
"""

from .distribution import Distribution, sum_rightmost
from .kl import kl_divergence, register_kl


class Independent(Distribution):
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
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self):
        """The base's, when no axis is reinterpreted (a product of supports is not enumerated)."""
        return self.reinterpreted_batch_ndims == 0 and self.base_dist.has_enumerate_support

    @property
    def support(self):
        return self.base_dist.support

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

    def enumerate_support(self, expand=True):
        if self.reinterpreted_batch_ndims > 0:
            raise NotImplementedError(
                f"Independent: enumerating the product of {self.reinterpreted_batch_ndims} reinterpreted "
                f"batch axes is not implemented (it grows exponentially); enumerate the base "
                f"distribution, {type(self.base_dist).__name__}, or use a score-function estimator"
            )
        return self.base_dist.enumerate_support(expand=expand)

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
