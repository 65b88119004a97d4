import numpy as np
import pytest
from hypothesis import settings

import scg

settings.register_profile("scg", deadline=None, derandomize=True, max_examples=40, print_blob=True)
settings.load_profile("scg")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same library random state."""
    scg.manual_seed(0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
