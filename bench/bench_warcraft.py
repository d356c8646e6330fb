"""Warcraft look-alike: one training step per method, and the reference-solver projection.

1. pytest-benchmark, one training step (batch 70, K = 12: network forward, loss, backward, Adam
   step) per method, against the same I-MLE step whose solver is the pure-Python heapq Dijkstra in
   the style of the reference implementation (`bench.baselines.heapq_dijkstra`; the baseline, in
   the same run)::

       python -m pytest bench/bench_warcraft.py --benchmark-only --benchmark-group-by=group

2. The projection: given a results folder written by ``imle-fn bench warcraft``, time the heapq
   solver per instance on that grid size and print, per method, the measured seconds per epoch
   next to the seconds per epoch projected with the heapq solver doing the same solves::

       python -m bench.bench_warcraft out/wc12
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch

from bench.baselines import heapq_dijkstra
from imle_fn.apps.timing import TimedSolver, Timer
from imle_fn.apps.warcraft.generator import generate_maps
from imle_fn.apps.warcraft.methods import (
    METHODS,
    MethodLoss,
    batch_mean_hamming,
    make_loss,
)
from imle_fn.apps.warcraft.model import CostNet, PathResNet18
from imle_fn.apps.warcraft.report import run_label
from imle_fn.apps.warcraft.train import TrainConfig
from imle_fn.estimators.implicit_mle import imle


class ReferenceSolver:
    """`bench.baselines.heapq_dijkstra` as a maximiser: scores -> path of costs ``max(-scores, 0)``."""

    event_ndim = 2
    backend: Literal["numpy"] = "numpy"

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        costs = np.maximum(-np.asarray(theta, dtype=np.float64), 0.0)
        return np.stack([heapq_dijkstra(c) for c in costs])


def heapq_seconds_per_instance(costs: np.ndarray, repeats: int = 3) -> float:
    """Median seconds per instance of `bench.baselines.heapq_dijkstra` over ``costs: [N, K, K]``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for c in costs:
            heapq_dijkstra(c)
        times.append((time.perf_counter() - start) / len(costs))
    return float(statistics.median(times))


# ----------------------------------------------------------------------------------------------
# 1. One training step per method.

_STEP_METHODS = [*METHODS, "imle-heapq"]


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    maps = generate_maps(70, 12, seed=0)
    images = torch.from_numpy(maps.images).permute(0, 3, 1, 2).float().div(255.0)  # [70, 3, 96, 96]
    images = images.contiguous(memory_format=torch.channels_last)
    return images, torch.from_numpy(maps.paths).float()


@pytest.mark.parametrize("method", _STEP_METHODS)
def test_training_step(
    benchmark: Any, batch: tuple[torch.Tensor, torch.Tensor], method: str
) -> None:
    images, paths = batch
    torch.manual_seed(0)
    net = PathResNet18(12) if method == "baseline" else CostNet(12)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    timer = Timer()
    loss_fn = make_loss(TrainConfig(method=method.split("-")[0]), timer, torch.Generator())
    if method == "imle-heapq":  # the same I-MLE loss with the reference-style solver
        solver = TimedSolver(ReferenceSolver(), timer)
        loss_fn = MethodLoss(
            lambda costs, paths: batch_mean_hamming(imle(-costs, None, solver, lam=50.0), paths)
        )

    def step() -> float:
        loss = loss_fn(net(images), paths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss_fn.after_backward()
        optimizer.step()
        return loss.item()

    benchmark.group = "warcraft training step, K=12, batch 70"
    loss = benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["solver_s_per_step"] = timer.total("solver") / 4
    assert np.isfinite(loss)


# ----------------------------------------------------------------------------------------------
# 2. Projection of the per-epoch time with the reference solver.


def projection(out: Path) -> str:
    """Markdown table: measured vs heapq-projected seconds per epoch, for every run in ``out``."""
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    lines = [
        "| method | K | measured s/epoch (train + eval) | of which solver | solver instances/epoch "
        "| heapq ms/instance | projected s/epoch with heapq | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_instance: dict[int, float] = {}
    for r in records:
        if not r["epochs"]:
            continue
        k = r["grid"]
        if k not in per_instance:
            maps = generate_maps(100, k, seed=12345)
            per_instance[k] = heapq_seconds_per_instance(maps.costs)
        e = r["epochs"]
        total = statistics.median(
            x["time_network"] + x["time_solver"] + x["time_noise"] + x["time_eval"] for x in e
        )
        solver = statistics.median(x["time_solver"] for x in e)
        instances = statistics.median(
            x["solver_instances_train"] + x["solver_instances_eval"] for x in e
        )
        projected = total - solver + instances * per_instance[k]
        label = run_label(r["method"], r["config"].get("augment", False))
        lines.append(
            f"| {label} | {k} | {total:.1f} | {solver:.2f} | {instances:.0f} "
            f"| {1e3 * per_instance[k]:.2f} | {projected:.1f} | {projected / total:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(projection(Path(sys.argv[1])))
