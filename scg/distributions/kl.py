"""KL divergences in closed form, looked up by the pair of families.

``kl_divergence(p, q) = E_p[log p(x) - log q(x)]``, shape ``batch_shape``.
Each closed form is registered here, next to the others, with ``register_kl``.
"""

import numpy as np

from .. import ops
from .distribution import broadcast, p_log_q

_KL = {}


def register_kl(type_p, type_q):
    """Decorator: register ``fn(p, q)`` as the KL divergence of the two families."""

    def decorate(fn):
        _KL[(type_p, type_q)] = fn
        return fn

    return decorate


def kl_divergence(p, q):
    """KL(p || q) for a registered pair of families; ``NotImplementedError`` otherwise.

    A distribution built only from Python numbers takes the other's dtype, so that
    ``kl_divergence(Normal(mu32, sigma32), Normal(0.0, 1.0))`` stays float32."""
    p, q = p._follow(q.dtype), q._follow(p.dtype)
    for tp in type(p).__mro__:
        for tq in type(q).__mro__:
            fn = _KL.get((tp, tq))
            if fn is not None:
                out = fn(p, q)
                return broadcast(out, np.broadcast_shapes(out.shape, p.batch_shape, q.batch_shape))
    pairs = ", ".join(f"{a.__name__}-{b.__name__}" for a, b in _KL)
    raise NotImplementedError(
        f"no closed-form KL divergence for {type(p).__name__} || {type(q).__name__}; "
        f"registered pairs: {pairs}. Estimate it by Monte Carlo as "
        f"mean(p.log_prob(x) - q.log_prob(x)) with x = p.sample(...)."
    )


def _weighted_log_ratio(w, log_p, log_q):
    """w * (log_p - log_q), 0 where w == 0 (outcomes p cannot produce), without NaN."""
    zero = w.data == 0
    return p_log_q(w, ops.where(zero, 0, log_p) - ops.where(zero, 0, log_q))


def _lbeta(a, b):
    return ops.lgamma(a) + ops.lgamma(b) - ops.lgamma(a + b)


def _register_all():
    from .bernoulli import Bernoulli
    from .beta import Beta
    from .categorical import Categorical
    from .dirichlet import Dirichlet
    from .exponential import Exponential
    from .gamma import Gamma
    from .normal import Normal

    @register_kl(Normal, Normal)
    def _normal_normal(p, q):
        ratio = p.scale / q.scale
        diff = (p.loc - q.loc) / q.scale
        return 0.5 * (ratio * ratio + diff * diff - 1) - ops.log(ratio)

    @register_kl(Gamma, Gamma)
    def _gamma_gamma(p, q):
        a1, b1, a2, b2 = p.concentration, p.rate, q.concentration, q.rate
        return (
            (a1 - a2) * ops.digamma(a1)
            - ops.lgamma(a1)
            + ops.lgamma(a2)
            + a2 * (ops.log(b1) - ops.log(b2))
            + a1 * (b2 - b1) / b1
        )

    @register_kl(Exponential, Exponential)
    def _exponential_exponential(p, q):
        ratio = q.rate / p.rate
        return ratio - ops.log(ratio) - 1

    @register_kl(Beta, Beta)
    def _beta_beta(p, q):
        a1, b1, a2, b2 = p.concentration1, p.concentration0, q.concentration1, q.concentration0
        return (
            _lbeta(a2, b2)
            - _lbeta(a1, b1)
            + (a1 - a2) * ops.digamma(a1)
            + (b1 - b2) * ops.digamma(b1)
            + (a2 - a1 + b2 - b1) * ops.digamma(a1 + b1)
        )

    @register_kl(Dirichlet, Dirichlet)
    def _dirichlet_dirichlet(p, q):
        a, b = p.concentration, q.concentration
        a0 = ops.sum(a, axis=-1)
        b0 = ops.sum(b, axis=-1)
        return (
            ops.lgamma(a0)
            - ops.sum(ops.lgamma(a), axis=-1)
            - ops.lgamma(b0)
            + ops.sum(ops.lgamma(b), axis=-1)
            + ops.sum((a - b) * (ops.digamma(a) - ops.expand_dims(ops.digamma(a0), -1)), axis=-1)
        )

    @register_kl(Bernoulli, Bernoulli)
    def _bernoulli_bernoulli(p, q):
        (lp1, lp0), (lq1, lq0) = p._log_p(), q._log_p()
        return _weighted_log_ratio(p.probs, lp1, lq1) + _weighted_log_ratio(1 - p.probs, lp0, lq0)

    @register_kl(Categorical, Categorical)
    def _categorical_categorical(p, q):
        return ops.sum(_weighted_log_ratio(p.probs, p.logits, q.logits), axis=-1)


_register_all()


def _register_continuous():
    from .distribution import sum_rightmost
    from .independent import Independent
    from .laplace import Laplace
    from .log_normal import LogNormal

    @register_kl(LogNormal, LogNormal)
    def _lognormal_lognormal(p, q):
        return kl_divergence(p.base_dist, q.base_dist)  # KL is invariant under the bijection exp

    @register_kl(Laplace, Laplace)
    def _laplace_laplace(p, q):
        # log(b2/b1) + |m1 - m2|/b2 + (b1/b2) exp(-|m1 - m2|/b1) - 1
        ratio = p.scale / q.scale
        gap = ops.abs(p.loc - q.loc)
        return -ops.log(ratio) + gap / q.scale + ratio * ops.exp(-gap / p.scale) - 1

    @register_kl(Independent, Independent)
    def _independent_independent(p, q):
        n = p.reinterpreted_batch_ndims
        if n != q.reinterpreted_batch_ndims:
            raise NotImplementedError(
                f"no closed-form KL divergence between Independent distributions reinterpreting "
                f"{n} and {q.reinterpreted_batch_ndims} batch axes; make the two agree (.to_event(n))"
            )
        return sum_rightmost(kl_divergence(p.base_dist, q.base_dist), n)


_register_continuous()
def _register_discrete_and_multivariate():
    """Poisson, Geometric and the (low-rank) multivariate normal pairs."""
    from .geometric import Geometric
    from .lowrank_multivariate_normal import LowRankMultivariateNormal
    from .multivariate_normal import MultivariateNormal, kl_gaussian
    from .poisson import Poisson

    @register_kl(Poisson, Poisson)
    def _poisson_poisson(p, q):
        # sum_k p(k) log(p(k) / q(k)) = r_p log(r_p / r_q) - (r_p - r_q); 0 log 0 = 0.
        return _weighted_log_ratio(p.rate, ops.log(p.rate), ops.log(q.rate)) - (p.rate - q.rate)

    @register_kl(Geometric, Geometric)
    def _geometric_geometric(p, q):
        # E_p[k] (log(1 - p) - log(1 - q)) + log p - log q, with E_p[k] = 1/p - 1.
        (lp1, lp0), (lq1, lq0) = p._bernoulli._log_p(), q._bernoulli._log_p()
        return _weighted_log_ratio(1 / p.probs - 1, lp0, lq0) + lp1 - lq1

    def _gaussian_gaussian(p, q):
        return kl_gaussian(p.loc, _tril(p), q.loc, _tril(q))

    gaussians = (MultivariateNormal, LowRankMultivariateNormal)
    for type_p in gaussians:
        for type_q in gaussians:
            register_kl(type_p, type_q)(_gaussian_gaussian)


def _tril(d):
    """The Cholesky factor of a (low-rank) multivariate normal's covariance, unbroadcast."""
    return d._scale_tril if hasattr(d, "_scale_tril") else d.scale_tril


_register_discrete_and_multivariate()
