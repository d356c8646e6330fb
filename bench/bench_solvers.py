"""The exact solvers against the direct call they wrap (the wrapper's overhead), two sizes each.

Run: ``python -m pytest bench/bench_solvers.py --benchmark-only --benchmark-group-by=group``

One call solves a batch of ``B = 64`` instances; divide by 64 for the time per instance. Each group
times, on the same data:

* ``map_solve``: `imle_fn.map_solve` on a float64 tensor (the path every estimator takes: the
  boundary's checks and copies plus the solver);
* ``solver``: the solver object called directly on the NumPy array (NumPy solvers) or tensor;
* ``direct``: what a user would write without imle_fn: a loop of the scipy call
  (``linear_sum_assignment(maximize=True)``; ``minimum_spanning_tree`` on ``max + 1 - scores``),
  writing the 0/1 matrix; for `Knapsack` and `Ranking`, which scipy lacks, the same algorithm in
  plain NumPy (the knapsack table one item at a time, vectorised over capacities; ranks by a
  double stable argsort); for `TopK` with a per-instance ``k``, a stable argsort and a mask.

Every benchmark checks that its result equals the imle_fn solver's (for the spanning tree the
direct call can pick another optimal tree on ties: random scores have none). JIT compilation and
the scipy import happen before timing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_array
from scipy.sparse.csgraph import minimum_spanning_tree

from imle_fn import Assignment, Knapsack, Ranking, SpanningTree, TopK, map_solve

B = 64  # instances per call


# ---------------------------------------------------------------- the direct calls (baselines)
def scipy_assignment(theta: np.ndarray) -> np.ndarray:
    """``[B, n, m]`` -> 0/1 matchings: one ``linear_sum_assignment(maximize=True)`` per instance."""
    z = np.zeros_like(theta)
    for i, t in enumerate(theta):
        rows, cols = linear_sum_assignment(t, maximize=True)
        z[i, rows, cols] = 1.0
    return z


def scipy_spanning_tree(theta: np.ndarray) -> np.ndarray:
    """``[B, n, n]`` symmetric scores -> 0/1 adjacency: ``minimum_spanning_tree`` on the upper
    triangle of ``max + 1 - theta`` (positive costs), one call per instance."""
    z = np.zeros_like(theta)
    for i, t in enumerate(theta):
        cost = np.triu(t.max() + 1.0 - t, 1)
        u, v = minimum_spanning_tree(csr_array(cost)).nonzero()
        z[i, u, v] = z[i, v, u] = 1.0
    return z


def numpy_knapsack(theta: np.ndarray, weights: np.ndarray, capacity: int) -> np.ndarray:
    """``[B, n]`` scores, ``[n]`` integer weights -> 0/1 selections: the same table as
    `imle_fn._kernels.knapsack` in plain NumPy (one vectorised update per item), per instance."""
    Bn, n = theta.shape
    z = np.zeros_like(theta)
    for i in range(Bn):
        value = np.zeros(capacity + 1)
        take = np.zeros((n, capacity + 1), dtype=bool)
        for j in range(n):
            w, t = int(weights[j]), theta[i, j]
            if t <= 0 or w > capacity:
                continue
            candidate = value[: capacity + 1 - w] + t  # value[c - w] + t for c = w..capacity
            better = candidate > value[w:]
            take[j, w:] = better
            value[w:] = np.where(better, candidate, value[w:])
        c = capacity
        for j in range(n - 1, -1, -1):
            if take[j, c]:
                z[i, j] = 1.0
                c -= int(weights[j])
    return z


def numpy_ranks(theta: np.ndarray) -> np.ndarray:
    """``[B, n]`` -> ranks (highest score n - 1; ties: the lower index ranks higher)."""
    n = theta.shape[-1]
    order = np.argsort(-theta, axis=-1, kind="stable")  # descending, ties in index order
    r = np.empty_like(theta)
    np.put_along_axis(r, order, np.arange(n - 1, -1, -1, dtype=theta.dtype)[None], axis=-1)
    return r


def numpy_topk(theta: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``[B, n]`` scores, ``[B]`` sizes -> k-hot rows (ties: the lower index)."""
    order = np.argsort(-theta, axis=-1, kind="stable")
    keep = (np.arange(theta.shape[-1])[None] < k[:, None]).astype(theta.dtype)
    z = np.empty_like(theta)
    np.put_along_axis(z, order, keep, axis=-1)
    return z


# ---------------------------------------------------------------------------- the cases
def _case(name: str, size: int) -> tuple[Any, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """(imle_fn solver, [B, *event] float64 scores, direct baseline) for one size."""
    rng = np.random.default_rng(size)
    if name == "assignment":
        return Assignment(), rng.standard_normal((B, size, size)), scipy_assignment
    if name == "spanning_tree":
        t = rng.standard_normal((B, size, size))
        return SpanningTree(), (t + t.transpose(0, 2, 1)) / 2, scipy_spanning_tree
    if name == "knapsack":
        n, capacity = size, 10 * size
        weights = rng.integers(1, 21, n)
        return (
            Knapsack(weights, capacity),
            rng.standard_normal((B, n)),
            lambda t: numpy_knapsack(t, weights, capacity),
        )
    if name == "ranking":
        return Ranking(), rng.standard_normal((B, size)), numpy_ranks
    k = rng.integers(0, size // 2, B)
    return TopK(k), rng.standard_normal((B, size)), lambda t: numpy_topk(t, k)


SIZES = {
    "assignment": [16, 128],
    "spanning_tree": [16, 64],
    "knapsack": [50, 200],  # n items, capacity 10 n, weights 1..20
    "ranking": [100, 1000],
    "topk": [100, 1000],  # per-instance k
}
CASES = [(name, size) for name, sizes in SIZES.items() for size in sizes]
IDS = [f"{name}-{size}" for name, size in CASES]


def _label(benchmark: BenchmarkFixture, name: str, size: int) -> None:
    benchmark.group = f"{name} {size}"
    benchmark.extra_info["instances"] = B


@pytest.mark.parametrize(("name", "size"), CASES, ids=IDS)
def test_map_solve(benchmark: BenchmarkFixture, name: str, size: int) -> None:
    solver, theta, _ = _case(name, size)
    t = torch.from_numpy(theta)
    expected = map_solve(t, solver)  # warm-up: JIT, scipy import
    _label(benchmark, name, size)
    assert torch.equal(benchmark(map_solve, t, solver), expected)


@pytest.mark.parametrize(("name", "size"), CASES, ids=IDS)
def test_solver(benchmark: BenchmarkFixture, name: str, size: int) -> None:
    solver, theta, _ = _case(name, size)
    data: Any = theta if solver.backend == "numpy" else torch.from_numpy(theta)
    expected = np.asarray(solver(data))
    _label(benchmark, name, size)
    np.testing.assert_array_equal(np.asarray(benchmark(solver, data)), expected)


@pytest.mark.parametrize(("name", "size"), CASES, ids=IDS)
def test_direct(benchmark: BenchmarkFixture, name: str, size: int) -> None:
    solver, theta, direct = _case(name, size)
    expected = map_solve(torch.from_numpy(theta), solver).numpy()
    direct(theta)
    _label(benchmark, name, size)
    np.testing.assert_array_equal(benchmark(direct, theta), expected)
