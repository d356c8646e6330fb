"""The reference example's learning step against uclnlp/torch-imle itself, in the same process.

One Adam step of the reference's learning task (16x16 map, weights from U[-0.1, 0.1], Hamming loss
``(z * (1 - y) + (1 - z) * y).mean(0).sum()`` to the gold path, I-MLE target alpha = 1, beta = 10,
Sum-of-Gamma noise k = 1.3 * 16 with 100 terms, input and target temperature 1) with S = 1, 10 and
100 samples:

* ``torch-imle``: the reference library's own ``imle`` wrapper, ``TargetDistribution``,
  ``SumOfGammaNoiseDistribution`` and its pure-Python Dijkstra (``solvers.dijkstra``), wired as in
  its ``annotation-cli.py`` (weights negated, one solver call per instance, no Ray);
* ``imle_fn``: `imle_fn.sum_of_gamma`, `imle_fn.imle` (``lam=10, divide_by_lam=False``: the
  reference's scale) and `imle_fn.GridShortestPath`.

The reference is not part of this repository and none of its code is committed: point
``TORCH_IMLE_PATH`` at a checkout of https://github.com/uclnlp/torch-imle (the folder that holds its
``imle/`` and ``solvers/`` packages); without it the reference side is skipped. Run::

    TORCH_IMLE_PATH=/path/to/torch-imle python -m pytest bench/bench_reference_step.py \\
        --benchmark-only --benchmark-group-by=param:samples
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from imle_fn import GridShortestPath, imle, shortest_path, sum_of_gamma

SIDE = 16
K = 1.3 * SIDE
NUM_TERMS = 100
LAM = 10.0
SAMPLES = [1, 10, 100]
SOLVER = GridShortestPath()


def _gold() -> torch.Tensor:
    """The reference example's gold path: the shortest path on the flat map (all costs 1)."""
    return torch.from_numpy(shortest_path(np.ones((1, SIDE, SIDE)))).double()  # [1, 16, 16]


def _weights() -> torch.nn.Parameter:
    g = torch.Generator().manual_seed(0)
    w = torch.empty(1, SIDE, SIDE, dtype=torch.float64).uniform_(-0.1, 0.1, generator=g)
    return torch.nn.Parameter(w)


def _hamming(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (z * (1.0 - y) + (1.0 - z) * y).mean(dim=0).sum()


def _reference_modules() -> tuple[Any, Any, Any, Any]:
    path = os.environ.get("TORCH_IMLE_PATH")
    if not path:
        pytest.skip("set TORCH_IMLE_PATH to a checkout of uclnlp/torch-imle to time the reference")
    if path not in sys.path:
        sys.path.insert(0, path)
    wrapper = importlib.import_module("imle.wrapper")
    target = importlib.import_module("imle.target")
    noise = importlib.import_module("imle.noise")
    dijkstra = importlib.import_module("solvers.dijkstra")
    return wrapper, target, noise, dijkstra


def _reference_step(samples: int) -> Callable[[], float]:
    wrapper, target, noise, dijkstra = _reference_modules()
    solver = dijkstra.get_solver("8-grid")

    def torch_solver(weights_batch: torch.Tensor) -> torch.Tensor:
        costs = -1.0 * weights_batch.detach().cpu().numpy()
        return torch.tensor(np.asarray([solver(c) for c in costs]), requires_grad=False)

    layer = wrapper.imle(
        torch_solver,
        target_distribution=target.TargetDistribution(alpha=1.0, beta=LAM),
        noise_distribution=noise.SumOfGammaNoiseDistribution(k=K, nb_iterations=NUM_TERMS),
        nb_samples=samples,
        input_noise_temperature=1.0,
        target_noise_temperature=1.0,
    )
    weights, gold = _weights(), _gold()
    optimizer = torch.optim.Adam([weights], lr=0.005)

    def step() -> float:
        optimizer.zero_grad()
        loss = _hamming(layer(weights), gold)  # [S, 16, 16] samples (B = 1)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def _imle_fn_step(samples: int) -> Callable[[], float]:
    weights, gold = _weights(), _gold()
    optimizer = torch.optim.Adam([weights], lr=0.005)
    generator = torch.Generator().manual_seed(1)

    def step() -> float:
        optimizer.zero_grad()
        noise = sum_of_gamma(
            (samples, 1, SIDE, SIDE), k=K, num_terms=NUM_TERMS, generator=generator,
            dtype=torch.float64,
        )  # fmt: skip
        z = imle(weights, noise, SOLVER, lam=LAM, divide_by_lam=False)  # [S, 1, 16, 16]
        loss = _hamming(z, gold)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


@pytest.fixture(autouse=True, scope="module")
def _warm_up() -> None:
    _imle_fn_step(2)()  # load the Numba kernels before timing


@pytest.mark.parametrize("samples", SAMPLES)
def test_imle_fn_step(benchmark: BenchmarkFixture, samples: int) -> None:
    step = _imle_fn_step(samples)
    benchmark.extra_info["samples"] = samples
    loss = benchmark(step)
    assert np.isfinite(loss)


@pytest.mark.filterwarnings("ignore:'saved_variables' is deprecated:DeprecationWarning")
@pytest.mark.parametrize("samples", SAMPLES)
def test_torch_imle_step(benchmark: BenchmarkFixture, samples: int) -> None:
    step = _reference_step(samples)
    benchmark.extra_info["samples"] = samples
    loss = benchmark.pedantic(step, rounds=5 if samples == 100 else 15, warmup_rounds=1)
    assert np.isfinite(loss)
