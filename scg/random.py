"""The library's one random generator, so that ``scg.manual_seed`` makes runs reproducible.

Library functions that draw random numbers take an optional
``numpy.random.Generator`` and fall back to the library's (the ``generator``
switch of :mod:`scg.context`) through :func:`resolve`.
"""

import numpy as np

from . import context


def manual_seed(seed):
    """Replace the library's generator by ``numpy.random.default_rng(seed)``; returns it."""
    generator = np.random.default_rng(seed)
    context.set_default("generator", generator)
    return generator


def resolve(rng=None):
    """``rng`` if given, else the library's generator (while a traced step is recorded,
    one that records its draws: see :mod:`scg.trace`)."""
    if context.state.tracer is not None:
        return context.state.tracer.generator(context.state.generator if rng is None else rng, rng is None)
    return context.state.generator if rng is None else rng
