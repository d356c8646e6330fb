"""Grid shortest-path baselines for bench/ (written here): what users have today, and compiled C.

* `heapq_dijkstra`: a pure-Python Dijkstra that behaves like the reference solver shared by
  torch-imle, tf-imle, torch-adaptive-imle and blackbox-backprop (heapq, a settled set, tie
  counting, no early exit, stale heap entries expanded again); `heapq_dijkstra_lean` is a leaner
  pure-Python heapq Dijkstra (stale entries skipped, early exit) for comparison.
* `ScipyGridDijkstra`: ``scipy.sparse.csgraph.dijkstra`` on a CSR graph whose structure is built once
  per grid size; per instance only the edge weights (the cost of the entered cell) are filled in.
* `c_dijkstra_batch`: a tight single-threaded C binary-heap Dijkstra (`c_dijkstra.c`), compiled with
  the system C compiler on first use; ``None`` where no compiler is available.

All use the Warcraft convention (both ends counted, 8-neighbourhood, (0, 0) -> (H-1, W-1)).
"""

from __future__ import annotations

import ctypes
import heapq
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import dijkstra as scipy_dijkstra

__all__ = [
    "ScipyGridDijkstra",
    "c_dijkstra_batch",
    "heapq_dijkstra",
    "heapq_dijkstra_batch",
    "heapq_dijkstra_lean",
    "heapq_dijkstra_lean_batch",
]

_STEPS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _grid_neighbours(r: int, c: int, H: int, W: int) -> list[tuple[int, int]]:
    return [(r + dr, c + dc) for dr, dc in _STEPS if 0 <= r + dr < H and 0 <= c + dc < W]


def heapq_dijkstra(costs: np.ndarray) -> np.ndarray:
    """``[H, W]`` costs >= 0 -> ``[H, W]`` 0/1 shortest path, behaving as the reference does.

    Like the reference solver: the search runs until the heap is empty (no early exit), popped
    entries that are already settled are expanded again (the reference's ``pass`` where a
    ``continue`` belongs), the number of shortest paths is counted, the neighbours come from a
    function returning a list, and the grid is read as ``costs[x][y]``.
    """
    H, W = costs.shape
    dist = np.full_like(costs, 1.0e10)
    dist[0][0] = costs[0][0]
    count = np.zeros_like(costs)
    count[0][0] = 1
    queue = [(costs[0][0], (0, 0))]
    settled = set()
    pred = {}
    while queue:
        _, (x, y) = heapq.heappop(queue)
        for u, v in _grid_neighbours(x, y, H, W):
            if (u, v) not in settled:
                candidate = costs[u][v] + dist[x][y]
                if candidate < dist[u][v]:
                    dist[u][v] = candidate
                    heapq.heappush(queue, (dist[u][v], (u, v)))
                    pred[(u, v)] = (x, y)
                    count[u, v] = count[x, y]
                elif candidate == dist[u][v]:
                    count[u, v] += 1
        settled.add((x, y))
    return _walk_back(pred, H, W)


def heapq_dijkstra_lean(costs: np.ndarray) -> np.ndarray:
    """A leaner pure-Python heapq Dijkstra: stale entries skipped, early exit at the target."""
    H, W = costs.shape
    dist = np.full((H, W), np.inf)
    pred = {}
    dist[0, 0] = costs[0, 0]
    queue = [(costs[0, 0], 0, 0)]
    while queue:
        d, r, c = heapq.heappop(queue)
        if d > dist[r, c]:
            continue
        if (r, c) == (H - 1, W - 1):
            break
        for dr, dc in _STEPS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W:
                nd = d + costs[rr, cc]
                if nd < dist[rr, cc]:
                    dist[rr, cc] = nd
                    pred[(rr, cc)] = (r, c)
                    heapq.heappush(queue, (nd, rr, cc))
    return _walk_back(pred, H, W)


def _walk_back(pred: dict, H: int, W: int) -> np.ndarray:
    path = np.zeros((H, W))
    cell = (H - 1, W - 1)
    path[cell] = 1
    while cell != (0, 0):
        cell = pred[cell]
        path[cell] = 1
    return path


def heapq_dijkstra_batch(costs: np.ndarray) -> np.ndarray:
    """``[B, H, W]`` -> ``[B, H, W]``, one reference-style `heapq_dijkstra` call per instance."""
    return np.stack([heapq_dijkstra(c) for c in costs])


def heapq_dijkstra_lean_batch(costs: np.ndarray) -> np.ndarray:
    """``[B, H, W]`` -> ``[B, H, W]``, one `heapq_dijkstra_lean` call per instance."""
    return np.stack([heapq_dijkstra_lean(c) for c in costs])


class ScipyGridDijkstra:
    """``scipy.sparse.csgraph.dijkstra`` on an H x W 8-neighbour grid, structure built once."""

    def __init__(self, H: int, W: int) -> None:
        rows, cols = [], []
        for r in range(H):
            for c in range(W):
                for dr, dc in _STEPS:
                    if 0 <= r + dr < H and 0 <= c + dc < W:
                        rows.append(r * W + c)
                        cols.append((r + dr) * W + c + dc)
        n = H * W
        ones = np.ones(len(rows))
        self.graph = scipy.sparse.csr_matrix((ones, (rows, cols)), shape=(n, n))
        self.graph.sort_indices()
        self.entered = self.graph.indices.copy()  # edge e enters cell entered[e]
        self.shape = (H, W)

    def __call__(self, costs: np.ndarray) -> np.ndarray:
        """``[B, H, W]`` costs >= 0 (no negative weights: scipy aborts the process on them)."""
        H, W = self.shape
        out = np.zeros(costs.shape)
        for b, grid in enumerate(costs):
            flat = grid.reshape(-1).astype(np.float64)
            self.graph.data = flat[self.entered]
            _, pred = scipy_dijkstra(self.graph, indices=0, return_predecessors=True)
            cell = H * W - 1
            while cell >= 0:
                out[b, cell // W, cell % W] = 1
                cell = pred[cell]
        return out


def c_dijkstra_batch() -> Callable[[np.ndarray], np.ndarray] | None:
    """Compile `c_dijkstra.c`; return ``[B, H, W]`` float64 -> ``[B]`` optimal costs, or None."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    build = Path(tempfile.mkdtemp(prefix="imle_fn_bench_"))
    lib_path = build / "libcdijkstra.so"
    source = Path(__file__).with_name("c_dijkstra.c")
    cmd = [cc, "-O3", "-march=native", "-shared", "-fPIC", "-o", str(lib_path), str(source)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        return None
    lib = ctypes.CDLL(str(lib_path))
    fn = lib.c_dijkstra_batch
    fn.restype = None

    def run(costs: np.ndarray) -> np.ndarray:
        costs = np.ascontiguousarray(costs, dtype=np.float64)
        B, H, W = costs.shape
        out = np.empty(B)
        fn(
            costs.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(B),
            ctypes.c_int(H),
            ctypes.c_int(W),
            out.ctypes.data_as(ctypes.c_void_p),
        )
        return out

    return run
