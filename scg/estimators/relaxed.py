"""Continuous relaxations: the Gumbel-softmax / Concrete estimator."""

import numpy as np

from .. import ops
from .base import Estimator, _alternatives


class GumbelSoftmax(Estimator):
    """Continuous relaxation (Jang et al. 2017; Maddison et al. 2017): the value is a
    RelaxedBernoulli / RelaxedOneHotCategorical draw at ``temperature``, with pathwise
    gradients (biased; the bias shrinks as the temperature falls). With
    ``straight_through`` the forward value is the hard sample (0/1 or one-hot) and the
    gradient is the relaxed one. Categorical nodes take one-hot values. The relaxation is
    ``dist.relaxed(temperature)``, so any family that defines one can be relaxed."""

    color = "#8e44ad"

    def __init__(self, temperature, straight_through=False):
        if not temperature > 0:
            raise ValueError(f"GumbelSoftmax: temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.straight_through = straight_through

    def _relaxed(self, dist):
        return dist.relaxed(self.temperature)

    def check(self, dist, n, name):
        try:
            self._relaxed(dist)
        except NotImplementedError as e:
            raise ValueError(f"GumbelSoftmax for '{name}': {e}; use {_alternatives(dist)}") from None

    def draw(self, dist, n, rng):
        relaxed = self._relaxed(dist)
        soft = relaxed.rsample((n,) if n else (), rng=rng)
        if not self.straight_through:
            return soft
        if soft.shape[-1:] == relaxed.event_shape and relaxed.event_shape:
            hard = np.eye(soft.shape[-1], dtype=soft.dtype)[soft.data.argmax(-1)]
        else:
            hard = (soft.data > 0.5).astype(soft.dtype)
        return soft + (hard - ops.stop_gradient(soft))

    def describe(self):
        st = ", straight_through" if self.straight_through else ""
        return f"GumbelSoftmax(T={self.temperature:g}{st})"


# ---- multi-sample bounds: VIMCO, STL, DReG ----------------------------------------------
#
# For a bound c declared with g.bound(name, log_w, over=node): L = log (1/K) sum_k w_k over
# the node's sample axis, the cost is -L (times c.scale, for other sample axes and
# subsampled plates), and w~_k = softmax_k(log w) are the normalised weights.
