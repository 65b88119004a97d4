"""scg: stochastic computation graphs on numpy.

The core is a numpy-backed Tensor with reverse-mode automatic differentiation
whose backward pass is itself differentiable. See the README for a tour.

The core is layered, each module importing only those before it: context (the
global switches), random, tensor, autodiff, ops.
"""

from . import context, autodiff, ops  # noqa: I001  (ops attaches Tensor's operators and methods)
from .tensor import Tensor, tensor  # after: ``scg.tensor`` is the function, not the module
from .autodiff import detect_anomaly, enable_grad, grad, is_grad_enabled, no_grad
from .gradcheck import GradcheckError, gradcheck
from .ops import (
    abs,
    astype,
    broadcast_to,
    clip,
    concatenate,
    digamma,
    exp,
    expand_dims,
    expm1,
    lgamma,
    log,
    log1p,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    polygamma,
    relu,
    reshape,
    sigmoid,
    softmax,
    softplus,
    sqrt,
    squeeze,
    stack,
    stop_gradient,
    sum,
    swapaxes,
    tanh,
    transpose,
    where,
    xlogy,
)
from .random import manual_seed

from . import nn, optim  # noqa: E402  (built on the names above)
from . import distributions  # noqa: E402
from .estimators import (  # noqa: E402
    ARM,
    RELAX,
    STL,
    VIMCO,
    DisARM,
    DReG,
    Enumerate,
    GumbelSoftmax,
    LearnedBaseline,
    LeaveOneOutBaseline,
    Marginalize,
    MovingAverageBaseline,
    Reparam,
    ScoreFunction,
)
from .axes import AxisError  # noqa: E402
from .graph import Graph, replay  # noqa: E402
from . import diagnostics  # noqa: E402
from .trace import TraceError, Traced, effect, trace  # noqa: E402

__version__ = "0.1.0"
