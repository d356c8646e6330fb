"""SIMPLE's exact k-subset marginals (`imle_fn.topk_marginals`) and its backward, against baselines.

Groups (``--benchmark-group-by=group``), each timed against its baseline in the same run, one
instance ``theta: [n]`` (float64, N(0, 1) scores) per call:

* ``marginals n=20 k=10``: the O(n k) tree against enumeration of all 184,756 states
  (`tests.naive.naive_topk_marginals`);
* ``marginals n=100 k=10``, ``marginals n=1000 k=10``: the tree against ``torch.func.jacrev`` of
  the textbook sequential DP (`tests.naive.naive_topk_log_partition_loop`: one Python step per
  item, not in log space), which is what a user writes first;
* ``marginals VJP n=100 k=10``, ``marginals VJP n=1000 k=10``: SIMPLE's backward, the closed-form
  ``J_mu^T v`` (`imle_fn.topk_marginals_vjp`), against the VJP of ``jacrev`` of that DP (autograd
  through autograd);
* ``sample n=... k=10 S=10``: 10 exact samples, the tree's top-down sampler (`imle_fn.topk_sample`)
  against sequential sampling with the suffix tables (`tests.naive.naive_topk_sample`: a Python
  loop over the items, vectorised over the samples);
* ``SIMPLE step n=... k=10``: one `imle_fn.simple` forward (10 exact samples) and backward,
  against the cheapest estimator on the same problem: `imle_fn.ste` with `imle_fn.TopK`
  (Perturb-and-MAP with Gumbel noise, a sort forward, identity backward).

Run::

    python -m pytest bench/bench_simple.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch.func import jacrev, vjp

from imle_fn import TopK, gumbel, simple, ste, topk_marginals, topk_marginals_vjp, topk_sample
from tests.naive import naive_topk_log_partition_loop, naive_topk_marginals, naive_topk_sample

K = 10
SIZES = [100, 1000]


def _theta(n: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)


def _naive_marginals(theta: torch.Tensor) -> torch.Tensor:
    return jacrev(lambda t: naive_topk_log_partition_loop(t, K))(theta)


def _naive_marginals_vjp(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return vjp(_naive_marginals, theta)[1](v)[0]


def _run(benchmark: BenchmarkFixture, group: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    benchmark.group = group
    fn()  # warm-up (first-call dispatch and allocation) outside the timed rounds
    return benchmark(fn)


@pytest.mark.parametrize("method", ["tree", "enumeration"])
def test_marginals_small(benchmark: BenchmarkFixture, method: str) -> None:
    theta = _theta(20)
    fn = {"tree": topk_marginals, "enumeration": naive_topk_marginals}[method]
    mu = _run(benchmark, "marginals n=20 k=10", lambda: fn(theta, K))
    torch.testing.assert_close(mu, naive_topk_marginals(theta, K))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["tree", "jacrev of the sequential DP"])
def test_marginals(benchmark: BenchmarkFixture, n: int, method: str) -> None:
    theta = _theta(n)
    if method == "tree":
        mu = _run(benchmark, f"marginals n={n} k={K}", lambda: topk_marginals(theta, K))
    else:
        mu = _run(benchmark, f"marginals n={n} k={K}", lambda: _naive_marginals(theta))
    torch.testing.assert_close(mu, topk_marginals(theta, K))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["closed form", "vjp of jacrev of the sequential DP"])
def test_marginals_vjp(benchmark: BenchmarkFixture, n: int, method: str) -> None:
    theta = _theta(n)
    v = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    group = f"marginals VJP n={n} k={K}"
    if method == "closed form":
        out = _run(benchmark, group, lambda: topk_marginals_vjp(v, theta, K))
    else:
        out = _run(benchmark, group, lambda: _naive_marginals_vjp(v, theta))
    torch.testing.assert_close(out, topk_marginals_vjp(v, theta, K))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["tree", "sequential"])
def test_sample(benchmark: BenchmarkFixture, n: int, method: str) -> None:
    theta = _theta(n)
    noise = torch.rand(10, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fn = {"tree": topk_sample, "sequential": naive_topk_sample}[method]
    z = _run(benchmark, f"sample n={n} k={K} S=10", lambda: fn(theta, noise, K))
    assert torch.equal(z.sum(-1), torch.full((10,), float(K), dtype=torch.float64))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["simple", "ste + TopK"])
def test_estimator_step(benchmark: BenchmarkFixture, n: int, method: str) -> None:
    g = torch.Generator().manual_seed(2)
    theta = _theta(n).requires_grad_()
    dz = torch.randn(10, n, generator=g, dtype=torch.float64)
    if method == "simple":
        noise = torch.rand(10, n, generator=g, dtype=torch.float64)

        def step() -> torch.Tensor:
            theta.grad = None
            simple(theta, noise, K).backward(dz)
            return theta.grad  # type: ignore[return-value]  # set by backward

    else:
        noise = gumbel((10, n), generator=g, dtype=torch.float64)
        solver = TopK(K)

        def step() -> torch.Tensor:
            theta.grad = None
            ste(theta, noise, solver).backward(dz)
            return theta.grad  # type: ignore[return-value]  # set by backward

    grad = _run(benchmark, f"SIMPLE step n={n} k={K} S=10", step)
    assert grad.shape == (n,) and bool(torch.isfinite(grad).all())
