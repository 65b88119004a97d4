"""KL divergences in closed form, looked up by the pair of families.

``kl_divergence(p, q) = E_p[log p(x) - log q(x)]``, shape ``batch_shape``.

Each closed form lives next to its family (``normal.py`` holds Normal-Normal), declared
with the decorator ``@register_kl(Normal, Normal)``, so a new family is one new file.
This module holds only the table and the lookup; it imports no family, and the families
import it, so there is no import cycle. A pair is found by walking both method
resolution orders, so a pair registered for base classes serves their subclasses.

A pair of two different families lives in the module of the one imported later (which
imports the other, so again no cycle): gamma < exponential < beta < uniform < normal <
laplace < gumbel < continuous_bernoulli, and bernoulli < binomial < poisson. Pairs whose KL
is infinite because p's support is not inside q's are registered too (``infinite``), as
torch does.
"""

import numpy as np

from .. import ops
from .distribution import Distribution, broadcast, p_log_q

_KL = {}  # (type of p, type of q) -> fn(p, q)


def register_kl(type_p, type_q):
    """Decorator: register ``fn(p, q)`` as KL(p || q) for ``p`` of ``type_p`` and ``q`` of
    ``type_q`` (Distribution subclasses). ``TypeError`` for anything else, ``ValueError``
    when the pair already has a function."""
    for role, t in (("type_p", type_p), ("type_q", type_q)):
        if not (isinstance(t, type) and issubclass(t, Distribution)):
            raise TypeError(f"register_kl: {role} must be a Distribution subclass; got {t!r}")

    def decorate(fn):
        old = _KL.get((type_p, type_q))
        if old is not None:
            raise ValueError(
                f"register_kl: the pair {type_p.__name__}-{type_q.__name__} already has a KL "
                f"divergence, {old.__module__}.{old.__qualname__}; a pair is registered once"
            )
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


def infinite(p, q):
    """+inf of the pair's broadcast batch shape: KL(p || q) where p puts mass on a set q gives
    probability zero (a support mismatch, e.g. Normal against Exponential). No gradient."""
    shape = np.broadcast_shapes(p.batch_shape, q.batch_shape)
    return ops.broadcast_to(np.asarray(np.inf, dtype=np.result_type(p.dtype, q.dtype)), shape)


def infinite_where(outside, kl):
    """``kl`` with +inf where the boolean Tensor ``outside`` holds (p's support is not inside
    q's there); compute ``kl`` from parameters made safe at those places, so that neither its
    value nor its gradient is NaN."""
    return ops.where(outside, np.inf, kl)


def weighted_log_ratio(w, log_p, log_q):
    """w * (log_p - log_q), 0 where w == 0 (outcomes p cannot produce), without NaN:
    the terms of a discrete KL, sum_k p(k) (log p(k) - log q(k))."""
    zero = ops.equal(w, 0)  # recorded: w may depend on a sample
    return p_log_q(w, ops.where(zero, 0, log_p) - ops.where(zero, 0, log_q))
