"""RELAX (Grathwohl et al. 2018): a learned control variate on the relaxed and the
conditionally relaxed sample of a Bernoulli node."""

import numpy as np

from .. import ops
from ..autodiff import grad
from ..tensor import Tensor
from .antithetic import NoisyValue, _bernoulli, _no_noise, _saturated, _sigmoid
from .base import Estimator


def _control_scale(node):
    """The weight the node's own axes give its costs (1/K per sample axis, N/B per
    subsampled plate), so the control is compared with f on the scale of ``signal.q``."""
    s = 1.0
    for d in node.dims:
        s *= 1.0 / d.size if d.kind == "sample" else d.scale if d.kind == "plate" else 1.0
    return s


class RELAX(Estimator):
    """RELAX (Grathwohl et al. 2018) for Bernoulli nodes (and Independent(Bernoulli)).

    With logits a and uniforms u, v (shaped like the value): z = a + logit(u), b = 1[z > 0]
    (an exact Bernoulli draw), and z~ ~ p(z | b) reparameterised by v: z~ = a + logit(u~),
    u~ = 1 - p + v p if b = 1 else v (1 - p), p = sigma(a). Per coin:

        g_a = [f(b) - c(z~)] d_a log p(b) + d_a c(z) - d_a c(z~)

    where ``control(z, *context)`` (an ``scg.nn.Module``; ``context`` as given to
    ``g.sample``, passed with its gradient stopped) returns one number per element of the
    node's log-prob (shape (n,) + batch, a trailing axis of size 1 allowed). Element i of
    the control may depend only on element i of z (its event) and the context, as a
    network applied row-wise does: then g is unbiased for any control. It is scaled like
    the node's costs (1/n for its sample axis, N/B for subsampled plates).

    The control is trained by the same backward pass to minimise the estimator's variance:
    the surrogate gains ``sum(g_a^2)`` (g computed with ``create_graph=True``), whose
    gradient with respect to the control's parameters is ``d_phi sum(g_a^2)`` (= d_phi of
    the variance, as E[g] does not depend on phi) and with respect to a is zero. Include
    the control's parameters in the optimiser. Needs the drawn noise (no replay)."""

    score = True

    def __init__(self, control):
        if not callable(control):
            raise ValueError(f"RELAX: control must be callable (an scg.nn.Module), got {type(control).__name__}")
        self.control = control

    def check(self, dist, n, name):
        _bernoulli(dist, "RELAX", name)

    @staticmethod
    def _logit_noise(u, dtype):
        return (np.log(u) - np.log1p(-u)).astype(dtype)

    def draw(self, dist, n, rng):
        logits, _ = _bernoulli(dist, "RELAX", "?")
        shape = ((n,) if n else ()) + tuple(dist.batch_shape) + tuple(dist.event_shape)
        u, v = rng.random(shape), rng.random(shape)
        z = logits.data + self._logit_noise(u, logits.dtype)  # same arithmetic as surrogate_term
        value = NoisyValue((z > 0).astype(dist.dtype))
        value.noise = (u, v)
        return value

    def log_prob(self, dist, value):
        return dist.log_prob(value)

    def _control(self, node, z):
        context = node.context if node.context is not None else ()
        context = context if isinstance(context, (tuple, list)) else (context,)
        context = [ops.stop_gradient(c) if isinstance(c, Tensor) else c for c in context]
        c = self.control(z, *context)
        c = c if isinstance(c, Tensor) else Tensor(np.asarray(c, dtype=z.dtype))
        want = node.log_prob.shape
        if c.shape == want + (1,):
            c = c.reshape(want)
        if c.shape != want:
            raise ValueError(
                f"RELAX for '{node.name}': control(z) returned shape {c.shape}, but it must give one "
                f"number per element of the node's log-prob, shape {want} (z has shape {z.shape})"
            )
        return c

    def surrogate_term(self, node, signal):

        noise = getattr(node.value, "noise", None)
        if noise is None:
            raise _no_noise("RELAX", node)
        u, v = noise
        logits, event_nd = _bernoulli(node.dist, "RELAX", node.name)
        saturated = _saturated(node.dist, "RELAX", node.name)
        if saturated.any():  # zero gradient there (see _saturated): compute at logit 0, then drop
            logits = ops.where(saturated, 0, logits)
        # The uniforms are float64; constants from them are cast to the logits' dtype (the logs
        # first: a float32 v may round to 1) so float32 logits keep a float32 estimate.
        log_v, log1m_v = np.log(v).astype(logits.dtype), np.log1p(-v).astype(logits.dtype)
        v = v.astype(logits.dtype)
        b = node.value.data
        # A detached copy of the logits, one per element: g is differentiated with respect
        # to it, so sum(g^2) sends gradient to the control only.
        a = Tensor(np.broadcast_to(logits.data, b.shape).copy(), requires_grad=True)
        z = a + self._logit_noise(u, logits.dtype)
        log_p, log_q = -ops.softplus(-a), -ops.softplus(a)  # log p, log(1 - p)
        p = ops.exp(log_p)
        z1 = a + ops.log(1.0 - p + v * p) - log_p - log1m_v  # u~ = 1 - p + v p
        z0 = a + log_v + log_q - ops.log(1.0 - v * (1.0 - p))  # u~ = v (1 - p)
        z_cond = ops.where(b == 1, z1, z0)
        c_z, c_cond = self._control(node, z), self._control(node, z_cond)
        s = _control_scale(node)
        diff = ops.sum(c_z) - ops.sum(c_cond)
        d = grad(diff, [a], create_graph=True)[0] if diff.requires_grad else Tensor(np.zeros(b.shape, dtype=a.dtype))
        event = (1,) * event_nd
        q = np.broadcast_to(signal.q, node.log_prob.shape).reshape(node.log_prob.shape + event)
        score = b - _sigmoid(a.data)  # d_a log p(b), per coin
        g = (q - s * c_cond.reshape(c_cond.shape + event)) * score + s * d
        if saturated.any():
            g = ops.where(saturated, 0, g)
        return ops.sum(logits * ops.stop_gradient(g)) + ops.sum(g * g), None

    def describe(self):
        return f"RELAX({type(self.control).__name__})"


# ---- baselines --------------------------------------------------------------------
#
# Running state is updated explicitly. Building a surrogate only *records* the statistic
# a stateful baseline will learn from (per node, the latest build wins); ``update()``,
# called after the optimiser step, folds the recorded statistics into the running state.
# So measuring (building surrogates to estimate a variance, say) never moves a baseline
# unless ``update()`` follows. ``ScoreFunction.update()`` forwards to its baseline.
