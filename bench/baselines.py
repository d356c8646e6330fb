"""Grid shortest-path baselines for bench/: what users have today, and compiled C.

* `heapq_dijkstra`: a pure-Python Dijkstra that behaves like the reference solver shared by
  torch-imle, tf-imle, torch-adaptive-imle and blackbox-backprop (heapq, a settled set, tie
  counting, no early exit, stale heap entries expanded again); `heapq_dijkstra_lean` is a leaner
  pure-Python heapq Dijkstra (stale entries skipped, early exit) for comparison. Both (and their
  ``_batch`` versions) are slow, obvious implementations and live with the tests' oracles in
  `tests.naive`; they are re-exported here.
* `ScipyGridDijkstra`: ``scipy.sparse.csgraph.dijkstra`` on a CSR graph whose structure is built once
  per grid size; per instance only the edge weights (the cost of the entered cell) are filled in.
* `c_dijkstra_batch`: a tight single-threaded C binary-heap Dijkstra (`c_dijkstra.c`), compiled with
  the system C compiler on first use; ``None`` where no compiler is available.

All use the Warcraft convention (both ends counted, 8-neighbourhood, (0, 0) -> (H-1, W-1)).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import dijkstra as scipy_dijkstra

from tests.naive import (
    EIGHT_STEPS,
    heapq_dijkstra,
    heapq_dijkstra_batch,
    heapq_dijkstra_lean,
    heapq_dijkstra_lean_batch,
)

__all__ = [
    "ScipyGridDijkstra",
    "c_dijkstra_batch",
    "heapq_dijkstra",
    "heapq_dijkstra_batch",
    "heapq_dijkstra_lean",
    "heapq_dijkstra_lean_batch",
]


class ScipyGridDijkstra:
    """``scipy.sparse.csgraph.dijkstra`` on an H x W 8-neighbour grid, structure built once."""

    def __init__(self, H: int, W: int) -> None:
        rows, cols = [], []
        for r in range(H):
            for c in range(W):
                for dr, dc in EIGHT_STEPS:
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
