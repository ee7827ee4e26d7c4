"""Fixtures shared by the unit tests."""

from __future__ import annotations

import matplotlib
import pytest
import torch

# Unit tests draw off screen. (Not set in the root conftest.py: the notebook kernels that nbval
# starts inherit its environment and must keep the inline backend to produce their figures.)
matplotlib.use("Agg")

_DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


@pytest.fixture(params=_DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Run a test on the CPU and, where one is present, on a CUDA device (skipped otherwise)."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state."""
    torch.manual_seed(0)
