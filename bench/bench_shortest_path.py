"""Grid shortest path: `imle_fn.shortest_path` (Numba) against the baselines in `baselines.py`.

Run (and print the tables of bench/README.md from the JSON)::

    python -m pytest bench/bench_shortest_path.py --benchmark-only --benchmark-group-by=group \\
        --benchmark-json=sp.json
    python -m bench.bench_shortest_path sp.json

Warcraft sizes 12, 18, 24, 30 x batch 1, 64, 1024 of random terrain (the five Warcraft cell costs,
float32, 8-neighbourhood, both ends counted), larger grids 60-300 for the size scaling, and
"noisy" terrain (Warcraft costs + N(0, 1), clamped at zero: the zero-cost cells of I-MLE's
perturbed problems, where no cost floor exists). In the same run:

* ``imle_fn``: `shortest_path` with Numba's threads; ``imle_fn_1thread``: restricted to one thread;
* ``imle_fn_dijkstra_1thread``: the kernel without the A* bound (Dijkstra keys, same queues);
* ``imle_fn_heap_1thread``: the kernel's plain binary heap without A*, the structure of the
  C baseline (per-core efficiency of the heap itself);
* ``before_1thread``: the kernel before issue 15 (`tests.naive.dijkstra_reference`, serial);
* ``heapq``: the reference-style pure-Python Dijkstra (at most 8 instances per call);
* ``heapq_lean``: a leaner pure-Python heapq Dijkstra (early exit; at most 8 instances per call);
* ``scipy``: ``scipy.sparse.csgraph.dijkstra``, graph built once (at most 64 instances per call);
* ``c_1thread``: a tight single-threaded C binary-heap Dijkstra (skipped without a compiler);
* ``torch_twin``: `imle_fn.solvers.grid_torch` on the CPU with one torch thread (batch 64 only).

Each benchmark stores ``instances`` (per call), ``grid``, ``batch``, ``terrain`` and ``solver`` in
``extra_info``; per-instance time = median time of a call / instances. JIT compilation and the
cache load happen before timing. Every Numba variant is checked to return the very same paths as
`shortest_path`. ``test_first_call_in_new_process`` times a fresh interpreter that imports the
solver and solves one batch with the Numba cache warm (the interpreter's own start-up and the
torch import included).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from imle_fn._kernels import dijkstra
from imle_fn.solvers.grid import path_cost, shortest_path
from imle_fn.solvers.grid_torch import shortest_path_torch
from tests.naive import dijkstra_reference

SIZES = [12, 18, 24, 30]
BATCHES = [1, 64, 1024]
SCALING = {60: 64, 100: 16, 200: 4, 300: 2}  # grid side -> batch of the size-scaling groups
NOISY = [12, 30]
WARCRAFT_COSTS = [0.8, 1.2, 5.3, 7.7, 9.2]


def terrain(K: int, B: int, kind: str = "warcraft") -> np.ndarray:
    """``[B, K, K]`` float32 grids of the five Warcraft vertex costs (``kind="noisy"``: plus
    N(0, 1) noise, clamped at zero)."""
    rng = np.random.default_rng(K * 10_000 + B)
    costs = rng.choice(WARCRAFT_COSTS, size=(B, K, K))
    if kind == "noisy":
        costs = np.maximum(costs + rng.normal(size=costs.shape), 0.0)
    return costs.astype(np.float32)


def _label(
    benchmark: BenchmarkFixture, solver: str, K: int, B: int, instances: int, kind: str = "warcraft"
) -> None:
    group = "grid" if kind == "warcraft" else kind
    benchmark.group = f"{group} {K:3d} batch {B:4d}"
    benchmark.extra_info.update(solver=solver, grid=K, batch=B, instances=instances, terrain=kind)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _kernel(heuristic: bool, queue: str) -> Callable[[np.ndarray], np.ndarray]:
    """The kernel called directly with one of its switches (8-neighbourhood, corner to corner)."""

    def run(costs: np.ndarray) -> np.ndarray:
        K0, K1 = costs.shape[1:]
        out = np.zeros(costs.shape, dtype=costs.dtype)
        status = dijkstra.solve(
            costs, (0, 0), (K0 - 1, K1 - 1), eight=True, clamp=False, out=out,
            heuristic=heuristic, queue=queue,
        )  # fmt: skip
        assert not status.any()
        return out

    return run


def _before(costs: np.ndarray) -> np.ndarray:
    return dijkstra_reference(costs)[1]


VARIANTS_1THREAD: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "imle_fn_1thread": shortest_path,
    "imle_fn_dijkstra_1thread": _kernel(heuristic=False, queue="auto"),
    "imle_fn_heap_1thread": _kernel(heuristic=False, queue="heap"),
    "before_1thread": _before,
}


# --------------------------------------------------------------- Warcraft sizes, the baselines
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_imle_fn(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)
    expected = shortest_path(costs)  # warm-up: compile or load the cache
    _label(benchmark, "imle_fn", K, B, B)
    benchmark.extra_info["threads"] = numba.get_num_threads()
    z = benchmark(shortest_path, costs)
    np.testing.assert_array_equal(z, expected)


@pytest.mark.parametrize("variant", list(VARIANTS_1THREAD))
@pytest.mark.parametrize("K", SIZES)
def test_imle_fn_1thread(benchmark: BenchmarkFixture, K: int, variant: str) -> None:
    _single_thread(benchmark, variant, K, 1024, "warcraft")


def _single_thread(benchmark: BenchmarkFixture, variant: str, K: int, B: int, kind: str) -> None:
    costs = terrain(K, B, kind)
    solve = VARIANTS_1THREAD[variant]
    expected = shortest_path(costs)
    _label(benchmark, variant, K, B, B, kind)
    with _one_thread():
        solve(costs)  # warm-up
        z = benchmark(solve, costs)
    np.testing.assert_array_equal(z, expected)  # every variant: the very same paths


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_heapq(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)[:8]
    _label(benchmark, "heapq", K, B, len(costs))
    z = benchmark(heapq_dijkstra_batch, costs)
    np.testing.assert_allclose(path_cost(costs, z), path_cost(costs, shortest_path(costs)))


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_heapq_lean(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)[:8]
    _label(benchmark, "heapq_lean", K, B, len(costs))
    z = benchmark(heapq_dijkstra_lean_batch, costs)
    np.testing.assert_allclose(path_cost(costs, z), path_cost(costs, shortest_path(costs)))


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("K", SIZES)
def test_scipy(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    _scipy(benchmark, K, B)


def _scipy(benchmark: BenchmarkFixture, K: int, B: int) -> None:
    costs = terrain(K, B)[:64]
    solve = ScipyGridDijkstra(K, K)
    _label(benchmark, "scipy", K, B, len(costs))
    z = benchmark(solve, costs)
    np.testing.assert_allclose(path_cost(costs, z), path_cost(costs, shortest_path(costs)))


@pytest.mark.parametrize("K", SIZES)
def test_c_1thread(benchmark: BenchmarkFixture, K: int) -> None:
    _c(benchmark, K, 1024, "warcraft")


def _c(benchmark: BenchmarkFixture, K: int, B: int, kind: str) -> None:
    solve = c_dijkstra_batch()
    if solve is None:
        pytest.skip("no C compiler")
    costs = terrain(K, B, kind)
    _label(benchmark, "c_1thread", K, B, B, kind)
    best = benchmark(solve, costs)
    np.testing.assert_allclose(best, path_cost(costs, shortest_path(costs)), rtol=1e-12)


@pytest.mark.parametrize("K", SIZES)
def test_torch_twin(benchmark: BenchmarkFixture, K: int) -> None:
    costs = torch.from_numpy(terrain(K, 64))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # intra-op threads only add OpenMP contention on a shared 2-core VM
    try:
        shortest_path_torch(costs)
        _label(benchmark, "torch_twin", K, 64, 64)
        z = benchmark(shortest_path_torch, costs)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(z.numpy(), shortest_path(costs.numpy()))


# ------------------------------------------------------------------- size scaling, 60 to 300
@pytest.mark.parametrize("K", list(SCALING))
def test_scaling_imle_fn(benchmark: BenchmarkFixture, K: int) -> None:
    costs = terrain(K, SCALING[K])
    expected = shortest_path(costs)
    _label(benchmark, "imle_fn", K, SCALING[K], SCALING[K])
    benchmark.extra_info["threads"] = numba.get_num_threads()
    np.testing.assert_array_equal(benchmark(shortest_path, costs), expected)


@pytest.mark.parametrize("variant", ["imle_fn_1thread", "before_1thread"])
@pytest.mark.parametrize("K", list(SCALING))
def test_scaling_1thread(benchmark: BenchmarkFixture, K: int, variant: str) -> None:
    _single_thread(benchmark, variant, K, SCALING[K], "warcraft")


@pytest.mark.parametrize("K", list(SCALING))
def test_scaling_scipy(benchmark: BenchmarkFixture, K: int) -> None:
    _scipy(benchmark, K, SCALING[K])


@pytest.mark.parametrize("K", list(SCALING))
def test_scaling_c_1thread(benchmark: BenchmarkFixture, K: int) -> None:
    _c(benchmark, K, SCALING[K], "warcraft")


# ----------------------------------------------- noisy terrain: zero costs, no floor, no A*
@pytest.mark.parametrize("variant", ["imle_fn_1thread", "imle_fn_heap_1thread", "before_1thread"])
@pytest.mark.parametrize("K", NOISY)
def test_noisy_1thread(benchmark: BenchmarkFixture, K: int, variant: str) -> None:
    _single_thread(benchmark, variant, K, 1024, "noisy")


@pytest.mark.parametrize("K", NOISY)
def test_noisy_c_1thread(benchmark: BenchmarkFixture, K: int) -> None:
    _c(benchmark, K, 1024, "noisy")


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


# -------------------------------------------------------------------- the tables of README.md
def per_instance_us(path: Path) -> dict[tuple[str, int, int, str], list[float]]:
    """``(terrain, grid, batch, solver) -> [us per instance]`` from pytest-benchmark JSON files."""
    table: dict[tuple[str, int, int, str], list[float]] = {}
    for record in json.loads(path.read_text())["benchmarks"]:
        info: dict[str, Any] = record["extra_info"]
        if "solver" not in info:
            continue
        key = (info["terrain"], info["grid"], info["batch"], info["solver"])
        table.setdefault(key, []).append(record["stats"]["median"] / info["instances"] * 1e6)
    return table


def tables(paths: list[Path]) -> str:
    """Markdown tables (medians over the given runs of the per-instance medians)."""
    runs: dict[tuple[str, int, int, str], list[float]] = {}
    for path in paths:
        for key, values in per_instance_us(path).items():
            runs.setdefault(key, []).extend(values)
    us = {key: statistics.median(values) for key, values in runs.items()}

    def cell(kind: str, K: int, B: int, solver: str) -> str:
        key = (kind, K, B, solver)
        return f"{us[key]:.1f}" if key in us else ""

    def ratio(kind: str, K: int, B: int, a: str, b: str) -> str:
        ka, kb = (kind, K, B, a), (kind, K, B, b)
        return f"{us[ka] / us[kb]:.2f}" if ka in us and kb in us else ""

    def row(kind: str, K: int, B: int, cells: list[str], ratios: list[tuple[str, str]]) -> str:
        items = [str(K), str(B)] + [cell(kind, K, B, c) for c in cells]
        items += [ratio(kind, K, B, a, b) for a, b in ratios]
        return "| " + " | ".join(items) + " |"

    main = ["imle_fn", "imle_fn_1thread", "imle_fn_dijkstra_1thread", "imle_fn_heap_1thread"]
    main += ["before_1thread", "c_1thread", "scipy"]
    main_ratios = [("scipy", "imle_fn"), ("c_1thread", "imle_fn_1thread")]
    main_ratios += [("c_1thread", "imle_fn_heap_1thread"), ("before_1thread", "imle_fn_1thread")]
    lines = [
        "| grid | batch | imle_fn | imle_fn 1 thread | no A* 1 thread | heap 1 thread | before 1 thread"
        " | C 1 thread | scipy | scipy / imle_fn | C / imle_fn (1 thread) | C / heap (1 thread)"
        " | before / imle_fn (1 thread) |",
        "|---" * 13 + "|",
    ]
    for K, B in [(k, 1024) for k in SIZES] + list(SCALING.items()):
        lines.append(row("warcraft", K, B, main, main_ratios))
    noisy = ["imle_fn_1thread", "imle_fn_heap_1thread", "before_1thread", "c_1thread"]
    noisy_ratios = [("c_1thread", "imle_fn_1thread"), ("c_1thread", "imle_fn_heap_1thread")]
    noisy_ratios += [("before_1thread", "imle_fn_1thread")]
    lines += [
        "",
        "| noisy grid | batch | imle_fn 1 thread | heap 1 thread | before 1 thread | C 1 thread"
        " | C / imle_fn | C / heap | before / imle_fn |",
        "|---" * 9 + "|",
    ]
    for K in NOISY:
        lines.append(row("noisy", K, 1024, noisy, noisy_ratios))
    base = ["imle_fn", "heapq", "heapq_lean", "scipy", "torch_twin"]
    base_ratios = [("heapq", "imle_fn"), ("scipy", "imle_fn")]
    lines += [
        "",
        "| grid | batch | imle_fn | heapq (reference-style) | heapq lean | scipy | torch twin"
        " | heapq / imle_fn | scipy / imle_fn |",
        "|---" * 9 + "|",
    ]
    for K in SIZES:
        for B in BATCHES:
            lines.append(row("warcraft", K, B, base, base_ratios))
    return "\n".join(lines)


if __name__ == "__main__":
    print(tables([Path(p) for p in sys.argv[1:]]))
