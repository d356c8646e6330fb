"""Grid shortest paths in pure torch, on the costs' own device (the twin of the Numba solver).

Same problem, conventions and policies as `imle_fn.shortest_path` (vertex costs, both
ends counted, 4- or 8-neighbourhood, ``+inf`` walls, NaN / ``-inf`` / unreachable targets refused,
negative costs refused or clamped at zero), solved with tensor ops only, so GPU training need not
round-trip to the host:

1. Distances by batched min-plus relaxation to a fixed point (Bellman-Ford in Jacobi sweeps):
   ``dist <- min(dist, min_{u in N(v)} dist[u] + costs[v])``, where the neighbourhood minimum is a
   3x3 (8-neighbourhood) or cross-shaped (4) maximum of shifted views of ``-dist`` (the sweeps run
   on ``-dist``). Iterations run in blocks of
   `CHECK_EVERY` between convergence checks; the number of sweeps is about the number of cells on
   the longest shortest path, so this suits GPUs (one launch per sweep for the whole batch) far more
   than CPUs (use the Numba solver there).
2. Predecessors: ``pred[v]`` = the neighbour minimising ``(dist[u], hops[u], row-major index of u)``
   where ``hops`` is the sweep at which ``dist[u]`` became final (the fewest steps of a minimum-cost
   path). This is the Numba solver's tie rule (fewest cells among minimum-cost paths, then the
   smaller cell index), so both return the same path; they could differ only where two different
   float64 sums round to the same value (not observed in the tests).
3. The path by pointer doubling on ``pred`` (``ceil(log2(H*W))`` gather/scatter rounds from the
   target), with no data-dependent loop.

Distances are accumulated in float64 (float32 on devices without float64, such as MPS).

Transforms: the solver is the custom op ``imle_fn::grid_shortest_path`` with a vmap rule that folds
the vmapped dim into the batch and a fake kernel, so `torch.func.vmap` (vmap == loop), nesting and
`torch.compile(fullgraph=True)` work; the op is not differentiable (use it inside `imle_fn.imle`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from imle_fn._kernels import dijkstra
from imle_fn.core.checks import check_grid
from imle_fn.solvers.grid_rules import (
    Negative,
    check_options,
    raise_for_status,
    resolve_cell,
)

__all__ = ["CHECK_EVERY", "shortest_path_torch"]

CHECK_EVERY = 8  # relaxation sweeps between two convergence checks (each check syncs the device)


def shortest_path_torch(
    costs: torch.Tensor,
    *,
    neighbourhood: int = 8,
    source: tuple[int, int] = (0, 0),
    target: tuple[int, int] = (-1, -1),
    negative: Negative = "raise",
) -> torch.Tensor:
    """Indicator of one minimum-cost path on each grid, computed with torch ops on ``costs.device``.

    Args:
        costs: ``[*batch, H, W]`` vertex costs, a real-dtype tensor on any device. Not modified.
        neighbourhood: 4 or 8.
        source: ``(row, col)`` of the first cell (negative indices count from the end).
        target: ``(row, col)`` of the last cell.
        negative: ``"raise"`` or ``"clamp"`` (solve for ``max(costs, 0)``).

    Returns:
        ``[*batch, H, W]`` 0/1 path indicator with the dtype and device of ``costs``; no gradient.

    Raises:
        TypeError, ValueError: as `imle_fn.shortest_path`.
    """
    if not isinstance(costs, torch.Tensor):
        raise TypeError(f"costs: expected a torch.Tensor, got {type(costs).__name__}")
    check_options(neighbourhood, negative)
    H, W = check_grid(costs, "costs")
    src = resolve_cell(source, H, W, "source")
    tgt = resolve_cell(target, H, W, "target")
    return torch.ops.imle_fn.grid_shortest_path(
        costs.detach(), neighbourhood, list(src), list(tgt), negative == "clamp"
    )


@torch.library.custom_op("imle_fn::grid_shortest_path", mutates_args=())
def _grid_shortest_path(
    costs: torch.Tensor, neighbourhood: int, source: list[int], target: list[int], clamp: bool
) -> torch.Tensor:
    shape = costs.shape
    H, W = shape[-2], shape[-1]
    flat = costs.reshape(-1, H, W)  # [B, H, W]
    if flat.shape[0] == 0:
        return torch.zeros_like(costs)
    acc = torch.float32 if costs.device.type == "mps" else torch.float64
    c = flat.to(acc)
    status = torch.zeros(flat.shape[0], dtype=torch.int64, device=c.device)
    negative = c < 0
    if not clamp:
        status = torch.where(negative.flatten(1).any(1), dijkstra.NEGATIVE, status)
    status = torch.where((c == -math.inf).flatten(1).any(1), dijkstra.NEG_INF, status)
    status = torch.where(torch.isnan(c).flatten(1).any(1), dijkstra.NAN, status)
    c = torch.where(negative, 0.0, c) if clamp else c
    c = torch.where(torch.isnan(c) | (c == -math.inf), math.inf, c)  # bad instances: any values
    sr, sc = source
    tr, tc = target
    dist, hops = _distances(c, neighbourhood, sr * W + sc)
    reached = torch.isfinite(dist[:, tr, tc])
    status = torch.where((status == 0) & ~reached, dijkstra.UNREACHABLE, status)
    raise_for_status(status.cpu().numpy(), tuple(shape[:-2]), "costs")
    path = _extract(dist, hops, neighbourhood, sr * W + sc, tr * W + tc)
    return path.reshape(shape).to(costs.dtype)


@_grid_shortest_path.register_fake
def _grid_shortest_path_fake(
    costs: torch.Tensor, neighbourhood: int, source: list[int], target: list[int], clamp: bool
) -> torch.Tensor:
    return torch.empty_like(costs)


@_grid_shortest_path.register_vmap
def _grid_shortest_path_vmap(
    info: Any,
    in_dims: tuple[int | None, ...],
    costs: torch.Tensor,
    neighbourhood: int,
    source: list[int],
    target: list[int],
    clamp: bool,
) -> tuple[torch.Tensor, int | None]:
    bdim = in_dims[0]
    if bdim is not None:
        costs = costs.movedim(bdim, 0)  # [V, *batch, H, W]: the vmapped dim joins the batch
    out = torch.ops.imle_fn.grid_shortest_path(costs, neighbourhood, source, target, clamp)
    return out, None if bdim is None else 0


def _neighbour_max(score: torch.Tensor, neighbourhood: int) -> torch.Tensor:
    """``[B, H, W]`` -> max of ``score`` over each cell's neighbourhood, the cell itself included.

    Shifted views of a ``-inf``-padded copy (max-pooling is far slower on CPUs): separable rows
    then columns for the 3x3 window, a cross of five cells for the 4-neighbourhood.
    """
    p = F.pad(score, (1, 1, 1, 1), value=-math.inf)  # [B, H+2, W+2]
    if neighbourhood == 8:
        rows = torch.maximum(torch.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])  # [B, H, W+2]
        return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
    vertical = torch.maximum(p[:, :-2, 1:-1], p[:, 2:, 1:-1])
    horizontal = torch.maximum(p[:, 1:-1, :-2], p[:, 1:-1, 2:])
    return torch.maximum(torch.maximum(vertical, horizontal), score)


def _distances(c: torch.Tensor, neighbourhood: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Path costs from flat cell ``s`` and the sweep at which each one became final.

    Args:
        c: ``[B, H, W]`` costs >= 0 (walls +inf).
        neighbourhood: 4 or 8.
        s: flat index of the source cell.

    Returns:
        ``dist: [B, H, W]`` minimum path costs (+inf where unreachable) and ``hops: [B, H, W]``
        int64, the sweep of the last decrease of ``dist`` (0 at the source): the fewest cells,
        minus one, of a minimum-cost path to each cell.
    """
    B, H, W = c.shape
    # The sweeps work on -dist (max-plus): a neighbourhood maximum, a subtraction and a maximum.
    start = torch.full_like(c, -math.inf).flatten(1)  # [B, H*W]
    start[:, s] = -c.flatten(1)[:, s]
    neg = start.view(B, H, W)
    hops = torch.zeros(B, H, W, dtype=torch.int64, device=c.device)
    sweep = 0
    for _ in range(H * W // CHECK_EVERY + 2):  # a fixed point is reached within H*W sweeps
        previous = neg
        for _ in range(CHECK_EVERY):
            sweep += 1
            relaxed = torch.maximum(neg, _neighbour_max(neg, neighbourhood) - c)
            hops = torch.where(relaxed > neg, sweep, hops)
            neg = relaxed
        if torch.equal(neg, previous):
            break
    return -neg, hops


def _extract(
    dist: torch.Tensor, hops: torch.Tensor, neighbourhood: int, s: int, t: int
) -> torch.Tensor:
    """``[B, H, W]`` distances and hops -> ``[B, H*W]`` indicator of the predecessor chain t -> s.

    ``pred[v]`` is the neighbour ``u`` minimising ``(dist[u], hops[u], row-major index of u)``. Along
    the chain ``(dist, hops)`` decreases strictly (a zero-cost step keeps ``dist`` but its best
    neighbour has fewer hops), so the chain is a simple path that ends at the source, and each step
    satisfies ``dist[v] = dist[u] + costs[v]``: its cost is ``dist[t]``.
    """
    B, H, W = dist.shape
    n = H * W
    steps = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    if neighbourhood == 4:
        steps = [(dr, dc) for dr, dc in steps if dr == 0 or dc == 0]
    # Neighbours in increasing row-major offset; a later one must be strictly better to win, so
    # full ties go to the smaller cell index.
    pd = F.pad(dist, (1, 1, 1, 1), value=math.inf)  # [B, H+2, W+2]
    ph = F.pad(hops, (1, 1, 1, 1), value=n + 1)

    def view(padded: torch.Tensor, a: int, b: int) -> torch.Tensor:
        return padded[:, 1 + a : 1 + a + H, 1 + b : 1 + b + W]  # [B, H, W]: neighbour (a, b)

    best = torch.zeros(B, H, W, dtype=torch.int64, device=dist.device)  # index into steps
    best_d, best_h = view(pd, *steps[0]), view(ph, *steps[0])
    for k, (a, b) in enumerate(steps[1:], start=1):
        d, h = view(pd, a, b), view(ph, a, b)
        better = (d < best_d) | ((d == best_d) & (h < best_h))
        best = torch.where(better, k, best)
        best_d = torch.where(better, d, best_d)
        best_h = torch.where(better, h, best_h)
    offsets = torch.tensor([a * W + b for a, b in steps], device=dist.device)
    cell = torch.arange(n, device=dist.device)
    jump = (cell + offsets[best.flatten(1)]).clamp(0, n - 1)  # [B, H*W] predecessor (flat)
    jump[:, s] = s  # the source is the chain's fixed point
    on_path = torch.zeros(B, n, dtype=torch.int32, device=dist.device)  # int32: native atomics
    on_path[:, t] = 1
    for _ in range(max(1, math.ceil(math.log2(n)))):  # after r rounds: pred^j(t) for j < 2**r
        on_path = on_path.scatter_reduce(1, jump, on_path, reduce="amax")
        jump = jump.gather(1, jump)
    return on_path
