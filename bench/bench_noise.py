"""Sum-of-Gamma noise: `imle_fn.sum_of_gamma` against reference-style samplers, same run.

Run: ``python -m pytest bench/bench_noise.py --benchmark-only --benchmark-group-by=param``

Setting of the I-MLE paper's shortest-path demo: k = 1.3 * 16 = 20.8, 100 terms, noise of shape
[100, 16, 16] (100 samples of a 16 x 16 map), i.e. 2.56 million Gamma draws per call. Baselines:

* ``reference_loop``: what uclnlp/torch-imle's ``SumOfGammaNoiseDistribution.sample`` does, one
  ``torch.distributions.Gamma`` object and one draw of the full shape per term (written here);
* ``torch_vectorised``: one ``torch._standard_gamma`` draw of shape [100 terms, *shape], weighted sum.

``imle_fn_1_thread`` is the same sampler on one Numba thread: the per-thread cost of a draw, and
the figure that matters when other work occupies the second core.

Each benchmark stores ``ns_per_gamma_draw`` in its ``extra_info`` (see ``--benchmark-json``).
The Numba kernel is compiled (and its cache loaded) before timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch.distributions import Gamma

from imle_fn.core.noise import gumbel, sum_of_gamma

K = 1.3 * 16
NUM_TERMS = 100
SHAPE = (100, 16, 16)
DRAWS = NUM_TERMS * math.prod(SHAPE)


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


def test_gumbel(benchmark: BenchmarkFixture) -> None:
    gen = torch.Generator().manual_seed(0)
    benchmark.group = "gumbel [100,16,16]"
    out = benchmark(gumbel, SHAPE, generator=gen)
    assert out.shape == SHAPE
