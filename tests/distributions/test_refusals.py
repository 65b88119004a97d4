"""Parameters and values that used to be accepted silently (issue 11): non-finite
parameters where the family needs finite ones, NaN values under validation, the end of
the Gamma's support, and the sum-to-one tolerance of probability vectors."""

import numpy as np
import pytest

import scg.distributions as D


@pytest.mark.parametrize("build,name", [
    (lambda: D.Normal(0.0, np.inf), "'scale'"),
    (lambda: D.Normal(np.zeros(2, np.float32), np.array([1.0, np.inf], np.float32)), "'scale'"),
    (lambda: D.Gamma(np.inf, 1.0), "'concentration'"),
])
def test_non_finite_parameters_are_refused_by_name(build, name):
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        build()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gamma_log_prob_at_infinity_is_minus_infinity(dtype):
    a = np.array([0.5, 1.0, 3.0], dtype)
    lp = D.Gamma(a, dtype(2.0)).log_prob(np.array(np.inf, dtype))  # was NaN for a != 1
    # x^(a-1) e^(-b x) -> 0 as x -> inf for every a; scipy agrees for a <= 1 (and gives
    # NaN with a warning for a > 1, the same inf - inf).
    assert (lp.data == -np.inf).all()
    strict = D.Gamma(a, dtype(2.0), validate_args=True)  # the end of the support, not outside it
    assert (strict.log_prob(np.inf).data == -np.inf).all()


@pytest.mark.parametrize("build", [lambda v: D.Normal(0.0, 1.0, validate_args=v),
                                   lambda v: D.Gamma(2.0, 1.0, validate_args=v),
                                   lambda v: D.Beta(2.0, 2.0, validate_args=v),
                                   lambda v: D.Uniform(0.0, 1.0, validate_args=v)])
def test_nan_values_are_refused_under_validation(build):
    with pytest.raises(ValueError, match="NaN"):
        build(True).log_prob(np.array([0.5, np.nan]))
    # Without validation NaN gives NaN (or -inf where a support check meets it), as in torch.
    lp = build(False).log_prob(np.nan).data
    assert np.isnan(lp) or lp == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_categorical_probs_are_normalised_at_any_k(dtype):
    # (they were refused unless they summed to one; torch normalises them, and so does scg now)
    k = 10_000
    for total in (1.9, 1.001):
        d = D.Categorical(probs=np.full(k, total / k, dtype))
        np.testing.assert_allclose(d.probs.data.sum(dtype=np.float64), 1.0, rtol=16 * np.sqrt(k) * np.finfo(dtype).eps)
    # Probabilities normalised in the dtype itself are accepted.
    w = np.random.default_rng(0).random(k).astype(dtype)
    d = D.Categorical(probs=w / w.sum())
    assert d.probs.dtype == dtype


def test_dirichlet_and_relaxed_values_off_the_simplex_at_large_k():
    k = 10_000
    x = np.full(k, 1.01 / k, np.float32)  # sums to 1.01: the tolerance used to be 4.8e-3
    assert D.Dirichlet(np.ones(k, np.float32), validate_args=False).log_prob(x).data == -np.inf
    with pytest.raises(ValueError, match="outside the support, the simplex"):
        D.Dirichlet(np.ones(k, np.float32)).log_prob(x)
    y = np.full(k, 1.1 / k, np.float32)  # the relaxation's tolerance used to be 1.0
    relaxed = D.RelaxedOneHotCategorical(np.float32(0.5), logits=np.zeros(k, np.float32), validate_args=False)
    assert relaxed.log_prob(y).data == -np.inf
    with pytest.raises(ValueError, match="outside the support, the open simplex"):
        D.RelaxedOneHotCategorical(np.float32(0.5), logits=np.zeros(k, np.float32)).log_prob(y)
