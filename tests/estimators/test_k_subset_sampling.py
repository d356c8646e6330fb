"""`imle_fn.estimators.k_subset_sampling`: the exact k-subset sampler `topk_sample` (SIMPLE's forward).

Against the family's exact distribution (enumeration, `tests.naive`): joint frequencies by a
chi-square test and marginal frequencies within a tolerance set by the sample count. These tests are
probabilistic but seeded (fixed uniforms), so they are deterministic; the thresholds make a false
failure of a correct sampler unlikely (p < 1e-3 per check) and a wrong split probability visible.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from scipy import stats

from imle_fn.estimators.k_subset import topk_marginals
from imle_fn.estimators.k_subset_sampling import topk_sample
from tests.naive import k_subset_states, naive_topk_sample

F64 = torch.float64
INF = math.inf


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uniforms(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.rand(shape, generator=gen(seed), dtype=dtype)


# ---- the sampler ----------------------------------------------------------------------------

JOINT_CASES = {
    "random": (torch.tensor([0.5, -1.0, 1.5, 0.0, 0.3]), 2),
    "ties and a mask": (torch.tensor([1.0, 1.0, -INF, 0.0, 1.0, 0.0]), 3),
    "k > n / 2 (complement)": (torch.tensor([0.2, -0.7, 1.1, 0.0, -2.0, 0.4, 0.9]), 5),
    "k > n / 2 with masks": (torch.tensor([0.2, -INF, 1.1, 0.0, -INF, 0.4, 0.9]), 4),
}


@pytest.mark.parametrize("case", sorted(JOINT_CASES))
def test_joint_frequencies_pass_a_chi_square_test_against_the_exact_distribution(case: str) -> None:
    """Seeded; 20,000 samples. A correct sampler fails with probability 1e-3."""
    theta, k = JOINT_CASES[case]
    theta = theta.to(F64)
    num = 20_000
    z = topk_sample(theta, uniforms((num, theta.shape[0]), seed=len(case)), k)  # [S, n]
    states = k_subset_states(theta.shape[0], k, dtype=F64)  # [M, n]
    finite = torch.isfinite(theta)
    logits = torch.where(finite, theta, 0.0) @ states.T
    probs = torch.softmax(logits.masked_fill((~finite).to(F64) @ states.T > 0, -INF), -1)  # [M]
    counts = Counter(tuple(row) for row in z.tolist())
    observed = torch.tensor([counts.pop(tuple(s), 0) for s in states.tolist()], dtype=F64)
    assert not counts, f"samples outside the k-subsets: {counts}"  # every sample is k-hot
    assert observed[probs == 0].sum() == 0  # never a state holding a masked item
    possible = probs > 0
    result = stats.chisquare(observed[possible], num * probs[possible])
    assert result.pvalue > 1e-3, f"{case}: chi-square p = {result.pvalue:.2e}"


def test_marginal_frequencies_match_the_exact_marginals_within_the_sampling_error() -> None:
    """Seeded; 10,000 samples of 4 instances of 60 items; each frequency within 5 standard errors
    of its marginal (false failure: about 240 * 6e-7). A split drawn from the wrong conditional
    shifts frequencies by far more than the standard error (at most 0.005)."""
    theta = 2 * torch.randn(4, 60, generator=gen(0), dtype=F64)
    theta[1, ::4] = -INF  # 45 finite items
    num = 10_000
    for k in (1, 7, 30, 45):
        z = topk_sample(theta, uniforms((num, 4, 60), seed=k), k)
        assert torch.equal(z.sum(-1), torch.full((num, 4), float(k), dtype=F64))
        mu = topk_marginals(theta, k)
        se = (mu * (1 - mu) / num).sqrt()
        assert bool(((z.mean(0) - mu).abs() <= 5 * se + 1e-12).all())
        assert z[:, 1, ::4].sum() == 0


def test_the_sequential_baseline_sampler_is_exact_too() -> None:
    """The benchmark's baseline (tests.naive.naive_topk_sample), same seeded 5-standard-error check."""
    theta = 2 * torch.randn(12, generator=gen(30), dtype=F64)
    z = naive_topk_sample(theta, uniforms((10_000, 12), seed=31), 4)
    assert torch.equal(z.sum(-1), torch.full((10_000,), 4.0, dtype=F64))
    mu = topk_marginals(theta, 4)
    assert bool(((z.mean(0) - mu).abs() <= 5 * (mu * (1 - mu) / 10_000).sqrt()).all())


def test_samples_are_k_hot_deterministic_and_shaped_like_the_noise() -> None:
    theta = torch.randn(3, 2, 9, generator=gen(1))
    noise = uniforms((5, 4, 3, 2, 9), seed=2, dtype=torch.float32)  # two sample dims
    z = topk_sample(theta, noise, 4)
    assert z.shape == (5, 4, 3, 2, 9) and z.dtype == theta.dtype
    assert torch.equal(z.sum(-1), torch.full((5, 4, 3, 2), 4.0))
    assert torch.equal(z, topk_sample(theta, noise.clone(), 4))  # a function of (theta, noise)
    for i in range(5):  # each sample depends on its own uniforms only
        assert torch.equal(topk_sample(theta, noise[i], 4), z[i])
    shared = topk_sample(theta, noise[:, :, :1], 4)  # one draw of uniforms for all 3 rows
    assert shared.shape == (5, 4, 3, 2, 9)
    assert torch.equal(shared[:, :, 0], topk_sample(theta[0], noise[:, :, 0], 4))
    again = topk_sample(theta, torch.rand(noise.shape, generator=gen(2)), 4)
    assert torch.equal(again, z)  # the same generator seed gives the same samples


def test_uniform_i_drives_the_split_after_item_i_and_the_last_is_unused() -> None:
    theta = torch.zeros(11, dtype=F64)  # uniform distribution: every split is uncertain
    noise = uniforms((200, 11), seed=3)
    z = topk_sample(theta, noise, 4)
    for i in range(11):
        moved = noise.clone()
        moved[:, i] = 1 - moved[:, i]
        changed = not torch.equal(topk_sample(theta, moved, 4), z)
        assert changed == (i < 10), f"uniform {i}"


def test_extreme_and_edge_cases() -> None:
    theta = torch.tensor([[50.0, -50.0, 0.0, 49.0], [0.0, 0.0, 0.0, 0.0]])
    noise = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])[:, None]  # ends of [0, 1]
    z = topk_sample(theta, noise, 2)  # [2, 2, 4]
    assert torch.equal(z[:, 0], torch.tensor([[1.0, 0.0, 0.0, 1.0]] * 2))
    assert torch.equal(z.sum(-1), torch.full((2, 2), 2.0))
    assert torch.equal(topk_sample(theta, noise, 0), torch.zeros(2, 2, 4))
    assert torch.equal(topk_sample(theta, noise, 4), torch.ones(2, 2, 4))
    assert topk_sample(torch.zeros(3, 0), torch.zeros(2, 3, 0), 0).shape == (2, 3, 0)
    big = torch.randn(2, 3000, generator=gen(4))
    z = topk_sample(big, uniforms((3, 2, 3000), seed=5, dtype=torch.float32), 1500)
    assert torch.equal(z.sum(-1), torch.full((3, 2), 1500.0))
