"""Numba kernels: batched vertex-weighted grid shortest paths (no torch in this module).

One instance is a ``[H, W]`` grid of vertex costs. A path is a sequence of cells, each one a
4-neighbour (N, S, E, W) or 8-neighbour (plus diagonals) of the previous one; its cost is the sum of
the costs of **all** its cells, both ends included (the Warcraft label convention). Costs are read
as float64 whatever the input dtype and accumulated in float64. ``+inf`` cells are walls.

**Labels and the tie rule.** Every reached cell v gets the label ``L(v) = (d(v), h(v))``: d the
float64 path cost (sums formed left to right along the path, as in Dijkstra) and h the fewest steps
of a path of cost d. Formally L is the unique solution of ``L(s) = (cost[s], 0)`` and
``L(v) = min over neighbours u of (d(u) + cost[v], h(u) + 1)`` (lexicographic minimum, float64
addition); unique because every step raises the label strictly. The path is traced from the target:
the step back from v goes to the neighbour u that offers v its label (``d(u) + cost[v] == d(v)`` and
``h(u) + 1 == h(v)``) with the smallest ``(d(u), row-major index of u)``. So

* a minimum-cost path is returned, and among those one with the fewest cells;
* remaining ties go to the predecessor first in the order ``(distance, cells, row-major index)``.

This is exactly the path of a Dijkstra that settles cells in ``(distance, hops, index)`` order and
replaces a predecessor only on a strict improvement (the kernel before the queues below; kept as
``tests.naive.dijkstra_reference`` and compared on random grids). It is a function of L alone,
so any search that leaves L exact on the target, on the path and on the path's neighbours that
offer its labels returns the same path, whatever its order of expansion, thread count or batch.

**Searches** (all stop when the target leaves the queue):

1. *Bucket queue* (Dinitz's rule), when the costs have a floor: the smallest finite cost c_min is
   > 0 with the sum S of the finite costs <= 2**27 * c_min (so float64 rounding is far below
   c_min), and the spread c_max / c_min is at most `_MAX_DINITZ`. Keys are A* keys ``f = d + g * steps(v)`` where ``steps`` is the Chebyshev
   (8-neighbourhood) or Manhattan (4) step count to the target and ``g = a * c_min`` is an
   admissible, consistent bound of the cost still to come (``a`` is the largest share of c_min that
   keeps the ring at most `_RING_DINITZ` buckets; ``a = 0`` is Dijkstra). Every step raises f by at
   least ``c_min - g`` > one bucket width, so a cell's offerers all sit in earlier buckets: when a
   bucket is current, its cells hold their final labels and leave in any order (singly linked
   LIFO lists: no comparisons, O(1) per push and pop).
2. *Ring + heap*, for any other non-negative costs: a ring of `_RING` buckets of width
   ``(c_max + g) / (_RING - 3)`` (singly linked lists) and a binary heap holding only the current
   bucket, ordered by ``(f, hops, index)``: the exact order of a plain heap, with small heaps.
   ``g = c_min * (1 - 2**-20)`` when the costs have a floor, else 0 (Dijkstra keys; zero-cost
   cells then need the hops order).
3. *Binary heap* (indexed, decrease-key, ``(f, hops, index)`` order): when path sums may overflow
   (S > 2**1000) or when asked for (``queue="heap"``, the benchmarks' binary-heap variant).

**Why the searches leave the path unchanged** (float64 included). (a) The queue key never drops
along a step and rises strictly along every step that offers a label: with a floor, f rises by
at least ``c_min - g`` while float64 rounding stays below ``c_min * 2**-24`` (S <= 2**27 c_min,
steps < 2**24; under Dinitz's rule by more than a bucket width, as ``c_min - g >= 0.02 c_min``
and the width is ``(c_min - g)(1 - 2**-10)``); without a floor f = d and a zero-cost offer comes
with one more hop, which the heaps' order counts. (b) Hence, by induction on the pops, every
neighbour that offers a cell its label leaves the queue before it (an earlier bucket, under
Dinitz's rule) and relaxes it with its own final label: a cell leaves the queue with its final
label, and a popped cell is never improved. (c) When the target leaves, a cell u that offers a
path cell v its label has a smaller key than v, hence than the target: it has left the queue and
its label is final; a queued or unseen cell offering v's label would have an even smaller key and
would have left before the target. So the trace reads final labels only, and ties are broken by
L, never by the order of expansion.

The grid is copied into a float64 workspace padded with a one-cell border; distances of the border
and of walls are ``-inf`` (never improved, never offered), so neighbours need no bounds checks and
only the costs and distances are reset per instance.

Status codes written per instance (the Python layer turns them into errors): `OK`, `NAN`,
`NEG_INF`, `NEGATIVE` (a negative cost while not clamping), `UNREACHABLE` (no finite-cost path),
`INTERNAL` (the path trace found no predecessor: a broken invariant, reported instead of a hang).

Threading: the batch is split into chunks (one per thread); each chunk allocates its workspaces
once and solves its instances one after another. `solve` runs the chunks on the host's OpenMP
team where one is registered (a ``cfunc`` worker, `imle_fn._kernels.parallel`: no second thread
pool next to torch's), else as one Numba ``prange`` where the threading layer in use allows it
(thread and fork safety), else serially. The paths are the same whichever way.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import carray, njit, prange

from imle_fn._kernels import parallel

__all__ = ["INTERNAL", "NAN", "NEGATIVE", "NEG_INF", "OK", "UNREACHABLE", "solve"]

OK = 0
NAN = 1
NEG_INF = 2
NEGATIVE = 3
UNREACHABLE = 4
INTERNAL = 5

_CELL = 0xFFFFFFFF  # heap tie = (hops << 32) | cell: the low 32 bits hold the cell

# "A floor": c_min >= _TINY, S <= c_min * _SPAN, S <= _HUGE and steps < _MAX_STEPS. Then every
# float64 rounding error met in the search is below c_min * 2**-24 (module docstring).
_TINY = 2.0**-900
_SPAN = 2.0**27
_MAX_STEPS = 2**24
_HUGE = 2.0**1000  # S above this: sums may overflow to +inf; the plain heap handles that case
_FULL = 1.0 - 2.0**-20  # the heaps' A* bound g = c_min * _FULL
_NARROW = 1.0 - 2.0**-10  # bucket width = (c_min - g) * _NARROW under Dinitz's rule
_RING_DINITZ = 32  # the bound g is chosen to keep Dinitz's ring at about this many buckets
_MAX_DINITZ = 1024  # costs spread wider than this (c_max / c_min) use the ring + heap
_MAX_SHARE = 0.98  # g <= 0.98 * c_min under Dinitz's rule
_RING = 512  # buckets of the ring + heap queue (<= 2 * _MAX_DINITZ)
_DINITZ = 1  # queues chosen by _plan
_RING_HEAP = 2
_HEAP = 3


@njit(cache=True, nogil=True, inline="always")
def _before(fa, ta, fb, tb, plateau):  # type: ignore[no-untyped-def]
    """Heap order: ``(f, hops, cell)``; ``f`` alone when not ``plateau`` (f rises at every step)."""
    return fa < fb or (plateau and fa == fb and ta < tb)


@njit(cache=True, nogil=True, inline="always")
def _sift_up(hkey, htie, pos, plateau, i, key, tie):  # type: ignore[no-untyped-def]
    """Move the entry ``(key, tie)`` up from heap slot ``i``; writes hkey, htie, pos in place."""
    while i > 0:
        p = (i - 1) >> 1
        pk = hkey[p]
        pt = htie[p]
        if _before(key, tie, pk, pt, plateau):
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
def _sift_down(hkey, htie, pos, plateau, size, key, tie):  # type: ignore[no-untyped-def]
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
            if _before(rk, rt, ck, ct, plateau):
                c = r
                ck = rk
                ct = rt
        if _before(ck, ct, key, tie, plateau):
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
def _search_dinitz(cpad, dist, hops, off, steps, bound, astar, s, t, inv_w, head, nxt):  # type: ignore[no-untyped-def]
    """Bucket queue under Dinitz's rule (module docstring, search 1); True when t is reached.

    Buckets are singly linked lists through ``nxt``; a cell whose key drops to another bucket
    (rare) is found by walking its old bucket's short list.
    """
    inf = np.inf
    nnb = off.shape[0]
    mask = head.shape[0] - 1
    head[:] = -1
    dist[s] = cpad[s]
    hops[s] = 0
    cur = np.int64((dist[s] + bound[steps[s]]) * inv_w)
    head[cur & mask] = s
    nxt[s] = -1
    queued = 1
    while queued > 0:
        j = cur & mask
        u = head[j]
        if u < 0:
            cur += 1
            continue
        head[j] = nxt[u]  # pop the front of the current bucket
        queued -= 1
        if u == t:
            return True
        du = dist[u]
        nh = hops[u] + 1
        for k in range(nnb):
            v = u + off[k]
            nd = du + cpad[v]
            dv = dist[v]
            if nd < dv:
                f = nd + bound[steps[v]] if astar else nd
                i = np.int64(f * inv_w) & mask
                dist[v] = nd
                hops[v] = nh
                if dv == inf:
                    queued += 1
                else:
                    fo = dv + bound[steps[v]] if astar else dv
                    o = np.int64(fo * inv_w) & mask
                    if o == i:
                        continue
                    p = head[o]
                    if p == v:
                        head[o] = nxt[v]
                    else:
                        while p >= 0 and nxt[p] != v:
                            p = nxt[p]
                        if p >= 0:
                            nxt[p] = nxt[v]
                nxt[v] = head[i]
                head[i] = v
            elif nd == dv and nh < hops[v]:
                hops[v] = nh  # same distance and bucket, fewer steps
    return False


@njit(cache=True, nogil=True)
def _search_ring(  # type: ignore[no-untyped-def]
    cpad, dist, hops, off, steps, bound, astar, s, t, inv_w, head, nxt, pos, hkey, htie
):
    """Ring of buckets + a heap for the current one (module docstring, search 2); True when t is reached.

    A queued cell whose key is in the current bucket is in the heap; any other sits in the
    singly linked list (through ``nxt``) of its ring slot.
    """
    inf = np.inf
    nnb = off.shape[0]
    mask = head.shape[0] - 1
    head[:] = -1
    dist[s] = cpad[s]
    hops[s] = 0
    f = dist[s] + bound[steps[s]] if astar else dist[s]
    cur = np.int64(f * inv_w)
    hkey[0] = f
    htie[0] = s
    pos[s] = 0
    size = 1
    listed = 0
    while True:
        if size == 0:  # the next non-empty bucket becomes the heap
            if listed == 0:
                return False
            cur += 1
            j = cur & mask
            v = head[j]
            if v < 0:
                continue
            head[j] = -1
            while v >= 0:
                f = dist[v] + bound[steps[v]] if astar else dist[v]
                _sift_up(hkey, htie, pos, True, size, f, (np.int64(hops[v]) << 32) | v)
                size += 1
                listed -= 1
                v = nxt[v]
        u = htie[0] & _CELL
        size -= 1
        if size > 0:
            _sift_down(hkey, htie, pos, True, size, hkey[size], htie[size])
        if u == t:
            return True
        du = dist[u]
        nh = hops[u] + 1
        for k in range(nnb):
            v = u + off[k]
            nd = du + cpad[v]
            dv = dist[v]
            if nd < dv or (nd == dv and nh < hops[v]):
                f = nd + bound[steps[v]] if astar else nd
                tie = (np.int64(nh) << 32) | v
                bi = np.int64(f * inv_w)
                if dv != inf:
                    fo = dv + bound[steps[v]] if astar else dv
                    bo = np.int64(fo * inv_w)
                    dist[v] = nd
                    hops[v] = nh
                    if bo == cur:  # in the heap: stays there
                        _sift_up(hkey, htie, pos, True, pos[v], f, tie)
                        continue
                    if bo == bi:  # stays in its list
                        continue
                    o = bo & mask  # unlink v from its old list
                    p = head[o]
                    if p == v:
                        head[o] = nxt[v]
                    else:
                        while p >= 0 and nxt[p] != v:
                            p = nxt[p]
                        if p >= 0:
                            nxt[p] = nxt[v]
                    listed -= 1
                else:
                    dist[v] = nd
                    hops[v] = nh
                if bi == cur:
                    _sift_up(hkey, htie, pos, True, size, f, tie)
                    size += 1
                else:
                    i = bi & mask
                    nxt[v] = head[i]
                    head[i] = v
                    listed += 1


@njit(cache=True, nogil=True)
def _search_heap(cpad, dist, hops, off, steps, bound, astar, s, t, plateau, wide, pos, hkey, htie):  # type: ignore[no-untyped-def]
    """The indexed binary heap (module docstring, search 3); True when t is reached.

    ``wide``: sums may overflow to +inf, so unseen cells are told by ``hops == n`` (reset by the
    caller) rather than by ``dist == inf``.
    """
    inf = np.inf
    n = dist.shape[0]
    nnb = off.shape[0]
    dist[s] = cpad[s]
    hops[s] = 0
    size = 1
    hkey[0] = dist[s] + bound[steps[s]] if astar else dist[s]
    htie[0] = s
    pos[s] = 0
    while size > 0:
        u = htie[0] & _CELL
        size -= 1
        if size > 0:
            _sift_down(hkey, htie, pos, plateau, size, hkey[size], htie[size])
        if u == t:
            return True
        du = dist[u]
        nh = hops[u] + 1
        for k in range(nnb):
            v = u + off[k]
            nd = du + cpad[v]
            dv = dist[v]
            if nd < dv or (nd == dv and nh < hops[v]):
                fresh = dv == inf and (not wide or hops[v] == n)
                dist[v] = nd
                hops[v] = nh
                f = nd + bound[steps[v]] if astar else nd
                tie = (np.int64(nh) << 32) | v
                if fresh:
                    _sift_up(hkey, htie, pos, plateau, size, f, tie)
                    size += 1
                else:
                    _sift_up(hkey, htie, pos, plateau, pos[v], f, tie)
    return False


@njit(cache=True, nogil=True)
def _trace(cpad, dist, hops, off, s, t, Wp, out, b):  # type: ignore[no-untyped-def]
    """Write the path into ``out[b]``; False (and ``out[b]`` partly written) if a step finds no
    predecessor, which the labels rule out (a guard against a broken invariant, never a hang).

    From t, step back to the neighbour u that offers v its label with the smallest
    ``(dist[u], cell)`` (the offsets are in increasing order, so full ties keep the first).
    """
    nnb = off.shape[0]
    v = t
    for _ in range(dist.shape[0]):
        out[b, v // Wp - 1, v % Wp - 1] = 1
        if v == s:
            return True
        dv = dist[v]
        cv = cpad[v]
        want = hops[v] - 1
        best = -1
        best_d = np.inf
        for k in range(nnb):
            u = v + off[k]
            du = dist[u]
            if du + cv == dv and hops[u] == want and (best < 0 or du < best_d):
                best = u
                best_d = du
        if best < 0:
            return False
        v = best
    return False


@njit(cache=True, nogil=True)
def _has_floor(c_min, total, max_steps):  # type: ignore[no-untyped-def]
    """The costs have a floor: float64 rounding stays below ``c_min * 2**-24`` (module docstring)."""
    return c_min >= _TINY and total <= c_min * _SPAN and total <= _HUGE and max_steps < _MAX_STEPS


@njit(cache=True, nogil=True)
def _plan(c_min, c_max, total, max_steps, heuristic, heap_only):  # type: ignore[no-untyped-def]
    """Choose the queue for one instance: ``(queue, g, width)``.

    Args:
        c_min, c_max: the smallest and largest finite cost (after clamping; at least one cell,
            the source, is finite).
        total: the sum S of the finite costs.
        max_steps: the largest step count from a cell to the target.
        heuristic, heap_only: as `solve`'s ``heuristic`` and ``queue == "heap"``.

    Returns:
        ``queue``: `_DINITZ`, `_RING_HEAP` or `_HEAP`; ``g``: the A* bound per step (0: Dijkstra
        keys); ``width``: the bucket width (0 for `_HEAP`).
    """
    floor = _has_floor(c_min, total, max_steps)
    if heap_only or not total <= _HUGE:
        return _HEAP, c_min * _FULL if floor and heuristic else 0.0, 0.0
    if floor and c_max <= c_min * _MAX_DINITZ:
        g = 0.0
        if heuristic:  # the largest bound that keeps the ring at about _RING_DINITZ buckets
            share = (_RING_DINITZ - c_max / c_min) / (_RING_DINITZ + 1.0)
            g = c_min * min(max(share, 0.0), _MAX_SHARE)
        return _DINITZ, g, (c_min - g) * _NARROW
    g = c_min * _FULL if floor and heuristic else 0.0
    # Widths below _TINY (all costs zero, or subnormal) are raised to it: 1 / width stays finite,
    # and a wider bucket only puts more of the queue in the heap.
    return _RING_HEAP, g, max((c_max + g) / (_RING - 3), _TINY)


@njit(cache=True, nogil=True)
def _solve_range(costs, lo, hi, sr, sc, tr, tc, eight, clamp, heuristic, heap_only, out, status):  # type: ignore[no-untyped-def]
    """Solve instances ``lo:hi`` of ``costs`` serially, with workspaces allocated once.

    Args:
        costs: array of shape (B, H, W), any real dtype; read only.
        lo, hi: the half-open instance range to solve.
        sr, sc, tr, tc: source row and column, target row and column (non-negative, in range).
        eight: 8-neighbourhood when True, 4-neighbourhood when False.
        clamp: replace negative costs by 0 when True, flag them `NEGATIVE` when False.
        heuristic: use the A* bound where the costs have a floor (False: Dijkstra keys).
        heap_only: always use the plain binary heap (search 3).
        out: array of shape (B, H, W), zero on entry; path cells are set to 1 in place.
        status: int8 array of shape (B,); written in place with a status code per instance.
    """
    H = costs.shape[1]
    W = costs.shape[2]
    Wp = W + 2
    n = (H + 2) * Wp
    inf = np.inf
    # Few allocations (they dominate small calls): one float64 and one int32 block, sliced.
    real = np.empty(2 * n + H * W)
    cpad = real[:n]
    dist = real[n : 2 * n]  # -inf on the border (and on walls): never improved, never offered
    hkey = real[2 * n :]
    cpad[:] = inf
    dist[:] = -inf
    ints = np.zeros(4 * n + 2 * _MAX_DINITZ + 8, dtype=np.int32)
    hops = ints[:n]
    pos = ints[n : 2 * n]
    nxt = ints[2 * n : 3 * n]
    steps = ints[3 * n : 4 * n]  # steps from each cell to the target
    head = ints[4 * n :]
    htie = np.empty(H * W, dtype=np.int64)
    if eight:
        off = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], dtype=np.int64)
        max_steps = max(H, W) - 1
    else:
        off = np.array([-Wp, -1, 1, Wp], dtype=np.int64)
        max_steps = H + W - 2
    for r in range(H):
        for c in range(W):
            a = abs(r - tr)
            e = abs(c - tc)
            steps[(r + 1) * Wp + c + 1] = max(a, e) if eight else a + e
    bound = np.zeros(max_steps + 1)  # bound[k] = k * g
    s = (sr + 1) * Wp + sc + 1
    t = (tr + 1) * Wp + tc + 1
    for b in range(lo, hi):
        # Copy costs into the padded workspace, validate, reset dist; c_min, c_max and S.
        code = OK
        c_min = inf
        c_max = 0.0
        total = 0.0
        for r in range(H):
            row = (r + 1) * Wp + 1
            for c in range(W):
                x = np.float64(costs[b, r, c])
                v = row + c
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
                if x == inf:
                    dist[v] = -inf
                else:
                    dist[v] = inf
                    total += x
                    c_min = min(c_min, x)
                    c_max = max(c_max, x)
        if code != OK:
            status[b] = code
            continue
        if cpad[s] == inf:
            status[b] = UNREACHABLE
            continue
        queue, g, width = _plan(c_min, c_max, total, max_steps, heuristic, heap_only)
        if bound.shape[0] > 1 and bound[1] != g:
            for k in range(max_steps + 1):
                bound[k] = k * g
        astar = g > 0.0
        if queue == _DINITZ:
            ring = 1
            while ring < (c_max + g) / width + 3.0:
                ring *= 2
            reached = _search_dinitz(
                cpad, dist, hops, off, steps, bound, astar, s, t, 1.0 / width,
                head[:ring], nxt,
            )  # fmt: skip
        elif queue == _RING_HEAP:
            reached = _search_ring(
                cpad, dist, hops, off, steps, bound, astar, s, t, 1.0 / width,
                head[:_RING], nxt, pos, hkey, htie,
            )  # fmt: skip
        else:
            wide = not total <= _HUGE
            if wide:  # unseen cells: hops == n (see _search_heap)
                hops[:] = n
            plateau = not _has_floor(c_min, total, max_steps)  # zero-cost steps: hops order
            reached = _search_heap(
                cpad, dist, hops, off, steps, bound, astar, s, t, plateau, wide, pos, hkey, htie
            )
        if not reached:
            status[b] = UNREACHABLE
            continue
        status[b] = OK if _trace(cpad, dist, hops, off, s, t, Wp, out, b) else INTERNAL


@njit(cache=True, parallel=True)
def _solve_parallel(  # type: ignore[no-untyped-def]
    costs, sr, sc, tr, tc, eight, clamp, heuristic, heap_only, num_chunks, out, status
):
    """`_solve_range` over the whole batch, one ``prange`` iteration per chunk of instances."""
    B = costs.shape[0]
    for k in prange(num_chunks):
        lo = k * B // num_chunks
        hi = (k + 1) * B // num_chunks
        _solve_range(costs, lo, hi, sr, sc, tr, tc, eight, clamp, heuristic, heap_only, out, status)


@njit(cache=True, nogil=True)
def _pool_chunks(block, costs, out, status):  # type: ignore[no-untyped-def]
    """The chunk loop of a pool worker: claim chunks of the batch until none is left."""
    B = costs.shape[0]
    n = block[parallel.BLOCK_NUM_CHUNKS]
    h = parallel.BLOCK_HEADER + 6
    sr, sc, tr, tc = block[h], block[h + 1], block[h + 2], block[h + 3]
    eight, clamp = block[h + 4] != 0, block[h + 5] != 0
    heuristic, heap_only = block[h + 6] != 0, block[h + 7] != 0
    while True:
        k = parallel.fetch_add(block, parallel.BLOCK_NEXT)
        if k >= n:
            break
        lo = k * B // n
        hi = (k + 1) * B // n
        _solve_range(costs, lo, hi, sr, sc, tr, tc, eight, clamp, heuristic, heap_only, out, status)
        parallel.fetch_add(block, parallel.BLOCK_DONE)


_BLOCK_SIZE = parallel.BLOCK_HEADER + 14

MIN_PARALLEL_CELLS = 4096
"""Batches with fewer cells in all (B * H * W) are solved serially: about 0.15-0.2 ms of work on
one thread (37-49 ns a cell), where waking a second thread and joining it would eat most of the
gain (tens of microseconds when the worker sleeps)."""


def _pool_worker_float64(data):  # type: ignore[no-untyped-def]
    """cfunc body: the argument block at ``data`` -> `_pool_chunks` on float64 grids."""
    block = carray(data, (_BLOCK_SIZE,), np.int64)
    h = parallel.BLOCK_HEADER
    shape = (block[h], block[h + 1], block[h + 2])
    costs = carray(parallel.as_voidptr(block[h + 3]), shape, np.float64)
    out = carray(parallel.as_voidptr(block[h + 4]), shape, np.float64)
    status = carray(parallel.as_voidptr(block[h + 5]), (block[h],), np.int8)
    _pool_chunks(block, costs, out, status)


def _pool_worker_float32(data):  # type: ignore[no-untyped-def]
    """cfunc body: the argument block at ``data`` -> `_pool_chunks` on float32 grids."""
    block = carray(data, (_BLOCK_SIZE,), np.int64)
    h = parallel.BLOCK_HEADER
    shape = (block[h], block[h + 1], block[h + 2])
    costs = carray(parallel.as_voidptr(block[h + 3]), shape, np.float32)
    out = carray(parallel.as_voidptr(block[h + 4]), shape, np.float32)
    status = carray(parallel.as_voidptr(block[h + 5]), (block[h],), np.int8)
    _pool_chunks(block, costs, out, status)


@functools.cache
def _pool_worker(dtype: str) -> int:
    """Address of the compiled chunk worker for ``dtype`` grids (compiled, or loaded from Numba's
    cache, on first use)."""
    body = {"float64": _pool_worker_float64, "float32": _pool_worker_float32}[dtype]
    return parallel.compile_worker(body)


def solve(
    costs: np.ndarray,
    source: tuple[int, int],
    target: tuple[int, int],
    *,
    eight: bool,
    clamp: bool,
    out: np.ndarray,
    heuristic: bool = True,
    queue: str = "auto",
) -> np.ndarray:
    """Solve a batch of grids in place.

    Args:
        costs: array of shape (B, H, W), a real dtype, C-contiguous; not modified.
        source, target: ``(row, col)`` with ``0 <= row < H`` and ``0 <= col < W``.
        eight: 8-neighbourhood when True, 4-neighbourhood when False.
        clamp: solve for ``max(costs, 0)`` instead of flagging negative costs.
        out: array of shape (B, H, W), all zeros; each instance's path is set to 1 in place
            (instances whose status is not `OK` are left at zero).
        heuristic: use the A* bound where the costs have a floor. The path is the same either way
            (switches for the tests and benchmarks).
        queue: ``"auto"`` (the module docstring's choice) or ``"heap"`` (always the plain binary
            heap). The path is the same either way.

    Returns:
        int8 array of shape (B,): the status code of each instance.
    """
    if queue not in ("auto", "heap"):
        raise ValueError(f"queue: expected 'auto' or 'heap', got {queue!r}")
    B = costs.shape[0]
    status = np.zeros(B, dtype=np.int8)
    if B == 0:
        return status
    sr, sc = source
    tr, tc = target
    heap_only = queue == "heap"
    _, H, W = costs.shape
    threads = 1 if B * H * W < MIN_PARALLEL_CELLS else parallel.pool_threads(B)
    if (
        threads > 1
        and costs.dtype == out.dtype
        and costs.dtype.name in ("float32", "float64")
        and costs.flags.c_contiguous
        and out.flags.c_contiguous
    ):
        block = parallel.new_block(
            threads, B, H, W, costs.ctypes.data, out.ctypes.data, status.ctypes.data,
            sr, sc, tr, tc, eight, clamp, heuristic, heap_only,
        )  # fmt: skip
        parallel.run_on_pool(_pool_worker(costs.dtype.name), block, threads)
        return status
    if threads == 0 and B > 1 and parallel.parallel_is_safe():
        threads = min(B, numba.get_num_threads())
    if threads <= 1:
        _solve_range(costs, 0, B, sr, sc, tr, tc, eight, clamp, heuristic, heap_only, out, status)
    else:
        with parallel.parallel_guard():
            _solve_parallel(
                costs, sr, sc, tr, tc, eight, clamp, heuristic, heap_only, threads, out, status
            )
    return status
