"""Accuracy of the primitives whose forward pass is computed by a faster formula than the
obvious numpy call (scg/ops.py: softplus through _log1p_unit, sigmoid): measured in ulps
against an extended-precision reference, over the whole range where they are used."""

import numpy as np
import pytest
import scipy.special as sp

import scg
from scg import ops


def _grid(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-100, 100, 200_001), rng.standard_normal(20_000) * 5,
                        [0.0, 1e-30, -1e-30, 17.0, -17.0, 40.0, -40.0]])
    return x.astype(dtype)


def _ulps(value, ref, dtype):
    ulp = np.spacing(np.abs(ref).astype(dtype)).astype(np.longdouble)
    tiny = np.finfo(dtype).tiny  # below it ulps mean nothing (subnormals): compare absolutely
    err = np.abs(value.astype(np.longdouble) - ref)
    return np.where(np.abs(ref) < tiny, err / tiny, err / ulp)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_within_4_ulps(dtype):
    x = _grid(dtype)
    ref = np.logaddexp(np.longdouble(0), x.astype(np.longdouble))
    out = scg.softplus(scg.Tensor(x)).data
    assert out.dtype == dtype
    assert np.max(_ulps(out, ref, dtype)) <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_within_4_ulps_and_exact_at_zero(dtype):
    e = np.concatenate([np.linspace(0, 1, 100_001), np.geomspace(1e-30, 1, 10_000)]).astype(dtype)
    ref = np.log1p(e.astype(np.longdouble))
    out = ops._log1p_unit(e.copy())
    assert np.max(_ulps(out, ref, dtype)) <= 4
    first = 100_001  # e = 1e-30: log1p(e) = e exactly in either precision
    assert out[0] == 0 and out[first] == e[first]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_within_3_ulps_of_the_reference_and_saturates_without_warnings(dtype):
    x = _grid(dtype)
    ref = 1 / (1 + np.exp(-x.astype(np.longdouble)))
    with np.errstate(all="raise"):
        out = scg.sigmoid(scg.Tensor(x)).data
    assert out.dtype == dtype
    assert np.max(_ulps(out, ref, dtype)) <= 3
    assert out[0] >= 0 and out[200_000] == 1  # x = -100 and x = 100
    np.testing.assert_allclose(out, sp.expit(x), rtol=4 * np.finfo(dtype).eps, atol=0)
