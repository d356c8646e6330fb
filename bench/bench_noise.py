"""Sum-of-Gamma noise: `imle_fn.sum_of_gamma` against reference-style samplers, same run.

Run: ``python -m pytest bench/bench_noise.py --benchmark-only --benchmark-group-by=param``

Setting of the I-MLE paper's shortest-path demo: k = 1.3 * 16 = 20.8, 100 terms, noise of shape
[100, 16, 16] (100 samples of a 16 x 16 map), i.e. 2.56 million Gamma draws per call. Baselines:

* ``reference_loop``: what uclnlp/torch-imle's ``SumOfGammaNoiseDistribution.sample`` does, one
  ``torch.distributions.Gamma`` object and one draw of the full shape per term (written here);
* ``torch_vectorised``: one ``torch._standard_gamma`` draw of shape [100 terms, *shape], weighted sum.

``imle_fn_1_thread`` is the same sampler on one Numba thread: the per-thread cost of a draw, and
the figure that matters when other work occupies the second core.

``imle_fn_torch_path`` is `imle_fn.sum_of_gamma`'s device path (the torch ops it runs on a GPU
generator's device: chunked ``torch._standard_gamma``, float32) forced onto the CPU: why the CPU
keeps the Numba kernel. The Gumbel and Gaussian groups compare the host path (what a CPU
generator gets) with the device path on the CPU in the same way, at the I-MLE demo's shape and at
a Warcraft-like shape ([10, 70, 12, 12]: 10 samples of a batch of 70 maps of 12 x 12); so does a
second Sum-of-Gamma group at that shape (k = 12, 10 terms). GPU figures: ``bench/gpu_check.py``.

Each Sum-of-Gamma benchmark stores ``ns_per_gamma_draw`` in its ``extra_info`` (see
``--benchmark-json``). The Numba kernel is compiled (and its cache loaded) before timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch.distributions import Gamma

from imle_fn.core import noise
from imle_fn.core.noise import gaussian, gumbel, sum_of_gamma

K = 1.3 * 16
NUM_TERMS = 100
SHAPE = (100, 16, 16)
DRAWS = NUM_TERMS * math.prod(SHAPE)
WARCRAFT = (10, 70, 12, 12)  # 10 samples of a batch of 70 maps of 12 x 12


def reference_loop(shape: tuple[int, ...], k: float, num_terms: int) -> torch.Tensor:
    """A loop of Gamma(1/k, rate=i/k) draws, as uclnlp/torch-imle samples Sum-of-Gamma noise."""
    total = torch.zeros(shape)
    for i in range(1, num_terms + 1):
        gamma = Gamma(concentration=torch.tensor(1.0 / k), rate=torch.tensor(i / k))
        total = total + gamma.sample(shape)
    return (total - math.log(num_terms)) / k


def torch_vectorised(shape: tuple[int, ...], k: float, num_terms: int) -> torch.Tensor:
    """One [num_terms, *shape] draw of Gamma(1/k, 1), then sum_i G_i / i - log(s) / k."""
    concentration = torch.full((num_terms, *shape), 1.0 / k)
    inv_i = 1.0 / torch.arange(1, num_terms + 1, dtype=torch.float32)
    g = torch._standard_gamma(concentration)  # [s, *shape]
    return torch.tensordot(inv_i, g, dims=1) - math.log(num_terms) / k


def imle_fn_sum_of_gamma(shape: tuple[int, ...], k: float, num_terms: int) -> torch.Tensor:
    return sum_of_gamma(shape, k=k, num_terms=num_terms, generator=torch.Generator().manual_seed(0))


def imle_fn_torch_path(shape: tuple[int, ...], k: float, num_terms: int) -> torch.Tensor:
    """`sum_of_gamma`'s device path (what a CUDA generator runs) forced onto the CPU, float32."""
    g = torch.Generator().manual_seed(0)
    return noise._sum_of_gamma(shape, k, num_terms, g, torch.float32, None, "torch")


def imle_fn_one_thread(shape: tuple[int, ...], k: float, num_terms: int) -> torch.Tensor:
    """The same samples computed on one Numba thread (the per-thread cost of a draw)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return imle_fn_sum_of_gamma(shape, k, num_terms)
    finally:
        numba.set_num_threads(before)


SAMPLERS: dict[str, Callable[[tuple[int, ...], float, int], torch.Tensor]] = {
    "imle_fn": imle_fn_sum_of_gamma,
    "imle_fn_1_thread": imle_fn_one_thread,
    "imle_fn_torch_path": imle_fn_torch_path,
    "reference_loop": reference_loop,
    "torch_vectorised": torch_vectorised,
}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sum_of_gamma(benchmark: BenchmarkFixture, sampler: str) -> None:
    fn = SAMPLERS[sampler]
    torch.manual_seed(0)
    warm = fn(SHAPE, K, NUM_TERMS)  # compiles / loads the Numba cache outside the timing
    assert warm.shape == SHAPE
    benchmark.group = "sum_of_gamma k=20.8 s=100 [100,16,16]"
    out = benchmark(fn, SHAPE, K, NUM_TERMS)
    assert out.shape == SHAPE
    assert benchmark.stats is not None
    median = benchmark.stats.stats.median
    benchmark.extra_info["ns_per_gamma_draw"] = median / DRAWS * 1e9


@pytest.mark.parametrize("sampler", ["imle_fn", "imle_fn_torch_path"])
def test_sum_of_gamma_warcraft(benchmark: BenchmarkFixture, sampler: str) -> None:
    fn = SAMPLERS[sampler]
    assert fn(WARCRAFT, 12.0, 10).shape == WARCRAFT  # warm-up
    benchmark.group = "sum_of_gamma k=12 s=10 [10,70,12,12]"
    out = benchmark(fn, WARCRAFT, 12.0, 10)
    assert out.shape == WARCRAFT
    assert benchmark.stats is not None
    benchmark.extra_info["ns_per_gamma_draw"] = (
        benchmark.stats.stats.median / (10 * math.prod(WARCRAFT)) * 1e9
    )


PATHS: dict[str, Callable[..., torch.Tensor]] = {
    "gumbel_host": lambda shape, g: gumbel(shape, generator=g),
    "gumbel_torch_path": lambda shape, g: noise._gumbel(shape, g, torch.float32, None, "torch"),
    "gaussian_host": lambda shape, g: gaussian(shape, generator=g),
    "gaussian_torch_path": lambda shape, g: noise._gaussian(shape, g, torch.float32, None, "torch"),
}


@pytest.mark.parametrize("shape", [SHAPE, WARCRAFT], ids=["100x16x16", "10x70x12x12"])
@pytest.mark.parametrize("sampler", list(PATHS))
def test_gumbel_gaussian(benchmark: BenchmarkFixture, sampler: str, shape: tuple[int, ...]) -> None:
    fn = PATHS[sampler]
    gen = torch.Generator().manual_seed(0)
    fn(shape, gen)  # warm-up
    benchmark.group = f"{sampler.split('_')[0]} {list(shape)}"
    out = benchmark(fn, shape, gen)
    assert out.shape == shape
