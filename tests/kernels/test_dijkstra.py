"""`imle_fn._kernels.dijkstra`: every queue and the A* bound return today's paths, bit for bit.

The reference is the kernel as it was before the bucket queues and A* (`tests.naive.dijkstra_reference`:
a Dijkstra on (distance, hops) labels with an indexed binary heap in (distance, hops, index)
order, predecessors replaced only on strict improvements). The new kernel must return the same
status codes and the very same paths on grids with ties, zero costs, walls, clamped negatives,
float64 rounding (decimal costs), overflowing sums and tiny costs, for both neighbourhoods, for
sources and targets anywhere, with and without the A* bound and with every queue.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imle_fn._kernels import dijkstra
from imle_fn.solvers.grid_rules import raise_for_status
from tests.helpers import HYP, VALUES
from tests.naive import dijkstra_reference

WARCRAFT = [0.8, 1.2, 5.3, 7.7, 9.2]
OPTIONS = [(True, "auto"), (False, "auto"), (True, "heap"), (False, "heap")]


def _kinds(rng: np.random.Generator, kind: str, shape: tuple[int, int, int]) -> np.ndarray:
    """Random [B, H, W] costs of one kind; each kind drives a different queue or float64 corner."""
    if kind == "warcraft":  # a floor, narrow spread: Dinitz's buckets (+ A*)
        return rng.choice(WARCRAFT, size=shape).astype(np.float32)
    if kind == "ties_zeros_walls":  # zero costs: the ring + heap in (distance, hops) order
        return rng.choice([0.0, 1.0, 2.0, math.inf], size=shape, p=[0.3, 0.3, 0.2, 0.2])
    if kind == "clamped_normal":  # negatives clamped to exact zeros
        return rng.normal(size=shape)
    if kind == "decimal":  # 0.1 + 0.2 != 0.3: sums that round, with a floor
        return rng.choice([0.1, 0.2, 0.3, 0.7, math.inf], size=shape)
    if kind == "ones_twos":  # many equal-cost, equal-hop paths; float32 input
        return rng.choice([1.0, 1.0, 2.0, 3.0, math.inf], size=shape).astype(np.float32)
    if kind == "overflow":  # sums overflow to +inf: the plain heap's wide mode
        return rng.choice([1e308, 1.7e308, 1.0, math.inf], size=shape)
    if kind == "wide_spread":  # a floor, but c_max / c_min > 1024: ring + heap with A*
        return rng.choice([1e-3, 5.0, 2000.0, 0.1, 3.3], size=shape)
    if kind == "noisy_terrain":  # the I-MLE case: perturbed terrain clamped at zero
        noisy = rng.choice(WARCRAFT, size=shape) + rng.normal(size=shape)
        return np.maximum(noisy, 0.0).astype(np.float32)
    if kind == "absorbed":  # costs that vanish next to the distances (d + c == d)
        return rng.choice([1e-17, 1.0, 1e-300, 0.5], size=shape)
    if kind == "subnormal":  # all costs tiny: bucket widths far below float64's normal range
        return rng.choice([0.0, 5e-324, 1e-310, 3e-308], size=shape)
    if kind == "uniform":  # A* bound nearly exact: the bound changes the expansion order most
        return np.ones(shape) + (rng.random(shape) < 0.1)
    raise AssertionError(kind)


KINDS = [
    "warcraft",
    "ties_zeros_walls",
    "clamped_normal",
    "decimal",
    "ones_twos",
    "overflow",
    "wide_spread",
    "noisy_terrain",
    "absorbed",
    "subnormal",
    "uniform",
]


def _solve(
    costs: np.ndarray,
    source: tuple[int, int],
    target: tuple[int, int],
    eight: bool,
    heuristic: bool = True,
    queue: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(costs.shape)
    status = dijkstra.solve(
        np.ascontiguousarray(costs),
        source,
        target,
        eight=eight,
        clamp=True,
        out=out,
        heuristic=heuristic,
        queue=queue,
    )
    return status, out


@pytest.mark.parametrize("kind", KINDS)
def test_same_paths_as_the_reference_kernel(kind: str) -> None:
    rng = np.random.default_rng(KINDS.index(kind))
    checked = 0
    for _ in range(40):
        H, W = (int(x) for x in rng.integers(1, 17, size=2))
        costs = _kinds(rng, kind, (12, H, W))
        source = (int(rng.integers(H)), int(rng.integers(W)))
        target = (int(rng.integers(H)), int(rng.integers(W)))
        eight = bool(rng.integers(2))
        status, paths = dijkstra_reference(
            costs, source, target, neighbourhood=8 if eight else 4, clamp=True
        )
        for heuristic, queue in OPTIONS:
            got_status, got = _solve(costs, source, target, eight, heuristic, queue)
            np.testing.assert_array_equal(got_status, status)
            np.testing.assert_array_equal(got, paths, err_msg=f"{kind} {heuristic} {queue}")
        checked += int((status == dijkstra.OK).sum())
    assert checked > 40  # most instances are solvable: the comparison is not vacuous


@HYP
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
    values=st.lists(st.sampled_from([*VALUES, -1.0, 0.1, 0.2, 0.3]), min_size=1, max_size=8),
    ends=st.tuples(*[st.integers(0, 8)] * 4),
    eight=st.booleans(),
    data=st.data(),
)
def test_same_paths_as_the_reference_kernel_hypothesis(
    shape: tuple[int, int, int],
    values: list[float],
    ends: tuple[int, int, int, int],
    eight: bool,
    data: st.DataObject,
) -> None:
    B, H, W = shape
    cells = data.draw(st.lists(st.sampled_from(values), min_size=B * H * W, max_size=B * H * W))
    costs = np.array(cells, dtype=np.float64).reshape(shape)
    source = (ends[0] % H, ends[1] % W)
    target = (ends[2] % H, ends[3] % W)
    status, paths = dijkstra_reference(
        costs, source, target, neighbourhood=8 if eight else 4, clamp=True
    )
    for heuristic, queue in OPTIONS:
        got_status, got = _solve(costs, source, target, eight, heuristic, queue)
        np.testing.assert_array_equal(got_status, status)
        np.testing.assert_array_equal(got, paths)


def test_large_batches_and_grids_match_across_threads() -> None:
    # Batches split over Numba's threads; grids up to 60 x 60 (longer paths, bigger fronts).
    rng = np.random.default_rng(11)
    for kind, side in [("warcraft", 60), ("noisy_terrain", 40), ("uniform", 50)]:
        costs = _kinds(rng, kind, (16, side, side - 7))
        for eight in (True, False):
            status, paths = dijkstra_reference(
                costs, (3, side - 9), (side - 2, 1), neighbourhood=8 if eight else 4, clamp=True
            )
            got_status, got = _solve(costs, (3, side - 9), (side - 2, 1), eight)
            np.testing.assert_array_equal(got_status, status)
            np.testing.assert_array_equal(got, paths)


def test_a_star_keeps_the_tie_rule_where_it_expands_in_another_order() -> None:
    # Uniform costs: every staircase from (0, 0) to (4, 8) with 8 steps costs 9 (8 neighbours)
    # and A*'s bound is nearly exact, so A* settles cells in a very different order from
    # Dijkstra's; the returned path is still the reference's (the label rule does not look at
    # the order). With 4 neighbours: 13 cells, C(12, 4) equal paths.
    costs = np.ones((1, 5, 9))
    for eight in (True, False):
        status, paths = dijkstra_reference(costs, neighbourhood=8 if eight else 4)
        assert status[0] == dijkstra.OK
        for heuristic, queue in OPTIONS:
            got_status, got = _solve(costs, (0, 0), (4, 8), eight, heuristic, queue)
            assert got_status[0] == dijkstra.OK
            np.testing.assert_array_equal(got, paths)
    # The rule, by hand: 4 neighbours, back from the target always to the smaller index among
    # equal (distance, hops) predecessors: up the last column, then along the top row.
    expected = np.zeros((5, 9))
    expected[0, :] = 1
    expected[:, 8] = 1
    np.testing.assert_array_equal(_solve(costs, (0, 0), (4, 8), eight=False)[1][0], expected)


@pytest.mark.parametrize(
    ("c_min", "c_max", "total", "heuristic", "heap_only", "queue", "a_star"),
    [
        (0.8, 9.2, 600.0, True, False, "dinitz", True),  # Warcraft terrain
        (0.8, 9.2, 600.0, False, False, "dinitz", False),
        (1.0, 1.0, 900.0, True, False, "dinitz", True),
        (0.8, 40.0, 900.0, True, False, "dinitz", False),  # spread > 32: no room for a bound
        (1e-3, 2000.0, 1e4, True, False, "ring", True),  # spread > 1024: ring + heap, full A*
        (0.0, 9.0, 300.0, True, False, "ring", False),  # zero costs: no floor, no A*
        (1e-300, 1.0, 50.0, True, False, "ring", False),  # "floor" too thin for float64
        (0.0, 0.0, 0.0, True, False, "ring", False),  # all zero: one bucket
        (0.0, 1e-310, 1e-309, True, False, "ring", False),  # subnormal: the width is raised
        (1.0, 1e308, 1.7e308, True, False, "heap", False),  # sums may overflow
        (0.8, 9.2, 600.0, True, True, "heap", True),  # asked for the heap
        (0.0, 9.2, 600.0, True, True, "heap", False),
    ],
)
def test_plan_chooses_the_documented_queue(
    c_min: float,
    c_max: float,
    total: float,
    heuristic: bool,
    heap_only: bool,
    queue: str,
    a_star: bool,
) -> None:
    names = {dijkstra._DINITZ: "dinitz", dijkstra._RING_HEAP: "ring", dijkstra._HEAP: "heap"}
    chosen, g, width = dijkstra._plan(c_min, c_max, total, 29, heuristic, heap_only)
    assert names[chosen] == queue
    assert (g > 0.0) == a_star
    assert 0.0 <= g < max(c_min, 1e-300)  # admissible: below the cheapest step
    if queue == "dinitz":  # every step raises the key by more than a bucket
        assert 0.0 < width < c_min - g
        assert (c_max + g) / width + 3 <= 2 * dijkstra._MAX_DINITZ
    elif queue == "ring":  # the ring spans the largest step; 1 / width is finite
        assert np.isfinite(1.0 / width) and (c_max + g) / width <= dijkstra._RING - 3 + 1e-9


def test_the_trace_guard_reports_instead_of_hanging() -> None:
    # Labels that no search leaves behind (the target's distance offered by no neighbour): the
    # trace stops and reports, and the solver layer turns that into a RuntimeError.
    Wp = 4
    n = 4 * Wp
    cpad = np.ones(n)
    dist = np.full(n, -np.inf)
    hops = np.zeros(n, dtype=np.int32)
    s, t = Wp + 1, 2 * Wp + 2
    dist[s], dist[t], hops[t] = 1.0, 5.0, 1
    off = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], dtype=np.int64)
    out = np.zeros((1, 2, 2))
    assert not dijkstra._trace(cpad, dist, hops, off, s, t, Wp, out, 0)
    dist[t] = 2.0  # now s offers t its label
    out[:] = 0
    assert dijkstra._trace(cpad, dist, hops, off, s, t, Wp, out, 0)
    np.testing.assert_array_equal(out[0], [[1, 0], [0, 1]])
    with pytest.raises(RuntimeError, match=r"costs\[1\]: internal error"):
        raise_for_status(np.array([0, dijkstra.INTERNAL], dtype=np.int8), (2,), "costs")


def test_bad_queue_option() -> None:
    with pytest.raises(ValueError, match="queue: expected 'auto' or 'heap', got 'bucket'"):
        dijkstra.solve(
            np.ones((1, 2, 2)), (0, 0), (1, 1), eight=True, clamp=False, out=np.zeros((1, 2, 2)),
            queue="bucket",
        )  # fmt: skip
