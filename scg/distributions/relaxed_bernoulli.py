"""RelaxedBernoulli(temperature, probs=None, logits=None): the binary Concrete /
Gumbel-softmax relaxation (Maddison et al. 2017; Jang et al. 2017) on (0, 1).

Sample: y = sigmoid((l + log u - log(1 - u)) / T), u ~ U(0, 1).
Density: p(y) = T a y^(-T-1) (1-y)^(-T-1) / (a y^(-T) + (1-y)^(-T))^2 with a = e^l.
"""

import numpy as np

from .. import ops
from . import constraints
from .bernoulli import Bernoulli
from .distribution import (
    BaseParams, Distribution, keep_inside_unit_interval, outside_is_impossible, register_relaxation,
    relaxation_params,
)


class RelaxedBernoulli(BaseParams, Distribution):
    """Continuous relaxation of Bernoulli at ``temperature`` > 0; as the temperature
    falls, samples approach 0/1 with P(near 1) = sigmoid(logit). Pathwise samples."""

    has_rsample = True
    support = constraints.open_interval(0, 1)
    arg_constraints = {"temperature": constraints.positive, "probs": constraints.unit_interval,
                       "logits": constraints.real}

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        self._base = Bernoulli(probs=probs, logits=logits)
        self.temperature, shape, dtype = relaxation_params("RelaxedBernoulli", temperature, self._base)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        eps = np.finfo(self.dtype).eps
        u = np.clip(self._rng(rng).random(shape), eps, 1 - eps).astype(self.dtype)
        noise = np.log(u) - np.log1p(-u)
        y = ops.sigmoid((self.logits + noise) / self.temperature)
        return keep_inside_unit_interval(y)

    def log_prob(self, value):
        y = self._value(value)
        inside = self._support(y, (y > 0) & (y < 1))
        safe = y if inside.data.all() else ops.where(inside, y, 0.5)
        t, l = self.temperature, self.logits
        log_y, log_1my = ops.log(safe), ops.log1p(-safe)
        a = l - t * log_y
        b = -t * log_1my
        lp = ops.log(t) + l - (t + 1) * (log_y + log_1my) - 2 * (a + ops.softplus(b - a))
        return outside_is_impossible(inside, lp)

    def cdf(self, value):
        """y = sigmoid((l + g) / T) with g standard logistic, so F(y) = sigmoid(T logit(y) - l);
        0 at y = 0 and 1 at y = 1."""
        y, inside = self._cdf_value(value, constraints.unit_interval)
        interior = (y > 0) & (y < 1)
        safe = ops.where(interior, y, 0.5)
        f = ops.sigmoid(self.temperature * (ops.log(safe) - ops.log1p(-safe)) - self.logits)
        zero = f * 0  # 0 and 1 in f's dtype (a Python 0.0 in where would give float64)
        return ops.where(interior, f, ops.where(y >= 1, zero + 1, zero))

    def icdf(self, value):
        """sigmoid((l + logit(p)) / T), the draw made from the uniform p."""
        p = self._level(value)
        return ops.sigmoid((self.logits + ops.log(p) - ops.log1p(-p)) / self.temperature)


@register_relaxation(Bernoulli)
def _relax_bernoulli(coin, temperature):
    """Bernoulli.relaxed(temperature): the binary Concrete relaxation, RelaxedBernoulli with the
    coin's logits."""
    return RelaxedBernoulli(temperature, logits=coin.logits, validate_args=coin._validate)
