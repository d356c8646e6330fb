"""Overhead of `imle` (forward + backward) over the two raw solver calls it makes.

Both sides solve the same B*S perturbed 0/1-path problems twice (forward and target); the noise is
drawn once outside the timed region. Run (and print the table of bench/README.md from the JSON)::

    python -m pytest bench/bench_imle.py --benchmark-only --benchmark-group-by=param:case \\
        --benchmark-min-rounds=20 --benchmark-json=imle.json
    python -m bench.bench_imle imle.json

In the same run, for each case, with the Numba kernels on torch's OpenMP team (``pool=torch``, the
default) and on Numba's own threading layer (``pool=numba``, `imle_fn._kernels.parallel.pool_disabled`,
the behaviour before issue 15):

* ``raw``: the two raw solver calls on NumPy arrays, back to back;
* ``raw_after_op``: the same two calls, each right after the element-wise torch op that `imle`
  runs before it (a perturbation of the same size): the thread-pool fight in isolation;
* ``imle``: ``imle(theta, noise, solver).backward(dz)``.

``B1xS1`` (one 12 x 12 grid) measures the fixed per-call overhead (``imle - raw``); run it with
``--benchmark-timer=time.process_time`` too (CPU time: the part of the overhead that a loaded
machine does not inflate).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from imle_fn import GridShortestPath, imle, sum_of_gamma
from imle_fn._kernels import parallel

SOLVER = GridShortestPath()

# (batch B, samples S, grid side): B*S = 1 (fixed per-call overhead), 320 and 1280 instances.
CASES = [(1, 1, 12), (32, 10, 12), (128, 10, 12), (32, 10, 30)]
CASE_IDS = [f"B{b}xS{s}_{h}x{h}" for b, s, h in CASES]
POOLS = ["torch", "numba"]
LAM = 10.0


def _inputs(b: int, s: int, h: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    theta = -torch.rand(b, h, h, generator=g) - 0.5  # scores: costs in [0.5, 1.5]
    noise = sum_of_gamma((s, b, h, h), k=float(h), num_terms=10, generator=g)
    dz = torch.randn(s, b, h, h, generator=g)
    return theta, noise, dz


@contextlib.contextmanager
def _pool(name: str) -> Iterator[None]:
    """``torch``: the default (kernels on torch's OpenMP team); ``numba``: Numba's own layer."""
    if name == "numba":
        with parallel.pool_disabled():
            yield
    else:
        yield


@pytest.fixture(autouse=True, scope="module")
def _warm_up() -> None:
    for pool in POOLS:  # compile / load the Numba kernels and workers of both routes
        with _pool(pool):
            for case in CASES[1:2]:
                theta, noise, dz = _inputs(*case)
                t = theta.requires_grad_()
                imle(t, noise, SOLVER, lam=LAM).backward(dz)


def _info(benchmark: BenchmarkFixture, case: tuple[int, int, int], pool: str, kind: str) -> None:
    benchmark.extra_info.update(
        instances=case[0] * case[1], case=CASE_IDS[CASES.index(case)], pool=pool, kind=kind
    )


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_imle_forward_backward(
    benchmark: BenchmarkFixture, case: tuple[int, int, int], pool: str
) -> None:
    theta, noise, dz = _inputs(*case)
    theta.requires_grad_()

    def step() -> None:
        theta.grad = None
        imle(theta, noise, SOLVER, lam=LAM).backward(dz)

    _info(benchmark, case, pool, "imle")
    with _pool(pool):
        benchmark(step)
    assert theta.grad is not None and theta.grad.shape == theta.shape


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_raw_solver_twice(
    benchmark: BenchmarkFixture, case: tuple[int, int, int], pool: str
) -> None:
    theta, noise, dz = _inputs(*case)
    b, s, h = case
    x = (theta + noise).reshape(b * s, h, h).numpy()
    x_target = (theta - LAM * dz + noise).reshape(b * s, h, h).numpy()

    def step() -> np.ndarray:
        SOLVER(x)
        return SOLVER(x_target)

    _info(benchmark, case, pool, "raw")
    with _pool(pool):
        out = benchmark(step)
    assert out.shape == (b * s, h, h)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("case", CASES[1:], ids=CASE_IDS[1:])
def test_raw_after_torch_op(
    benchmark: BenchmarkFixture, case: tuple[int, int, int], pool: str
) -> None:
    """The two raw calls, each right after one element-wise torch op of imle's size."""
    theta, noise, dz = _inputs(*case)
    b, s, h = case
    target = theta - LAM * dz

    def step() -> np.ndarray:
        x = torch.add(theta, noise)  # [S, B, H, W], as imle's perturbation
        SOLVER(x.reshape(b * s, h, h).numpy())
        x_target = torch.add(target, noise)
        return SOLVER(x_target.reshape(b * s, h, h).numpy())

    _info(benchmark, case, pool, "raw_after_op")
    with _pool(pool):
        out = benchmark(step)
    assert out.shape == (b * s, h, h)


class _Bare(torch.autograd.Function):
    """The floor: the same perturbation, two solver calls, target and reduction as `imle`, in a
    bare `torch.autograd.Function` with no checks, no vmap / compile support and no masking."""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = (theta + noise).detach()
        z = torch.from_numpy(SOLVER(x.reshape(-1, *x.shape[-2:]).numpy())).reshape(x.shape)
        ctx.save_for_backward(theta, noise, z)
        return z

    @staticmethod
    def backward(ctx: Any, dz: torch.Tensor) -> tuple[torch.Tensor, None]:
        theta, noise, z = ctx.saved_tensors
        t = theta - LAM * dz + noise
        zt = torch.from_numpy(SOLVER(t.reshape(-1, *t.shape[-2:]).numpy())).reshape(z.shape)
        return (z - zt).mean(0) / LAM, None


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bare_function(benchmark: BenchmarkFixture, case: tuple[int, int, int]) -> None:
    """The floor of the machinery: a bare autograd.Function doing `imle`'s work (torch pool)."""
    theta, noise, dz = _inputs(*case)
    theta.requires_grad_()

    def step() -> None:
        theta.grad = None
        _Bare.apply(theta, noise).backward(dz)

    _info(benchmark, case, "torch", "bare")
    benchmark(step)
    expected = theta.grad
    theta.grad = None
    imle(theta, noise, SOLVER, lam=LAM).backward(dz)
    got = theta.grad
    assert expected is not None and got is not None and torch.allclose(got, expected)  # same


def table(paths: list[Path]) -> str:
    """bench/README.md's table from pytest-benchmark JSON files (medians; several files: the
    median over them of each median)."""
    medians: dict[tuple[str, str, str], list[float]] = {}
    for path in paths:
        for record in json.loads(path.read_text())["benchmarks"]:
            info = record["extra_info"]
            key = (info["case"], info["pool"], info["kind"])
            medians.setdefault(key, []).append(record["stats"]["median"])
    m = {key: statistics.median(values) for key, values in medians.items()}

    def fmt(seconds: float) -> str:
        return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"

    lines = [
        "| case | pool | raw x2 | raw x2 after torch ops | bare autograd.Function | `imle` fwd + bwd"
        " | `imle` / raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASE_IDS:
        for pool in POOLS:
            raw, after, bare, step = (
                m.get((case, pool, kind)) for kind in ("raw", "raw_after_op", "bare", "imle")
            )
            if raw is None or step is None:
                continue
            ratio = f"+{fmt(step - raw)}" if case == CASE_IDS[0] else f"{step / raw:.2f}x"
            lines.append(
                f"| {case} | {pool} | {fmt(raw)} | {fmt(after) if after else '-'}"
                f" | {fmt(bare) if bare else '-'} | {fmt(step)} | {ratio} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([Path(p) for p in sys.argv[1:]]))
