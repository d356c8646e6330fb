"""`imle_fn.solvers.spanning_tree.SpanningTree`: Kruskal's tree by brute force (ties included),
absent edges, forests, asymmetric scores, the diagonal, scores of any magnitude."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from imle_fn.core.solving import map_solve
from imle_fn.solvers.spanning_tree import SpanningTree
from tests.helpers import HYP
from tests.naive import naive_spanning_tree

SCORES = [-2.0, -1.0, 0.0, 0.0, 1.0, 1.0, 2.0, -math.inf]  # ties and absent edges on purpose


def graphs(max_n: int) -> st.SearchStrategy[np.ndarray]:
    """Batches [1..2, n, n] of `SCORES`, asymmetric, n in 1..max_n."""
    return st.tuples(st.integers(1, 2), st.integers(1, max_n)).flatmap(
        lambda bn: st.lists(
            st.sampled_from(SCORES), min_size=bn[0] * bn[1] ** 2, max_size=bn[0] * bn[1] ** 2
        ).map(lambda xs: np.array(xs).reshape(bn[0], bn[1], bn[1]))
    )


@HYP
@given(graphs(5), st.booleans())
def test_equals_brute_force_kruskal(theta: np.ndarray, forest: bool) -> None:
    expected = [naive_spanning_tree(t, forest=forest) for t in theta]
    solver = SpanningTree(forest=forest)
    if any(e is None for e in expected):
        bad = next(i for i, e in enumerate(expected) if e is None)
        with pytest.raises(ValueError, match=f"instance {bad} \\(of {len(theta)}\\).*forest=True"):
            map_solve(torch.from_numpy(theta), solver)
        return
    z = map_solve(torch.from_numpy(theta), solver).numpy()
    np.testing.assert_array_equal(z, np.stack(expected))  # type: ignore[arg-type]


def test_a_tree_is_symmetric_with_n_minus_1_edges_and_the_diagonal_is_ignored() -> None:
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 7, 7, generator=g, dtype=torch.float64)
    z = map_solve(theta, SpanningTree())
    assert torch.equal(z, z.transpose(-2, -1))
    assert (z.diagonal(dim1=-2, dim2=-1) == 0).all()
    assert (z.sum((-2, -1)) == 2 * 6).all()
    other = theta.clone()
    other.diagonal(dim1=-2, dim2=-1).copy_(torch.tensor([1e6, -math.inf, 0, 3, -5, 7, 1e-9]))
    assert torch.equal(map_solve(other, SpanningTree()), z)


def test_asymmetric_scores_solve_the_symmetrised_objective() -> None:
    """<theta, z> with z symmetric only sees theta + theta^T: no symmetrisation is needed."""
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(5, 6, 6, generator=g, dtype=torch.float64)
    sym = (theta + theta.transpose(-2, -1)) / 2
    assert not torch.equal(theta, sym)
    assert torch.equal(map_solve(theta, SpanningTree()), map_solve(sym, SpanningTree()))
    # ... and the symmetrised problem is not the upper or the lower triangle's problem alone
    upper = torch.triu(theta, 1) + torch.triu(theta, 1).transpose(-2, -1)
    assert not torch.equal(map_solve(upper, SpanningTree()), map_solve(theta, SpanningTree()))


def test_the_rank_transform_is_exact_for_scores_of_any_magnitude() -> None:
    """Edge weights 1e300 apart, and weights differing in the last bit, keep their order."""
    big = np.array(
        [[0.0, 1e300, -1e300, 1.0], [0.0, 0.0, 1e-300, -1.0], [0.0, 0.0, 0.0, 2.0], [0, 0, 0, 0]]
    )
    near = np.array(
        [[0.0, 1.0, np.nextafter(1.0, 2.0), 0.0], [0, 0, 1.0, 5e-324], [0, 0, 0, 0], [0, 0, 0, 0]]
    )
    for theta in (big, near, -big):
        z = map_solve(torch.from_numpy(theta)[None], SpanningTree())[0].numpy()
        np.testing.assert_array_equal(z, naive_spanning_tree(theta))


def test_absent_edges_and_forests() -> None:
    inf = math.inf
    theta = torch.tensor(
        [[0, 1, -inf, -inf], [1, 0, -inf, -inf], [-inf, -inf, 0, 2], [-inf, -inf, 2, 0.0]]
    )
    with pytest.raises(ValueError, match=r"instance 1 \(of 2\).*2 connected components"):
        map_solve(torch.stack([torch.zeros(4, 4), theta]), SpanningTree())
    z = map_solve(theta, SpanningTree(forest=True))
    assert z.sum() == 4 and z[0, 1] == z[2, 3] == 1  # a tree on each component
    one_way = torch.zeros(3, 3)
    one_way[0, 1] = -inf  # -inf in either direction removes the edge ({0, 1} here)
    one_way[1, 0] = 5.0
    assert map_solve(one_way, SpanningTree()).tolist() == [[0, 0, 1], [0, 0, 1], [1, 1, 0]]


def test_bad_input() -> None:
    theta = torch.zeros(2, 3, 3)
    theta[1, 2, 0] = math.inf
    with pytest.raises(ValueError, match=r"\+inf edge score at instance 1"):
        map_solve(theta, SpanningTree())
    with pytest.raises(ValueError, match="square"):
        map_solve(torch.zeros(2, 3, 4), SpanningTree())
    with pytest.raises(TypeError, match="forest: expected a bool"):
        SpanningTree(forest=1)  # type: ignore[arg-type]
    assert map_solve(torch.zeros(1, 1), SpanningTree()).tolist() == [[0.0]]  # one node, no edge
