"""Numba kernels: batched vertex-weighted grid Dijkstra (no torch in this module).

One instance is a ``[H, W]`` grid of vertex costs. A path is a sequence of cells, each one a
4-neighbour (N, S, E, W) or 8-neighbour (plus diagonals) of the previous one; its cost is the sum of
the costs of **all** its cells, both ends included (the Warcraft label convention). Costs are read
as float64 whatever the input dtype and accumulated in float64. ``+inf`` cells are walls.

Algorithm: Dijkstra with an array-backed indexed binary heap (decrease-key, every cell at most once
in the heap), early exit when the target is popped. The grid is copied into a float64 workspace
padded with a one-cell border of cost ``+inf``, so neighbours need no bounds checks.

Deterministic tie-breaking: the search runs on lexicographic labels ``(distance, hops)`` (hops =
steps from the source), so

* among minimum-cost paths, one with the fewest cells is returned;
* cells are settled in lexicographic order of ``(distance, hops, row-major cell index)``;
* a cell's predecessor is replaced only on a strict improvement of its label, so it is the first
  settled neighbour that reaches the cell's final label.

The path is the predecessor chain from the target back to the source; it depends only on the
costs, never on the thread count or on how the batch was chunked. The torch twin
(`imle_fn.solvers.grid_torch`) implements the same rule.

Status codes written per instance (the Python layer turns them into errors): `OK`, `NAN`,
`NEG_INF`, `NEGATIVE` (a negative cost while not clamping), `UNREACHABLE` (no finite-cost path).

Threading: the batch is one ``prange`` over chunks (one chunk per thread); each chunk allocates its
workspaces once and solves its instances one after another. `solve` calls the parallel kernel only
as `imle_fn._kernels.parallel` allows for the Numba threading layer in use (thread and fork safety).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from imle_fn._kernels import parallel

__all__ = ["NAN", "NEGATIVE", "NEG_INF", "OK", "UNREACHABLE", "solve"]

OK = 0
NAN = 1
NEG_INF = 2
NEGATIVE = 3
UNREACHABLE = 4

# pos[] value of cells never pushed; otherwise a cell's slot in the heap (stale once popped).
_UNSEEN = -1


_CELL = 0xFFFFFFFF  # htie = (hops << 32) | cell: low 32 bits hold the cell


@njit(cache=True, nogil=True, inline="always")
def _sift_up(hkey, htie, pos, i, key, tie):  # type: ignore[no-untyped-def]
    """Move the entry ``(key, tie)`` up from heap slot ``i``; writes hkey, htie, pos in place."""
    while i > 0:
        p = (i - 1) >> 1
        pk = hkey[p]
        pt = htie[p]
        if key < pk or (key == pk and tie < pt):
            hkey[i] = pk
            htie[i] = pt
            pos[pt & _CELL] = i
            i = p
        else:
            break
    hkey[i] = key
    htie[i] = tie
    pos[tie & _CELL] = i


@njit(cache=True, nogil=True, inline="always")
def _sift_down(hkey, htie, pos, size, key, tie):  # type: ignore[no-untyped-def]
    """Place the entry ``(key, tie)`` at the root of a heap of ``size`` and sift it down."""
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        ck = hkey[c]
        ct = htie[c]
        r = c + 1
        if r < size:
            rk = hkey[r]
            rt = htie[r]
            if rk < ck or (rk == ck and rt < ct):
                c = r
                ck = rk
                ct = rt
        if ck < key or (ck == key and ct < tie):
            hkey[i] = ck
            htie[i] = ct
            pos[ct & _CELL] = i
            i = c
        else:
            break
    hkey[i] = key
    htie[i] = tie
    pos[tie & _CELL] = i


@njit(cache=True, nogil=True)
def _solve_range(costs, lo, hi, sr, sc, tr, tc, eight, clamp, out, status):  # type: ignore[no-untyped-def]
    """Solve instances ``lo:hi`` of ``costs`` serially, with workspaces allocated once.

    Args:
        costs: array of shape (B, H, W), any real dtype; read only.
        lo, hi: the half-open instance range to solve.
        sr, sc, tr, tc: source row and column, target row and column (non-negative, in range).
        eight: 8-neighbourhood when True, 4-neighbourhood when False.
        clamp: replace negative costs by 0 when True, flag them `NEGATIVE` when False.
        out: array of shape (B, H, W), zero on entry; path cells are set to 1 in place.
        status: int8 array of shape (B,); written in place with a status code per instance.
    """
    H = costs.shape[1]
    W = costs.shape[2]
    Wp = W + 2
    n = (H + 2) * Wp
    cpad = np.full(n, np.inf)  # the border keeps cost +inf: a wall around the grid
    dist = np.full(n, np.inf)
    pred = np.empty(n, dtype=np.int32)
    pos = np.empty(n, dtype=np.int32)
    hkey = np.empty(H * W, dtype=np.float64)
    htie = np.empty(H * W, dtype=np.int64)
    hops = np.zeros(n, dtype=np.int64)  # 0 on the border: never "improved" at cost +inf
    if eight:
        off = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], dtype=np.int64)
    else:
        off = np.array([-Wp, -1, 1, Wp], dtype=np.int64)
    nnb = off.shape[0]
    s = (sr + 1) * Wp + sc + 1
    t = (tr + 1) * Wp + tc + 1
    inf = np.inf
    for b in range(lo, hi):
        # Copy costs into the padded workspace, validate, reset the per-instance state.
        code = OK
        for r in range(H):
            row = (r + 1) * Wp + 1
            for c in range(W):
                x = np.float64(costs[b, r, c])
                v = row + c
                dist[v] = inf
                if x != x:
                    code = NAN
                elif x < 0.0:
                    if x == -inf:
                        if code != NAN:
                            code = NEG_INF
                    elif clamp:
                        x = np.float64(0.0)
                    elif code == OK:
                        code = NEGATIVE
                cpad[v] = x
                pos[v] = _UNSEEN
                hops[v] = 0 if x == inf else n  # walls: never "improved" at cost +inf
        if code != OK:
            status[b] = code
            continue
        if cpad[s] == inf:
            status[b] = UNREACHABLE
            continue
        # Dijkstra from s; heap entries are (dist, hops << 32 | cell), pos[] indexes them.
        dist[s] = cpad[s]
        hops[s] = 0
        size = 1
        hkey[0] = dist[s]
        htie[0] = s
        pos[s] = 0
        reached = False
        while size > 0:
            u = htie[0] & _CELL
            size -= 1
            if size > 0:
                _sift_down(hkey, htie, pos, size, hkey[size], htie[size])
            if u == t:
                reached = True
                break
            du = dist[u]
            nh = hops[u] + 1
            # No "settled" test: with costs >= 0 a settled cell never improves (du >= its
            # distance, and equal distances come with fewer hops), and walls and the border
            # (cost +inf) give nd = inf, never < dist, with hops 0 or n, never > nh.
            for k in range(nnb):
                v = u + off[k]
                nd = du + cpad[v]
                dv = dist[v]
                if nd < dv or (nd == dv and nh < hops[v]):
                    pv = pos[v]
                    dist[v] = nd
                    hops[v] = nh
                    pred[v] = u
                    if pv == _UNSEEN:
                        _sift_up(hkey, htie, pos, size, nd, (nh << 32) | v)
                        size += 1
                    else:
                        _sift_up(hkey, htie, pos, pv, nd, (nh << 32) | v)
        if not reached:
            status[b] = UNREACHABLE
            continue
        status[b] = OK
        v = t
        while True:
            out[b, v // Wp - 1, v % Wp - 1] = 1
            if v == s:
                break
            v = np.int64(pred[v])


@njit(cache=True, parallel=True)
def _solve_parallel(costs, sr, sc, tr, tc, eight, clamp, num_chunks, out, status):  # type: ignore[no-untyped-def]
    """`_solve_range` over the whole batch, one ``prange`` iteration per chunk of instances."""
    B = costs.shape[0]
    for k in prange(num_chunks):
        lo = k * B // num_chunks
        hi = (k + 1) * B // num_chunks
        _solve_range(costs, lo, hi, sr, sc, tr, tc, eight, clamp, out, status)


def solve(
    costs: np.ndarray,
    source: tuple[int, int],
    target: tuple[int, int],
    *,
    eight: bool,
    clamp: bool,
    out: np.ndarray,
) -> np.ndarray:
    """Solve a batch of grids in place.

    Args:
        costs: array of shape (B, H, W), a real dtype, C-contiguous; not modified.
        source, target: ``(row, col)`` with ``0 <= row < H`` and ``0 <= col < W``.
        eight: 8-neighbourhood when True, 4-neighbourhood when False.
        clamp: solve for ``max(costs, 0)`` instead of flagging negative costs.
        out: array of shape (B, H, W), all zeros; each instance's path is set to 1 in place
            (instances whose status is not `OK` are left at zero).

    Returns:
        int8 array of shape (B,): the status code of each instance.
    """
    B = costs.shape[0]
    status = np.zeros(B, dtype=np.int8)
    if B == 0:
        return status
    sr, sc = source
    tr, tc = target
    threads = 1
    if B > 1 and parallel.parallel_is_safe():
        threads = min(B, numba.get_num_threads())
    if threads <= 1:
        _solve_range(costs, 0, B, sr, sc, tr, tc, eight, clamp, out, status)
    else:
        with parallel.parallel_guard():
            _solve_parallel(costs, sr, sc, tr, tc, eight, clamp, threads, out, status)
    return status
