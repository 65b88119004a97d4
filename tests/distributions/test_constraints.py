"""Constraint objects: check() elementwise with event axes reduced, the texts the error
messages quote, every family's support and arg_constraints, string supports still accepted."""

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg.distributions import constraints as C
from families import FAMILIES, make


@pytest.mark.parametrize("c, inside, outside", [
    (C.real, [-1e300, 0.0, np.inf], [np.nan]),
    (C.positive, [1e-300, 2.0], [0.0, -1.0, np.nan]),
    (C.nonnegative, [0.0, 3.0], [-1e-300, np.nan]),
    (C.greater_than(2.0), [2.5], [2.0, 1.0]),
    (C.greater_than_eq(2.0), [2.0], [1.999]),
    (C.less_than(2.0), [1.0], [2.0]),
    (C.unit_interval, [0.0, 0.5, 1.0], [-0.1, 1.1]),
    (C.interval(-1.0, 2.0), [-1.0, 2.0], [-1.5, 2.5]),
    (C.half_open_interval(-1.0, 2.0), [-1.0, 1.9], [2.0]),
    (C.left_open_interval(0.0, 1.0), [1.0, 0.1], [0.0]),
    (C.open_interval(0.0, 1.0), [0.5], [0.0, 1.0]),
    (C.boolean, [0.0, 1.0], [0.5, 2.0, -1.0]),
    (C.nonnegative_integer, [0.0, 7.0, 1e20], [-1.0, 0.5, np.inf, np.nan]),
    (C.integer_interval(0, 3), [0.0, 3.0], [4.0, 1.5, -1.0]),
])
def test_scalar_constraints_check_elementwise(c, inside, outside):
    assert c.event_dim == 0
    with np.errstate(invalid="ignore"):
        assert c.check(np.array(inside)).all() and not c.check(np.array(outside)).any()
        got = c.check(scg.tensor(np.array(inside + outside)))  # Tensors: a recorded boolean Tensor
    assert isinstance(got, scg.Tensor) and got.data.tolist() == [True] * len(inside) + [False] * len(outside)


def test_event_constraints_reduce_their_event_axes():
    x = np.array([[0.2, 0.8], [0.5, 0.6], [-0.1, 1.1], [0.0, 1.0]])
    assert C.simplex.check(x).tolist() == [True, False, False, True]
    assert C.open_simplex.check(x).tolist() == [True, False, False, False]
    assert C.one_hot.check(np.array([[0, 1], [1, 1], [0.5, 0.5]])).tolist() == [True, False, False]
    assert C.multinomial(3).check(np.array([[1, 2], [3, 0], [1, 1], [-1, 4]])).tolist() == [True, True, False, False]
    ind = C.independent(C.positive, 2)
    assert ind.event_dim == 2 and ind.check(np.ones((4, 2, 3))).shape == (4,)
    assert ind.check(np.array([[[1.0, -1.0]], [[1.0, 1.0]]])).tolist() == [False, True]
    m = np.array([[[2.0, 0.5], [0.5, 1.0]], [[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])
    assert C.positive_definite.check(m).tolist() == [True, False, False]  # indefinite; not symmetric
    assert C.lower_cholesky.check(m).tolist() == [False, False, True]
    assert C.real_vector.check(np.array([[1.0, np.nan], [1.0, 2.0]])).tolist() == [False, True]


# What each family's support said as a string before: messages quote it unchanged.
TEXTS = [
    (lambda: D.Normal(0.0, 1.0), "the real numbers", C.real),
    (lambda: D.Exponential(1.0), "x >= 0", C.nonnegative),
    (lambda: D.Gamma(2.0, 1.0), "x >= 0", C.nonnegative),
    (lambda: D.HalfNormal(1.0), "y >= 0", None),
    (lambda: D.LogNormal(0.0, 1.0), "y > 0", None),
    (lambda: D.Beta(2.0, 2.0), "0 <= x <= 1", C.unit_interval),
    (lambda: D.Uniform(0.0, 2.0), "low <= x < high", None),
    (lambda: D.Dirichlet([1.0, 2.0]), "the simplex (x_k >= 0, sum_k x_k = 1, along the last axis)", C.simplex),
    (lambda: D.Bernoulli(probs=0.3), "{0, 1}", C.boolean),
    (lambda: D.Categorical(logits=[0.0, 1.0, 2.0]), "the integers 0..2", None),
    (lambda: D.Binomial(3, probs=0.3), "the integers 0..total_count", None),
    (lambda: D.Geometric(probs=0.3), "the non-negative integers", C.nonnegative_integer),
    (lambda: D.Poisson(2.0), "the non-negative integers", C.nonnegative_integer),
    (lambda: D.OneHotCategorical(logits=[0.0, 1.0, 2.0]), "one-hot vectors of length 3", None),
    (lambda: D.Multinomial(4, probs=[0.5, 0.5]), "vectors of 2 non-negative integers summing to 4", None),
    (lambda: D.RelaxedBernoulli(0.5, probs=0.3), "the open interval (0, 1)", None),
    (lambda: D.RelaxedOneHotCategorical(0.5, logits=[0.0, 1.0]), "the open simplex", C.open_simplex),
]


@pytest.mark.parametrize("build, text, constraint", TEXTS)
def test_every_support_is_a_constraint_with_the_old_text(build, text, constraint):
    d = build()
    assert isinstance(d.support, C.Constraint) and str(d.support) == text
    assert d.support == text  # code that compared supports with strings still works
    if constraint is not None:
        assert d.support is constraint


def test_dependent_supports_check_per_batch_element():
    u = D.Uniform(np.array([0.0, 1.0]), np.array([1.0, 3.0]))
    assert u.support.check(np.array([0.5, 0.5])).tolist() == [True, False]
    b = D.Binomial(np.array([2.0, 5.0]), probs=0.5)
    assert b.support.check(np.array([3.0, 3.0])).tolist() == [False, True]
    assert D.Categorical(logits=np.zeros(3)).support.check(np.array([0, 2, 3])).tolist() == [True, True, False]
    ind = D.Independent(D.Exponential(np.ones((2, 3))), 1)
    assert ind.support.check(np.array([[1.0, 2.0, 3.0], [1.0, -2.0, 3.0]])).tolist() == [True, False]


def test_messages_quote_the_support_text():
    with pytest.raises(ValueError, match=r"HalfNormal.log_prob: value np.float64\(-1.0\) is outside the support, y >= 0"):
        D.HalfNormal(1.0).log_prob(-1.0)
    with pytest.raises(ValueError, match=r"is outside the support, the integers 0..2"):
        D.Categorical(logits=np.zeros(3)).log_prob(3)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_arg_constraints_hold_for_valid_parameters_and_name_every_parameter(name):
    fam = FAMILIES[name]
    d = make(name, **fam.example)
    assert set(d.arg_constraints) == set(fam.example)  # the scalar families: every parameter, no more
    for key, value in fam.example.items():
        assert d.arg_constraints[key].check(np.asarray(value)).all()


def test_arg_constraints_of_the_other_families():
    assert set(D.Bernoulli(probs=0.3).arg_constraints) == {"probs", "logits"}
    assert D.Categorical(probs=[0.5, 0.5]).arg_constraints["probs"] is C.simplex
    assert D.Dirichlet([1.0, 2.0]).arg_constraints["concentration"].check(np.array([1.0, 2.0]))
    assert set(D.Multinomial(3, probs=[0.5, 0.5]).arg_constraints) == {"total_count", "probs", "logits"}
    mvn = D.MultivariateNormal(np.zeros(2), scale_tril=np.eye(2))
    assert mvn.arg_constraints["scale_tril"].check(np.eye(2)) and mvn.arg_constraints["covariance_matrix"].check(np.eye(2))
    assert D.Geometric(probs=1.0).arg_constraints["probs"].check(1.0)  # (0, 1]
    assert not D.Geometric(probs=1.0).arg_constraints["probs"].check(0.0)
    low = D.Uniform(0.0, 2.0).arg_constraints["low"]
    assert low.check(1.0) and not low.check(2.0)
    assert D.Independent(D.Normal(np.zeros(2), 1.0), 1).arg_constraints == {}


def test_a_family_with_a_plain_string_support_still_works():
    # (families written before constraints, or added alongside with string supports)
    class Positive(D.Exponential):
        support = "x > 0, as a string"

    d = Positive(1.0)
    with pytest.raises(ValueError, match="outside the support, x > 0, as a string"):
        d.log_prob(-1.0)
    with pytest.raises(ValueError, match="contains NaN, which is outside the support, x > 0, as a string"):
        d.log_prob(np.nan)
    assert D.Independent(Positive(np.ones(2)), 1).support == "x > 0, as a string"
    g = scg.Graph()
    with g, pytest.raises(ValueError, match=r"outside the support of Positive \(x > 0, as a string\)"):
        g.observe("x", Positive(1.0), -1.0)
