"""Shared test helpers: small MAP solvers that count their calls, seeded noise, grid-path checks.

Slow reference implementations (oracles) live in `tests.naive`; pytest fixtures in conftest.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from imle_fn.solvers.grid import GridShortestPath
from tests.naive import Cell, neighbours

__all__ = [
    "HYP",
    "VALUES",
    "CountingArgmax",
    "TorchTopK",
    "assert_one_path",
    "gen",
    "grids",
    "gumbel_noise",
    "leaf_grad",
    "torch_dijkstra",
]


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


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def gumbel_noise(shape: Any, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard Gumbel noise of ``shape`` by inverse CDF from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(shape, generator=g, dtype=dtype).clamp_min(1e-12)
    return -torch.log(-torch.log(u))


def leaf_grad(t: torch.Tensor) -> torch.Tensor:
    """``t.grad`` after a backward pass, typed as a tensor (fails if nothing was accumulated)."""
    assert t.grad is not None, "no gradient was accumulated"
    return t.grad


_GRID = GridShortestPath()


def torch_dijkstra(weights: torch.Tensor) -> torch.Tensor:
    """A user's solver in the reference's style: torch in, NumPy inside, torch out."""
    return torch.from_numpy(_GRID(weights.detach().cpu().numpy())).to(weights.dtype)


# ---------------------------------------------------------------------- grid shortest paths
VALUES = [0.0, 0.5, 1.0, 1.0, 2.0, 3.5, math.inf]  # zeros, ties and walls on purpose
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_one_path(
    z: np.ndarray, neighbourhood: int, source: Cell = (0, 0), target: Cell = (-1, -1)
) -> None:
    """``z`` is 0/1 and its ones are exactly the cells of one simple s-t path."""
    H, W = z.shape
    assert set(np.unique(z)) <= {0, 1}
    s = (source[0] % H, source[1] % W)
    t = (target[0] % H, target[1] % W)
    cells = {(int(r), int(c)) for r, c in zip(*np.nonzero(z), strict=True)}
    assert s in cells and t in cells
    # A Hamiltonian s-t path through exactly these cells (DFS; the sets are path-shaped).
    budget = [100_000]

    def walk(u: tuple[int, int], seen: set[tuple[int, int]]) -> bool:
        budget[0] -= 1
        assert budget[0] > 0, "search budget exhausted"
        if len(seen) == len(cells):
            return u == t
        for v in neighbours(*u, H, W, neighbourhood):
            if v in cells and v not in seen and (v != t or len(seen) + 1 == len(cells)):
                seen.add(v)
                if walk(v, seen):
                    return True
                seen.remove(v)
        return False

    assert walk(s, {s}), f"the indicator is not one simple path:\n{z}"


def grids(max_side: int, max_batch: int = 3) -> st.SearchStrategy[np.ndarray]:
    """Batches [1..max_batch, 1..max_side, 1..max_side] of `VALUES` costs (hypothesis strategy)."""
    return st.tuples(
        st.integers(1, max_batch), st.integers(1, max_side), st.integers(1, max_side)
    ).flatmap(
        lambda shape: st.lists(
            st.sampled_from(VALUES), min_size=math.prod(shape), max_size=math.prod(shape)
        ).map(lambda xs: np.array(xs, dtype=np.float64).reshape(shape))
    )
