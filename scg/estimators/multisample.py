"""Multi-sample estimators: VIMCO (Mnih & Rezende 2016) and its leave-one-out bound
baseline, for a node with ``n=K`` draws and a ``g.bound`` over them."""

import numpy as np

from .base import _bounds_of, _logmeanexp, _on_node, _sample_axis
from .score_function import Baseline, ScoreFunction


class VIMCO(ScoreFunction):
    """Score function for a node drawn with ``n=K >= 2`` under a multi-sample bound
    (``g.bound(name, log_w, over=node)``), with per-sample learning signals (Mnih &
    Rezende 2016): sample k's signal is ``-(L - L_{-k})`` times the bound's scale, the
    leave-one-out baseline of :class:`LeaveOneOutBoundBaseline`. Other costs credited to
    the node keep the plain score-function signal. Unbiased; refused without a bound."""

    def __init__(self):
        super().__init__(baseline=LeaveOneOutBoundBaseline())

    def describe(self):
        return "VIMCO"

class LeaveOneOutBoundBaseline(Baseline):
    """VIMCO's baseline (Mnih & Rezende 2016), for a node drawn with ``n=K >= 2`` under
    bounds declared with ``g.bound(..., over=node)``: for sample k and each bound,
    ``b_k = -scale * L_{-k}`` with ``L_{-k} = log mean_j w'_j``, where w' is w with
    ``log w_k`` replaced by the mean of the other K-1 log-weights (independent of sample k).
    The learning signal of sample k is then ``-scale * (L - L_{-k})``. Follows the
    :class:`Baseline` protocol; costs other than the node's bounds get no baseline."""

    def check(self, n, name):
        """Raise ValueError unless the node is drawn with ``n >= 2`` samples."""
        if not n or n < 2:
            raise ValueError(f"VIMCO for '{name}' needs n >= 2 samples (g.sample(..., n=K)), got n={n}")

    def __call__(self, node, signal):
        b = 0.0
        for c in _bounds_of(node, signal, "VIMCO"):
            pos = _sample_axis(c)
            lw = np.moveaxis(c.log_w.data, pos, 0)  # (K, ...)
            k = lw.shape[0]
            eye = np.eye(k, dtype=bool).reshape((k, k) + (1,) * (lw.ndim - 1))
            rows = np.broadcast_to(lw, (k,) + lw.shape)  # rows[k, j] = log w_j
            with np.errstate(invalid="ignore"):
                others = np.where(eye, 0.0, rows).sum(axis=1) / (k - 1)  # mean of log w_j, j != k
            loo = _logmeanexp(np.where(eye, others[:, None], rows), axis=1)  # L_{-k}, (K, ...)
            # Where every other weight is zero, L_{-k} = -inf says nothing: no baseline there
            # (still independent of sample k, so still unbiased).
            loo = np.where(np.isfinite(loo), loo, 0.0)
            b = b + _on_node(np.moveaxis(-c.scale * loo, 0, pos), c.log_w_dims, node)
        return np.asarray(b, dtype=node.log_prob.dtype), None

    def describe(self):
        """A short label for pictures and logs."""
        return "LeaveOneOutBound"
