"""The worker side of `imle_fn.RaySolver`: chunking and solving rows.

This module imports neither Ray, torch nor the rest of ``imle_fn``: `imle_fn.distributed.remote` ships it to the Ray
workers by value, so a worker starts with NumPy alone (``import imle_fn`` pulls in torch and Numba,
seconds per new worker process) and a cluster node needs ``imle_fn`` only if the solver itself does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SolverActor", "chunk_bounds", "solve_rows"]


def chunk_bounds(n: int, chunk_size: int | None, num_workers: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive, non-empty ``(start, stop)`` chunks.

    With ``chunk_size`` every chunk but the last holds that many instances; without it there are
    ``min(n, num_workers)`` chunks whose sizes differ by at most one.
    """
    if chunk_size is None:
        k = max(1, min(n, num_workers))
        edges = [n * i // k for i in range(k + 1)]
    else:
        edges = [*range(0, n, chunk_size), n]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def solve_rows(solver: Any, backend: str, theta: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Solve rows ``start:stop`` of ``theta: [N, *event]`` (read-only, in the object store).

    A ``"numpy"`` solver gets the rows as a zero-copy, read-only, C-contiguous view; a ``"torch"``
    solver gets a CPU tensor (a copy: torch wants writable memory). A solver's own ``backend``
    attribute wins over ``backend``. Returns ``[stop - start, *event]``.
    """
    rows = theta[start:stop]  # [n, *event], a view: no copy
    if getattr(solver, "backend", backend) == "torch":
        import torch

        z = solver(torch.from_numpy(np.array(rows)))
        return z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    return np.asarray(solver(rows))


class SolverActor:
    """Body of a Ray actor that builds (or receives) the solver once and keeps it, state and all."""

    def __init__(self, solver: Any, make_solver: Callable[[], Any] | None, backend: str) -> None:
        self.solver = make_solver() if make_solver is not None else solver
        self.backend = backend

    def solve(self, theta: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Solve rows ``start:stop`` of the shared batch ``theta: [N, *event]``."""
        return solve_rows(self.solver, self.backend, theta, start, stop)
