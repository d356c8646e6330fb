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

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

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
