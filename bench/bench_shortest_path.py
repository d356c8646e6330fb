"""Grid shortest path: `imle_fn.shortest_path` (Numba) against the baselines in `baselines.py`.

Run: ``python -m pytest bench/bench_shortest_path.py --benchmark-only --benchmark-group-by=group``

Warcraft sizes 12, 18, 24, 30 x batch 1, 64, 1024 of random terrain (the five Warcraft cell costs,
float32, 8-neighbourhood, both ends counted). In the same run:

* ``heapq``: the reference-style pure-Python Dijkstra (at most 8 instances per call);
* ``heapq_lean``: a leaner pure-Python heapq Dijkstra (early exit; at most 8 instances per call);
* ``scipy``: ``scipy.sparse.csgraph.dijkstra``, graph built once (at most 64 instances per call);
* ``c_1thread``: a tight single-threaded C Dijkstra (batch 1024 only; skipped without a compiler);
* ``imle_fn_1thread``: the Numba solver restricted to one thread (batch 1024 only);
* ``torch_twin``: `imle_fn.solvers.grid_torch` on the CPU with one torch
  thread (batch 64 only; it is meant for GPUs, where it was not measured here).

Each benchmark stores ``instances`` (per call) in ``extra_info``: divide its time by it for the
per-instance time. JIT compilation and the cache load happen before timing.
``test_first_call_in_new_process`` times a fresh interpreter that imports the solver and solves one
batch with the Numba cache warm (the interpreter's own start-up and the torch import included).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from bench.baselines import (
    ScipyGridDijkstra,
    c_dijkstra_batch,
    heapq_dijkstra_batch,
    heapq_dijkstra_lean_batch,
)
from imle_fn.solvers.grid import path_cost, shortest_path
from imle_fn.solvers.grid_torch import shortest_path_torch

SIZES = [12, 18, 24, 30]
BATCHES = [1, 64, 1024]
WARCRAFT_COSTS = [0.8, 1.2, 5.3, 7.7, 9.2]


def terrain(K: int, B: int) -> np.ndarray:
    """``[B, K, K]`` float32 grids of the five Warcraft vertex costs."""
    return (
        np.random.default_rng(K * 10_000 + B)
        .choice(WARCRAFT_COSTS, size=(B, K, K))
        .astype(np.float32)
    )


def _label(benchmark: BenchmarkFixture, K: int, B: int, instances: int) -> None:
    benchmark.group = f"grid {K:2d} batch {B:4d}"
    benchmark.extra_info["instances"] = instances
    benchmark.extra_info["grid"] = K
    benchmark.extra_info["batch"] = B


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_imle_fn(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)
    expected = shortest_path(costs)  # warm-up: compile or load the cache
    _label(benchmark, K, B, B)
    benchmark.extra_info["threads"] = numba.get_num_threads()
    z = benchmark(shortest_path, costs)
    np.testing.assert_array_equal(z, expected)


@pytest.mark.parametrize("K", SIZES)
def test_imle_fn_1thread(benchmark: BenchmarkFixture, K: int) -> None:
    costs = terrain(K, 1024)
    shortest_path(costs)
    _label(benchmark, K, 1024, 1024)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        benchmark(shortest_path, costs)
    finally:
        numba.set_num_threads(previous)


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_heapq(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)[:8]
    _label(benchmark, K, B, len(costs))
    z = benchmark(heapq_dijkstra_batch, costs)
    np.testing.assert_allclose(path_cost(costs, z), path_cost(costs, shortest_path(costs)))


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_heapq_lean(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)[:8]
    _label(benchmark, K, B, len(costs))
    z = benchmark(heapq_dijkstra_lean_batch, costs)
    np.testing.assert_allclose(path_cost(costs, z), path_cost(costs, shortest_path(costs)))


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_scipy(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)[:64]
    solve = ScipyGridDijkstra(K, K)
    _label(benchmark, K, B, len(costs))
    z = benchmark(solve, costs)
    np.testing.assert_allclose(path_cost(costs, z), path_cost(costs, shortest_path(costs)))


@pytest.mark.parametrize("K", SIZES)
def test_c_1thread(benchmark: BenchmarkFixture, K: int) -> None:
    solve = c_dijkstra_batch()
    if solve is None:
        pytest.skip("no C compiler")
    costs = terrain(K, 1024)
    _label(benchmark, K, 1024, 1024)
    best = benchmark(solve, costs)
    np.testing.assert_allclose(best, path_cost(costs, shortest_path(costs)), rtol=1e-12)


@pytest.mark.parametrize("K", SIZES)
def test_torch_twin(benchmark: BenchmarkFixture, K: int) -> None:
    costs = torch.from_numpy(terrain(K, 64))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # intra-op threads only add OpenMP contention on a shared 2-core VM
    try:
        shortest_path_torch(costs)
        _label(benchmark, K, 64, 64)
        z = benchmark(shortest_path_torch, costs)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_allclose(
        path_cost(costs.double(), z.double()).numpy(),
        path_cost(costs.numpy(), shortest_path(costs.numpy())),
        rtol=1e-6,
    )


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from imle_fn.solvers.grid import shortest_path
t1 = time.perf_counter()
shortest_path(np.ones((64, 12, 12), dtype=np.float32))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def test_first_call_in_new_process(benchmark: BenchmarkFixture) -> None:
    shortest_path(np.ones((64, 12, 12), dtype=np.float32))  # make sure the cache is written
    root = Path(__file__).resolve().parents[1]
    seen: list[tuple[float, float]] = []

    def run() -> None:
        out = subprocess.run(
            [sys.executable, "-c", _FIRST_CALL],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        import_s, first_call_s = map(float, out.stdout.split())
        seen.append((import_s, first_call_s))

    benchmark.group = "first call in a new process"
    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["import_s"] = [s[0] for s in seen]
    benchmark.extra_info["first_call_s"] = [s[1] for s in seen]
