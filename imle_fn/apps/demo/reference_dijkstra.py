"""The reference's Dijkstra semantics on negative costs, for reproducing its learning example.

uclnlp/torch-imle's example negates the weights and hands the costs ``-theta``, negative ones
included, to a textbook label-setting Dijkstra (8-neighbourhood, top-left to bottom-right cell, both
ends counted). `ReferenceDijkstra` runs that algorithm with the same rules:

* cells leave a binary heap in the order ``(distance, row-major index)``;
* when a cell leaves the heap, every neighbour not yet settled whose distance strictly improves takes
  the new distance and that cell as predecessor, and is pushed (stale heap entries are not removed:
  popping one again changes nothing, since a settled cell's distance is final);
* the returned path is the predecessor chain from the target back to the source.

With costs ``>= 0`` this is an exact shortest path (the same cost as `imle_fn.GridShortestPath`;
ties may be broken differently). With negative costs it is **not** a minimum-cost path in general
(a cell's distance is fixed when it is first settled), but it is a well-defined, deterministic
simple path that keeps responding to every change of a negative cost. `imle_fn.GridShortestPath`
instead solves exactly for the costs clamped at zero, so scores above zero all look alike to it.
That difference decides the reference's 100-sample learning runs:
the target shift ``lam * dz = 10 / S`` is 0.1 per cell at ``S = 100``, too small to make a clamped
zero-cost cell costly again, and learning stalls on zero-cost ties; the reference's solver does not
clamp, so the same shift still moves the path.

Distances are accumulated in float64 (the reference accumulated in the weights' dtype).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numba import njit

from imle_fn.core.contract import Backend

__all__ = ["ReferenceDijkstra", "reference_dijkstra"]


@njit(cache=True, nogil=True)
def _one(costs: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Write the reference-semantics path of one ``[H, W]`` cost grid into ``out`` (zeroed)."""
    H, W = costs.shape
    dist = np.full((H, W), np.inf)
    settled = np.zeros((H, W), np.bool_)
    pred = np.full((H, W), -1, np.int64)
    dist[0, 0] = costs[0, 0]
    heap = [(costs[0, 0], np.int64(0))]
    while len(heap) > 0:
        _, cell = heapq.heappop(heap)
        r, c = cell // W, cell % W
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if dr == 0 and dc == 0:
                    continue
                nr, nc = r + dr, c + dc
                if 0 <= nr < H and 0 <= nc < W and not settled[nr, nc]:
                    d = dist[r, c] + costs[nr, nc]
                    if d < dist[nr, nc]:
                        dist[nr, nc] = d
                        pred[nr, nc] = cell
                        heapq.heappush(heap, (d, np.int64(nr * W + nc)))
        settled[r, c] = True
    r, c = H - 1, W - 1
    out[r, c] = 1.0
    while r != 0 or c != 0:
        cell = pred[r, c]
        r, c = cell // W, cell % W
        out[r, c] = 1.0


@njit(cache=True, nogil=True)
def _batch(costs: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    for n in range(costs.shape[0]):
        _one(costs[n], out[n])


def reference_dijkstra(costs: np.ndarray) -> np.ndarray:
    """Paths of the reference's Dijkstra run on ``costs`` (negative costs allowed).

    Args:
        costs: ``[N, H, W]`` finite vertex costs (minimised), float32 or float64.

    Returns:
        ``[N, H, W]`` 0/1 path indicators (float64), from cell ``(0, 0)`` to ``(H - 1, W - 1)``.

    Raises:
        ValueError: ``costs`` is not 3-D, or an instance holds a NaN or an infinite cost (named by
            its index).
    """
    array = np.ascontiguousarray(costs, dtype=np.float64)
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"costs: expected a non-empty [N, H, W] array, got shape {array.shape}")
    bad = ~np.isfinite(array).reshape(len(array), -1).all(1)
    if bad.any():
        raise ValueError(
            f"costs: expected finite costs, instance {int(np.flatnonzero(bad)[0])} has NaN or inf"
        )
    out = np.zeros(array.shape)
    _batch(array, out)
    return out


@dataclass(frozen=True)
class ReferenceDijkstra:
    """I-MLE maximiser with the reference's semantics: ``reference_dijkstra(-theta)``.

    A `imle_fn.Solver` (``event_ndim = 2``, NumPy backend) for `map_solve` and `imle`.
    Exact for scores ``<= 0``; for positive scores see the module docstring.
    """

    event_ndim: ClassVar[int] = 2
    backend: ClassVar[Backend] = "numpy"

    def __call__(self, theta: Any) -> np.ndarray:
        """``theta: [N, H, W]`` scores -> ``[N, H, W]`` 0/1 paths (the input's float dtype)."""
        array = np.asarray(theta)
        return reference_dijkstra(-array).astype(array.dtype, copy=False)
