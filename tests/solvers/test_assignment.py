"""`imle_fn.solvers.assignment.Assignment`: optimal matchings of the smaller side (brute force),
forbidden pairs, rectangular scores, deterministic ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from imle_fn.core.solving import map_solve
from imle_fn.solvers.assignment import Assignment
from tests.helpers import HYP
from tests.naive import naive_assignment_value

SCORES = [-2.0, -1.0, 0.0, 0.0, 1.0, 1.0, 3.0, -math.inf]  # ties and forbidden pairs on purpose


def matrices(max_side: int) -> st.SearchStrategy[np.ndarray]:
    """Batches [1..3, 1..max_side, 1..max_side] of `SCORES`."""
    return st.tuples(st.integers(1, 3), st.integers(1, max_side), st.integers(1, max_side)).flatmap(
        lambda shape: st.lists(
            st.sampled_from(SCORES), min_size=math.prod(shape), max_size=math.prod(shape)
        ).map(lambda xs: np.array(xs).reshape(shape))
    )


@HYP
@given(matrices(4))
def test_matches_brute_force_or_names_the_infeasible_instance(theta: np.ndarray) -> None:
    values = [naive_assignment_value(t) for t in theta]
    if -math.inf in values:
        bad = values.index(-math.inf)
        with pytest.raises(ValueError, match=f"instance {bad} \\(of {len(theta)}\\)"):
            map_solve(torch.from_numpy(theta), Assignment())
        return
    z = map_solve(torch.from_numpy(theta), Assignment()).numpy()
    n, m = theta.shape[1:]
    assert set(np.unique(z)) <= {0.0, 1.0}
    assert (z.sum(-1) <= 1).all() and (z.sum(-2) <= 1).all()  # at most one pair per row/column
    assert (z.sum((-2, -1)) == min(n, m)).all()  # the smaller side is matched completely
    for zi, ti, best in zip(z, theta, values, strict=True):
        assert not (zi.astype(bool) & np.isneginf(ti)).any()  # no forbidden pair
        assert float(np.where(zi > 0, ti, 0.0).sum()) == best


def test_rectangular_both_ways_and_negative_scores_still_matched() -> None:
    tall = torch.tensor([[[-5.0, -1.0], [-2.0, -3.0], [-4.0, -6.0]]])  # 3 x 2: both columns used
    z = map_solve(tall, Assignment())
    assert z.tolist() == [[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]]
    wide = tall.transpose(-2, -1).contiguous()  # 2 x 3: both rows used
    assert torch.equal(map_solve(wide, Assignment()), z.transpose(-2, -1))


def test_ties_are_deterministic_and_independent_of_the_batch() -> None:
    theta = torch.zeros(1, 4, 4)  # every permutation is optimal
    alone = map_solve(theta, Assignment())
    batch = torch.cat([torch.randn(5, 4, 4, generator=torch.Generator().manual_seed(0)), theta])
    assert torch.equal(map_solve(batch, Assignment())[-1:], alone)
    assert torch.equal(map_solve(theta, Assignment()), alone)


def test_bad_scores_name_the_instance() -> None:
    theta = torch.zeros(3, 2, 2)
    theta[2, 0, 1] = math.inf
    with pytest.raises(ValueError, match=r"\+inf score at instance 2"):
        map_solve(theta, Assignment())
    theta = torch.zeros(3, 2, 2)
    theta[1, 0] = -math.inf  # row 0 of instance 1 has no allowed partner
    with pytest.raises(ValueError, match=r"instance 1 \(of 3\).*forbidden"):
        map_solve(theta, Assignment())
    assert Assignment() == Assignment() and hash(Assignment()) == hash(Assignment())
