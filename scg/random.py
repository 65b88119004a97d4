"""The library's one random generator, so that ``scg.manual_seed`` makes runs reproducible.

Library functions that draw random numbers take an optional
``numpy.random.Generator`` and fall back to :func:`default_generator`.
"""

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the library's generator; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator():
    """The library's current generator (replaced by each ``manual_seed``)."""
    return _generator


def get_state():
    """The generator's state, for checkpoints (a JSON-friendly dict)."""
    return _generator.bit_generator.state


def set_state(state):
    """Restore a state returned by :func:`get_state`."""
    _generator.bit_generator.state = state


def resolve(rng=None):
    """``rng`` if given, else the library's generator."""
    return _generator if rng is None else rng
