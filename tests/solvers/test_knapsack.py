"""`imle_fn.solvers.knapsack.Knapsack`: exact selections by brute force (tie rule included),
per-instance data broadcast over samples, integer weights, equality by value."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from imle_fn.core.solving import map_solve
from imle_fn.solvers.knapsack import MAX_TABLE, Knapsack
from tests.helpers import HYP
from tests.naive import naive_knapsack

SCORES = [-2.0, -1.0, 0.0, 0.0, 1.0, 1.0, 2.0, 3.0, -math.inf]


@st.composite
def instances(draw: st.DrawFn) -> tuple[list[float], list[int], int]:
    n = draw(st.integers(1, 8))  # n = 0: the boundary cannot fold an empty event (see report)
    theta = draw(st.lists(st.sampled_from(SCORES), min_size=n, max_size=n))
    weights = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    return theta, weights, draw(st.integers(0, 12))


@HYP
@given(st.lists(instances(), min_size=1, max_size=4))
def test_equals_brute_force_with_the_documented_tie_rule(
    cases: list[tuple[list[float], list[int], int]],
) -> None:
    for theta, weights, capacity in cases:
        z = map_solve(torch.tensor([theta], dtype=torch.float64), Knapsack(weights, capacity))
        assert z[0].tolist() == naive_knapsack(theta, weights, capacity)


def test_ties_take_the_lower_index_and_never_a_zero_score() -> None:
    solver = Knapsack([2, 2, 2, 1], 4)
    z = map_solve(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), solver)
    assert z.tolist() == [[1.0, 1.0, 0.0, 0.0]]  # any two of the first three; the first two
    z = map_solve(torch.tensor([[-1.0, -math.inf, 0.0, 0.0]]), solver)
    assert z.tolist() == [[0.0, 0.0, 0.0, 0.0]]  # negative, masked and zero scores: never taken


def test_per_instance_data_broadcast_over_samples() -> None:
    g = torch.Generator().manual_seed(0)
    weights = torch.randint(0, 6, (2, 3, 7), generator=g)  # [*batch, n], batch (2, 3)
    capacity = torch.tensor([4, 9, 15])  # [3]: broadcast against the weights' batch
    solver = Knapsack(weights, capacity)
    assert solver.batch_shape == (2, 3) and solver.weights.shape == (2, 3, 7)
    theta = torch.randint(-3, 5, (4, 2, 3, 7), generator=g).double()  # [S, *batch, n]
    z = map_solve(theta, solver)
    for s in range(4):
        for a in range(2):
            for b in range(3):
                expected = naive_knapsack(
                    theta[s, a, b].tolist(), weights[a, b].tolist(), int(capacity[b])
                )
                assert z[s, a, b].tolist() == expected
    # The same instances in one batch of 24 or 6 at a time (the kernel's threads and chunks).
    looped = torch.stack([map_solve(t, solver) for t in theta])
    assert torch.equal(z, looped)
    shared = Knapsack(weights[0, 0], capacity)  # one weight vector, three capacities
    assert shared.weights.shape == (3, 7)
    with pytest.raises(
        ValueError, match=r"data for 6 instances.*got 8 instances, not a multiple of 6"
    ):
        map_solve(theta[:, 0, :2], solver)
    with pytest.raises(ValueError, match="weights for 7 items, the scores have 6"):
        map_solve(theta[..., :6], solver)


def test_large_batches_use_the_threads_and_agree_with_one_instance_at_a_time() -> None:
    g = torch.Generator().manual_seed(1)
    weights = torch.randint(1, 20, (50,), generator=g)
    theta = torch.randn(64, 50, generator=g)  # float32
    solver = Knapsack(weights, 100)
    z = map_solve(theta, solver)
    assert z.dtype == torch.float32
    one_by_one = torch.cat([map_solve(t[None], solver) for t in theta])
    assert torch.equal(z, one_by_one)
    assert ((z * weights).sum(-1) <= 100).all()
    # Greedy by score density is feasible, so the exact optimum is at least as good.
    value = (z * theta).sum(-1)
    density = (theta / weights).tolist()  # [64, 50]
    for i in range(64):
        order = sorted(range(50), key=density[i].__getitem__, reverse=True)
        left, greedy = 100, 0.0
        for j in order:
            if theta[i, j] > 0 and weights[j] <= left:
                left -= int(weights[j])
                greedy += float(theta[i, j])
        assert value[i] >= greedy - 1e-5


def test_weights_must_be_whole_numbers_and_other_bad_input() -> None:
    with pytest.raises(
        ValueError, match=r"weights: expected whole numbers, got 1.5 at index \(1,\)"
    ):
        Knapsack([1.0, 1.5], 3)
    assert Knapsack(torch.tensor([1.0, 2.0]), 3.0) == Knapsack([1, 2], 3)  # whole floats are fine
    with pytest.raises(ValueError, match="weights: expected integers >= 0, got -1"):
        Knapsack([1, -1], 3)
    with pytest.raises(ValueError, match="capacity: expected integers >= 0"):
        Knapsack([1, 1], -3)
    with pytest.raises(TypeError, match="weights: expected integers"):
        Knapsack([True, False], 3)
    with pytest.raises(ValueError, match="weights: expected at least 1 dims"):
        Knapsack(3, 3)
    with pytest.raises(ValueError, match="do not broadcast"):
        Knapsack(torch.ones(2, 3, dtype=torch.int64), torch.ones(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\+inf score at instance 1 \(of 2\)"):
        map_solve(torch.tensor([[1.0, 2.0], [math.inf, 0.0]]), Knapsack([1, 1], 1))
    huge = Knapsack([MAX_TABLE, MAX_TABLE], MAX_TABLE)
    with pytest.raises(ValueError, match="capacity: the dynamic-programming table of instance 0"):
        map_solve(torch.ones(1, 2), huge)
    bigger = Knapsack([MAX_TABLE, 1], 2**41)  # the user's capacity quoted, and the part used
    used = rf"capacity {2**41}, of which {MAX_TABLE + 1} can be used"
    with pytest.raises(ValueError, match=used):
        map_solve(torch.ones(1, 2), bigger)
    # The capacity is capped at the weight of the positive-score items that fit: fine here.
    assert map_solve(torch.tensor([[-1.0, -1.0]]), huge).tolist() == [[0.0, 0.0]]
    too_heavy = Knapsack([2 * MAX_TABLE, 1], MAX_TABLE)
    assert map_solve(torch.tensor([[5.0, 1.0]]), too_heavy).tolist() == [[0.0, 1.0]]


def test_equality_hashing_and_pickling_are_by_value() -> None:
    a = Knapsack(torch.tensor([[1, 2], [3, 4]]), torch.tensor([3, 5]))
    b = Knapsack(np.array([[1, 2], [3, 4]]), [3, 5])
    assert a == b and hash(a) == hash(b) and len({a: 0, b: 1}) == 1  # one registry key
    assert a != Knapsack([[1, 2], [3, 4]], [3, 6]) and a != Knapsack([1, 2], [3, 5])
    with pytest.raises(ValueError, match="read-only"):
        a.weights[0, 0] = 7
    c = pickle.loads(pickle.dumps(a))
    assert c == a and hash(c) == hash(a) and "_hash" not in pickle.loads(pickle.dumps(a)).__dict__
    user = torch.tensor([1, 2])
    solver = Knapsack(user, 2)
    user[0] = 5  # the solver keeps its own copy
    assert solver.weights.tolist() == [1, 2]


@pytest.mark.parametrize("capacity", [2**63 - 1, np.uint64(2**63 - 1), np.int64(2**63 - 1)])
def test_the_largest_int64_capacity_is_accepted(capacity: object) -> None:
    """main: 2**63 - 1 was refused as "not fitting in int64" (compared as float64, = 2**63)."""
    z = map_solve(torch.tensor([1.0, 2.0, -1.0]), Knapsack([1, 2, 3], capacity))
    assert z.tolist() == [1.0, 1.0, 0.0]  # everything fits; the negative score stays out


@pytest.mark.parametrize("capacity", [2**63, 2**70, np.uint64(2**63), 2.0**63])
def test_capacities_beyond_int64_name_the_value(capacity: object) -> None:
    with pytest.raises(ValueError, match=r"capacity: expected integers that fit in int64, got 9|1"):
        Knapsack([1, 2, 3], capacity)


def test_object_arrays_of_python_ints_are_integers() -> None:
    """main: StopIteration when every int of an object array fitted in int64."""
    solver = Knapsack(np.array([1, 2], dtype=object), np.array(3, dtype=object))
    assert solver == Knapsack([1, 2], 3)
    with pytest.raises(
        ValueError,
        match=rf"weights: expected integers that fit in int64, got {2**64} at index \(1,\)",
    ):
        Knapsack(np.array([1, 2**64], dtype=object), 3)
