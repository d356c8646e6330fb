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

Threading: the batch is split into chunks, one per thread, each with its own tables; `solve` runs
them on the host's OpenMP team where one is registered, else as one Numba ``prange`` where the
threading layer allows it, else serially (`imle_fn._kernels.parallel`). The selections are the
same whichever way.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import carray, njit, prange

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


@njit(cache=True, nogil=True)
def _pool_chunks(block, theta, weights, capacity, out):  # type: ignore[no-untyped-def]
    """The chunk loop of a pool worker: claim chunks of the batch until none is left."""
    N = theta.shape[0]
    n = block[parallel.BLOCK_NUM_CHUNKS]
    while True:
        k = parallel.fetch_add(block, parallel.BLOCK_NEXT)
        if k >= n:
            break
        _solve_range(theta, weights, capacity, k * N // n, (k + 1) * N // n, out)
        parallel.fetch_add(block, parallel.BLOCK_DONE)


def _pool_worker(data):  # type: ignore[no-untyped-def]
    """cfunc body: the argument block at ``data`` -> `_pool_chunks`."""
    h = parallel.BLOCK_HEADER
    block = carray(data, (h + 7,), np.int64)
    N, n, B = block[h], block[h + 1], block[h + 2]
    theta = carray(parallel.as_voidptr(block[h + 3]), (N, n), np.float64)
    weights = carray(parallel.as_voidptr(block[h + 4]), (B, n), np.int64)
    capacity = carray(parallel.as_voidptr(block[h + 5]), (N,), np.int64)
    out = carray(parallel.as_voidptr(block[h + 6]), (N, n), np.float64)
    _pool_chunks(block, theta, weights, capacity, out)


_POOL_DTYPES = (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int64))


@functools.cache
def _pool_worker_address() -> int:
    return parallel.compile_worker(_pool_worker)


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
    threads = parallel.pool_threads(N)
    if (
        threads > 1
        and (theta.dtype, weights.dtype, capacity.dtype) == _POOL_DTYPES
        and all(a.flags.c_contiguous for a in (theta, weights, capacity))
    ):
        block = parallel.new_block(
            threads, N, theta.shape[1], weights.shape[0],
            theta.ctypes.data, weights.ctypes.data, capacity.ctypes.data, out.ctypes.data,
        )  # fmt: skip
        parallel.run_on_pool(_pool_worker_address(), block, threads)
        return out
    if threads == 0 and N > 1 and parallel.parallel_is_safe():
        threads = min(N, numba.get_num_threads())
    if threads <= 1:
        _solve_range(theta, weights, capacity, 0, N, out)
    else:
        with parallel.parallel_guard():
            _solve_parallel(theta, weights, capacity, threads, out)
    return out
