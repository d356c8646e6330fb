"""`imle_fn.RaySolver` against calling the same solver serially, on a local 2-CPU Ray.

Run (from the repository root)::

    python -m pytest bench/bench_ray.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=median,min,max,rounds

Groups, each timed through `imle_fn.map_solve` on 32 x 2 = 64 instances (batch 32, 2 samples):

* ``expensive``: maximum-weight perfect matching (assignment) on 120 x 120 scores by a pure-Python
  Hungarian algorithm, about 20 ms of CPU per instance (GIL-bound: threads would not help);
  ``serial`` vs Ray ``tasks`` vs a pool of 2 Ray ``actors``.
* ``fast``: the grid Dijkstra `imle_fn.GridShortestPath` on 12 x 12 grids (microseconds per
  instance), same three ways: what Ray costs when the solver is cheap.
* ``overhead``: a solver that does nothing (``np.zeros_like``): the pure cost of one Ray round.
* ``sweep n``: the Hungarian solver on n x n, n = 16, 32, 48: serial vs tasks, to see where Ray
  starts to pay.

Worker start-up (process spawn, imports) happens in an untimed warm-up call. Each benchmark stores
the load average of the machine (``loadavg``) in ``extra_info``: timings on a shared machine are noisy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from scipy.optimize import linear_sum_assignment

from imle_fn.core.contract import as_solver
from imle_fn.core.solving import map_solve
from imle_fn.solvers.grid import GridShortestPath

ray = pytest.importorskip("ray")

from imle_fn.distributed.remote import RaySolver  # noqa: E402

BATCH, SAMPLES = 32, 2
EXPENSIVE_SIDE = 120


def assignment(theta: np.ndarray) -> np.ndarray:
    """``[N, n, n]`` scores -> ``[N, n, n]`` permutation matrices maximising ``<theta, z>``.

    The O(n^3) Hungarian algorithm with row/column potentials, in pure Python: one instance at a
    time, on lists, as a typical hand-written combinatorial solver is.
    """
    z = np.zeros(theta.shape, dtype=theta.dtype)
    for b in range(theta.shape[0]):
        cost = (-theta[b]).tolist()  # minimise -theta
        n, inf = len(cost), float("inf")
        u, v = [0.0] * (n + 1), [0.0] * (n + 1)
        match, way = [0] * (n + 1), [0] * (n + 1)  # match[col] = row (1-based; 0: free)
        for i in range(1, n + 1):
            match[0], j0 = i, 0
            minv, used = [inf] * (n + 1), [False] * (n + 1)
            while True:  # grow a shortest augmenting path from row i
                used[j0] = True
                i0, delta, j1 = match[j0], inf, 0
                row, ui0 = cost[i0 - 1], u[i0]
                for j in range(1, n + 1):
                    if not used[j]:
                        reduced = row[j - 1] - ui0 - v[j]
                        if reduced < minv[j]:
                            minv[j], way[j] = reduced, j0
                        if minv[j] < delta:
                            delta, j1 = minv[j], j
                for j in range(n + 1):
                    if used[j]:
                        u[match[j]] += delta
                        v[j] -= delta
                    else:
                        minv[j] -= delta
                j0 = j1
                if match[j0] == 0:
                    break
            while j0:  # flip the path
                j1 = way[j0]
                match[j0] = match[j1]
                j0 = j1
        for j in range(1, n + 1):
            z[b, match[j] - 1, j - 1] = 1.0
    return z


def no_op(theta: np.ndarray) -> np.ndarray:
    return np.zeros_like(theta)


def scores(side: int) -> torch.Tensor:
    """``[SAMPLES, BATCH, side, side]`` scores (the samples x batch layout of `imle`)."""
    g = torch.Generator().manual_seed(side)
    return torch.randn(SAMPLES, BATCH, side, side, generator=g)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # not importable on workers
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def make(fn: Callable[[np.ndarray], np.ndarray], mode: str) -> Any:
    if mode == "serial":
        return fn if hasattr(fn, "event_ndim") else as_solver(fn, event_ndim=2)
    return RaySolver(fn, event_ndim=2, num_actors=2 if mode == "actors" else None)


def run(benchmark: BenchmarkFixture, group: str, solver: Any, theta: torch.Tensor) -> torch.Tensor:
    benchmark.group = group
    benchmark.extra_info["instances"] = theta.shape[0] * theta.shape[1]
    benchmark.extra_info["loadavg"] = round(os.getloadavg()[0], 1)
    map_solve(theta, solver)  # warm-up: workers started, imports and JIT done
    z = benchmark.pedantic(map_solve, args=(theta, solver), rounds=5, iterations=1)
    if isinstance(solver, RaySolver):
        solver.close()
    return z


@pytest.mark.parametrize("mode", ["serial", "tasks", "actors"])
def test_expensive(benchmark: BenchmarkFixture, mode: str) -> None:
    theta = scores(EXPENSIVE_SIDE)
    z = run(benchmark, "expensive", make(assignment, mode), theta)
    flat = theta[:, :2].reshape(-1, EXPENSIVE_SIDE, EXPENSIVE_SIDE).numpy()
    assert torch.equal(z[:, :2].reshape(flat.shape), torch.from_numpy(assignment(flat)))
    rows, cols = linear_sum_assignment(flat[0], maximize=True)  # the matching is optimal
    assert np.isclose((flat[0] * z[0, 0].numpy()).sum(), flat[0][rows, cols].sum(), rtol=1e-5)


@pytest.mark.parametrize("mode", ["serial", "tasks", "actors"])
def test_fast(benchmark: BenchmarkFixture, mode: str) -> None:
    theta = -torch.rand(SAMPLES, BATCH, 12, 12) - 0.5  # costs in [0.5, 1.5]
    z = run(benchmark, "fast", make(GridShortestPath(), mode), theta)
    assert torch.equal(z, map_solve(theta, GridShortestPath()))


@pytest.mark.parametrize("mode", ["tasks", "actors"])
def test_overhead(benchmark: BenchmarkFixture, mode: str) -> None:
    run(benchmark, "overhead", make(no_op, mode), scores(12))


@pytest.mark.parametrize("mode", ["serial", "tasks"])
@pytest.mark.parametrize("side", [16, 32, 48])
def test_sweep(benchmark: BenchmarkFixture, side: int, mode: str) -> None:
    theta = scores(side)
    z = run(benchmark, f"sweep n={side}", make(assignment, mode), theta)
    assert torch.equal(z.sum(-1), torch.ones(SAMPLES, BATCH, side))  # permutation matrices


def paired(mode: str, rounds: int) -> None:
    """Alternate serial and Ray (``mode``) calls on the ``expensive`` case; print paired ratios.

    On a shared machine the load drifts between pytest-benchmark's blocks of rounds; alternating
    serial and Ray round by round exposes both to the same load, and each round gives a ratio.
    """
    import statistics
    import time

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    theta = scores(EXPENSIVE_SIDE)
    serial, distributed = make(assignment, "serial"), make(assignment, mode)
    assert torch.equal(map_solve(theta, distributed), map_solve(theta, serial))  # warm-up
    times: dict[str, list[float]] = {"serial": [], mode: []}
    for r in range(rounds):
        for name, solver in (("serial", serial), (mode, distributed)):
            start = time.perf_counter()
            map_solve(theta, solver)
            times[name].append(time.perf_counter() - start)
        print(
            f"round {r}: serial {times['serial'][-1]:.3f} s, {mode} {times[mode][-1]:.3f} s,"
            f" load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    ratios = [s / t for s, t in zip(times["serial"], times[mode], strict=True)]
    print(
        f"{mode}: median {statistics.median(times[mode]):.3f} s; serial median"
        f" {statistics.median(times['serial']):.3f} s; median paired speed-up"
        f" {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    ray.shutdown()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=paired.__doc__)
    parser.add_argument("--mode", choices=["tasks", "actors"], default="tasks")
    parser.add_argument("--rounds", type=int, default=9)
    arguments = parser.parse_args()
    paired(arguments.mode, arguments.rounds)
