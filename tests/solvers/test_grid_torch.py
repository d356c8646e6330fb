"""`imle_fn.solvers.grid_torch`, the pure-torch grid shortest-path twin: same optimal costs as the Numba solver, vmap, compile."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from imle_fn.core.contract import Solver
from imle_fn.core.solving import map_solve
from imle_fn.solvers.grid import GridShortestPath, TorchGridShortestPath, path_cost, shortest_path
from imle_fn.solvers.grid_torch import shortest_path_torch
from tests.helpers import HYP, assert_one_path, grids
from tests.naive import dijkstra_oracle


@settings(HYP, max_examples=30)
@given(costs=grids(8), neighbourhood=st.sampled_from([4, 8]))
def test_same_paths_as_numba_and_optimal(costs: np.ndarray, neighbourhood: int) -> None:
    costs[:, 0, 0] = 1.0
    costs[:, -1, -1] = 0.5
    reachable = [math.isfinite(dijkstra_oracle(c, neighbourhood)) for c in costs]
    if not all(reachable):
        with pytest.raises(ValueError, match=rf"costs\[{reachable.index(False)}\]: the target"):
            shortest_path_torch(torch.from_numpy(costs), neighbourhood=neighbourhood)
        return
    z = shortest_path_torch(torch.from_numpy(costs), neighbourhood=neighbourhood).numpy()
    z_numba = shortest_path(costs, neighbourhood=neighbourhood)
    for b in range(len(costs)):
        assert_one_path(z[b], neighbourhood)
        expected = dijkstra_oracle(costs[b], neighbourhood)
        assert path_cost(costs[b], z[b]) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # The same tie rule (fewest cells, then smaller indices): the very same paths.
    np.testing.assert_array_equal(z, z_numba)


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_terrain_batch_with_custom_ends(neighbourhood: int) -> None:
    rng = np.random.default_rng(0)
    costs = rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], size=(24, 12, 12))
    source, target = (11, 0), (2, -3)
    z = shortest_path_torch(
        torch.from_numpy(costs), neighbourhood=neighbourhood, source=source, target=target
    ).numpy()
    numba_z = shortest_path(costs, neighbourhood=neighbourhood, source=source, target=target)
    np.testing.assert_array_equal(z, numba_z)  # non-dyadic costs: still the same paths
    for b in range(24):
        assert_one_path(z[b], neighbourhood, source, target)
        expected = dijkstra_oracle(costs[b], neighbourhood, source, target)
        assert path_cost(costs[b], z[b]) == pytest.approx(expected, rel=1e-12)


def test_zero_cost_plateaus_give_simple_paths() -> None:
    # Large zero-cost regions: many equal-cost paths; the chain must still be one simple path.
    costs = np.zeros((3, 9, 9))
    costs[1, 4, :8] = math.inf
    costs[2, ::2, 3] = 1.0
    z = shortest_path_torch(torch.from_numpy(costs)).numpy()
    for b in range(3):
        assert_one_path(z[b], 8)
        assert path_cost(costs[b], z[b]) == dijkstra_oracle(costs[b], 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64])
def test_dtype_device_shape_kept(dtype: torch.dtype) -> None:
    costs = torch.randint(1, 9, (2, 3, 5, 4)).to(dtype)
    z = shortest_path_torch(costs)
    assert z.dtype == dtype and z.shape == costs.shape and z.device == costs.device
    ref = costs.to(torch.float64).reshape(6, 5, 4).numpy()
    for b, zb in enumerate(z.to(torch.float64).reshape(6, 5, 4).numpy()):
        assert path_cost(ref[b], zb) == dijkstra_oracle(ref[b], 8)


def test_vmap_equals_loop_and_native_batch() -> None:
    costs = torch.rand(3, 2, 7, 7, generator=torch.Generator().manual_seed(0))
    loop = torch.stack([torch.stack([shortest_path_torch(c) for c in row]) for row in costs])
    torch.testing.assert_close(torch.func.vmap(shortest_path_torch)(costs), loop)
    nested = torch.func.vmap(torch.func.vmap(shortest_path_torch))(costs)
    torch.testing.assert_close(nested, loop)
    moved = torch.func.vmap(shortest_path_torch, in_dims=1)(costs)  # vmapped dim not leading
    torch.testing.assert_close(moved, loop.transpose(0, 1))
    torch.testing.assert_close(shortest_path_torch(costs), loop)


def test_torch_compile_fullgraph() -> None:
    torch._dynamo.reset()
    costs = torch.rand(4, 6, 6, generator=torch.Generator().manual_seed(1))

    def f(c: torch.Tensor) -> torch.Tensor:
        return shortest_path_torch(c * 2.0 + 0.1, neighbourhood=4) * 3.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(costs), f(costs))


@pytest.mark.parametrize(
    ("value", "negative", "message"),
    [
        (math.nan, "raise", r"costs\[1\]: contains NaN"),
        (-math.inf, "clamp", r"costs\[1\]: contains -inf"),
        (-1.0, "raise", r"costs\[1\]: contains a negative cost"),
    ],
)
def test_bad_costs_raise_and_input_unchanged(value: float, negative: str, message: str) -> None:
    costs = torch.ones(3, 4, 4)
    costs[1, 2, 2] = value
    before = costs.clone()
    with pytest.raises(ValueError, match=message):
        shortest_path_torch(costs, negative=negative)  # type: ignore[arg-type]
    torch.testing.assert_close(costs, before, equal_nan=True)


def test_clamp_matches_numba_on_clamped_costs() -> None:
    costs = torch.randn(16, 9, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = shortest_path_torch(costs, negative="clamp").numpy()
    clamped = costs.clamp_min(0).numpy()
    for b in range(16):
        assert_one_path(z[b], 8)
        assert path_cost(clamped[b], z[b]) == pytest.approx(dijkstra_oracle(clamped[b], 8))


def test_empty_and_one_cell() -> None:
    assert shortest_path_torch(torch.zeros(0, 4, 4)).shape == (0, 4, 4)
    torch.testing.assert_close(shortest_path_torch(torch.tensor([[2.0]])), torch.tensor([[1.0]]))
    with pytest.raises(TypeError, match=r"costs: expected a torch\.Tensor"):
        shortest_path_torch(np.ones((2, 2)))  # type: ignore[arg-type]


def test_torch_solver_classes() -> None:
    solver = TorchGridShortestPath(neighbourhood=4)
    assert isinstance(solver, Solver) and solver.backend == "torch" and solver.event_ndim == 2
    assert pickle.loads(pickle.dumps(solver)) == solver
    theta = torch.randn(2, 5, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = map_solve(theta, solver)
    same = GridShortestPath(neighbourhood=4, backend="torch")
    torch.testing.assert_close(map_solve(theta, same), z)
    costs = (-theta).clamp_min(0).numpy()
    flat_z = z.reshape(10, 8, 8).numpy()
    for b, c in enumerate(costs.reshape(10, 8, 8)):
        assert_one_path(flat_z[b], 4)
        assert path_cost(c, flat_z[b]) == pytest.approx(dijkstra_oracle(c, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stays_on_device() -> None:
    costs = torch.rand(8, 10, 10, device="cuda")
    z = shortest_path_torch(costs)
    assert z.device == costs.device
    torch.testing.assert_close(path_cost(costs, z).cpu(), path_cost(costs.cpu(), z.cpu()))
    ref = shortest_path(costs.cpu())
    torch.testing.assert_close(
        path_cost(costs.cpu().double(), z.cpu().double()),
        path_cost(costs.cpu().double(), ref.double()),
    )
