"""`imle_fn.solvers.grid`: the Numba grid shortest-path solver against the oracles of tests/naive.py.

Oracles: brute force over all simple paths (tiny grids) and a plain heapq Dijkstra (larger grids).
Every returned indicator is checked to be ONE simple path through the neighbourhood from the source
to the target whose cost (both ends counted) equals the oracle's optimum.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from imle_fn.core.contract import Solver
from imle_fn.core.solving import map_solve
from imle_fn.solvers.grid import GridShortestPath, path_cost, shortest_path
from tests.helpers import HYP, assert_one_path, grids
from tests.naive import brute_force_oracle, dijkstra_oracle, dijkstra_reference


# -------------------------------------------------------------------------------------- optimality
@HYP
@given(costs=grids(3), neighbourhood=st.sampled_from([4, 8]))
def test_matches_brute_force_on_tiny_grids(costs: np.ndarray, neighbourhood: int) -> None:
    # VALUES are dyadic, so path sums are exact and "fewest cells among the cheapest" is exact too.
    best = [brute_force_oracle(c, neighbourhood) for c in costs]
    if any(math.isinf(b[0]) for b in best):
        first = next(i for i, b in enumerate(best) if math.isinf(b[0]))
        with pytest.raises(ValueError, match=rf"costs\[{first}\]: the target cannot be reached"):
            shortest_path(costs, neighbourhood=neighbourhood)
        return
    z = shortest_path(costs, neighbourhood=neighbourhood)
    for b in range(len(costs)):
        assert_one_path(z[b], neighbourhood)
        assert path_cost(costs[b], z[b]) == best[b][0]
        assert z[b].sum() == best[b][1]  # the documented tie rule: fewest cells


@HYP
@given(
    costs=grids(9),
    neighbourhood=st.sampled_from([4, 8]),
    ends=st.tuples(*[st.integers(-9, 8)] * 4),
)
def test_matches_dijkstra_oracle_with_ties_zeros_walls(
    costs: np.ndarray, neighbourhood: int, ends: tuple[int, int, int, int]
) -> None:
    _, H, W = costs.shape
    source = (ends[0] % H, ends[1] % W)
    target = (ends[2] % H - H, ends[3] % W)  # negative row index on purpose
    costs[:, source[0], source[1]] = 1.0  # keep walls off the ends; reachability still varies
    costs[:, target[0], target[1]] = 2.0
    best = [dijkstra_oracle(c, neighbourhood, source, target) for c in costs]
    if any(math.isinf(b) for b in best):
        with pytest.raises(ValueError, match="cannot be reached"):
            shortest_path(costs, neighbourhood=neighbourhood, source=source, target=target)
        return
    z = shortest_path(costs, neighbourhood=neighbourhood, source=source, target=target)
    for b in range(len(costs)):
        assert_one_path(z[b], neighbourhood, source, target)
        assert path_cost(costs[b], z[b]) == pytest.approx(best[b], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_random_terrain_batch_matches_oracle(neighbourhood: int) -> None:
    rng = np.random.default_rng(0)
    costs = rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], size=(40, 18, 18)).astype(np.float32)
    z = shortest_path(costs, neighbourhood=neighbourhood)
    for b in range(0, 40, 7):
        assert_one_path(z[b], neighbourhood)
        expected = dijkstra_oracle(costs[b].astype(np.float64), neighbourhood)
        assert path_cost(costs[b], z[b]) == pytest.approx(expected, rel=1e-12)


def test_both_ends_are_counted() -> None:
    z = shortest_path(np.array([[5.0, 7.0]]))
    np.testing.assert_array_equal(z, [[1.0, 1.0]])
    assert path_cost(np.array([[5.0, 7.0]]), z) == 12.0
    np.testing.assert_array_equal(shortest_path(np.array([[3.0]])), [[1.0]])


def test_documented_tie_breaking() -> None:
    # All four 2x2 costs equal: (0, 1) has the smaller row-major index than (1, 0), is settled
    # first and becomes the target's predecessor.
    z = shortest_path(np.ones((2, 2)), neighbourhood=4)
    np.testing.assert_array_equal(z, [[1, 1], [0, 1]])
    # All-zero costs: every path costs 0; the fewest cells wins (the diagonal, or 5 cells with
    # 4-neighbours, then the smaller indices: along the top row, down the right column).
    np.testing.assert_array_equal(shortest_path(np.zeros((4, 4))), np.eye(4))
    np.testing.assert_array_equal(
        shortest_path(np.zeros((3, 3)), neighbourhood=4), [[1, 1, 1], [0, 0, 1], [0, 0, 1]]
    )
    # A cheaper long detour beats a short expensive path: cost first, cells second.
    costs = np.array([[0.0, 5.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(
        shortest_path(costs, neighbourhood=4, target=(0, 2)), [[1, 0, 1], [1, 0, 1], [1, 1, 1]]
    )


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_public_api_returns_the_reference_kernels_paths(neighbourhood: int) -> None:
    # The kernel's queues and A* (tests/kernels/test_dijkstra.py) seen through the public layer:
    # floored terrain (bucket queue + A*) and clamped scores (zero costs: ring + heap), torch in.
    rng = np.random.default_rng(7)
    terrain = rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], size=(32, 15, 11))
    theta = rng.normal(size=(32, 15, 11))
    source, target = (2, -1), (-3, 0)
    z = shortest_path(
        torch.from_numpy(terrain).float(),
        neighbourhood=neighbourhood,
        source=source,
        target=target,
    )
    _, expected = dijkstra_reference(
        terrain.astype(np.float32), (2, 10), (12, 0), neighbourhood=neighbourhood
    )
    np.testing.assert_array_equal(z.numpy(), expected)
    z_np = GridShortestPath(neighbourhood=neighbourhood, source=source, target=target)(theta)
    _, expected = dijkstra_reference(
        -theta, (2, 10), (12, 0), neighbourhood=neighbourhood, clamp=True
    )
    np.testing.assert_array_equal(z_np, expected)


def test_deterministic_and_batch_invariant() -> None:
    rng = np.random.default_rng(1)
    costs = rng.choice([0.0, 1.0, 2.0], size=(64, 12, 12))  # many ties
    z = shortest_path(costs)
    np.testing.assert_array_equal(z, shortest_path(costs))
    for b in (0, 17, 63):  # alone, the same path as inside a threaded batch
        np.testing.assert_array_equal(shortest_path(costs[b]), z[b])


def test_large_grid_1000() -> None:
    costs = np.ones((1000, 1000), dtype=np.float32)
    z = shortest_path(costs)
    np.testing.assert_array_equal(z, np.eye(1000, dtype=np.float32))
    z4 = shortest_path(costs, neighbourhood=4)
    assert z4.sum() == 1999  # a monotone staircase
    assert z4[0, 0] == z4[-1, -1] == 1


# ------------------------------------------------------------------------- kinds, dtypes, shapes
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.uint8])
def test_numpy_dtype_and_shape_kept(dtype: type) -> None:
    costs: np.ndarray = np.random.default_rng(2).integers(1, 9, size=(2, 3, 5, 6)).astype(dtype)
    z = shortest_path(costs)
    assert isinstance(z, np.ndarray) and z.dtype == dtype and z.shape == costs.shape
    flat = costs.reshape(6, 5, 6).astype(np.float64)
    for b, zb in enumerate(z.reshape(6, 5, 6)):
        assert path_cost(flat[b], zb) == dijkstra_oracle(flat[b], 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int32])
def test_torch_dtype_device_and_shape_kept(dtype: torch.dtype) -> None:
    costs = torch.randint(1, 9, (3, 4, 7)).to(dtype)
    z = shortest_path(costs)
    assert isinstance(z, torch.Tensor)
    assert z.dtype == dtype and z.shape == costs.shape and z.device == costs.device
    expected = shortest_path(costs.to(torch.float64).numpy())
    np.testing.assert_array_equal(z.to(torch.float64).numpy(), expected)


def test_non_contiguous_and_grad_inputs() -> None:
    base = torch.rand(6, 8, 4, requires_grad=True)
    costs = base.transpose(1, 2)[::2]  # [3, 4, 8], non-contiguous view of a leaf requiring grad
    z = shortest_path(costs)
    assert not z.requires_grad
    np.testing.assert_array_equal(z.numpy(), shortest_path(costs.detach().contiguous().numpy()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip() -> None:
    costs = torch.rand(4, 9, 9, device="cuda")
    z = shortest_path(costs)
    assert z.device == costs.device
    torch.testing.assert_close(z.cpu(), shortest_path(costs.cpu()))


@pytest.mark.parametrize("shape", [(0, 5, 5), (2, 0, 4, 4)])
def test_empty_batch(shape: tuple[int, ...]) -> None:
    assert shortest_path(np.zeros(shape)).shape == shape
    out = shortest_path(torch.zeros(shape))
    assert isinstance(out, torch.Tensor) and out.shape == shape


# ------------------------------------------------------------------------------------- bad input
def _bad(value: float, index: tuple[int, int]) -> np.ndarray:
    costs = np.ones((2, 3, 4, 4))
    costs[index][2, 1] = value
    return costs


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("costs", "message"),
    [
        (_bad(math.nan, (1, 2)), r"costs\[1, 2\]: contains NaN"),
        (_bad(-math.inf, (0, 1)), r"costs\[0, 1\]: contains -inf"),
        (_bad(-0.5, (1, 0)), r"costs\[1, 0\]: contains a negative cost"),
    ],
)
def test_bad_costs_raise_and_input_unchanged(kind: str, costs: np.ndarray, message: str) -> None:
    arg: Any = torch.from_numpy(costs.copy()) if kind == "torch" else costs.copy()
    with pytest.raises(ValueError, match=message):
        shortest_path(arg)
    np.testing.assert_array_equal(np.asarray(arg), costs)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_unreachable_target_raises(kind: str) -> None:
    corridor = np.where(np.eye(5) > 0, 1.0, math.inf)  # a diagonal: open to 8-neighbours only
    costs = np.stack([np.ones((5, 5)), corridor, corridor])
    arg: Any = torch.from_numpy(costs.copy()) if kind == "torch" else costs.copy()
    np.testing.assert_array_equal(shortest_path(arg[1:])[0], np.eye(5))
    with pytest.raises(
        ValueError, match=r"costs\[1\]: the target cannot .* \(2 instances in all\)"
    ):
        shortest_path(arg, neighbourhood=4)
    np.testing.assert_array_equal(np.asarray(arg), costs)
    walled = np.ones((3, 3))
    walled[-1, -1] = math.inf
    with pytest.raises(ValueError, match="cannot be reached"):
        shortest_path(walled)


def test_walls_are_legal_and_avoided() -> None:
    costs = np.ones((4, 4))
    costs[1:, 1] = math.inf
    costs[:3, 3] = math.inf
    z = shortest_path(costs, neighbourhood=4)
    assert not z[np.isinf(costs)].any()
    assert path_cost(costs, z) == dijkstra_oracle(costs, 4)


def test_clamp_solves_the_clamped_costs_exactly() -> None:
    rng = np.random.default_rng(3)
    costs = rng.normal(size=(32, 10, 10))
    original = costs.copy()
    z = shortest_path(costs, negative="clamp")
    np.testing.assert_array_equal(costs, original)
    np.testing.assert_array_equal(z, shortest_path(np.maximum(costs, 0.0)))
    clamped = np.maximum(costs, 0.0)
    for b in range(0, 32, 5):
        assert path_cost(clamped[b], z[b]) == pytest.approx(dijkstra_oracle(clamped[b], 8))
    # -inf and NaN are refused even when clamping.
    costs[3, 2, 2] = -math.inf
    with pytest.raises(ValueError, match=r"costs\[3\]: contains -inf"):
        shortest_path(costs, negative="clamp")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"neighbourhood": 6}, ValueError, "neighbourhood: expected 4 or 8"),
        ({"neighbourhood": True}, ValueError, "neighbourhood"),
        ({"negative": "ignore"}, ValueError, "negative: expected 'raise' or 'clamp'"),
        ({"source": (3, 0)}, ValueError, r"source: \(3, 0\) is outside the 3x3 grid"),
        ({"target": (0, -4)}, ValueError, "target: .* outside"),
        ({"source": 0}, TypeError, r"source: expected a \(row, col\) pair"),
        ({"target": (0.0, 1)}, TypeError, "target"),
    ],
)
def test_bad_options(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        shortest_path(np.ones((3, 3)), **kwargs)


@pytest.mark.parametrize(
    ("costs", "error", "message"),
    [
        ([[1.0, 2.0]], TypeError, "costs: expected a numpy.ndarray or torch.Tensor, got list"),
        (np.ones((3, 3), dtype=bool), TypeError, "costs: expected a real dtype"),
        (torch.ones(3, 3, dtype=torch.complex64), TypeError, "real dtype"),
        (np.ones(4), ValueError, r"costs: expected shape \[\*batch, H, W\]"),
        (np.ones((2, 0)), ValueError, "H, W >= 1"),
    ],
)
def test_bad_costs_type_or_shape(costs: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        shortest_path(costs)  # type: ignore[type-var]


# ------------------------------------------------------------------------------- the maximiser
def test_grid_shortest_path_is_a_solver_and_maximises() -> None:
    solver = GridShortestPath()
    assert isinstance(solver, Solver)
    assert solver.event_ndim == 2 and solver.backend == "numpy"
    theta = np.random.default_rng(4).normal(size=(16, 8, 8))  # half of the costs are negative
    z = solver(theta)
    np.testing.assert_array_equal(z, shortest_path(-theta, negative="clamp"))
    # Optimal for the clamped costs: no path scores more on min(theta, 0).
    for b in range(16):
        assert_one_path(z[b], 8)
        best = dijkstra_oracle(np.maximum(-theta[b], 0.0), 8)
        assert path_cost(np.maximum(-theta[b], 0.0), z[b]) == pytest.approx(best)


def test_grid_shortest_path_options_and_pickle() -> None:
    solver = GridShortestPath(
        neighbourhood=4,
        source=[0, -1],  # type: ignore[arg-type]  # lists are accepted too
        target=(-1, 0),
        negative="raise",
    )
    assert solver.source == (0, -1)
    clone = pickle.loads(pickle.dumps(solver))
    assert clone == solver
    theta = -np.random.default_rng(5).uniform(0.1, 1.0, size=(3, 5, 5))
    z = clone(theta)
    np.testing.assert_array_equal(z, solver(theta))
    for b in range(3):
        assert_one_path(z[b], 4, (0, -1), (-1, 0))
    with pytest.raises(ValueError, match=r"theta \(costs = -theta\)\[0\]: contains a negative"):
        solver(-theta)
    with pytest.raises(ValueError, match="neighbourhood"):
        GridShortestPath(neighbourhood=5)
    with pytest.raises(ValueError, match="backend"):
        GridShortestPath(backend="jax")  # type: ignore[arg-type]


def test_grid_shortest_path_in_map_solve_and_imle() -> None:
    from imle_fn.core.solving import map_solve
    from imle_fn.estimators.implicit_mle import imle

    solver = GridShortestPath()
    theta = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    z = map_solve(theta, solver)
    np.testing.assert_array_equal(z.numpy(), solver(theta.detach().numpy()))
    noise = torch.randn(4, 2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    zs = imle(theta, noise, solver, lam=10.0)
    assert zs.shape == (4, 2, 3, 6, 6)
    target = torch.zeros(6, 6)
    target[:, 0] = 1
    target[-1] = 1
    ((zs - target) ** 2).sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_grid_shortest_path_in_the_compat_layer() -> None:
    from imle_fn.compat import SumOfGammaNoiseDistribution, TargetDistribution, imle

    torch.manual_seed(0)
    layer = imle(
        GridShortestPath(),
        target_distribution=TargetDistribution(alpha=1.0, beta=10.0),
        noise_distribution=SumOfGammaNoiseDistribution(k=1.3 * 8, nb_iterations=10),
        nb_samples=3,
    )
    weights = torch.randn(2, 8, 8, requires_grad=True)
    z = layer(weights)  # [B * S, H, W], sample index fastest
    assert z.shape == (6, 8, 8)
    for zb in z.detach().numpy():
        assert_one_path(zb, 8)
    z.sum().backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all()


def test_path_cost_refuses_shapes_that_do_not_line_up() -> None:
    grid = r"costs, path: expected the same grid \[H, W\] and batch dims that broadcast, got"
    with pytest.raises(ValueError, match=grid + r" shapes \(5, 5\) and \(4, 5\)"):
        path_cost(torch.ones(5, 5), torch.ones(4, 5))
    with pytest.raises(ValueError, match=grid + r" shapes \(3, 1\) and \(3, 3\)"):
        path_cost(torch.ones(3, 1), torch.eye(3))  # broadcasts, but not the same grid
    with pytest.raises(ValueError, match=grid + r" shapes \(2, 3, 3\) and \(4, 3, 3\)"):
        path_cost(np.ones((2, 3, 3)), np.ones((4, 3, 3)))
    with pytest.raises(ValueError, match=r"costs: expected \[\*batch, H, W\], got shape \(5,\)"):
        path_cost(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match=r"path: expected \[\*batch, H, W\], got shape \(\)"):
        path_cost(torch.ones(3, 3), torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"costs: expected a NumPy array or a torch tensor, got"):
        path_cost(None, np.eye(3))  # type: ignore[type-var]
    with pytest.raises(TypeError, match=r"costs: expected real numbers, got dtype <U1"):
        path_cost(np.array([["a", "b"], ["c", "d"]]), np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"costs: expected real numbers, got dtype torch.complex64"):
        path_cost(torch.ones(3, 3, dtype=torch.complex64), torch.eye(3))
    mixed: Any = path_cost(torch.ones(3, 3), np.eye(3))  # type: ignore[type-var]
    assert float(mixed) == 3.0  # a NumPy path with torch costs is converted
    costs = torch.arange(8.0).reshape(2, 2, 2)  # one path for a batch of costs: broadcasts
    assert path_cost(costs, torch.eye(2)).tolist() == [3.0, 11.0]


def test_an_unbatched_nan_grid_is_named_as_the_only_instance() -> None:
    theta = -torch.ones(4, 4)
    theta[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"^theta: contains NaN \(its only instance: no leading"):
        map_solve(theta, GridShortestPath())  # main: "instance () (of leading dims [])"
