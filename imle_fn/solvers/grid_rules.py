"""The grid shortest-path problem's policies, shared by the Numba solver and its torch twin.

Which options exist (`Negative`, the neighbourhoods), how cells are resolved on a grid, and what each
per-instance status code of the solvers means for the user (`raise_for_status` names the instance's
batch index). The status codes themselves are defined once, in `imle_fn._kernels.dijkstra`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from imle_fn._kernels import dijkstra
from imle_fn.core.checks import check_cell, check_choice

__all__ = ["PROBLEMS", "Negative", "check_options", "raise_for_status", "resolve_cell"]

Negative = Literal["raise", "clamp"]

PROBLEMS = {
    dijkstra.NAN: "contains NaN",
    dijkstra.NEG_INF: "contains -inf",
    dijkstra.NEGATIVE: "contains a negative cost (pass negative='clamp' to solve for the costs"
    " clamped at zero)",
    dijkstra.UNREACHABLE: "the target cannot be reached from the source (walls of +inf cost)",
    dijkstra.INTERNAL: "internal error in the grid solver: the path trace found no predecessor"
    " (please report this input)",
}


def check_options(neighbourhood: object, negative: object) -> None:
    """Raise ValueError unless ``neighbourhood`` is 4 or 8 and ``negative`` is 'raise' or 'clamp'."""
    check_choice("neighbourhood", neighbourhood, (4, 8))
    check_choice("negative", negative, ("raise", "clamp"))


def resolve_cell(cell: tuple[int, int], H: int, W: int, name: str) -> tuple[int, int]:
    """``cell`` with negative indices resolved on an ``H x W`` grid; ValueError when outside."""
    r, c = check_cell(cell, name)
    if not (-H <= r < H and -W <= c < W):
        raise ValueError(f"{name}: {cell!r} is outside the {H}x{W} grid")
    return r % H, c % W


def raise_for_status(status: np.ndarray, batch_shape: tuple[int, ...], name: str) -> None:
    """Raise ValueError for the first instance whose status code is not OK (RuntimeError for `INTERNAL`)."""
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
        error = RuntimeError if int(status[i]) == dijkstra.INTERNAL else ValueError
        raise error(f"{where}: {PROBLEMS[int(status[i])]}{more}")
