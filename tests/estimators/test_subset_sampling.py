"""`imle_fn.estimators.subset_sampling`: SIMPLE's exact sampler and its exact-marginal gradient.

The sampler against the family's exact distribution (enumeration, `tests.naive`): joint
frequencies by a chi-square test and marginal frequencies within a tolerance set by the sample
count. These tests are probabilistic but seeded (fixed uniforms), so they are deterministic; the
thresholds make a false failure of a correct sampler unlikely (p < 1e-3 per check) and a wrong
split probability visible. The gradient against `torch.func.jacrev` of the enumerated marginals;
composition with vmap, grad, jacrev, ``.backward()`` and torch.compile.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from scipy import stats
from torch.func import grad, jacrev, vmap

from imle_fn.estimators.k_subset import topk_marginals
from imle_fn.estimators.subset_sampling import simple, simple_vjp, topk_sample
from tests.naive import (
    k_subset_states,
    naive_topk_log_partition,
    naive_topk_marginals,
    naive_topk_sample,
)

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


# ---- SIMPLE's gradient ----------------------------------------------------------------------


def expected_grad(theta: torch.Tensor, dz: torch.Tensor, k: int, sample_dims: int) -> torch.Tensor:
    """mean over samples of J_mu^T dz_s, with J_mu from jacrev of the enumerated marginals."""
    flat = theta.reshape(-1, theta.shape[-1])
    jac = vmap(jacrev(lambda t: naive_topk_marginals(t, k)))(flat).reshape(
        *theta.shape, theta.shape[-1]
    )  # [*batch, n (output i), n (input j)]
    v = dz.mean(dim=tuple(range(sample_dims))) if sample_dims else dz
    return torch.einsum("...ij,...i->...j", jac, v)


@pytest.mark.parametrize(
    ("batch", "sample", "k"), [((), (), 2), ((3,), (4,), 3), ((2, 3), (2, 5), 5), ((4,), (3,), 7)]
)
def test_gradient_is_the_mean_over_samples_of_the_exact_marginals_vjp(
    batch: tuple[int, ...], sample: tuple[int, ...], k: int
) -> None:
    theta = torch.randn(*batch, 8, generator=gen(6), dtype=F64)
    if batch:
        theta.reshape(-1, 8)[0, 1] = -INF  # a masked item: zero gradient
    noise = uniforms((*sample, *batch, 8), seed=7)
    dz = torch.randn(*sample, *batch, 8, generator=gen(8), dtype=F64)
    t = theta.clone().requires_grad_()
    z = simple(t, noise, k)
    assert torch.equal(z, topk_sample(theta, noise, k))  # forward: the exact sampler
    (z * dz).sum().backward()
    expected = expected_grad(theta, dz, k, len(sample))
    assert t.grad is not None and expected.abs().sum() > 0
    torch.testing.assert_close(t.grad, expected)
    torch.testing.assert_close(simple_vjp(dz, theta, noise, k), expected)
    if batch:
        assert float(t.grad.reshape(-1, 8)[0, 1]) == 0.0


def test_jacrev_of_one_sample_is_the_jacobian_of_the_exact_marginals() -> None:
    theta = torch.tensor([0.4, -1.0, 0.0, 2.0, -INF, 0.7], dtype=F64)
    noise = uniforms((6,), seed=9)  # no sample dim: the backward is J_mu^T dz itself
    jac = jacrev(lambda t: simple(t, noise, 3))(theta)
    torch.testing.assert_close(jac, jacrev(lambda t: naive_topk_marginals(t, 3))(theta))
    hess = jacrev(lambda t: naive_topk_log_partition(t, 3).sum())  # grad = mu
    torch.testing.assert_close(jac, jacrev(hess)(theta))


def test_the_backward_is_itself_differentiable() -> None:
    """grad of a loss through SIMPLE is J_mu(theta)^T dz: differentiable in theta (Hessian-vector
    products of the surrogate), equal to differentiating the enumerated marginals' VJP."""
    theta = torch.randn(7, generator=gen(10), dtype=F64)
    noise = uniforms((3, 7), seed=11)
    w = torch.randn(7, generator=gen(12), dtype=F64)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return (simple(t, noise, 3) * w).sum(-1).mean()

    def exact(t: torch.Tensor) -> torch.Tensor:  # the same gradient, from the enumeration
        pullback = torch.func.vjp(lambda x: naive_topk_marginals(x, 3), t)[1]
        return pullback(w / 3)[0]  # dz_s = w / 3, averaged over the 3 samples

    torch.testing.assert_close(grad(loss)(theta), exact(theta))
    torch.testing.assert_close(jacrev(grad(loss))(theta), jacrev(exact)(theta))


# ---- composition, dtype, errors -------------------------------------------------------------


def test_vmap_equals_loop_and_every_transform_agrees() -> None:
    theta = torch.randn(4, 9, generator=gen(13), dtype=F64)
    noise = uniforms((5, 4, 9), seed=14)
    target = torch.randn(4, 9, generator=gen(15), dtype=F64)

    def loss(t: torch.Tensor, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((simple(t, u, 3) - y) ** 2).sum(-1).mean(0).sum()

    t = theta.clone().requires_grad_()
    loss(t, noise, target).backward()
    assert t.grad is not None
    torch.testing.assert_close(grad(loss)(theta, noise, target), t.grad)
    per_row = vmap(grad(loss), in_dims=(0, 1, 0))(theta, noise, target)
    loop = torch.stack([grad(loss)(theta[b], noise[:, b], target[b]) for b in range(4)])
    torch.testing.assert_close(per_row, loop)
    torch.testing.assert_close(per_row, t.grad)
    z = vmap(lambda a, u: simple(a, u, 3), in_dims=(0, 1), out_dims=1)(theta, noise)
    assert torch.equal(z, simple(theta, noise, 3))
    nested = vmap(vmap(lambda a, u: topk_sample(a, u, 3)), in_dims=(None, 0))(theta, noise)
    assert torch.equal(nested, z)  # vmapped over samples (outer) and rows (inner)


def test_compile_equals_eager() -> None:
    theta = torch.randn(3, 10, generator=gen(16))
    noise = uniforms((4, 3, 10), seed=17, dtype=torch.float32)
    w = torch.randn(3, 10, generator=gen(18))

    def step(t: torch.Tensor) -> torch.Tensor:
        return (simple(t, noise, 4) * w).sum(-1).mean(0).sum()

    def per_row(t: torch.Tensor) -> torch.Tensor:
        return vmap(lambda a, u, b: (simple(a, u, 4) * b).sum(-1).mean(0), in_dims=(0, 1, 0))(
            t, noise, w
        ).sum()

    for fn in (step, per_row):
        eager, compiled = theta.clone().requires_grad_(), theta.clone().requires_grad_()
        fn(eager).backward()
        out = torch.compile(fn, backend="aot_eager", fullgraph=True)(compiled)
        out.backward()
        torch.testing.assert_close(out, fn(theta))
        assert eager.grad is not None and compiled.grad is not None
        torch.testing.assert_close(compiled.grad, eager.grad)


def test_dtype_and_device_in_equal_out_and_grads_reproduce() -> None:
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        theta = torch.randn(2, 6, generator=gen(19)).to(dtype).requires_grad_()
        z = simple(theta, uniforms((3, 2, 6), seed=20), 2)  # float64 uniforms: any float dtype
        assert z.dtype == dtype and z.device == theta.device
        (z * torch.arange(6.0)).sum().backward()
        assert theta.grad is not None and theta.grad.dtype == dtype
    grads = []
    for _ in range(2):
        t = torch.randn(2, 6, generator=gen(21)).requires_grad_()
        u = torch.rand((3, 2, 6), generator=gen(22))
        (simple(t, u, 2) * torch.arange(6.0)).sum().backward()
        grads.append(t.grad)
    assert grads[0] is not None and grads[1] is not None and torch.equal(grads[0], grads[1])


def test_bad_input_names_the_argument_and_the_instance() -> None:
    theta = torch.zeros(3, 5)
    noise = torch.rand(2, 3, 5, generator=gen(23))
    with pytest.raises(TypeError, match="noise: SIMPLE samples exactly"):
        simple(theta, None, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise: expected one uniform per item"):
        simple(theta, noise[..., :1], 2)
    with pytest.raises(ValueError, match=r"k: expected 0 <= k <= n = 5"):
        simple(theta, noise, 6)
    with pytest.raises(ValueError, match="noise: must not require grad"):
        simple(theta, noise.clone().requires_grad_(), 2)
    bad = noise.clone()
    bad[1, 2, 0] = 1.5
    with pytest.raises(
        ValueError, match=r"noise: expected uniforms in \[0, 1\].*instance 5 \(of 6\)"
    ):
        simple(theta, bad, 2)
    masked = theta.clone()
    masked[2, 1:] = -INF
    with pytest.raises(ValueError, match=r"theta: instance 2 \(of 3\) has 1 finite scores"):
        simple(masked, noise, 2)
    with pytest.raises(ValueError, match=r"theta: instance 2 \(of 3\) has 1 finite scores"):
        vmap(lambda t, u: simple(t, u, 2), in_dims=(0, 1))(masked, noise)  # checked under vmap
    with pytest.raises(ValueError, match=r"theta: instance 2 \(of 3\) has 1 finite scores"):
        torch.compile(lambda t: simple(t, noise, 2), backend="aot_eager", fullgraph=True)(masked)
    nan = theta.clone()
    nan[1, 3] = float("nan")
    with pytest.raises(ValueError, match="theta: contains NaN at instance 1"):
        topk_sample(nan, noise, 2)
    with pytest.raises(NotImplementedError):
        torch.func.jvp(lambda t: simple(t, noise, 2), (theta,), (torch.ones_like(theta),))
