import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seeds():
    """float64 and fixed seeds for every test, set here rather than at import time."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
