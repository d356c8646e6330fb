"""Shortest paths on grids: `shortest_path` (costs, minimised) and `GridShortestPath` (an I-MLE solver).

A grid of shape ``[H, W]`` holds one cost per cell (vertex-weighted). A path runs from the
``source`` cell to the ``target`` cell, each step to one of the 4 (``neighbourhood=4``) or 8
(``neighbourhood=8``, diagonals included) neighbours, and its cost is the sum of the costs of all its
cells, **both ends included** (the Warcraft label convention). The solver is a batched Numba
kernel (`imle_fn._kernels.dijkstra`): float64 accumulation, deterministic tie-breaking (among
minimum-cost paths, one with the fewest cells; remaining ties go to the predecessor first in the
order ``(distance, cells, row-major index)``; the path never depends on the thread count, the batch
or the search order, and the torch twin returns the same path), early exit at the target, the
batch spread over Numba's threads. Where the costs have a positive floor c_min (Warcraft terrain)
the search is an A* (bound ``g * steps`` to the target, ``g < c_min``) over a bucket queue with O(1)
operations; otherwise a Dijkstra over a ring of buckets whose current bucket is a binary heap.
Safe to call from several Python threads at once and in processes forked after use (DataLoader
workers), whatever Numba threading layer is active (see `imle_fn._kernels.dijkstra`); installing
``tbb`` gives the best parallel behaviour.

Costs that need a policy:

* ``+inf`` marks a wall: no path enters it.
* NaN and ``-inf`` raise ValueError (naming the instance), as does a target that walls cut off from
  the source.
* Negative costs make "shortest simple path" NP-hard in general. ``negative="raise"`` (the default
  of `shortest_path`) refuses them; ``negative="clamp"`` solves exactly for ``max(costs, 0)``, the
  transformation blackbox-backprop (DBB) applies to its perturbed costs. The returned path is then
  optimal for the clamped costs, not for the original ones.

`GridShortestPath` is the ready-made I-MLE **maximiser**: scores ``theta`` are turned into costs
``-theta`` and it clamps by default, because I-MLE feeds the solver perturbed scores
``theta + noise`` and targets ``theta - lam * dz`` whose costs are routinely negative (the reference
library's own learning example starts with half of its costs negative). ``backend="torch"`` picks the
pure-torch twin (`imle_fn.solvers.grid_torch`), which stays on the scores' device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from imle_fn._kernels import dijkstra
from imle_fn.core.checks import check_cell, check_grid
from imle_fn.core.contract import Backend
from imle_fn.solvers.grid_rules import (
    Negative,
    check_options,
    raise_for_status,
    resolve_cell,
)
from imle_fn.solvers.grid_torch import shortest_path_torch

__all__ = ["GridShortestPath", "TorchGridShortestPath", "path_cost", "shortest_path"]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def shortest_path(
    costs: ArrayT,
    *,
    neighbourhood: int = 8,
    source: tuple[int, int] = (0, 0),
    target: tuple[int, int] = (-1, -1),
    negative: Negative = "raise",
) -> ArrayT:
    """Indicator of one minimum-cost path on each grid of a batch.

    Args:
        costs: ``[*batch, H, W]`` vertex costs, a NumPy array or a torch tensor of a real dtype, on
            any device (CUDA tensors are solved on the CPU and the result moved back). Not modified.
        neighbourhood: 4 (N, S, E, W) or 8 (diagonals too).
        source: ``(row, col)`` of the first cell; negative indices count from the end.
        target: ``(row, col)`` of the last cell; ``(-1, -1)`` is the bottom-right cell.
        negative: ``"raise"`` refuses negative costs; ``"clamp"`` solves for ``max(costs, 0)``.

    Returns:
        ``[*batch, H, W]`` 0/1 indicator of one shortest path (both ends set), of the same kind,
        dtype and device as ``costs``. Ties are broken deterministically (see the module docstring).

    Raises:
        TypeError: ``costs`` is not an array/tensor of a real dtype.
        ValueError: bad shape or option; NaN, ``-inf``, a refused negative cost or an unreachable
            target in an instance (the message names the instance's batch index).

    Example:
        >>> import numpy as np
        >>> shortest_path(np.array([[1.0, 9.0], [1.0, 1.0]]), neighbourhood=4)
        array([[1., 0.],
               [1., 1.]])
    """
    return _solve(costs, neighbourhood, source, target, negative, name="costs", negate=False)


def path_cost(costs: ArrayT, path: ArrayT) -> ArrayT:
    """Cost of the cells selected by ``path`` (the sum over cells where ``path != 0``).

    Args:
        costs: ``[*batch, H, W]`` vertex costs (NumPy or torch).
        path: ``[*batch, H, W]`` path indicator of the same kind, e.g. from `shortest_path`.

    Returns:
        ``[*batch]`` float64 (NumPy) or the costs' dtype (torch) path costs; ``+inf`` cells off the
        path do not contribute.

    Raises:
        TypeError: ``costs`` or ``path`` not a NumPy array or torch tensor of real numbers (a
            NumPy ``path`` with torch ``costs`` is converted).
        ValueError: ``costs`` or ``path`` with fewer than 2 dims, grids of different sizes ``H, W``,
            or batch dims that do not broadcast.
    """
    for name, value in (("costs", costs), ("path", path)):
        if not isinstance(value, (np.ndarray, torch.Tensor)):
            raise TypeError(
                f"{name}: expected a NumPy array or a torch tensor, got {type(value).__name__}"
            )
        if isinstance(value, torch.Tensor):
            real = not value.dtype.is_complex
        else:
            real = value.dtype.kind in "biuf"
        if not real:
            raise TypeError(f"{name}: expected real numbers, got dtype {value.dtype}")
    if isinstance(costs, torch.Tensor) and not isinstance(path, torch.Tensor):
        path = torch.as_tensor(path, device=costs.device)
    cost_shape, path_shape = tuple(np.shape(costs)), tuple(np.shape(path))
    for name, shape in (("costs", cost_shape), ("path", path_shape)):
        if len(shape) < 2:
            raise ValueError(f"{name}: expected [*batch, H, W], got shape {shape}")
    try:
        if cost_shape[-2:] != path_shape[-2:]:
            raise ValueError
        np.broadcast_shapes(cost_shape[:-2], path_shape[:-2])
    except ValueError:
        raise ValueError(
            f"costs, path: expected the same grid [H, W] and batch dims that broadcast, got shapes"
            f" {cost_shape} and {path_shape}"
        ) from None
    if isinstance(costs, torch.Tensor):
        picked = torch.where(
            path != 0, costs, torch.zeros((), dtype=costs.dtype, device=costs.device)
        )
        return picked.sum(dim=(-2, -1))
    picked_np = np.where(np.asarray(path) != 0, np.asarray(costs, dtype=np.float64), 0.0)
    return np.asarray(picked_np.sum(axis=(-2, -1)))


@dataclass(frozen=True)
class GridShortestPath:
    """I-MLE maximiser over grid paths: ``z = argmax_z <theta, z> = shortest_path(-theta)``.

    A `imle_fn.Solver` (``event_ndim = 2``) for `map_solve`, `imle` and the compatibility
    layer; picklable, so it can be shipped to Ray workers.

    Attributes:
        neighbourhood: 4 or 8.
        source: ``(row, col)`` of the first cell (negative indices count from the end).
        target: ``(row, col)`` of the last cell.
        negative: policy for negative costs ``-theta``, i.e. positive scores: ``"clamp"`` (default;
            scores above zero count as cost 0) or ``"raise"``.
        backend: ``"numpy"`` (the Numba Dijkstra, on the CPU) or ``"torch"`` (the pure-torch twin
            `imle_fn.solvers.grid_torch`, on the scores' device).

    Raises:
        ValueError: ``neighbourhood`` not 4 or 8, ``negative`` not ``"raise"``/``"clamp"``, or an
            unknown ``backend`` (at construction); when called, the errors of `shortest_path`.
        TypeError: ``source`` / ``target`` not a ``(row, col)`` pair of ints.
    """

    neighbourhood: int = 8
    source: tuple[int, int] = (0, 0)
    target: tuple[int, int] = (-1, -1)
    negative: Negative = "clamp"
    backend: Backend = "numpy"
    event_ndim: ClassVar[int] = 2

    def __post_init__(self) -> None:
        check_options(self.neighbourhood, self.negative)
        object.__setattr__(self, "source", check_cell(self.source, "source"))
        object.__setattr__(self, "target", check_cell(self.target, "target"))
        if self.backend not in ("numpy", "torch"):
            raise ValueError(f"backend: expected 'numpy' or 'torch', got {self.backend!r}")

    def __call__(self, theta: Any) -> Any:
        """``theta: [N, H, W]`` scores -> ``[N, H, W]`` 0/1 path indicator of the same kind."""
        if self.backend == "torch":
            return shortest_path_torch(
                -theta,
                neighbourhood=self.neighbourhood,
                source=self.source,
                target=self.target,
                negative=self.negative,
            )
        return _solve(
            theta,
            self.neighbourhood,
            self.source,
            self.target,
            self.negative,
            name="theta (costs = -theta)",
            negate=True,
        )


def TorchGridShortestPath(  # noqa: N802  (kept as the class-like name users know)
    neighbourhood: int = 8,
    source: tuple[int, int] = (0, 0),
    target: tuple[int, int] = (-1, -1),
    negative: Negative = "clamp",
) -> GridShortestPath:
    """``GridShortestPath(..., backend="torch")``: the pure-torch twin, on the scores' device.

    An alias kept for its name, not a second class: it returns a `GridShortestPath` whose
    ``backend`` is ``"torch"`` (`imle_fn.solvers.grid_torch.shortest_path_torch`), so scores never
    leave their device.

    Raises:
        ValueError: as `GridShortestPath`.
    """
    return GridShortestPath(neighbourhood, source, target, negative, backend="torch")


def _solve(
    costs: Any,
    neighbourhood: int,
    source: tuple[int, int],
    target: tuple[int, int],
    negative: Negative,
    *,
    name: str,
    negate: bool,
) -> Any:
    check_options(neighbourhood, negative)
    H, W = check_grid(costs, name)
    src = resolve_cell(source, H, W, "source")
    tgt = resolve_cell(target, H, W, "target")
    shape = tuple(costs.shape)
    if isinstance(costs, torch.Tensor):
        host = costs.detach().to("cpu")
        if host.dtype not in (torch.float32, torch.float64):
            host = host.to(torch.float64 if host.dtype.itemsize > 2 else torch.float32)
        array = host.numpy()
    else:
        array = costs
        if array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float64 if array.dtype.itemsize > 2 else np.float32)
    array = np.ascontiguousarray(array).reshape(-1, H, W)  # [B, H, W]
    if negate:
        array = -array  # a new array: the caller's scores are never written
    out = np.zeros(array.shape, dtype=array.dtype)
    status = dijkstra.solve(
        array, src, tgt, eight=neighbourhood == 8, clamp=negative == "clamp", out=out
    )
    raise_for_status(status, shape[:-2], name)
    out = out.reshape(shape)
    if isinstance(costs, torch.Tensor):
        return torch.from_numpy(out).to(dtype=costs.dtype, device=costs.device)
    return out.astype(costs.dtype, copy=False)
