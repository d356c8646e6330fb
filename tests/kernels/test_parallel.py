"""`imle_fn._kernels.parallel`: the kernels run on torch's OpenMP team (no second thread pool),
with the same results for any thread count, and stay thread and fork safe under every Numba
threading layer.

Facts behind these tests (numba 0.68, torch 2.13): with the GNU OpenMP layer a child forked after
the parent launched parallel work dies on its first parallel call; with the workqueue layer two
Python threads launching parallel kernels at once abort the process; a GNU OpenMP team cannot be
used in a forked child after the parent started it (torch's own ops hang there too).
`imle_fn._kernels.parallel` guards all three (no host pool in forked children, serial kernel
there under the omp layer, a lock for workqueue). Each layer is tested in a fresh process, because
a process picks its layer once.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from imle_fn._kernels import knapsack, parallel, sampling
from imle_fn.solvers.grid import shortest_path

ROOT = Path(__file__).resolve().parents[2]


def _costs(seed: int, batch: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], size=(batch, 12, 12))


def test_concurrent_threads_agree_with_serial_results() -> None:
    inputs = [_costs(seed) for seed in range(4)]
    expected = [shortest_path(c) for c in inputs]
    barrier = threading.Barrier(4)
    failures: list[str] = []

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(15):
            if not np.array_equal(shortest_path(inputs[i]), expected[i]):
                failures.append(f"thread {i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


def _solve_in_child(costs: np.ndarray, queue: multiprocessing.Queue) -> None:
    queue.put(shortest_path(costs))


def test_forked_child_after_parent_used_the_solver() -> None:
    costs = _costs(10)
    expected = shortest_path(costs)  # the parent launches the parallel kernel first
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_solve_in_child, args=(costs, queue))
    child.start()
    result = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(result, expected)


class _Grids(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> torch.Tensor:
        return shortest_path(torch.from_numpy(_costs(100 + i, batch=64)))


def test_dataloader_workers_after_parent_used_the_solver() -> None:
    expected = [shortest_path(torch.from_numpy(_costs(100 + i, batch=64))) for i in range(6)]
    loader = torch.utils.data.DataLoader(
        _Grids(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=120
    )
    got = list(loader)
    assert len(got) == 6
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


# A fresh interpreter per layer; the kernels come from the on-disk Numba cache.
_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, types
    import numpy as np, numba
    # Import the torch-free kernel module without the package __init__ (which imports torch).
    package = types.ModuleType("imle_fn")
    package.__path__ = [sys.argv[1]]
    sys.modules["imle_fn"] = package
    from imle_fn._kernels import dijkstra as mod
    rng = np.random.default_rng(0)
    costs = rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], size=(64, 12, 12))

    def run():
        out = np.zeros_like(costs)
        assert (mod.solve(costs, (0, 0), (11, 11), eight=True, clamp=False, out=out) == 0).all()
        return out

    ref = run()
    print("layer", numba.threading_layer(), flush=True)
    bad = []
    barrier = threading.Barrier(4)

    def work():
        barrier.wait()
        for _ in range(25):
            if not np.array_equal(run(), ref):
                bad.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not bad
    pid = os.fork()
    if pid == 0:
        os._exit(0 if np.array_equal(run(), ref) else 3)
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"forked child: wait status {status}"
    print("OK", flush=True)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and layers tested on Linux")
@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_each_threading_layer_survives_threads_and_fork(layer: str) -> None:
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(ROOT / "imle_fn")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if "No threading layer could be loaded" in proc.stderr:
        pytest.skip(f"the {layer} threading layer is not available here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"layer {layer}" in proc.stdout
    assert "OK" in proc.stdout


needs_pool = pytest.mark.skipif(
    parallel.pool_library() is None, reason="torch's parallel backend is not OpenMP here"
)


def _serial_paths(costs: np.ndarray) -> np.ndarray:
    """The grid kernel's paths, serially on the calling thread."""
    from imle_fn._kernels import dijkstra

    out = np.zeros_like(costs)
    status = np.zeros(costs.shape[0], dtype=np.int8)
    h, w = costs.shape[1:]
    dijkstra._solve_range(costs, 0, costs.shape[0], 0, 0, h - 1, w - 1, True, False, True, False, out, status)  # fmt: skip
    assert (status == 0).all()
    return out


def _knapsack_inputs(n_instances: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    theta = rng.normal(size=(n_instances, 12))
    weights = rng.integers(1, 9, size=(3, 12)).astype(np.int64)
    capacity = rng.integers(5, 30, size=n_instances).astype(np.int64)
    return theta, weights, capacity


def _noise_inputs(num_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seeds = np.random.default_rng(6).integers(0, 2**63, size=num_blocks).astype(np.uint64)
    return np.array([3.0]), seeds, 1.0 / np.arange(1, 11, dtype=np.float64)


@needs_pool
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_pool_results_are_the_serial_results_for_any_thread_count(threads: int) -> None:
    """Grid paths, knapsack selections and noise samples on torch's team, with 1, 2 and 3 torch
    threads, equal the serial kernels' bit for bit (and Numba's own parallel kernels')."""
    costs = _costs(21, batch=97).astype(np.float32)
    theta, weights, capacity = _knapsack_inputs(50)
    k, seeds, inv_i = _noise_inputs(40)
    expected_paths = _serial_paths(costs)
    expected_selection = np.zeros((50, 12))
    knapsack._solve_range(theta, weights, capacity, 0, 50, expected_selection)
    expected_noise = np.empty(40 * sampling.BLOCK)
    sampling.sum_of_gamma_blocks(k, seeds, inv_i, expected_noise, 0, 40)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert parallel.pool_threads(97) == min(threads, parallel._numba_threads())
        np.testing.assert_array_equal(shortest_path(costs), expected_paths)
        np.testing.assert_array_equal(knapsack.solve(theta, weights, capacity), expected_selection)
        noise = np.empty_like(expected_noise)
        sampling.run_sum_of_gamma(k, seeds, inv_i, noise)
        np.testing.assert_array_equal(noise, expected_noise)
    finally:
        torch.set_num_threads(before)
    with parallel.pool_disabled():  # Numba's threading layer: the same results
        assert parallel.pool_threads(97) == 0
        np.testing.assert_array_equal(shortest_path(costs), expected_paths)


_ONE_POOL_SCRIPT = textwrap.dedent(
    """
    import os
    import numpy as np, torch
    import imle_fn
    from imle_fn._kernels import knapsack, parallel, sampling
    from imle_fn.solvers.grid import shortest_path

    def threads():
        return sorted(os.listdir("/proc/self/task"))

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    costs = rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], size=(256, 12, 12))

    def kernels():
        shortest_path(costs)
        knapsack.solve(rng.normal(size=(64, 10)), np.ones((1, 10), np.int64), np.full(64, 4))
        out = np.empty(64 * 64)
        sampling.run_sum_of_gamma(np.array([2.0]), np.arange(64, dtype=np.uint64), np.ones(5), out)

    kernels()  # loads the compiled workers (Numba's cache loader may start a thread of its own)
    x = torch.rand(1_000_000)
    x.sin()  # torch's OpenMP team is up
    before = threads()
    for _ in range(3):
        kernels()
        x.sin()
    assert parallel.running_layer() is None, parallel.running_layer()  # Numba's pool never launched
    assert threads() == before, (before, threads())  # no thread was started: one pool
    print("OK", flush=True)
    """
)


@needs_pool
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads counted in /proc")
def test_kernels_run_on_torchs_team_and_start_no_pool_of_their_own() -> None:
    """After torch's team is up, the grid, knapsack and noise kernels run in parallel without
    launching Numba's threading layer or starting any thread: they use torch's team."""
    proc = subprocess.run(
        [sys.executable, "-c", _ONE_POOL_SCRIPT],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK" in proc.stdout


@needs_pool
def test_pool_reports_a_chunk_that_did_not_finish() -> None:
    """`run_on_pool` raises if the worker left chunks undone (a failed worker never passes
    silently with zeros in its part of the output)."""
    from numba import carray, cfunc, types

    def lazy(data):  # type: ignore[no-untyped-def]
        block = carray(data, (parallel.BLOCK_HEADER,), np.int64)
        parallel.fetch_add(block, parallel.BLOCK_NEXT)  # claims a chunk, never finishes it

    worker = cfunc(types.void(types.voidptr))(lazy)
    with pytest.raises(RuntimeError, match="chunks finished"):
        parallel.run_on_pool(int(worker.address or 0), parallel.new_block(4), 2)


@needs_pool
def test_pool_claims_every_chunk_once() -> None:
    """The atomic chunk counter: 2 and 3 threads claiming 20,000 chunks count each exactly once."""
    from numba import carray, cfunc, types

    def count(data):  # type: ignore[no-untyped-def]
        block = carray(data, (parallel.BLOCK_HEADER + 20_000,), np.int64)
        n = block[parallel.BLOCK_NUM_CHUNKS]
        while True:
            k = parallel.fetch_add(block, parallel.BLOCK_NEXT)
            if k >= n:
                break
            block[parallel.BLOCK_HEADER + k] += 1
            parallel.fetch_add(block, parallel.BLOCK_DONE)

    worker = cfunc(types.void(types.voidptr))(count)
    for threads in (2, 3):
        block = parallel.new_block(20_000, *([0] * 20_000))
        parallel.run_on_pool(int(worker.address or 0), block, threads)
        assert (block[parallel.BLOCK_HEADER :] == 1).all()
