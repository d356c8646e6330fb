"""Overhead of `imle` (forward + backward) over the two raw solver calls it makes.

Both sides solve the same B*S perturbed 0/1-path problems twice (forward and target); the noise is
drawn once outside the timed region. Run::

    python -m pytest bench/bench_imle.py --benchmark-only --benchmark-group-by=param:case
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from imle_fn import GridShortestPath, imle, sum_of_gamma

SOLVER = GridShortestPath()

# (batch B, samples S, grid side): B*S = 1 (fixed per-call overhead), 320 and 1280 instances.
CASES = [(1, 1, 12), (32, 10, 12), (128, 10, 12), (32, 10, 30)]


def _inputs(b: int, s: int, h: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    theta = -torch.rand(b, h, h, generator=g) - 0.5  # scores: costs in [0.5, 1.5]
    noise = sum_of_gamma((s, b, h, h), k=float(h), num_terms=10, generator=g)
    dz = torch.randn(s, b, h, h, generator=g)
    return theta, noise, dz


@pytest.fixture(autouse=True, scope="module")
def _warm_up() -> None:
    theta, noise, dz = _inputs(2, 2, 12)  # compile / load the Numba kernels before timing
    t = theta.requires_grad_()
    imle(t, noise, SOLVER, lam=10.0).backward(dz)


@pytest.mark.parametrize("case", CASES, ids=[f"B{b}xS{s}_{h}x{h}" for b, s, h in CASES])
def test_imle_forward_backward(benchmark: BenchmarkFixture, case: tuple[int, int, int]) -> None:
    theta, noise, dz = _inputs(*case)
    theta.requires_grad_()

    def step() -> None:
        theta.grad = None
        imle(theta, noise, SOLVER, lam=10.0).backward(dz)

    benchmark.extra_info["instances"] = case[0] * case[1]
    benchmark(step)
    assert theta.grad is not None and theta.grad.shape == theta.shape


@pytest.mark.parametrize("case", CASES, ids=[f"B{b}xS{s}_{h}x{h}" for b, s, h in CASES])
def test_raw_solver_twice(benchmark: BenchmarkFixture, case: tuple[int, int, int]) -> None:
    theta, noise, dz = _inputs(*case)
    b, s, h = case
    x = (theta + noise).reshape(b * s, h, h).numpy()
    x_target = (theta - 10.0 * dz + noise).reshape(b * s, h, h).numpy()

    def step() -> np.ndarray:
        SOLVER(x)
        return SOLVER(x_target)

    benchmark.extra_info["instances"] = b * s
    out = benchmark(step)
    assert out.shape == (b * s, h, h)
