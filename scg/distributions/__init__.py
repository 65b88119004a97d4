"""Probability distributions with sampling, reparameterization and exact log-densities.

Names and conventions follow ``torch.distributions``: ``batch_shape``,
``event_shape``, ``sample(sample_shape)``, ``rsample`` where ``has_rsample``,
``log_prob``, ``entropy``, ``mean``, ``variance``, ``enumerate_support``.
Every family lives in its own module, with its closed-form KL divergences (registered
in ``kl.py`` by ``@register_kl``) and its continuous relaxation (``relaxed``).
"""

from .distribution import Distribution
from .kl import kl_divergence, register_kl
from .gamma import Gamma
from .normal import Normal
from .beta import Beta
from .dirichlet import Dirichlet
from .exponential import Exponential
from .uniform import Uniform
from .bernoulli import Bernoulli
from .categorical import Categorical
from .one_hot_categorical import OneHotCategorical
from .relaxed_bernoulli import RelaxedBernoulli
from .relaxed_categorical import RelaxedOneHotCategorical
from .independent import Independent
from .expanded import ExpandedDistribution
from .transforms import AffineTransform, ComposeTransform, ExpTransform, SigmoidTransform, TanhTransform, Transform
from .transforms import SoftplusTransform, PowerTransform, AbsTransform
from .event_transforms import (
    SoftmaxTransform, StickBreakingTransform, LowerCholeskyTransform, ReshapeTransform, CatTransform, StackTransform,
    IndependentTransform,
)
from .transformed_distribution import TransformedDistribution
from .log_normal import LogNormal
from .laplace import Laplace
from .studentt import StudentT
from .cauchy import Cauchy
from .half_normal import HalfNormal
from .poisson import Poisson
from .binomial import Binomial
from .geometric import Geometric
from .multinomial import Multinomial
from .multivariate_normal import MultivariateNormal
from .lowrank_multivariate_normal import LowRankMultivariateNormal
from .mixture_same_family import MixtureSameFamily
from .negative_binomial import NegativeBinomial
from .gumbel import Gumbel
from .half_cauchy import HalfCauchy
from .weibull import Weibull
from .chi2 import Chi2
from .inverse_gamma import InverseGamma
from .kumaraswamy import Kumaraswamy
from .continuous_bernoulli import ContinuousBernoulli
from .von_mises import VonMises
from .lkj_cholesky import LKJCholesky
from .wishart import Wishart
