"""Validation of grid shortest-path arguments, shared by the Numba solver and its torch twin.

Errors name the argument, what was expected and what arrived, and the batch index of a bad instance.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from imle_fn._kernels import dijkstra

__all__ = [
    "Negative",
    "check_cell",
    "check_grid",
    "check_options",
    "raise_for_status",
    "resolve_cell",
]

Negative = Literal["raise", "clamp"]

PROBLEMS = {
    dijkstra.NAN: "contains NaN",
    dijkstra.NEG_INF: "contains -inf",
    dijkstra.NEGATIVE: "contains a negative cost (pass negative='clamp' to solve for the costs"
    " clamped at zero)",
    dijkstra.UNREACHABLE: "the target cannot be reached from the source (walls of +inf cost)",
}


def check_options(neighbourhood: object, negative: object) -> None:
    """Raise ValueError unless ``neighbourhood`` is 4 or 8 and ``negative`` is 'raise' or 'clamp'."""
    if isinstance(neighbourhood, bool) or neighbourhood not in (4, 8):
        raise ValueError(f"neighbourhood: expected 4 or 8, got {neighbourhood!r}")
    if negative not in ("raise", "clamp"):
        raise ValueError(f"negative: expected 'raise' or 'clamp', got {negative!r}")


def check_cell(cell: object, name: str) -> tuple[int, int]:
    """``cell`` as a ``(row, col)`` tuple of ints; TypeError otherwise."""
    if type(cell) is tuple and len(cell) == 2 and type(cell[0]) is int and type(cell[1]) is int:
        return cell  # the common case, checked fast
    if (
        not isinstance(cell, tuple | list)
        or len(cell) != 2
        or not all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in cell)
    ):
        raise TypeError(f"{name}: expected a (row, col) pair of ints, got {cell!r}")
    return int(cell[0]), int(cell[1])


def resolve_cell(cell: tuple[int, int], H: int, W: int, name: str) -> tuple[int, int]:
    """``cell`` with negative indices resolved on an ``H x W`` grid; ValueError when outside."""
    r, c = check_cell(cell, name)
    if not (-H <= r < H and -W <= c < W):
        raise ValueError(f"{name}: {cell!r} is outside the {H}x{W} grid")
    return r % H, c % W


def check_grid(costs: object, name: str) -> tuple[int, int]:
    """Validate the kind, dtype and shape of a ``[*batch, H, W]`` grid; return ``(H, W)``."""
    if isinstance(costs, torch.Tensor):
        if costs.dtype == torch.bool or costs.is_complex():
            raise TypeError(f"{name}: expected a real dtype, got {costs.dtype}")
    elif isinstance(costs, np.ndarray):
        if costs.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected a real dtype, got {costs.dtype}")
    else:
        raise TypeError(
            f"{name}: expected a numpy.ndarray or torch.Tensor, got {type(costs).__name__}"
        )
    shape = tuple(costs.shape)
    if len(shape) < 2 or shape[-2] < 1 or shape[-1] < 1:
        raise ValueError(f"{name}: expected shape [*batch, H, W] with H, W >= 1, got {list(shape)}")
    return shape[-2], shape[-1]


def raise_for_status(status: np.ndarray, batch_shape: tuple[int, ...], name: str) -> None:
    """Raise ValueError for the first instance whose status code is not OK."""
    if not status.any():
        return
    bad = np.flatnonzero(status)
    if bad.size:
        i = int(bad[0])
        index = (
            ", ".join(str(int(j)) for j in np.unravel_index(i, batch_shape)) if batch_shape else ""
        )
        where = f"{name}[{index}]" if batch_shape else name
        more = f" ({bad.size} instances in all)" if bad.size > 1 else ""
        raise ValueError(f"{where}: {PROBLEMS[int(status[i])]}{more}")
