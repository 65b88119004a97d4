"""gradcheck itself: it passes correct functions and rejects wrong VJPs at the order
where they are wrong."""

import numpy as np
import pytest

import scg
from scg.autodiff import primitive


def test_passes_correct_functions_up_to_third_order():
    x = np.array([0.3, -0.7, 1.1])
    assert scg.gradcheck(lambda t: scg.tanh(t) * t**2, [x], order=3)


def test_rejects_a_wrong_first_order_vjp():
    bad_square = primitive("bad_square", lambda x: x * x, lambda g, ans, x: g * x)  # missing the 2
    with pytest.raises(scg.GradcheckError, match="order 1"):
        scg.gradcheck(bad_square, [np.array([0.5, 1.5])])


def test_rejects_a_vjp_whose_own_derivative_is_wrong():
    # The VJP value is right, but it is computed from a constant copy of x, so the
    # second derivative is lost: order 1 passes, order 2 must fail.
    square = primitive("square", lambda x: x * x, lambda g, ans, x: g * 2 * scg.stop_gradient(x))
    assert scg.gradcheck(square, [np.array([0.5, 1.5])], order=1)
    with pytest.raises(scg.GradcheckError, match="order 2"):
        scg.gradcheck(square, [np.array([0.5, 1.5])], order=2)


def test_rejects_float32_inputs():
    with pytest.raises(ValueError, match="float64"):
        scg.gradcheck(lambda t: t * 2.0, [np.ones(2, dtype=np.float32)])


def test_multiple_inputs_and_outputs():
    assert scg.gradcheck(lambda a, b: [a * b, scg.exp(a) + b], [np.array([0.2, 0.4]), np.array([1.0, -1.0])],
                         order=2)
