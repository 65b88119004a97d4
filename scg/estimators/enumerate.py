"""Exact sums over a finite support: Enumerate (an expectation) and Marginalize (summed
out of the likelihood)."""

from .base import Estimator


class Enumerate(Estimator):
    """Exact expectation over a finite support: the value is every support point on a
    new leading axis, and downstream costs are weighted by their probabilities."""

    enumerated = True
    color = "#2e9e4f"

    def check(self, dist, n, name):
        if not getattr(dist, "has_enumerate_support", False):
            raise ValueError(
                f"{type(self).__name__} for '{name}': {type(dist).__name__} has no finite support to enumerate; "
                f"use scg.Reparam() or scg.ScoreFunction()"
            )
        if n:
            raise ValueError(f"{type(self).__name__} for '{name}': n={n} makes no sense, the whole support is used")
        try:  # a joint support (Independent) may be too large: refused here, by name
            dist.enumerate_support(expand=False)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__} for '{name}': {e}") from None

    def axis(self, n):
        return "enumerate"

    def draw(self, dist, n, rng):
        return dist.enumerate_support(expand=True)

    def log_prob(self, dist, value):
        return dist.log_prob(value)


class Marginalize(Enumerate):
    """Sum the node out of the likelihood (Pyro's enumeration in the model): the node's value
    is its whole support, as for :class:`Enumerate`, but the costs that depend on it (its
    ``g.observe`` terms, log-densities, any cost read as a negative log-likelihood) are
    combined into one cost per datapoint,

        -log sum_z p(z | parents) exp(-sum of those costs at z),

    the negative marginal log-likelihood, in place of E_q[cost]. Marginalized nodes that
    share a cost (a chain, an HMM) are summed out together by variable elimination, newest
    first (:func:`scg.compiler.marginalize`): a chain of T nodes with K values costs about
    T K^2, not K^T. A step whose table exceeds ``Marginalize.limit`` values is refused with
    the count. The node's value is its support on its own axis, size 1 on its batch axes.
    Nothing may be sampled downstream of a marginalized node except another marginalized
    node."""

    marginal = True
    color = "#7a3fb0"
    limit = 2 ** 20

    def draw(self, dist, n, rng):
        # The support along the node's own axis only (size 1 on the batch axes, Pyro's
        # expand=False): a chain's values then carry one support axis each, so summing it
        # out step by step stays linear in its length.
        return dist.enumerate_support(expand=False)
