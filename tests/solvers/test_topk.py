"""`imle_fn.solvers.topk`: the TopK solver (= sorting, deterministic ties, vmappable); I-MLE through it.

The exact k-subset family (log-partition, marginals, samples) is tested in tests/estimators/.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import vmap

from imle_fn.core.noise import sum_of_gamma
from imle_fn.core.solving import map_solve
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
