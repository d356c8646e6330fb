"""`imle_fn.solvers.ranking.Ranking`: the rank vector maximises <theta, r> (brute force over
permutations), deterministic ties consistent with TopK, infinities, dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.func import vmap

from imle_fn.core.solving import map_solve
from imle_fn.solvers.ranking import Ranking, ranks
from imle_fn.solvers.topk import TopK
from tests.helpers import HYP
from tests.naive import naive_ranking


@HYP
@given(st.lists(st.integers(-2, 2), min_size=1, max_size=6))
def test_equals_the_best_permutation_with_lower_indices_ranked_higher_on_ties(
    values: list[int],
) -> None:
    theta = torch.tensor([values], dtype=torch.float64)
    assert map_solve(theta, Ranking())[0].tolist() == naive_ranking([float(v) for v in values])


@HYP
@given(
    st.lists(st.sampled_from([-math.inf, -1.0, 0.0, 0.0, 2.0, math.inf]), min_size=1, max_size=8)
)
def test_the_top_k_ranks_are_topk_for_every_k(values: list[float]) -> None:
    theta = torch.tensor([values])
    r = map_solve(theta, Ranking())
    n = len(values)
    assert sorted(r[0].tolist()) == [float(i) for i in range(n)]
    finite = sum(v > -math.inf for v in values)
    for k in range(finite + 1):  # TopK refuses k beyond the unmasked items
        assert torch.equal((r >= n - k).to(theta.dtype), map_solve(theta, TopK(k)))


def test_leading_dims_vmap_and_dtypes() -> None:
    g = torch.Generator().manual_seed(0)
    theta = torch.randint(-3, 3, (3, 4, 6), generator=g).double()
    r = map_solve(theta, Ranking())
    assert torch.equal(vmap(vmap(Ranking()))(theta), r)
    assert torch.equal(ranks(theta), r)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        out = map_solve(theta.to(dtype), Ranking())
        assert out.dtype == dtype and torch.equal(out.double(), r)
    with pytest.raises(TypeError, match="theta: expected a floating-point tensor"):
        ranks(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="at least 1 dim"):
        ranks(torch.tensor(1.0))
    assert Ranking() == Ranking() and hash(Ranking()) == hash(Ranking())


def test_ranks_beyond_the_dtypes_exact_integers_are_refused() -> None:
    """bfloat16 holds integers exactly up to 256, float16 up to 2048: more items would give ranks
    that are not a permutation, so they raise; at the limit the ranks are still a permutation."""
    g = torch.Generator().manual_seed(1)
    for dtype, limit in ((torch.bfloat16, 257), (torch.float16, 2049)):
        theta = torch.randn(limit, generator=g)
        assert map_solve(theta.to(dtype), Ranking()).unique().numel() == limit
        with pytest.raises(ValueError, match=f"{limit + 1} items need ranks up to {limit}"):
            map_solve(torch.randn(limit + 1, generator=g).to(dtype), Ranking())
