"""`imle_fn.solvers.topk`: the TopK solver (= sorting, deterministic ties, vmappable); I-MLE through it.

The exact k-subset family (log-partition, marginals, samples) is tested in tests/estimators/.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import vmap

from imle_fn.core.noise import sum_of_gamma
from imle_fn.core.solving import map_solve
from imle_fn.estimators.central import imle_central
from imle_fn.estimators.implicit_mle import imle
from imle_fn.solvers.topk import TopK, topk_map
from tests.naive import k_subset_states, naive_topk


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-3, 3), min_size=1, max_size=9).flatmap(
        lambda xs: st.tuples(st.just(xs), st.integers(0, len(xs)))
    )
)
def test_topk_equals_sorting_with_index_tie_break(case: tuple[list[int], int]) -> None:
    values, k = case  # small integers: many ties
    theta = torch.tensor(values, dtype=torch.float64)
    z = TopK(k)(theta[None])[0]
    assert z.tolist() == naive_topk([float(v) for v in values], k)


def test_ties_are_deterministic_and_lower_index_wins() -> None:
    theta = torch.tensor([[1.0, 2.0, 1.0, 2.0, 1.0]])
    assert topk_map(theta, 3).tolist() == [[1.0, 1.0, 0.0, 1.0, 0.0]]
    assert topk_map(theta.repeat(1000, 1), 3).eq(topk_map(theta, 3)).all()


def test_vmap_equals_batch_and_map_solve_keeps_dtype() -> None:
    theta = torch.randn(4, 3, 7, generator=torch.Generator().manual_seed(0))
    batched = TopK(3)(theta.reshape(-1, 7)).reshape(theta.shape)
    assert torch.equal(vmap(vmap(TopK(3)))(theta), batched)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        z = map_solve(theta.to(dtype), TopK(3))
        assert z.dtype == dtype and torch.equal(z.sum(-1), torch.full((4, 3), 3.0, dtype=dtype))


def test_bad_k() -> None:
    with pytest.raises(ValueError, match="k: expected >= 0"):
        TopK(-1)
    with pytest.raises(TypeError, match="k: expected an int"):
        TopK(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="<= n = 3"):
        map_solve(torch.zeros(2, 3), TopK(4))


def test_imle_gradient_is_a_descent_direction_of_the_exact_loss_on_10_choose_5() -> None:
    """I-MLE (SoG noise, k = 5, lam = 2) against the exact L(theta) = E_z ||z - b||^2 (252 states).

    I-MLE is biased (Perturb-and-MAP with SoG noise is not exactly the k-subset family, and lam is
    large), so the check is the sign: a positive cosine with the exact gradient and a small step
    against the estimate lowering the exact loss, on every one of five seeded problems.
    """
    states = k_subset_states(10, 5, dtype=torch.float64)
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        theta = torch.randn(10, generator=gen, dtype=torch.float64)
        b = torch.randn(10, generator=gen, dtype=torch.float64)
        cost = ((states - b) ** 2).sum(-1)  # [252]

        def loss(t: torch.Tensor, cost: torch.Tensor = cost) -> torch.Tensor:
            return torch.softmax(states @ t, -1) @ cost

        exact = torch.func.grad(loss)(theta)
        noise = sum_of_gamma((1000, 10), k=5.0, num_terms=10, generator=gen, dtype=torch.float64)
        theta_ = theta.clone().requires_grad_()
        z = imle(theta_, noise, TopK(5), lam=2.0)
        ((z - b) ** 2).sum().backward()  # per-sample dz = 2 (z - b); imle averages the samples
        estimate = theta_.grad
        assert estimate is not None
        cosine = torch.nn.functional.cosine_similarity(estimate, exact, dim=0)
        assert cosine > 0.1, f"seed {seed}: cosine {cosine:.3f}"
        assert loss(theta - 0.1 * estimate) < loss(theta) < loss(theta + 0.1 * estimate)


# ---- masks and per-instance k ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([-math.inf, -1.0, 0.0, 0.0, 1.0, math.inf]), min_size=1, max_size=8)
)
def test_masked_items_are_never_chosen_and_too_few_items_name_the_instance(
    values: list[float],
) -> None:
    theta = torch.tensor([[0.0] * len(values), values])  # instance 1 carries the masks
    finite = sum(v > -math.inf for v in values)
    for k in range(len(values) + 1):
        if k > finite:
            with pytest.raises(
                ValueError, match=f"instance 1 \\(of 2\\): fewer than k = {k} items"
            ):
                map_solve(theta, TopK(k))
            with pytest.raises(ValueError, match=r"theta\[1\]: fewer than k"):
                topk_map(theta, k)
            continue
        z = map_solve(theta, TopK(k))
        assert z[1].tolist() == naive_topk(values, k)
        assert torch.equal(vmap(TopK(k))(theta), z)  # called directly under vmap
        assert not (z[1].bool() & (theta[1] == -math.inf)).any()


def test_too_few_items_under_a_direct_vmap_give_nan_not_a_masked_item() -> None:
    theta = torch.tensor([[0.0, 1.0, 2.0], [0.0, -math.inf, -math.inf]])
    z = vmap(TopK(2))(theta)
    assert z[0].tolist() == [0.0, 1.0, 1.0] and z[1].isnan().all()
    z = vmap(lambda t: topk_map(t, torch.tensor(2)))(theta)
    assert z[0].tolist() == [0.0, 1.0, 1.0] and z[1].isnan().all()


def test_per_instance_k_broadcast_over_samples() -> None:
    g = torch.Generator().manual_seed(3)
    k = torch.tensor([[0, 1, 2], [3, 5, 4]])  # [*batch] = [2, 3]
    theta = torch.randint(-2, 3, (4, 2, 3, 5), generator=g).float()  # [S, *batch, n]: ties
    z = map_solve(theta, TopK(k))
    for s in range(4):
        for a in range(2):
            for b in range(3):
                assert z[s, a, b].tolist() == naive_topk(theta[s, a, b].tolist(), int(k[a, b]))
    assert torch.equal(vmap(lambda t: map_solve(t, TopK(k)))(theta), z)  # vmap over samples
    assert torch.equal(topk_map(theta, k), z)  # the function form broadcasts like torch
    assert torch.equal(topk_map(theta, k[:, :1]), topk_map(theta, torch.tensor([[0], [3]])))
    with pytest.raises(ValueError, match=r"data for 6 instances.*got 8 instances"):
        map_solve(theta[:, 0, :2], TopK(k))
    masked = theta.clone()
    masked[2, 1, 1, 1:] = -math.inf  # instance (2, 1, 1) = 2 * 6 + 4 needs k = 5, has 1 item
    with pytest.raises(
        ValueError, match=r"instance 16 \(of 24\), data entry \(1, 1\): fewer than k = 5"
    ):
        map_solve(masked, TopK(k))
    with pytest.raises(ValueError, match=r"theta\[2, 1, 1\]: fewer than k = 5"):
        topk_map(masked, k)
    with pytest.raises(ValueError, match=r"k: expected <= n = 4, got 5 at index \(1, 1\)"):
        map_solve(theta[..., :4], TopK(k))


def test_per_instance_k_equality_hashing_and_bad_values() -> None:
    a, b = TopK(torch.tensor([1, 2])), TopK(np.array([1, 2]))
    assert a == b and hash(a) == hash(b) and len({a: 0, b: 1}) == 1  # one registry key
    assert a != TopK([2, 1]) and a != TopK(1) and TopK(2) == TopK(2)
    assert TopK(torch.tensor(3)) == TopK(3) and isinstance(TopK(torch.tensor(3)).k, int)
    assert hash(TopK(3)) == hash(TopK(3)) and len({TopK(3): 0, TopK(3): 1}) == 1
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(ValueError, match=r"k: expected whole numbers, got 1.5 at index \(1,\)"):
        TopK(torch.tensor([1.0, 1.5]))
    with pytest.raises(ValueError, match="k: expected integers >= 0"):
        TopK([1, -1])
    with pytest.raises(ValueError, match="k: expected at least one subset size"):
        TopK(torch.tensor([], dtype=torch.int64))
    with pytest.raises(TypeError, match="k: expected integers"):
        TopK(torch.tensor([True]))
    with pytest.raises(ValueError, match="k: expected a shape broadcastable"):
        topk_map(torch.zeros(2, 3), torch.tensor([1, 1, 1]))


def test_masked_items_get_no_imle_gradient() -> None:
    """Masks compose with the estimators that only add to theta (imle, imle_central, dbb)."""
    theta = torch.tensor([[1.0, -math.inf, 0.5, 0.2], [0.3, 0.1, -math.inf, 2.0]])
    noise = sum_of_gamma((5, 2, 4), k=2.0, generator=torch.Generator().manual_seed(0))
    dz = torch.randn(5, 2, 4, generator=torch.Generator().manual_seed(1))
    for fn in (
        lambda t: imle(t, noise, TopK(2), lam=1.0),
        lambda t: imle_central(t, noise, TopK(torch.tensor([2, 1])), lam=1.0),
    ):
        t = theta.clone().requires_grad_()
        z = fn(t)
        assert not (z.bool() & (theta == -math.inf)).any()
        (z * dz).sum().backward()
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
        assert (t.grad[theta == -math.inf] == 0).all()
