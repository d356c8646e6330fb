"""`imle_fn._kernels.parallel`: thread and fork safety of the Numba grid solver under every Numba threading layer.

Facts behind these tests (numba 0.68): with the GNU OpenMP layer a child forked after the parent
launched parallel work dies on its first parallel call; with the workqueue layer two Python threads
launching parallel kernels at once abort the process. `imle_fn._kernels.parallel` guards both
(serial kernel in such children, a lock for workqueue). Each layer is tested in a fresh process,
because a process picks its layer once.
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
        return shortest_path(torch.from_numpy(_costs(100 + i, batch=16)))


def test_dataloader_workers_after_parent_used_the_solver() -> None:
    expected = [shortest_path(torch.from_numpy(_costs(100 + i, batch=16))) for i in range(6)]
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
