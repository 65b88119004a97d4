"""Gradient estimators for stochastic nodes, one file per family, and baselines for the
score function. The protocol every estimator implements is documented in :mod:`.base`."""

from .antithetic import ARM, DisARM, NoisyValue
from .base import Estimator
from .enumerate import Enumerate, Marginalize
from .multisample import VIMCO, LeaveOneOutBoundBaseline
from .relax import RELAX
from .relaxed import GumbelSoftmax
from .reparam import STL, DReG, Reparam
from .score_function import (
    Baseline,
    LearnedBaseline,
    LeaveOneOutBaseline,
    MovingAverageBaseline,
    RunningMean,
    ScoreFunction,
)

__all__ = [
    "ARM", "DisARM", "NoisyValue", "Estimator", "Enumerate", "Marginalize", "VIMCO", "LeaveOneOutBoundBaseline",
    "RELAX", "GumbelSoftmax", "STL", "DReG", "Reparam", "Baseline", "LearnedBaseline", "LeaveOneOutBaseline",
    "MovingAverageBaseline", "RunningMean", "ScoreFunction",
]
