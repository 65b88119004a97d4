"""Shared by the exact tests: gradients of a brute force by central differences."""

import numpy as np


def central_differences(f, arrays, eps=1e-6):
    """[d f(*arrays) / d arrays[k] for each k], each of arrays[k]'s shape, by central
    differences of step ``eps`` (f takes and returns plain numpy, float64)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    out = []
    for k, a in enumerate(arrays):
        d = np.zeros(a.shape)
        for i in np.ndindex(a.shape):
            hi = [x.copy() for x in arrays]
            lo = [x.copy() for x in arrays]
            hi[k][i] += eps
            lo[k][i] -= eps
            d[i] = (f(*hi) - f(*lo)) / (2 * eps)
        out.append(d)
    return out
