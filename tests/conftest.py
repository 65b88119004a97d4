import os

import numpy as np
import pytest
from hypothesis import settings

import scg

def pytest_configure(config):
    """With the suite split over worker processes (pytest-xdist's ``-n``), one thread each for
    BLAS and scg's elementwise passes: the workers already fill the cores, and a worker's idle
    BLAS threads spinning beside the other's slow both down. Set before the workers start, so
    they (and the notebook kernels they launch) inherit it; an explicit setting wins."""
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")


settings.register_profile("scg", deadline=None, derandomize=True, max_examples=40, print_blob=True)
settings.load_profile("scg")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same library random state."""
    scg.manual_seed(0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
