"""`imle_fn.estimators.k_subset`: the exact k-subset family in O(n k) against enumeration.

Log-partition, marginals and the marginals' VJP against `tests.naive` (enumeration of all
``n choose k`` states) for every ``n <= 12`` and every ``k``, on random, tied and masked scores in
float32 and float64; identities that hold at any size (shift, complement) for ``n`` in the
thousands; derivatives of every order through `torch.func`; compile and vmap.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.func import grad, hessian, jacrev, vmap

from imle_fn.estimators.k_subset import topk_log_partition, topk_marginals, topk_marginals_vjp
from tests.naive import (
    k_subset_states,
    naive_topk_log_partition,
    naive_topk_log_partition_loop,
    naive_topk_marginals,
)

F64 = torch.float64
INF = math.inf


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scores(kind: str, n: int, k: int, seed: int, batch: int = 3) -> torch.Tensor:
    """``[batch, n]`` float64 scores: ``random`` (N(0, 4)), ``tied`` (integers in [-1, 1]) or
    ``masked`` (random with as many ``-inf`` items as leave ``k`` finite ones, at random places)."""
    g = gen(seed)
    if kind == "tied":
        return torch.randint(-1, 2, (batch, n), generator=g).to(F64)
    theta = 2 * torch.randn(batch, n, generator=g, dtype=F64)
    if kind == "masked":
        for row in theta:
            num = int(torch.randint(0, n - k + 1, (), generator=g))
            row[torch.randperm(n, generator=g)[:num]] = -INF
    return theta


def test_the_enumeration_oracle_lists_every_k_subset_once_and_sums_them_plainly() -> None:
    states = k_subset_states(7, 3, dtype=F64)
    assert states.shape == (35, 7) and len({tuple(row) for row in states.tolist()}) == 35
    assert torch.equal(states.sum(-1), torch.full((35,), 3.0, dtype=F64))
    with pytest.raises(ValueError, match="states"):
        k_subset_states(40, 20)
    theta = torch.tensor([0.3, -1.2, 0.0, 2.0, -INF, 0.5], dtype=F64)
    weights = {
        s: math.exp(sum(theta[i].item() for i in s)) for s in itertools.combinations(range(6), 2)
    }
    total = sum(weights.values())
    plain = [sum(w for s, w in weights.items() if i in s) / total for i in range(6)]
    torch.testing.assert_close(naive_topk_marginals(theta, 2), torch.tensor(plain, dtype=F64))
    torch.testing.assert_close(
        naive_topk_log_partition(theta, 2), torch.tensor(math.log(total), dtype=F64)
    )


TOL = {F64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-6)}  # (rtol, atol)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("kind", ["random", "tied", "masked"])
def test_log_partition_and_marginals_equal_enumeration_for_every_n_and_k(
    dtype: torch.dtype, kind: str
) -> None:
    checked = 0
    for n in range(13):
        for k in range(n + 1):
            theta = scores(kind, n, k, seed=100 * n + k)
            states = k_subset_states(n, k, dtype=F64)
            assert states.shape[0] == math.comb(n, k)
            rtol, atol = TOL[dtype]
            lz, mu = topk_log_partition(theta.to(dtype), k), topk_marginals(theta.to(dtype), k)
            assert lz.dtype == mu.dtype == dtype and mu.shape == theta.shape
            torch.testing.assert_close(
                lz.to(F64), naive_topk_log_partition(theta, k), rtol=rtol, atol=atol
            )
            torch.testing.assert_close(
                mu.to(F64), naive_topk_marginals(theta, k), rtol=rtol, atol=atol
            )
            k_sum = torch.full((3,), float(k), dtype=F64)
            torch.testing.assert_close(mu.sum(-1).to(F64), k_sum, rtol=rtol, atol=atol)
            assert bool((mu[torch.isinf(theta)] == 0).all())  # masked items: exactly 0
            checked += 1
    assert checked == sum(n + 1 for n in range(13))


@pytest.mark.parametrize("kind", ["random", "tied", "masked"])
def test_marginals_vjp_is_the_transposed_jacobian_of_the_enumerated_marginals(kind: str) -> None:
    for n, k in [(1, 1), (4, 2), (7, 3), (9, 1), (10, 5), (12, 11), (12, 12)]:
        theta = scores(kind, n, k, seed=n + 7 * k)
        v = torch.randn(3, n, generator=gen(n), dtype=F64)
        jac = vmap(jacrev(lambda t, k=k: naive_topk_marginals(t, k)))(theta)  # [3, n, n]
        expected = torch.einsum("bij,bi->bj", jac, v)
        torch.testing.assert_close(topk_marginals_vjp(v, theta, k), expected, rtol=1e-9, atol=1e-12)
        # ... and the same as reverse-mode autograd through the inside-outside ops
        pullback = torch.func.vjp(lambda t, k=k: topk_marginals(t, k), theta)[1]
        torch.testing.assert_close(pullback(v)[0], expected, rtol=1e-9, atol=1e-12)
        assert bool(torch.isfinite(expected).all())
        assert expected.abs().sum() > 0 or k == n


def test_derivatives_of_every_order_are_the_familys_cumulants_and_nan_free() -> None:
    """grad A = mu, hessian A = jacrev mu = Cov(z) (symmetric), on masked scores too."""
    theta = torch.tensor([0.3, -INF, 1.2, -0.5, 0.0, -INF, 2.0], dtype=F64)
    for k in (1, 2, 4, 5):
        mu = topk_marginals(theta, k)
        torch.testing.assert_close(grad(lambda t, k=k: topk_log_partition(t, k))(theta), mu)
        cov = hessian(lambda t, k=k: topk_log_partition(t, k))(theta)
        torch.testing.assert_close(cov, jacrev(lambda t, k=k: topk_marginals(t, k))(theta))
        torch.testing.assert_close(cov, jacrev(lambda t, k=k: naive_topk_marginals(t, k))(theta))
        torch.testing.assert_close(cov, cov.T)
        third = jacrev(jacrev(lambda t, k=k: topk_marginals(t, k)))(theta)
        assert bool(torch.isfinite(third).all())
    torch.testing.assert_close(topk_marginals(theta, 1), torch.softmax(theta, -1))


def test_k_zero_and_k_n_are_the_single_state() -> None:
    theta = torch.randn(2, 6, generator=gen(1), dtype=F64)
    assert torch.equal(topk_marginals(theta, 0), torch.zeros_like(theta))
    assert torch.equal(topk_log_partition(theta, 0), torch.zeros(2, dtype=F64))
    torch.testing.assert_close(topk_marginals(theta, 6), torch.ones_like(theta))
    torch.testing.assert_close(topk_log_partition(theta, 6), theta.sum(-1))
    empty = torch.zeros(4, 0, dtype=F64)
    assert topk_marginals(empty, 0).shape == (4, 0)
    assert torch.equal(topk_log_partition(empty, 0), torch.zeros(4, dtype=F64))


# ---- large n: stability ---------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(1000, 10), (1000, 500), (2000, 1999), (5000, 10)])
def test_large_instances_are_finite_and_satisfy_the_familys_identities(n: int, k: int) -> None:
    """No reference can enumerate these; the checks are identities the DP does not build in:
    marginals sum to k; the complement family (``1 - z`` is an ``(n - k)``-subset with scores
    ``-theta``) gives ``A(theta, k) = sum(theta) + A(-theta, n - k)`` and ``mu = 1 - mu'``;
    a shift by ``c`` adds ``k c``; float32 agrees with float64 within float32's rounding of the
    tables' log-values, whose size is that of the shifted log-partition ``A(theta - max theta)``."""
    theta = 3 * torch.randn(n, generator=gen(n + k), dtype=F64)
    lz, mu = topk_log_partition(theta, k), topk_marginals(theta, k)
    assert bool(torch.isfinite(lz)) and bool(torch.isfinite(mu).all())
    assert bool(((mu >= 0) & (mu <= 1)).all())
    torch.testing.assert_close(mu.sum(), torch.tensor(float(k), dtype=F64), rtol=0, atol=1e-8)
    lz_c = topk_log_partition(-theta, n - k)
    torch.testing.assert_close(lz, theta.sum() + lz_c, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(mu, 1 - topk_marginals(-theta, n - k), rtol=0, atol=1e-10)
    torch.testing.assert_close(topk_log_partition(theta + 7.5, k), lz + 7.5 * k)
    mu32 = topk_marginals(theta.float(), k)
    assert mu32.dtype == torch.float32
    scale = abs(float(lz) - k * float(theta.max()))  # |A(theta - max theta)|
    tol = 2 * torch.finfo(torch.float32).eps * max(scale, 1.0)
    torch.testing.assert_close(mu32.to(F64), mu, rtol=0, atol=tol)
    v = torch.randn(n, generator=gen(1), dtype=F64)
    assert bool(torch.isfinite(topk_marginals_vjp(v, theta, k)).all())


def test_large_instance_agrees_with_the_sequential_dp_in_float64() -> None:
    theta = torch.randn(2, 1000, generator=gen(3), dtype=F64)
    torch.testing.assert_close(
        topk_log_partition(theta, 10), naive_topk_log_partition_loop(theta, 10), rtol=1e-12, atol=0
    )
    mu_loop = vmap(grad(lambda t: naive_topk_log_partition_loop(t, 10)))(theta)
    torch.testing.assert_close(topk_marginals(theta, 10), mu_loop, rtol=1e-9, atol=1e-14)


def test_extreme_scores_stay_finite() -> None:
    theta = torch.tensor([1e4, -1e4, 0.0, 3e3, -INF, 1e4 - 1.0], dtype=torch.float32)
    top1 = torch.sigmoid(torch.tensor(1.0)).item()  # the two 1e4 scores differ by 1
    expected = {1: [top1, 0, 0, 0, 0, 1 - top1], 2: [1, 0, 0, 0, 0, 1], 3: [1, 0, 0, 1, 0, 1]}
    for k, mu in expected.items():
        torch.testing.assert_close(topk_marginals(theta, k), torch.tensor(mu, dtype=torch.float32))
        assert bool(torch.isfinite(topk_log_partition(theta, k)))


# ---- transforms, dtype, errors ---------------------------------------------------------------


def test_vmap_equals_batching_and_compile_equals_eager() -> None:
    theta = scores("masked", 9, 3, seed=5, batch=6).reshape(2, 3, 9)
    mu = topk_marginals(theta, 3)
    torch.testing.assert_close(vmap(vmap(lambda t: topk_marginals(t, 3)))(theta), mu)
    torch.testing.assert_close(
        vmap(lambda t: topk_log_partition(t, 3))(theta), topk_log_partition(theta, 3)
    )
    compiled = torch.compile(
        lambda t: (topk_marginals(t, 3), topk_log_partition(t, 3)),
        backend="aot_eager",
        fullgraph=True,
    )
    mu_c, lz_c = compiled(theta)
    torch.testing.assert_close(mu_c, mu)
    torch.testing.assert_close(lz_c, topk_log_partition(theta, 3))


def test_dtype_and_device_in_equal_out() -> None:
    meta = torch.empty(3, 2, 7, device="meta")  # shapes only: no value checks, no values
    assert topk_marginals(meta, 3).shape == (3, 2, 7) and topk_marginals(meta, 5).is_meta
    assert topk_log_partition(meta, 3).shape == (3, 2)
    theta = torch.randn(2, 5, generator=gen(2))
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        t = theta.to(dtype)
        for out in (topk_marginals(t, 2), topk_log_partition(t, 2), topk_marginals_vjp(t, t, 2)):
            assert out.dtype == dtype and out.device == t.device


def test_bad_input_names_the_argument_and_the_instance() -> None:
    theta = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"k: expected 0 <= k <= n = 4"):
        topk_marginals(theta, 5)
    with pytest.raises(ValueError, match="k: expected >= 0"):
        topk_log_partition(theta, -1)
    with pytest.raises(TypeError, match="k: expected an int"):
        topk_marginals(theta, 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"theta: expected a torch\.Tensor"):
        topk_marginals([0.0, 1.0], 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="theta: expected at least 1 dim"):
        topk_marginals(torch.tensor(1.0), 0)
    masked = theta.clone()
    masked[1, :3] = -INF
    with pytest.raises(
        ValueError, match=r"theta: instance 1 \(of 3\) has 1 finite scores, fewer than k = 2"
    ):
        topk_marginals(masked, 2)
    assert torch.equal(topk_marginals(masked, 1)[1], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    nan = theta.clone()
    nan[2, 0] = float("nan")
    with pytest.raises(ValueError, match="theta: contains NaN at instance 2"):
        topk_log_partition(nan, 1)
    plus = theta.clone()
    plus[0, 1] = INF
    with pytest.raises(ValueError, match=r"theta: contains \+inf at instance 0"):
        topk_marginals(plus, 1)
    with pytest.raises(ValueError, match="v: expected theta's shape"):
        topk_marginals_vjp(torch.zeros(4), theta, 1)


def test_infeasible_instances_under_vmap_give_nan_marginals_and_minus_inf_log_partition() -> None:
    """Under vmap the values cannot be inspected (no ValueError): the result says so instead."""
    theta = torch.tensor([[0.0, 1.0, -INF], [0.0, -INF, -INF]])
    mu = vmap(lambda t: topk_marginals(t, 2))(theta)
    assert bool(torch.isfinite(mu[0]).all()) and bool(torch.isnan(mu[1]).all())
    lz = vmap(lambda t: topk_log_partition(t, 2))(theta)
    assert float(lz[1]) == -INF and math.isfinite(float(lz[0]))
