"""Tests of `imle_fn.core.noise`: distribution, reproducibility, per-instance k, dtypes and bad input.

The statistical tests are seeded, so they are deterministic; their tolerances are stated next to
each assertion and are several standard errors wide, so that a correct sampler passes for any seed
while a wrong formula (a missing 1/k, 1/i or log term) fails by many standard errors.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from imle_fn.core import noise
from imle_fn.core.noise import ShapeLike, gumbel, sum_of_gamma
from tests.naive import naive_sum_of_gamma

EULER_GAMMA = 0.5772156649015329


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("k", "num_terms"),
    # Both Gamma samplers (k >= 8 and k < 8, shape below and above 1), with one term (a bare Gamma
    # draw, nothing averaged away) and with many.
    [(20.8, 100), (5.0, 10), (1.0, 3), (0.4, 7), (2.5, 1), (8.0, 1), (7.9, 1), (60.0, 1), (0.5, 1)],
)
def test_sum_of_gamma_matches_naive_sampler(k: float, num_terms: int) -> None:
    n = 20_000
    eps = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=gen(1), dtype=torch.float64)
    reference = naive_sum_of_gamma(np.random.default_rng(2), n, k, num_terms)
    # Two-sample KS at n = 20000 detects a shift of about 0.03 standard deviations; p < 1e-3 means
    # the samplers disagree (a correct sampler fails this with probability 1e-3 for a given seed).
    assert ks_2samp(eps.numpy(), reference).pvalue > 1e-3


def test_sum_of_gamma_detects_wrong_formula() -> None:
    """The KS test above has power: the reference's own sampler with k off by 10% is rejected."""
    n = 20_000
    eps = sum_of_gamma((n,), k=5.0, num_terms=10, generator=gen(1), dtype=torch.float64)
    assert (
        ks_2samp(eps.numpy(), naive_sum_of_gamma(np.random.default_rng(2), n, 5.5, 10)).pvalue
        < 1e-6
    )


def test_sum_of_gamma_mean_and_variance_closed_form() -> None:
    # E[eps] = (H_s - log s) / k, Var[eps] = sum_i 1/i^2 / k (Gamma(1/k, 1) has mean = var = 1/k).
    k, num_terms, n = 3.0, 20, 200_000
    eps = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=gen(3), dtype=torch.float64)
    harmonic = sum(1.0 / i for i in range(1, num_terms + 1))
    var = sum(1.0 / i**2 for i in range(1, num_terms + 1)) / k
    mean = (harmonic - math.log(num_terms)) / k
    se = math.sqrt(var / n)
    assert abs(eps.mean().item() - mean) < 5 * se  # 5 standard errors
    assert abs(eps.var().item() / var - 1.0) < 0.02  # relative SE of the variance is about 0.005


def test_sum_of_k_draws_is_close_to_gumbel() -> None:
    # Summing k iid draws gives sum_i E_i / i - log s with E_i ~ Exp(1): a Gumbel(0, 1) truncated at
    # s terms, with mean H_s - log s = gamma + 1/(2s) + ... and variance pi^2/6 - 1/s + ... .
    k, num_terms, n = 5, 200, 30_000
    eps = sum_of_gamma(
        (n, k), k=float(k), num_terms=num_terms, generator=gen(4), dtype=torch.float64
    )
    total = eps.sum(dim=1)
    # SE of the mean: sqrt(1.64 / 30000) = 0.0074; bias 1/(2s) = 0.0025. Tolerance 0.03.
    assert abs(total.mean().item() - EULER_GAMMA) < 0.03
    # SE of the variance: pi^2/6 * sqrt((kurtosis - 1) / n) = 1.645 * sqrt(4.4 / 30000) = 0.020;
    # bias -1/s = -0.005. Tolerance 0.08.
    assert abs(total.var().item() - math.pi**2 / 6) < 0.08


def test_per_instance_k() -> None:
    # Each row gets its own k: Var[eps] = (sum_i 1/i^2) / k, so row variances scale as 1 / k.
    k = torch.tensor([[0.5], [2.0], [8.0], [32.0]])
    num_terms, n = 10, 50_000
    eps = sum_of_gamma((4, n), k=k, num_terms=num_terms, generator=gen(5), dtype=torch.float64)
    zeta_s = sum(1.0 / i**2 for i in range(1, num_terms + 1))
    ratio = eps.var(dim=1) * k.squeeze(1).double() / zeta_s
    # Relative SE of a sample variance of n = 50000 heavy-tailed draws is below 0.02 for k <= 32.
    assert torch.allclose(ratio, torch.ones(4, dtype=torch.float64), atol=0.08), ratio
    # And each row matches the naive sampler with its own k.
    for row, k_row in enumerate(k.squeeze(1).tolist()):
        reference = naive_sum_of_gamma(np.random.default_rng(row), n, k_row, num_terms)
        assert ks_2samp(eps[row].numpy(), reference).pvalue > 1e-3


def test_per_instance_k_scalar_tensor_equals_float() -> None:
    a = sum_of_gamma((3, 5), k=torch.tensor(4.0), num_terms=6, generator=gen(6))
    b = sum_of_gamma((3, 5), k=4.0, num_terms=6, generator=gen(6))
    c = sum_of_gamma((3, 5), k=torch.full((3, 1), 4.0), num_terms=6, generator=gen(6))
    assert torch.equal(a, b)
    assert torch.equal(a, c)


def test_numpy_k_equals_tensor_k() -> None:
    k = np.array([[1.5], [9.0], [30.0]])
    a = sum_of_gamma((3, 70), k=k, num_terms=4, generator=gen(20))
    b = sum_of_gamma((3, 70), k=torch.from_numpy(k), num_terms=4, generator=gen(20))
    assert torch.equal(a, b)
    read_only = np.broadcast_to(k, (3, 70))  # read-only, zero strides
    c = sum_of_gamma((3, 70), k=read_only, num_terms=4, generator=gen(20))
    assert torch.equal(a, c)


@settings(max_examples=40, deadline=None)
@given(
    dims=st.lists(st.integers(0, 5), min_size=0, max_size=3),
    keep=st.lists(st.booleans(), min_size=3, max_size=3),
    k=st.floats(0.2, 40.0),
    num_terms=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_constant_k_tensor_equals_scalar_k(
    dims: list[int], keep: list[bool], k: float, num_terms: int, seed: int
) -> None:
    """Per-instance k (any broadcastable shape) with equal entries gives the scalar-k samples."""
    k_shape = [d if keep[i] else 1 for i, d in enumerate(dims)]
    k_tensor = torch.full(k_shape, k, dtype=torch.float64)
    a = sum_of_gamma(dims, k=k_tensor, num_terms=num_terms, generator=gen(seed))
    b = sum_of_gamma(dims, k=k, num_terms=num_terms, generator=gen(seed))
    assert a.shape == tuple(dims)
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()


def test_same_seed_identical_different_seed_different() -> None:
    a = sum_of_gamma((7, 9, 9), k=20.8, num_terms=100, generator=gen(7))
    b = sum_of_gamma((7, 9, 9), k=20.8, num_terms=100, generator=gen(7))
    c = sum_of_gamma((7, 9, 9), k=20.8, num_terms=100, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Different blocks of the same call are not copies of each other.
    assert torch.unique(a).numel() == a.numel()
    ga, gb, gc = (gumbel((7, 9, 9), generator=gen(s)) for s in (7, 7, 8))
    assert torch.equal(ga, gb)
    assert not torch.equal(ga, gc)


def test_generator_state_advances() -> None:
    g = gen(9)
    a = sum_of_gamma((300,), k=2.0, generator=g)
    b = sum_of_gamma((300,), k=2.0, generator=g)
    assert not torch.equal(a, b)


def test_default_generator_follows_manual_seed() -> None:
    torch.manual_seed(10)
    a, ga = sum_of_gamma((5, 5), k=3.0), gumbel((5, 5))
    torch.manual_seed(10)
    b, gb = sum_of_gamma((5, 5), k=3.0), gumbel((5, 5))
    assert torch.equal(a, b)
    assert torch.equal(ga, gb)


def test_independent_of_numba_thread_count() -> None:
    if numba.config.NUMBA_NUM_THREADS < 2:  # type: ignore[attr-defined]
        pytest.skip("needs at least 2 Numba threads")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sum_of_gamma((50, 16, 16), k=20.8, num_terms=20, generator=gen(11))
        numba.set_num_threads(2)
        two = sum_of_gamma((50, 16, 16), k=20.8, num_terms=20, generator=gen(11))
    finally:
        numba.set_num_threads(before)
    assert torch.equal(one, two)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_and_device_kept(dtype: torch.dtype) -> None:
    eps = sum_of_gamma((4, 3), k=2.0, generator=gen(12), dtype=dtype, device="cpu")
    g = gumbel((4, 3), generator=gen(12), dtype=dtype, device=torch.device("cpu"))
    for t in (eps, g):
        assert t.dtype == dtype
        assert t.device == torch.device("cpu")
        assert t.shape == (4, 3)
        assert torch.isfinite(t).all()
    # Lower precisions are the float64 samples rounded.
    wide = sum_of_gamma((4, 3), k=2.0, generator=gen(12), dtype=torch.float64)
    assert torch.equal(eps, wide.to(dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device() -> None:
    eps = sum_of_gamma((4, 3), k=2.0, generator=gen(13), device="cuda")
    cpu = sum_of_gamma((4, 3), k=2.0, generator=gen(13))
    assert eps.device.type == "cuda"
    assert torch.equal(eps.cpu(), cpu)
    k = torch.tensor([[1.0], [2.0], [3.0], [4.0]], device="cuda")
    assert sum_of_gamma((4, 3), k=k, generator=gen(13), device="cuda").device.type == "cuda"
    assert gumbel((2,), generator=gen(13), device="cuda").device.type == "cuda"


@pytest.mark.parametrize("shape", [(), 5, (0,), (3, 0, 2), [2, 3], torch.Size([2, 1, 4])])
def test_shapes(shape: ShapeLike) -> None:
    expected = torch.Size([shape] if isinstance(shape, int) else shape)
    assert sum_of_gamma(shape, k=2.0, generator=gen(14)).shape == expected
    assert gumbel(shape, generator=gen(14)).shape == expected


def test_k_tensor_with_empty_shape() -> None:
    assert sum_of_gamma((0, 3), k=torch.ones(1, 3), generator=gen(15)).shape == (0, 3)


def test_gumbel_distribution() -> None:
    n = 200_000
    g = gumbel((n,), generator=gen(16), dtype=torch.float64)
    # Gumbel(0, 1): mean Euler's gamma (SE 0.0029), variance pi^2/6 (SE 0.0077), CDF exp(-exp(-x)).
    assert abs(g.mean().item() - EULER_GAMMA) < 0.015
    assert abs(g.var().item() - math.pi**2 / 6) < 0.04
    reference = -np.log(-np.log(np.random.default_rng(17).random(n)))
    assert ks_2samp(g.numpy(), reference).pvalue > 1e-3


def test_inputs_not_mutated() -> None:
    k = torch.tensor([[1.0], [2.0]])
    k_copy = k.clone()
    sum_of_gamma((2, 3), k=k, generator=gen(18))
    assert torch.equal(k, k_copy)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0.0}, ValueError, "k: "),
        ({"k": -1.0}, ValueError, "k: "),
        ({"k": float("nan")}, ValueError, "k: "),
        ({"k": float("inf")}, ValueError, "k: "),
        ({"k": 1e-310}, ValueError, "k: "),  # 1 / k overflows: the Gamma shape would be inf
        ({"k": torch.tensor([[1.0], [1e-310], [2.0]], dtype=torch.float64)}, ValueError, "k: "),
        ({"k": "2"}, TypeError, "k: "),
        ({"k": True}, TypeError, "k: "),
        ({"k": torch.tensor([[1.0], [0.0], [2.0]])}, ValueError, r"k.*index \(1, 0\)"),
        ({"k": torch.tensor([[1.0], [float("nan")], [2.0]])}, ValueError, r"k.*index \(1, 0\)"),
        ({"k": torch.ones(3)}, ValueError, "k.*broadcastable"),
        ({"k": torch.ones(1, 3, 4)}, ValueError, "k.*broadcastable"),
        ({"k": torch.ones(3, 4, dtype=torch.complex64)}, TypeError, "k: "),
        ({"k": 2.0, "num_terms": 0}, ValueError, "num_terms: "),
        ({"k": 2.0, "num_terms": -3}, ValueError, "num_terms: "),
        ({"k": 2.0, "num_terms": 2.5}, TypeError, "num_terms: "),
        ({"k": 2.0, "num_terms": True}, TypeError, "num_terms: "),
        ({"k": 2.0, "generator": 0}, TypeError, "generator: "),
        ({"k": 2.0, "dtype": torch.int64}, TypeError, "dtype: "),
        ({"k": 2.0, "dtype": "float32"}, TypeError, "dtype: "),
        ({"k": 2.0, "device": "nonsense"}, ValueError, "device: "),
        ({"k": 2.0, "device": 0.5}, TypeError, "device: "),
        ({"k": np.array(["a"])}, TypeError, "k: "),
        ({"k": -np.ones((3, 1))}, ValueError, r"k.*index \(0, 0\)"),
    ],
)
def test_sum_of_gamma_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=f"^{match}"):
        sum_of_gamma((3, 4), **kwargs)


@pytest.mark.parametrize(
    ("shape", "error"),
    [((2, -1), ValueError), (2.0, TypeError), ((2, 1.5), TypeError), ("ab", TypeError)],
)
def test_bad_shape(shape: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^shape: "):
        sum_of_gamma(shape, k=2.0)  # type: ignore[arg-type]
    with pytest.raises(error, match=r"^shape: "):
        gumbel(shape)  # type: ignore[arg-type]


def test_gumbel_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"^generator: "):
        gumbel((2,), generator=np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^dtype: "):
        gumbel((2,), dtype=torch.int32)


def test_serial_and_parallel_kernels_agree() -> None:
    from imle_fn._kernels import sampling as _noise_kernels

    n = 1000
    k = np.linspace(0.5, 30.0, n)
    seeds = np.arange(1, -(-n // _noise_kernels.BLOCK) + 1, dtype=np.uint64) * np.uint64(7919)
    inv_i = 1.0 / np.arange(1, 31, dtype=np.float64)
    serial, parallel = np.empty(n), np.empty(n)
    _noise_kernels.sum_of_gamma_blocks(k, seeds, inv_i, serial, 0, seeds.size)
    _noise_kernels.sum_of_gamma_parallel(k, seeds, inv_i, parallel)
    assert np.array_equal(serial, parallel)
    assert np.isfinite(serial).all()


FORK_SCRIPT = """
import os, sys, torch
from imle_fn.core.noise import sum_of_gamma
def draw():
    return sum_of_gamma((40, 8, 8), k=3.0, num_terms=5, generator=torch.Generator().manual_seed(19))
expected = draw()  # launches the threading layer in the parent
pid = os.fork()
if pid == 0:
    os._exit(0 if torch.equal(draw(), expected) else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_forked_child_gets_the_same_samples() -> None:
    """A child forked after the parallel kernel ran (DataLoader workers do this) must not abort.

    Under the OpenMP layer (the fork-unsafe one; runs in a subprocess to choose it) a parallel call
    in such a child kills it: this test failed before the serial fallback existed. Here the child
    must finish, with the same samples as its parent.
    """
    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp", "PYTHONWARNINGS": "ignore"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], env=env, capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_ziggurat_normal_and_exponential() -> None:
    """The kernel's normal and exponential variates, tails included (one-sample KS, tail counts)."""
    from numba import njit
    from scipy.stats import kstest

    from imle_fn._kernels import sampling as nk

    @njit
    def draw(n: int, seed: np.uint64) -> tuple[np.ndarray, np.ndarray]:
        state = seed
        normal, exponential = np.empty(n), np.empty(n)
        for j in range(n):
            state, normal[j] = nk._normal(state)
            state, exponential[j] = nk._exponential(state)
        return normal, exponential

    n = 400_000
    normal, exponential = draw(n, np.uint64(2024))
    assert kstest(normal, "norm").pvalue > 1e-3
    assert kstest(exponential, "expon").pvalue > 1e-3
    # The tails beyond the base layer's edge r come from separate code paths: their counts are
    # Poisson(n * p); accept 5 standard deviations.
    p_normal = math.erfc(nk._NORMAL_R / math.sqrt(2.0))  # P(|x| > r), 2.6e-4
    p_exp = math.exp(-nk._EXP_R)  # 4.5e-4
    upper = int(np.count_nonzero(normal > nk._NORMAL_R))
    lower = int(np.count_nonzero(normal < -nk._NORMAL_R))
    exp_tail = int(np.count_nonzero(exponential > nk._EXP_R))
    for count, p in [(upper + lower, p_normal), (exp_tail, p_exp)]:
        assert abs(count - n * p) < 5 * math.sqrt(n * p), (count, n * p)
    assert abs(upper - lower) < 5 * math.sqrt(n * p_normal)  # both signs of the normal tail


def test_gaussian_is_standard_normal_and_seeded() -> None:
    from scipy import stats

    from imle_fn.core.noise import gaussian

    a = gaussian((20000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = gaussian((20000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(a, b)
    assert stats.kstest(a.numpy(), "norm").pvalue > 1e-3
    assert gaussian((2, 3), dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="shape"):
        gaussian((-1, 2))


# ----------------------------------------------------------------------------------------------
# The device path (torch ops on the generator's device), run on the CPU through the same code.
#
# `imle_fn.core.noise` draws with torch ops wherever the generator is not a CPU generator; the
# private ``backend="torch"`` switch runs that code on the CPU, so its law is tested here without a
# GPU, against the host path (Numba / NumPy). These tests are probabilistic but seeded, hence
# deterministic; each states what it would detect.

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
F64 = torch.float64


def device_sog(
    shape: ShapeLike,
    k: float | torch.Tensor,
    num_terms: int,
    seed: int,
    dtype: torch.dtype = F64,
    generator: torch.Generator | None = None,
    device: str | None = None,
) -> torch.Tensor:
    """`sum_of_gamma` on the device path (on the CPU unless ``generator`` lives elsewhere)."""
    g = gen(seed) if generator is None else generator
    return noise._sum_of_gamma(shape, k, num_terms, g, dtype, device, "torch")


def device_gumbel(shape: ShapeLike, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return noise._gumbel(shape, gen(seed), dtype, None, "torch")


def device_gaussian(shape: ShapeLike, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return noise._gaussian(shape, gen(seed), dtype, None, "torch")


@pytest.mark.parametrize(
    ("k", "num_terms"),
    # As in test_sum_of_gamma_matches_naive_sampler: Gamma shapes 1/k from 1/60 to 2.5, one term
    # (a bare Gamma draw) and many.
    [(20.8, 100), (12.0, 10), (5.0, 10), (1.0, 3), (0.4, 7), (2.5, 1), (60.0, 1), (0.5, 1)],
)
def test_device_path_sum_of_gamma_has_the_host_law(k: float, num_terms: int) -> None:
    """Two-sample KS, device path vs host path, n = 20000 each (float64).

    At this size KS rejects (p < 1e-3) any difference of the CDFs above about 0.02 (e.g. a 10%
    error in the Gamma rate: test_device_path_ks_detects_a_wrong_rate). A correct sampler fails
    with probability 1e-3 for a given seed; the seeds are fixed.
    """
    n = 20_000
    device = device_sog((n,), k, num_terms, seed=21)
    host = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=gen(22), dtype=F64)
    assert ks_2samp(device.numpy(), host.numpy()).pvalue > 1e-3


@pytest.mark.parametrize(("k", "num_terms"), [(20.8, 100), (12.0, 10), (0.4, 7)])
def test_device_path_float32_draw_has_the_host_law(k: float, num_terms: int) -> None:
    """The same KS test for the float32 draw (the device path's draw for float32 requests)."""
    n = 20_000
    device = device_sog((n,), k, num_terms, seed=23, dtype=torch.float32)
    host = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=gen(24), dtype=torch.float32)
    assert ks_2samp(device.numpy(), host.numpy()).pvalue > 1e-3


def test_device_path_ks_detects_a_wrong_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The KS tests above have power: the device path with every Gamma term 10% too large (a rate
    of i / (1.1 k) instead of i / k) is rejected at p < 1e-6, and so is a 10% error in k."""
    n, k, num_terms = 20_000, 12.0, 10
    host = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=gen(22), dtype=F64).numpy()
    wrong_k = device_sog((n,), 1.1 * k, num_terms, seed=21)
    assert ks_2samp(wrong_k.numpy(), host).pvalue < 1e-6
    standard_gamma = torch._standard_gamma

    def wrong_rate(alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return 1.1 * standard_gamma(alpha, generator=generator)

    monkeypatch.setattr(torch, "_standard_gamma", wrong_rate)
    wrong = device_sog((n,), k, num_terms, seed=21)
    assert ks_2samp(wrong.numpy(), host).pvalue < 1e-6


def test_device_path_mean_and_variance_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed-form moments when the terms are drawn in chunks (3, 3, ..., 3, 2 of 20 terms).

    E[eps] = (H_s - log s) / k and Var[eps] = sum_i 1/i^2 / k, as in
    test_sum_of_gamma_mean_and_variance_closed_form. Dropping the last, partial chunk would lower
    the mean by (1/19 + 1/20) / k = 0.034, ten standard errors.
    """
    k, num_terms, n = 3.0, 20, 50_000
    monkeypatch.setattr(noise, "GAMMA_CHUNK", 3 * n)
    eps = device_sog((n,), k, num_terms, seed=25)
    harmonic = sum(1.0 / i for i in range(1, num_terms + 1))
    var = sum(1.0 / i**2 for i in range(1, num_terms + 1)) / k
    mean = (harmonic - math.log(num_terms)) / k
    se = math.sqrt(var / n)  # 0.0032
    assert abs(eps.mean().item() - mean) < 5 * se
    assert abs(eps.var().item() / var - 1.0) < 0.04  # relative SE of the variance: about 0.01
    host = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=gen(26), dtype=F64)
    assert ks_2samp(eps.numpy(), host.numpy()).pvalue > 1e-3


def test_device_path_chunks_are_one_draw_when_they_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every term in one chunk the device path is one ``[s, n]`` Gamma draw, weighted by 1/i."""
    n, k, num_terms = 50, 4.0, 6
    monkeypatch.setattr(noise, "GAMMA_CHUNK", n * num_terms)
    eps = device_sog((5, 10), k, num_terms, seed=27)
    g = torch._standard_gamma(torch.full((num_terms, n), 1.0 / k, dtype=F64), generator=gen(27))
    inv_i = 1.0 / torch.arange(1, num_terms + 1, dtype=F64)
    expected = (g * inv_i[:, None]).sum(0) - math.log(num_terms) / k
    torch.testing.assert_close(eps, expected.reshape(5, 10), rtol=1e-15, atol=1e-15)
    monkeypatch.setattr(noise, "GAMMA_CHUNK", 1)  # one term a chunk: the same stream of draws
    torch.testing.assert_close(device_sog((5, 10), k, num_terms, seed=27), eps)


def test_device_path_gumbel_and_gaussian_have_the_host_law() -> None:
    """Two-sample KS against the host path and one-sample KS against the closed forms, n = 200000
    (rejects CDF differences above about 0.006; a location error of 0.05 in the Gumbel is one of
    0.018: test_device_path_gumbel_ks_detects_a_shift)."""
    from scipy.stats import kstest

    n = 200_000
    for dtype in (F64, torch.float32):
        g = device_gumbel((n,), seed=28, dtype=dtype).double().numpy()
        z = device_gaussian((n,), seed=29, dtype=dtype).double().numpy()
        assert ks_2samp(g, gumbel((n,), generator=gen(30), dtype=F64).numpy()).pvalue > 1e-3
        assert kstest(g, "gumbel_r").pvalue > 1e-3
        assert ks_2samp(z, noise.gaussian((n,), generator=gen(31), dtype=F64).numpy()).pvalue > 1e-3
        assert kstest(z, "norm").pvalue > 1e-3


def test_device_path_gumbel_ks_detects_a_shift(monkeypatch: pytest.MonkeyPatch) -> None:
    """U ** 1.05 in place of U shifts the Gumbel by -log(1.05) = -0.049: rejected at p < 1e-6."""
    n = 200_000
    host = gumbel((n,), generator=gen(30), dtype=F64).numpy()
    uniform = noise._device_open_uniform

    def wrong(*args: Any) -> torch.Tensor:
        return uniform(*args).pow_(1.05)

    monkeypatch.setattr(noise, "_device_open_uniform", wrong)
    assert ks_2samp(device_gumbel((n,), seed=28).numpy(), host).pvalue < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_device_path_uniform_is_open_and_exact(dtype: torch.dtype) -> None:
    """The device path's U is (m + 1/2) 2**-b: never 0 or 1, even at the extreme integers."""
    bits = 52 if dtype == F64 else 23
    u = noise._device_open_uniform(torch.Size([100_000]), gen(32), torch.device("cpu"), dtype)
    assert bool(((u > 0) & (u < 1)).all())
    m = (u.double() * 2.0**bits - 0.5).numpy()
    assert np.array_equal(m, np.round(m))  # on the grid
    assert m.min() >= 0 and m.max() <= 2**bits - 1
    for extreme in (0, 2**bits - 1):  # the two ends of the grid stay inside (0, 1) in dtype
        value = (torch.tensor(float(extreme), dtype=dtype) + 0.5) * 2.0**-bits
        assert 0.0 < value.item() < 1.0
        assert torch.isfinite(-torch.log(-torch.log(value)))


def test_device_path_is_seeded() -> None:
    """Same generator seed -> identical tensors; another seed or the advanced state -> others."""
    for draw in (
        lambda s, g=None: device_sog((7, 9, 9), 20.8, 10, seed=s, generator=g),
        lambda s, g=None: noise._gumbel((7, 9, 9), g or gen(s), F64, None, "torch"),
        lambda s, g=None: noise._gaussian((7, 9, 9), g or gen(s), F64, None, "torch"),
    ):
        a, b, c = draw(33), draw(33), draw(34)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
        assert torch.unique(a).numel() == a.numel()
        g = gen(35)
        assert not torch.equal(draw(0, g), draw(0, g))


def test_device_path_default_generator_follows_manual_seed() -> None:
    def draw() -> list[torch.Tensor]:
        return [
            noise._sum_of_gamma((5, 5), 3.0, 10, None, F64, None, "torch"),
            noise._gumbel((5, 5), None, F64, None, "torch"),
            noise._gaussian((5, 5), None, F64, None, "torch"),
        ]

    torch.manual_seed(36)
    a = draw()
    torch.manual_seed(36)
    b = draw()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, F64])
def test_device_path_dtypes(dtype: torch.dtype) -> None:
    """dtype in = dtype out; float64 is drawn in float64, the others are the float32 draw rounded."""
    shape = (64, 5)
    draws = {
        "sog": lambda d: device_sog(shape, 12.0, 10, seed=37, dtype=d),
        "gumbel": lambda d: device_gumbel(shape, seed=37, dtype=d),
        "gaussian": lambda d: device_gaussian(shape, seed=37, dtype=d),
    }
    for name, draw in draws.items():
        out = draw(dtype)
        assert out.dtype == dtype, name
        assert out.shape == shape and out.device == torch.device("cpu"), name
        assert torch.isfinite(out).all(), name
        if dtype == F64:  # not float32 values widened
            assert bool((out != out.float().double()).any()), name
        else:
            assert torch.equal(out, draw(torch.float32).to(dtype)), name


def test_device_path_per_instance_k() -> None:
    """One k per row: row variances scale as 1 / k, and each row has the host path's law."""
    k = torch.tensor([[0.5], [2.0], [8.0], [32.0]], dtype=F64)
    num_terms, n = 10, 20_000
    eps = device_sog((4, n), k, num_terms, seed=38)
    zeta_s = sum(1.0 / i**2 for i in range(1, num_terms + 1))
    ratio = eps.var(dim=1) * k.squeeze(1) / zeta_s
    assert torch.allclose(ratio, torch.ones(4, dtype=F64), atol=0.1), ratio
    for row, k_row in enumerate(k.squeeze(1).tolist()):
        host = sum_of_gamma((n,), k=k_row, num_terms=num_terms, generator=gen(39 + row), dtype=F64)
        assert ks_2samp(eps[row].numpy(), host.numpy()).pvalue > 1e-3


@settings(max_examples=25, deadline=None)
@given(
    dims=st.lists(st.integers(0, 5), min_size=0, max_size=3),
    keep=st.lists(st.booleans(), min_size=3, max_size=3),
    k=st.floats(0.2, 40.0),
    num_terms=st.integers(1, 5),
    seed=st.integers(0, 2**32),
    as_array=st.booleans(),
)
def test_device_path_constant_k_tensor_equals_scalar_k(
    dims: list[int], keep: list[bool], k: float, num_terms: int, seed: int, as_array: bool
) -> None:
    """A k tensor (or array) of equal entries, any broadcastable shape, gives the scalar-k samples."""
    k_shape = [d if keep[i] else 1 for i, d in enumerate(dims)]
    k_tensor = torch.full(k_shape, k, dtype=F64)
    k_arg = k_tensor.numpy() if as_array else k_tensor
    for dtype in (torch.float32, F64):
        a = noise._sum_of_gamma(dims, k_arg, num_terms, gen(seed), dtype, None, "torch")
        b = noise._sum_of_gamma(dims, k, num_terms, gen(seed), dtype, None, "torch")
        assert a.shape == tuple(dims)
        assert torch.equal(a, b)
        assert torch.isfinite(a).all()


def test_device_path_bad_k() -> None:
    """The device path checks k like the host path, plus a finite 1/k in the draw's dtype."""
    with pytest.raises(ValueError, match=r"^k: .*index \(1, 0\)"):
        device_sog((3, 4), torch.tensor([[1.0], [0.0], [2.0]]), 10, seed=0)
    with pytest.raises(ValueError, match=r"^k: .*broadcastable"):
        device_sog((3, 4), torch.ones(3), 10, seed=0)
    with pytest.raises(TypeError, match=r"^k: "):
        device_sog((3, 4), "2", 10, seed=0)  # type: ignore[arg-type]
    # 1e-39 is a positive float64 whose reciprocal overflows float32, the draw dtype of float32.
    with pytest.raises(ValueError, match=r"^k: .*finite 1/k in torch.float32"):
        device_sog((3, 4), 1e-39, 10, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"^k: .*float32.*index \(2,\)"):
        device_sog((3, 4), torch.tensor([1.0, 2.0, 1e-39, 1.0], dtype=F64), 10, 0, torch.float32)
    assert torch.isfinite(device_sog((3, 4), 1e-39, 1, seed=0, dtype=F64)).all()


def test_k_checked_by_device_assertion_during_graph_capture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a CUDA graph is captured nothing may be read back: a bad k trips torch._assert_async
    (emulated on the CPU, where that assertion raises at once), a good one passes unchanged.

    (A CPU k first passes the float64 host check; 1e-39 passes it and fails in float32, the stage
    that runs on the k's device.)"""
    from imle_fn.core import checks

    monkeypatch.setattr(checks, "_capturing", lambda device: True)
    bad = torch.tensor([[1.0], [1e-39]], dtype=F64)
    with pytest.raises(RuntimeError, match="k: expected positive finite values"):
        checks.check_positive_tensor("k", bad, torch.Size([2, 3]), torch.float32)
    good = torch.tensor([[1.0], [2.0]])
    captured = device_sog((2, 3), good, 10, seed=40)
    monkeypatch.undo()
    assert torch.equal(captured, device_sog((2, 3), good, 10, seed=40))


def test_the_generator_decides_where_the_draws_run() -> None:
    """The dispatch rule, checked without a GPU (a torch.device is only a name until used).

    A CPU generator: the host path, whatever ``device``; ``generator=None``: the requested device's
    default generator (the host path only for the CPU); the result lands on ``device``, the CPU for
    None.
    """
    f32, cpu, cuda = torch.float32, torch.device("cpu"), torch.device("cuda")
    assert noise._draw_args((2,), gen(0), f32, "cuda") == (torch.Size([2]), cpu)
    assert noise._draw_args((2,), None, f32, "cuda")[1] == cuda
    assert noise._draw_args((2,), None, f32, None)[1] == cpu
    assert noise._host_path(cpu, "auto")
    assert not noise._host_path(cuda, "auto")
    assert not noise._host_path(cpu, "torch")
    assert noise._result_device(None) == cpu
    assert noise._result_device("cuda:1") == torch.device("cuda", 1)


def test_float64_refused_on_mps() -> None:
    """MPS has no float64: a float64 result there is refused up front (the check needs no MPS)."""
    from imle_fn.core.checks import check_device_dtype

    with pytest.raises(ValueError, match=r"^dtype: torch.float64 is not supported on mps"):
        check_device_dtype(F64, torch.device("mps"))
    check_device_dtype(torch.float32, torch.device("mps"))
    check_device_dtype(F64, torch.device("cuda"))
    assert noise._draw_dtype(F64, torch.device("mps")) == torch.float32
    assert noise._draw_dtype(F64, torch.device("cuda")) == F64
    assert noise._draw_dtype(torch.bfloat16, torch.device("cuda")) == torch.float32


@pytest.mark.skipif(not torch.backends.mps.is_available(), reason="needs MPS")
def test_mps_draws_in_float32() -> None:
    g = torch.Generator(device="mps").manual_seed(0)
    draws = [
        gumbel((4, 3), generator=g, device="mps"),
        noise.gaussian((4, 3), generator=g, device="mps"),
    ]
    if torch._C._dispatch_has_kernel_for_dispatch_key("aten::_standard_gamma", "MPS"):
        draws.append(sum_of_gamma((4, 3), k=12.0, generator=g, device="mps"))
    for out in draws:
        assert out.device.type == "mps" and out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"^dtype: "):
        gumbel((2,), generator=g, dtype=F64, device="mps")
    # float64 on the CPU from an MPS generator: the float32 draw, widened.
    assert gumbel((2,), generator=g, dtype=F64).dtype == F64


# --- CUDA: the device path on the GPU (skipped without CUDA; bench/gpu_check.py runs them) ------


def cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


@CUDA
def test_cuda_generator_draws_on_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA generator (or None with device="cuda") draws on the GPU, never on the host path."""

    def host_path_used(*args: Any) -> None:
        raise AssertionError("the host path ran")

    monkeypatch.setattr(noise, "_run_kernel", host_path_used)
    monkeypatch.setattr(noise, "_to_tensor", host_path_used)
    draws = (
        lambda g, t, d: sum_of_gamma((10, 70, 12, 12), k=12.0, generator=g, dtype=t, device=d),
        lambda g, t, d: gumbel((100, 16, 16), generator=g, dtype=t, device=d),
        lambda g, t, d: noise.gaussian((100, 16, 16), generator=g, dtype=t, device=d),
    )
    for dtype in (torch.float32, F64, torch.bfloat16):
        for draw in draws:
            on_gpu = draw(cuda_gen(41), dtype, "cuda")
            assert on_gpu.device.type == "cuda" and on_gpu.dtype == dtype
            assert torch.isfinite(on_gpu).all()
            assert torch.equal(on_gpu, draw(cuda_gen(41), dtype, "cuda"))
            # drawn where the generator lives, then moved: the same numbers on the CPU
            assert torch.equal(draw(cuda_gen(41), dtype, "cpu"), on_gpu.cpu())
            on_default = draw(cuda_gen(41), dtype, None)  # device=None: the CPU
            assert on_default.device.type == "cpu" and torch.equal(on_default, on_gpu.cpu())
            torch.manual_seed(42)  # generator=None: the default CUDA generator
            a = draw(None, dtype, "cuda")
            torch.manual_seed(42)
            assert torch.equal(a, draw(None, dtype, "cuda"))


@CUDA
def test_cuda_draws_without_host_sync() -> None:
    """No copy to the host and no value read back (torch's sync debug mode turns any into an error)."""
    k = torch.full((70, 1, 1), 12.0, device="cuda")
    sum_of_gamma((1, 70, 12, 12), k=k, generator=cuda_gen(0), device="cuda")  # k checked (one read)
    gumbel((2,), generator=cuda_gen(0), device="cuda")  # warm-up
    noise.gaussian((2,), generator=cuda_gen(0), device="cuda")
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        g = cuda_gen(43)
        sum_of_gamma((10, 70, 12, 12), k=12.0, num_terms=100, generator=g, device="cuda")
        gumbel((10, 70, 12, 12), generator=g, device="cuda")
        noise.gaussian((10, 70, 12, 12), generator=g, device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode(before)


@CUDA
def test_cuda_graph_capture() -> None:
    """The device path, k a device tensor included, is captured in a CUDA graph and replayed."""
    k = torch.tensor([[[4.0]], [[12.0]]], device="cuda")  # [2, 1, 1]: one k per map

    def draw() -> torch.Tensor:
        eps = sum_of_gamma((3, 2, 12, 12), k=k, num_terms=10, device="cuda")
        eps = eps + gumbel((3, 2, 12, 12), device="cuda")
        return eps + noise.gaussian((2, 12, 12), device="cuda")

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        draw()  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = draw()
    graph.replay()
    first = out.clone()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(first).all() and torch.isfinite(out).all()
    assert not torch.equal(first, out)  # each replay draws anew


@CUDA
@pytest.mark.parametrize(("k", "num_terms"), [(20.8, 100), (12.0, 10), (0.4, 7), (60.0, 1)])
def test_cuda_sum_of_gamma_has_the_host_law(k: float, num_terms: int) -> None:
    """CUDA's Gamma sampler is not the CPU's: the same KS test as on the CPU, drawn on the GPU."""
    n = 20_000
    for dtype in (F64, torch.float32):
        eps = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=cuda_gen(44), dtype=dtype)
        host = sum_of_gamma((n,), k=k, num_terms=num_terms, generator=gen(45), dtype=dtype)
        if dtype == torch.float32 and num_terms == 1:
            continue  # a bare Gamma(1/60) draw: much of its mass lies below float32's range
        assert ks_2samp(eps.numpy(), host.numpy()).pvalue > 1e-3


@CUDA
def test_cuda_gumbel_and_gaussian_have_the_host_law() -> None:
    from scipy.stats import kstest

    n = 200_000
    for dtype in (F64, torch.float32):
        g = gumbel((n,), generator=cuda_gen(46), dtype=dtype).double().numpy()
        z = noise.gaussian((n,), generator=cuda_gen(47), dtype=dtype).double().numpy()
        assert kstest(g, "gumbel_r").pvalue > 1e-3
        assert kstest(z, "norm").pvalue > 1e-3


@CUDA
def test_cuda_k_on_another_device_and_bad_k() -> None:
    """k as a CPU tensor is moved to the GPU; a bad k on the GPU gets the host path's ValueError."""
    k_cpu = torch.tensor([[1.0], [2.0], [3.0]])
    a = sum_of_gamma((3, 5), k=k_cpu, generator=cuda_gen(48), device="cuda")
    b = sum_of_gamma((3, 5), k=k_cpu.cuda(), generator=cuda_gen(48), device="cuda")
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"^k: .*index \(1, 0\)"):
        sum_of_gamma((3, 5), k=torch.tensor([[1.0], [0.0], [2.0]], device="cuda"), device="cuda")


def test_device_path_draws_per_slice_under_vmap_randomness_different() -> None:
    """The device path (a GPU generator's) under vmap(randomness='different') with nothing batched:
    every sampler draws per slice; the same seed gives the same draws (main: Sum-of-Gamma's in-place
    accumulation raised a shape error)."""
    from torch.func import vmap

    for draw in (
        lambda g: noise._sum_of_gamma((50,), 3.0, 10, g, F64, None, "torch"),
        lambda g: noise._gumbel((50,), g, F64, None, "torch"),
        lambda g: noise._gaussian((50,), g, F64, None, "torch"),
    ):
        a = vmap(lambda i, d=draw: d(gen(4)) + 0 * i, randomness="different")(torch.arange(3.0))
        b = vmap(lambda i, d=draw: d(gen(4)) + 0 * i, randomness="different")(torch.arange(3.0))
        assert a.shape == (3, 50) and a.dtype == F64 and torch.equal(a, b)
        assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])
