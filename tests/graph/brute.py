"""Shared by the exact tests: gradients of a brute force by central differences, and a
stand-in generator for integrating an estimator over its uniform noise exactly."""

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


class FixedUniform:
    """Stands in for a numpy Generator: ``random(shape)`` returns the given array."""

    def __init__(self, u):
        self.u = u

    def random(self, shape):
        assert tuple(shape) == self.u.shape, (shape, self.u.shape)
        return self.u
