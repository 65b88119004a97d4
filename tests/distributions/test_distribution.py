"""The helpers every family shares (scg/distributions/distribution.py): clamping a draw
inside its support with the gradient kept, the simplex test, log B."""

import numpy as np
import pytest
from scipy.special import betaln, gammaln

import scg
from scg import ops
from scg.distributions.distribution import (
    clamp_keeping_gradient, keep_inside_unit_interval, log_beta, simplex_tolerance, sums_to_one,
)


def test_clamp_moves_values_and_keeps_the_gradient():
    theta = scg.tensor(2.0, requires_grad=True)
    x = theta * np.array([0.25, 1.0, -0.5])  # values 0.5, 2, -1; dx/dtheta = 0.25, 1, -0.5
    y = clamp_keeping_gradient(x, low=0.0, high=1.0)
    np.testing.assert_array_equal(y.data, [0.5, 1.0, 0.0])
    (g,) = scg.grad(y.sum(), [theta])
    assert g.item() == 0.75  # the unclamped derivative, not 0.25 (which clipping's own gradient gives)
    assert clamp_keeping_gradient(x, low=-5.0) is x  # nothing to move: the same tensor
    z = clamp_keeping_gradient(x, high=np.array([3.0, 1.5, -2.0]))  # array bounds broadcast
    np.testing.assert_array_equal(z.data, [0.5, 1.5, -2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keep_inside_unit_interval_at_both_ends(dtype):
    l = scg.tensor(np.array([-1000.0, 0.0, 200.0], dtype), requires_grad=True)
    s = ops.sigmoid(l)
    y = keep_inside_unit_interval(s)
    one = dtype(1)
    np.testing.assert_array_equal(y.data, np.array([np.finfo(dtype).tiny, 0.5, np.nextafter(one, dtype(0))], dtype))
    assert y.dtype == dtype
    (g,) = scg.grad(y.sum(), [l])
    np.testing.assert_array_equal(g.data, s.data * (1 - s.data))  # the sigmoid's own derivative


def test_log_beta_against_scipy():
    a, b = np.array([0.3, 1.0, 2.5, 40.0]), np.array([0.7, 1.0, 4.0, 0.05])
    np.testing.assert_allclose(log_beta(scg.tensor(np.stack([a, b], -1))).data, betaln(a, b), rtol=1e-13)
    c = np.array([[0.5, 1.5, 3.0], [2.0, 2.0, 0.1]])
    np.testing.assert_allclose(log_beta(scg.tensor(c)).data, gammaln(c).sum(-1) - gammaln(c.sum(-1)), rtol=1e-13)


def test_sums_to_one_uses_the_coarsest_dtype():
    k = 4
    off = np.full(k, 0.25) + 3 * simplex_tolerance(k, np.float64) / k  # sums to 1 + 3 tol(float64)
    assert not sums_to_one(off)  # float64 rows: float64 tolerance
    assert sums_to_one(off, np.float32)  # a float32 parameter: float32 tolerance, 2^29 times larger
    assert sums_to_one(off.astype(np.float32))
    rows = np.array([[0.5, 0.5], [0.5, 0.6]])
    np.testing.assert_array_equal(sums_to_one(rows), [True, False])
    assert sums_to_one(np.array([1, 0]))  # integer rows: float64's tolerance
