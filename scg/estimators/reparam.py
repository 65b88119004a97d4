"""Pathwise estimators: Reparam, and STL (Roeder et al. 2017) and DReG (Tucker et al. 2019),
which correct the pathwise gradient of an importance-weighted bound."""

import numpy as np

from .. import ops
from ..autodiff import grad
from ..axes import bit_indices
from .base import Estimator, _alternatives, _bounds_of, _on_node, _sample_axis


class Reparam(Estimator):
    """Pathwise gradient: the value is ``dist.rsample()`` and gradients flow through it."""

    color = "#3b7dd8"

    def check(self, dist, n, name):
        if not dist.has_rsample:
            raise ValueError(
                f"Reparam for '{name}': {type(dist).__name__} has no reparameterized sample; "
                f"use {_alternatives(dist)}"
            )

    def draw(self, dist, n, rng):
        return dist.rsample((n,) if n else (), rng=rng)

def _normalised_weights(bound):
    """w~ = softmax of ``log_w`` over the sample axis (ndarray shaped like ``log_w``)."""
    lw = bound.log_w.data
    pos = _sample_axis(bound)
    m = np.max(lw, axis=pos, keepdims=True)
    e = np.exp(lw - m)
    return e / e.sum(axis=pos, keepdims=True)


def _score_term(node, bound, coef):
    """``-sum(coef * log q(stop_gradient(z)))``: ``coef`` (ndarray on ``log_w``'s layout)
    laid on the node; the gradient is ``-sum_k coef_k d_phi log q(z_k; phi)`` at fixed z."""
    unnamed = [i for i, d in enumerate(bound.log_w_dims) if d is None and bound.log_w.shape[i] != 1]
    if unnamed:
        raise ValueError(
            f"{type(node.estimator).__name__} for '{node.name}': the log-weights of bound '{bound.name}' "
            f"(shape {bound.log_w.shape}) have unnamed axes {unnamed}, so which element of '{node.name}' "
            f"each weight belongs to is unknown; sum log_w to one log-weight per sample (and datapoint)"
        )
    log_q = node.dist.log_prob(ops.stop_gradient(node.value))
    c = _on_node(coef, bound.log_w_dims, node).astype(log_q.dtype, copy=False)
    return -ops.sum(log_q * c)


class STL(Reparam):
    """"Sticking the landing" (Roeder et al. 2017) for a reparameterized node under bounds
    declared with ``g.bound(..., over=node)``: the pathwise gradient without the score
    term of q's own parameters, ``-scale * sum_k w~_k d_z log w_k . d_phi z_k``; for the
    ELBO (n=1) it is unbiased and exactly zero when q is the true posterior. Assumes
    ``log_w`` contains ``-q.log_prob(z)`` of this node's distribution (the paper's
    setting). For K > 1 it is biased (Tucker et al. 2019); use :class:`DReG` there.
    Adds ``-scale * sum_k sg(w~_k) log q(sg(z_k); phi)`` to the surrogate."""

    corrects = True

    def surrogate_term(self, node, signal):
        term = None
        for c in _bounds_of(node, signal, "STL"):
            t = _score_term(node, c, c.scale * _normalised_weights(c))
            term = t if term is None else term + t
        return term, None


def _refuse_score_between(node, bound, g):
    """DReG rewrites E[w~_k d log q(z_k)] as a pathwise term, which needs log w_k to depend on
    z_k only through differentiable paths: refuse a bound whose log-weights depend on a
    score-function node downstream of ``node`` (its sampling depends on z_k too)."""
    if g is None:
        return

    for i in bit_indices(bound.info.anc & g.score_mask & ~node.bit):
        s = g.stochastic[i]
        if s.info.anc & node.bit:
            raise ValueError(
                f"DReG for '{node.name}': the log-weights of bound '{bound.name}' depend on the "
                f"score-function node '{s.name}', which is drawn given '{node.name}'; DReG's pathwise "
                f"rewrite cannot see that dependence (the estimate would be biased). Use scg.Reparam() "
                f"or scg.STL() for '{node.name}', or a reparameterized estimator for '{s.name}'"
            )


class DReG(Reparam):
    """Doubly reparameterized gradient (Tucker et al. 2019) for a reparameterized node
    under bounds declared with ``g.bound(..., over=node)``: the encoder gradient of the
    bound is estimated by ``-scale * sum_k w~_k^2 d_z log w_k . d_phi z_k`` (unbiased, its
    SNR does not fall as K grows), while parameters inside ``log_w`` but not upstream of
    z (the decoder's) keep the standard gradient. Assumes ``log_w`` contains
    ``-q.log_prob(z)`` of this node's distribution. To the standard gradient
    ``-scale * sum_k w~_k (path_k - score_k)`` it adds
    ``scale * sum_k (w~_k - w~_k^2) path_k`` (one extra backward from ``log_w`` to z)
    and the STL term ``-scale * sum_k w~_k score_k``."""

    corrects = True

    def surrogate_term(self, node, signal):

        term = None
        for c in _bounds_of(node, signal, "DReG"):
            _refuse_score_between(node, c, signal.graph)
            wt = _normalised_weights(c)
            t = _score_term(node, c, c.scale * wt)
            if node.value.requires_grad and c.log_w.requires_grad:
                coef = (c.scale * (wt - wt * wt)).astype(c.log_w.dtype, copy=False)
                (gz,) = grad(c.log_w, node.value, grad_outputs=coef, retain_graph=True)
                t = t + ops.sum(ops.stop_gradient(gz) * node.value)
            term = t if term is None else term + t
        return term, None


# ---- antithetic and control-variate estimators for Bernoulli nodes ------------------------------
#
# DisARM, ARM and RELAX serve Bernoulli nodes, and Independent(Bernoulli) ones whose
# event (a vector of coins) shares one downstream cost per element of the log-prob, as
# in the papers' multivariate form. Each returns a term ``sum(a * stop_gradient(g))``
# with a the logits, so its gradient with respect to a is the estimate g (one number per
# coin) and flows on to whatever computed the logits.
