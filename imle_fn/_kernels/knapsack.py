"""Numba kernels: batched exact 0/1 knapsack by dynamic programming (no torch in this module).

One instance: scores ``theta`` of shape (n,), non-negative integer weights ``w`` (n,) and an
integer capacity ``C``; maximise ``sum_j theta_j z_j`` over ``z in {0, 1}^n`` with
``sum_j w_j z_j <= C``. Only items with ``theta_j > 0`` and ``w_j <= C`` can be in the unique
selection this kernel returns (an item of score <= 0 never raises the value), so the caller passes
``C`` already capped at the total weight of the positive-score items.

Algorithm: the textbook table over capacities. ``V[c]`` is the best value of a selection of
the items seen so far with weight ``<= c``; item ``j`` is added in decreasing ``c`` and
``take[j, c]`` records whether it *strictly* improved ``V[c]``. Values are accumulated in float64.
The selection is read back from the last item to the first: item ``j`` is taken only when
``take[j, c]``, i.e. when every optimal selection of items ``0..j`` within capacity ``c`` uses it.
So among optimal selections the one returned leaves out the highest-index items it can: read from
the last item to the first, its indicator is the lexicographically smallest (an item of score 0 is
never taken; of two interchangeable items, the lower index is taken). Time ``O(n C)``, memory
``O(n C)`` bytes per thread.

Threading: one ``prange`` over chunks of the batch, one chunk per thread, each with its own
tables; `solve` calls the parallel kernel only as `imle_fn._kernels.parallel` allows.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from imle_fn._kernels import parallel

__all__ = ["solve"]


@njit(cache=True, nogil=True)
def _solve_range(theta, weights, capacity, lo, hi, out):  # type: ignore[no-untyped-def]
    """Instances ``lo..hi-1`` of the batch; instance ``i`` uses ``weights[i % B]`` and
    ``capacity[i]`` (already capped per instance). Writes the 0/1 selections into ``out``."""
    n = theta.shape[1]
    B = weights.shape[0]
    cmax = 0
    for i in range(lo, hi):
        cmax = max(cmax, capacity[i])
    value = np.empty(cmax + 1, dtype=np.float64)
    take = np.empty((n, cmax + 1), dtype=np.bool_)
    for i in range(lo, hi):
        C = capacity[i]
        w = weights[i % B]
        t = theta[i]
        value[: C + 1] = 0.0
        for j in range(n):
            take[j, : C + 1] = False
            tj = t[j]
            wj = w[j]
            if not (tj > 0.0) or wj > C:
                continue
            for c in range(C, wj - 1, -1):
                candidate = value[c - wj] + tj
                if candidate > value[c]:
                    value[c] = candidate
                    take[j, c] = True
        c = C
        for j in range(n - 1, -1, -1):
            if take[j, c]:
                out[i, j] = 1.0
                c -= w[j]


@njit(cache=True, parallel=True)
def _solve_parallel(theta, weights, capacity, num_chunks, out):  # type: ignore[no-untyped-def]
    """`_solve_range` over the whole batch, one ``prange`` iteration per chunk of instances."""
    N = theta.shape[0]
    for k in prange(num_chunks):
        lo = k * N // num_chunks
        hi = (k + 1) * N // num_chunks
        _solve_range(theta, weights, capacity, lo, hi, out)


def solve(theta: np.ndarray, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Exact 0/1 knapsack selections of a batch.

    Args:
        theta: array of shape (N, n), float64, C-contiguous: item scores (finite or ``-inf``).
        weights: array of shape (B, n), int64, entries >= 0; instance ``i`` uses row ``i % B``.
            (Read-only arrays make Numba compile a second specialisation: pass writable ``theta``
            and ``capacity`` and, always the same way, ``weights``.)
        capacity: array of shape (N,), int64 >= 0: each instance's capacity, capped by the
            caller at the total weight of its positive-score items (this bounds the tables).

    Returns:
        float64 array of shape (N, n): the 0/1 selection of each instance.
    """
    N = theta.shape[0]
    out = np.zeros(theta.shape, dtype=np.float64)
    if N == 0 or theta.shape[1] == 0:
        return out
    threads = 1
    if N > 1 and parallel.parallel_is_safe():
        threads = min(N, numba.get_num_threads())
    if threads <= 1:
        _solve_range(theta, weights, capacity, 0, N, out)
    else:
        with parallel.parallel_guard():
            _solve_parallel(theta, weights, capacity, threads, out)
    return out
