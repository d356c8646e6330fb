"""Shared test helpers: small MAP solvers that count their calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch


class CountingArgmax:
    """One-hot argmax over the last dim (a NumPy solver, event_ndim=1) that records its calls."""

    event_ndim = 1
    backend = "numpy"

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        self.calls.append(theta.shape)
        z = np.zeros_like(theta)
        np.put_along_axis(z, theta.argmax(-1)[..., None], 1.0, axis=-1)
        return z


class TorchTopK:
    """Top-k over the last dim in torch (event_ndim=1, backend torch), counting calls."""

    event_ndim = 1
    backend = "torch"

    def __init__(self, k: int) -> None:
        self.k = k
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(theta.shape))
        idx = theta.topk(self.k, dim=-1).indices
        return torch.zeros_like(theta).scatter(-1, idx, 1.0)


@pytest.fixture
def argmax_solver() -> CountingArgmax:
    return CountingArgmax()


@pytest.fixture
def topk_solver() -> TorchTopK:
    return TorchTopK(2)


def gumbel_noise(shape: Any, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(shape, generator=g, dtype=dtype).clamp_min(1e-12)
    return -torch.log(-torch.log(u))
