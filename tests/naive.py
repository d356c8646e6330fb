"""Slow, obvious reference implementations (oracles) for the tests and the benchmarks.

Each function here writes a definition out plainly (Python loops, heapq, enumeration) so that it
is easy to check by reading; the tests compare the library against it, and the benchmarks time
the library against the pure-Python Dijkstras. Nothing here is fast and nothing here is public
API. Keep every oracle's behaviour fixed: tests and benchmark figures depend on it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numba import njit

from imle_fn.core.noise import sum_of_gamma
from imle_fn.estimators.implicit_mle import imle

if TYPE_CHECKING:
    from imle_fn.apps.demo.configs import Hyper, LearningConfig

__all__ = [
    "EIGHT_STEPS",
    "Cell",
    "bellman_ford_cost",
    "brute_force_oracle",
    "dijkstra_oracle",
    "dijkstra_reference",
    "heapq_dijkstra",
    "heapq_dijkstra_batch",
    "heapq_dijkstra_lean",
    "heapq_dijkstra_lean_batch",
    "k_subset_states",
    "naive_assignment_value",
    "naive_dbb_in_costs",
    "naive_knapsack",
    "naive_ksubset_kl_uniform",
    "naive_learning",
    "naive_ranking",
    "naive_reference",
    "naive_spanning_tree",
    "naive_sum_of_gamma",
    "naive_topk",
    "naive_topk_log_partition",
    "naive_topk_log_partition_loop",
    "naive_topk_marginals",
    "naive_topk_sample",
    "neighbours",
    "rules_oracle",
]

Cell = tuple[int, int]


# ---------------------------------------------------------------------- compat (torch-imle)
def naive_reference(
    theta: torch.Tensor,
    noise: torch.Tensor,
    dy: torch.Tensor,
    function: Callable[[torch.Tensor], torch.Tensor],
    alpha: float,
    beta: float,
    tau_in: float,
    tau_t: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uclnlp/torch-imle's `imle` wrapper (forward and backward) written out: theta [B, ...], noise [B, S, ...], dy [B*S, ...].

    Computes uclnlp/torch-imle's forward samples ``z`` [B*S, ...] and its gradient [B, ...] for
    the given noise and cotangent: the oracle for `imle_fn.compat.imle` (tests/test_compat.py).
    """
    b, s = noise.shape[:2]
    rest = theta.shape[1:]
    z = function((theta.unsqueeze(1) + tau_in * noise).reshape(b * s, *rest))  # [B*S, ...]
    theta_rep = theta.unsqueeze(1).expand(b, s, *rest).reshape(b * s, *rest)
    target = alpha * theta_rep - beta * dy + tau_t * noise.reshape(b * s, *rest)
    z_t = function(target)
    gradient = (z - z_t).reshape(b, s, *rest).mean(1)
    return z, gradient


# ---------------------------------------------------------------------------------- noise
def naive_sum_of_gamma(rng: np.random.Generator, n: int, k: float, num_terms: int) -> np.ndarray:
    """Paper Eq. 13 written out, one term at a time: (sum_i Gamma(1/k, rate=i/k) - log s) / k.

    ``n`` Sum-of-Gamma samples from NumPy's Gamma sampler: the distributional oracle (two-sample
    KS tests) for `imle_fn.core.noise.sum_of_gamma` (tests/core/test_noise.py).
    """
    total = np.zeros(n)
    for i in range(1, num_terms + 1):
        total += rng.gamma(shape=1.0 / k, scale=k / i, size=n)  # numpy's scale is 1 / rate
    return (total - math.log(num_terms)) / k


# ----------------------------------------------------------------------------- estimators
def naive_dbb_in_costs(
    w: np.ndarray, dL_dy: np.ndarray, k: int, lam: float, clamp: bool
) -> np.ndarray:
    """Vlastelica et al. on a cost minimiser (k cheapest items, ties: lower index): dL/dw.

    The blackbox-backprop gradient with respect to the costs ``w`` [B, n], derived in cost form
    with a stable-sort argmin: the oracle for `imle_fn.estimators.blackbox.dbb`
    (tests/estimators/test_family.py), which works on scores ``theta = -w``.
    """

    def argmin(c: np.ndarray) -> np.ndarray:
        y = np.zeros_like(c)
        for row, crow in zip(y, c, strict=True):
            row[np.argsort(crow, kind="stable")[:k]] = 1.0
        return y

    w_prime = w + lam * dL_dy
    if clamp:
        w_prime = np.maximum(w_prime, 0.0)
    return -(argmin(w) - argmin(w_prime)) / lam


# --------------------------------------------------------------------------------- top-k
def naive_ksubset_kl_uniform(eta: torch.Tensor, k: int) -> torch.Tensor:
    """``KL(q || uniform)`` of the k-subset family ``q(z) ∝ exp(<eta, z>)`` by listing every subset.

    ``eta: [*batch, n]`` -> ``[*batch]``: ``sum_z q(z) (log q(z) - log(1 / C(n, k)))`` written out
    with one explicit ``log q(z) = <eta, z> - logsumexp_z' <eta, z'>`` per subset (differentiable).
    """
    n = eta.shape[-1]
    scores = torch.stack(
        [eta[..., list(s)].sum(-1) for s in itertools.combinations(range(n), k)], dim=-1
    )  # [*batch, C(n, k)]
    log_q = scores - torch.logsumexp(scores, dim=-1, keepdim=True)
    return (log_q.exp() * (log_q + math.log(math.comb(n, k)))).sum(-1)


def naive_topk(theta: list[float], k: int) -> list[float]:
    """The 0/1 indicator of the ``k`` largest entries of ``theta`` by sorting (ties: lower index).

    The oracle for `imle_fn.solvers.topk.TopK` (tests/solvers/test_topk.py).
    """
    order = sorted(range(len(theta)), key=lambda i: (-theta[i], i))  # ties: lower index first
    chosen = set(order[:k])
    return [1.0 if i in chosen else 0.0 for i in range(len(theta))]


# Enumeration beyond this many states is refused (it would be slow and memory-hungry).
MAX_STATES = 1_000_000


def k_subset_states(
    n: int, k: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """All ``n choose k`` states ``[n choose k, n]`` of the k-subset family, in lexicographic order.

    The enumeration behind `naive_topk_log_partition` and `naive_topk_marginals`, and the state
    list of the synthetic top-k benchmark (bench/bench_topk_synthetic.py); refuses more than 1e6
    states.
    """
    count = math.comb(n, k)
    if count > MAX_STATES:
        raise ValueError(f"n, k: {n} choose {k} = {count} states, more than {MAX_STATES}")
    index = torch.tensor(list(itertools.combinations(range(n), k)), dtype=torch.long)  # [M, k]
    states = torch.zeros(count, n, dtype=dtype)
    if k > 0:
        states.scatter_(1, index, 1.0)
    return states.to(device)


def _state_logits(theta: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(states [M, n], logits [*batch, M])``; a state holding a masked (-inf) item gets -inf."""
    states = k_subset_states(theta.shape[-1], k, dtype=theta.dtype, device=theta.device)
    finite = torch.isfinite(theta)
    logits = torch.where(finite, theta, 0.0) @ states.T  # [*batch, M]
    masked = (~finite).to(theta.dtype) @ states.T > 0
    return states, logits.masked_fill(masked, -math.inf)


def naive_topk_log_partition(theta: torch.Tensor, k: int) -> torch.Tensor:
    """``[*batch]`` log-partition by enumeration: ``logsumexp`` over the ``n choose k`` states.

    The oracle for `imle_fn.estimators.k_subset.topk_log_partition` (tests/estimators/test_k_subset.py).
    """
    _, logits = _state_logits(theta, k)
    return torch.logsumexp(logits, dim=-1)


def naive_topk_marginals(theta: torch.Tensor, k: int) -> torch.Tensor:
    """``[*batch, n]`` marginals by enumeration: ``softmax(logits) @ states``, differentiable.

    The oracle for `imle_fn.estimators.k_subset.topk_marginals`, and (through `torch.func.jacrev`)
    for SIMPLE's gradient (tests/estimators/test_k_subset.py, test_simple_estimator.py).
    """
    states, logits = _state_logits(theta, k)
    return torch.softmax(logits, dim=-1) @ states


def naive_topk_log_partition_loop(theta: torch.Tensor, k: int) -> torch.Tensor:
    """``[*batch]`` log-partition by the textbook sequential DP, one Python step per item, not in
    log space: ``E_i[c] = E_{i-1}[c] + w_i E_{i-1}[c - 1]`` with ``w_i = exp(theta_i - max theta)``.

    What a user writes first; its gradient (autograd, ``torch.func.grad`` or ``jacrev``) gives the
    marginals. Finite scores only, and it overflows once ``e_k`` passes the dtype's range
    (``n choose k`` near 1e308 in float64): the baseline of bench/bench_simple.py, not an oracle for
    large instances.
    """
    shift = theta.detach().amax(-1, keepdim=True)  # [*batch, 1]
    w = torch.exp(theta - shift)  # [*batch, n]
    table = torch.zeros((*theta.shape[:-1], k + 1), dtype=theta.dtype)
    table[..., 0] = 1.0
    for i in range(theta.shape[-1]):
        table = torch.cat(
            [table[..., :1], table[..., 1:] + w[..., i : i + 1] * table[..., :-1]], -1
        )
    return torch.log(table[..., k]) + k * shift[..., 0]


def naive_topk_sample(theta: torch.Tensor, noise: torch.Tensor, k: int) -> torch.Tensor:
    """Exact k-subset samples ``[S, n]`` for ONE instance ``theta: [n]`` (finite scores) by
    sequential sampling: suffix log-partitions ``B_i[c] = log e_c(w_i, ..., w_n)`` (a Python loop
    over the items), then item by item ``P(z_i = 1 | r ones left) = w_i e_{r-1}(i+1..) / e_r(i..)``
    against the uniform ``noise[:, i]`` (``noise: [S, n]``).

    The textbook sampler (SIMPLE's authors' shape): the baseline of bench/bench_simple.py.
    """
    n = theta.shape[-1]
    suffix = [torch.full((k + 1,), -math.inf, dtype=theta.dtype) for _ in range(n + 1)]
    suffix[n][0] = 0.0
    for i in range(n - 1, -1, -1):
        take = torch.cat([suffix[i + 1].new_full((1,), -math.inf), suffix[i + 1][:-1] + theta[i]])
        suffix[i] = torch.logaddexp(suffix[i + 1], take)
    left = torch.full(noise.shape[:1], k, dtype=torch.long)  # [S] ones still to place
    z = torch.zeros(noise.shape, dtype=theta.dtype)
    for i in range(n):
        prob = torch.exp(theta[i] + suffix[i + 1][(left - 1).clamp(min=0)] - suffix[i][left])
        chosen = (left > 0) & (noise[:, i] < prob)
        z[:, i] = chosen.to(theta.dtype)
        left = left - chosen.long()
    return z


# ------------------------------------------------------------------- the exact solvers
def naive_assignment_value(theta: np.ndarray) -> float:
    """The best ``<theta, z>`` over matchings of the smaller side of one ``[n, m]`` score matrix.

    Enumerates every injection of the smaller side into the larger (``-inf`` pairs forbidden);
    ``-inf`` when none avoids them. The oracle for `imle_fn.solvers.assignment.Assignment`.
    """
    n, m = theta.shape
    t = theta if n <= m else theta.T
    best = -math.inf
    for cols in itertools.permutations(range(t.shape[1]), t.shape[0]):
        best = max(best, sum(float(t[r, c]) for r, c in enumerate(cols)))
    return best


def naive_spanning_tree(theta: np.ndarray, forest: bool = False) -> np.ndarray | None:
    """The spanning tree Kruskal's rule picks, by enumerating every edge set of one ``[n, n]`` graph.

    Edge ``{i, j}`` (``i < j``) scores ``theta[i, j] + theta[j, i]`` and is absent when that is
    ``-inf``. Every acyclic set of ``n - c`` present edges is listed (``c = 1``, or the number of
    connected components when ``forest``); the best has the highest total score and, among those,
    the lexicographically smallest list of edges sorted by ``(-score, i, j)`` (the basis greedy
    picks in a matroid). Returns the symmetric 0/1 adjacency, or None when there is no spanning
    tree. The oracle for `imle_fn.solvers.spanning_tree.SpanningTree` (n <= 6).
    """
    n = theta.shape[0]
    score = {
        (i, j): float(theta[i, j]) + float(theta[j, i]) for i in range(n) for j in range(i + 1, n)
    }
    edges = [e for e, v in score.items() if v > -math.inf]

    def components(chosen: tuple[tuple[int, int], ...]) -> int | None:
        parent = list(range(n))

        def root(a: int) -> int:
            while parent[a] != a:
                a = parent[a]
            return a

        for i, j in chosen:
            ri, rj = root(i), root(j)
            if ri == rj:
                return None  # a cycle
            parent[ri] = rj
        return len({root(a) for a in range(n)})

    full = _count_components(n, edges)
    if full > 1 and not forest:
        return None
    best: tuple[float, list[tuple[float, int, int]]] | None = None
    best_set: tuple[tuple[int, int], ...] = ()
    for chosen in itertools.combinations(edges, n - full):
        if components(chosen) != full:
            continue
        key = (-sum(score[e] for e in chosen), sorted((-score[e], *e) for e in chosen))
        if best is None or key < best:
            best, best_set = key, chosen
    z = np.zeros((n, n))
    for i, j in best_set:
        z[i, j] = z[j, i] = 1.0
    return z


def _count_components(n: int, edges: list[tuple[int, int]]) -> int:
    seen: set[int] = set()
    count = 0
    for start in range(n):
        if start in seen:
            continue
        count += 1
        stack = [start]
        while stack:
            a = stack.pop()
            if a in seen:
                continue
            seen.add(a)
            stack.extend(b for e in edges for b in e if a in e and b != a)
    return count


def naive_knapsack(theta: list[float], weights: list[int], capacity: int) -> list[float]:
    """The 0/1 knapsack by enumerating all ``2**n`` selections of one instance.

    The best has the highest ``<theta, z>`` subject to ``<weights, z> <= capacity`` and, among
    those, the lexicographically smallest indicator read from the last item to the first (the
    documented tie rule). The oracle for `imle_fn.solvers.knapsack.Knapsack` (n <= 12).
    """
    n = len(theta)
    best: tuple[float, tuple[int, ...]] | None = None
    for z in itertools.product((0, 1), repeat=n):
        if sum(w for w, zi in zip(weights, z, strict=True) if zi) > capacity:
            continue
        value = sum(t for t, zi in zip(theta, z, strict=True) if zi)
        key = (-value, tuple(reversed(z)))
        if best is None or key < best:
            best = key
    assert best is not None  # the empty selection is always feasible
    return [float(zi) for zi in reversed(best[1])]


def naive_ranking(theta: list[float]) -> list[float]:
    """The permutation ``r`` of ``0..n-1`` maximising ``<theta, r>``, by enumerating all ``n!``.

    Among optimal permutations, the lexicographically largest ``r`` (of equal scores, the lower
    index gets the higher rank). The oracle for `imle_fn.solvers.ranking.Ranking` (n <= 7).
    """
    n = len(theta)
    best = max(
        itertools.permutations(range(n)),
        key=lambda r: (sum(t * ri for t, ri in zip(theta, r, strict=True)), r),
    )
    return [float(ri) for ri in best]


# --------------------------------------------------------------------- grid shortest path
def neighbours(r: int, c: int, H: int, W: int, neighbourhood: int) -> list[tuple[int, int]]:
    """The in-grid 4- or 8-neighbours of cell ``(r, c)`` of an H x W grid, in row-major step order.

    Used by `dijkstra_oracle`, `brute_force_oracle` and the tests' path checker.
    """
    steps = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]
    if neighbourhood == 4:
        steps = [(a, b) for a, b in steps if a == 0 or b == 0]
    return [(r + a, c + b) for a, b in steps if 0 <= r + a < H and 0 <= c + b < W]


def dijkstra_oracle(
    costs: np.ndarray, neighbourhood: int, source: Cell = (0, 0), target: Cell = (-1, -1)
) -> float:
    """Plain heapq Dijkstra on a vertex-weighted grid; both ends counted; inf if unreachable.

    The optimal source-target path cost of one [H, W] grid of costs >= 0 (walls: inf): the oracle
    for `imle_fn.solvers.grid.shortest_path` and `imle_fn.solvers.grid_torch.shortest_path_torch`
    on grids too large for `brute_force_oracle` (tests/solvers/test_grid*.py).
    """
    H, W = costs.shape
    s = (source[0] % H, source[1] % W)
    t = (target[0] % H, target[1] % W)
    dist = {s: float(costs[s])}
    queue = [(float(costs[s]), s)]
    done: set[Cell] = set()
    while queue:
        d, u = heapq.heappop(queue)
        if u in done:
            continue
        done.add(u)
        for v in neighbours(*u, H, W, neighbourhood):
            nd = d + float(costs[v])
            if nd < dist.get(v, math.inf):
                dist[v] = nd
                heapq.heappush(queue, (nd, v))
    return dist.get(t, math.inf)


def brute_force_oracle(costs: np.ndarray, neighbourhood: int) -> tuple[float, int]:
    """Minimum ``(cost, cells)`` over ALL simple paths from (0, 0) to (H-1, W-1) (tiny grids).

    Exhaustive search: the oracle for the optimum and the documented tie rule (fewest cells among
    the cheapest paths) of `imle_fn.solvers.grid.shortest_path` (tests/solvers/test_grid.py).
    """
    H, W = costs.shape
    t = (H - 1, W - 1)
    best = (math.inf, 0)

    def walk(u: tuple[int, int], cost: float, seen: set[tuple[int, int]]) -> None:
        nonlocal best
        if u == t:
            best = min(best, (cost, len(seen)))
            return
        for v in neighbours(*u, H, W, neighbourhood):
            if v not in seen and costs[v] < math.inf:
                seen.add(v)
                walk(v, cost + float(costs[v]), seen)
                seen.remove(v)

    if costs[0, 0] < math.inf:
        walk((0, 0), float(costs[0, 0]), {(0, 0)})
    return best


def bellman_ford_cost(costs: np.ndarray) -> float:
    """Naive oracle: Bellman-Ford relaxation of vertex-weighted 8-neighbour paths, both ends counted.

    The optimal (0, 0) -> (K0-1, K1-1) path cost of one [K0, K1] grid, relaxed over whole-grid
    shifts until nothing changes: the oracle that the Warcraft look-alike's labels (and their
    corner-symmetric re-solves) are shortest paths (tests/apps/test_warcraft.py).
    """
    k0, k1 = costs.shape
    dist = np.full((k0 + 2, k1 + 2), np.inf)
    dist[1, 1] = costs[0, 0]
    for _ in range(k0 * k1):
        best = dist.copy()
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                shifted = dist[1 + di : 1 + di + k0, 1 + dj : 1 + dj + k1]
                best[1:-1, 1:-1] = np.minimum(best[1:-1, 1:-1], shifted + costs)
        if np.array_equal(best, dist):
            break
        dist = best
    return float(dist[k0, k1])


def rules_oracle(costs: np.ndarray) -> np.ndarray:
    """The documented rules, written plainly with Python's heapq on one [H, W] grid.

    The 0/1 path of the reference's Dijkstra rules on signed costs (no clamping, settled cells
    never reopened, 8-neighbours, (0, 0) -> (H-1, W-1)): the oracle for
    `imle_fn.apps.demo.reference_dijkstra` (tests/apps/test_reference_dijkstra.py).
    """
    H, W = costs.shape
    dist = {(0, 0): float(costs[0, 0])}
    pred: dict[tuple[int, int], tuple[int, int]] = {}
    settled: set[tuple[int, int]] = set()
    heap = [(float(costs[0, 0]), 0)]
    while heap:
        _, index = heapq.heappop(heap)
        r, c = divmod(index, W)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                n = (r + dr, c + dc)
                if (dr, dc) == (0, 0) or not (0 <= n[0] < H and 0 <= n[1] < W) or n in settled:
                    continue
                d = dist[(r, c)] + float(costs[n])
                if d < dist.get(n, np.inf):
                    dist[n], pred[n] = d, (r, c)
                    heapq.heappush(heap, (d, n[0] * W + n[1]))
        settled.add((r, c))
    out = np.zeros((H, W))
    at = (H - 1, W - 1)
    out[at] = 1
    while at != (0, 0):
        at = pred[at]
        out[at] = 1
    return out


# ------------------------------------------ today's kernel, the tie rule's reference (Numba)
_REF_CELL = 0xFFFFFFFF  # heap tie = (hops << 32) | cell


@njit(cache=True, nogil=True)
def _ref_sift_up(hkey, htie, pos, i, key, tie):  # type: ignore[no-untyped-def]
    while i > 0:
        p = (i - 1) >> 1
        pk = hkey[p]
        pt = htie[p]
        if key < pk or (key == pk and tie < pt):
            hkey[i] = pk
            htie[i] = pt
            pos[pt & _REF_CELL] = i
            i = p
        else:
            break
    hkey[i] = key
    htie[i] = tie
    pos[tie & _REF_CELL] = i


@njit(cache=True, nogil=True)
def _ref_sift_down(hkey, htie, pos, size, key, tie):  # type: ignore[no-untyped-def]
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
            pos[ct & _REF_CELL] = i
            i = c
        else:
            break
    hkey[i] = key
    htie[i] = tie
    pos[tie & _REF_CELL] = i


@njit(cache=True, nogil=True)
def _ref_solve(costs, sr, sc, tr, tc, eight, clamp, out, status):  # type: ignore[no-untyped-def]
    H = costs.shape[1]
    W = costs.shape[2]
    Wp = W + 2
    n = (H + 2) * Wp
    cpad = np.full(n, np.inf)
    dist = np.full(n, np.inf)
    pred = np.empty(n, dtype=np.int32)
    pos = np.empty(n, dtype=np.int32)
    hkey = np.empty(H * W, dtype=np.float64)
    htie = np.empty(H * W, dtype=np.int64)
    hops = np.zeros(n, dtype=np.int64)
    if eight:
        off = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], dtype=np.int64)
    else:
        off = np.array([-Wp, -1, 1, Wp], dtype=np.int64)
    s = (sr + 1) * Wp + sc + 1
    t = (tr + 1) * Wp + tc + 1
    inf = np.inf
    for b in range(costs.shape[0]):
        code = 0
        for r in range(H):
            row = (r + 1) * Wp + 1
            for c in range(W):
                x = np.float64(costs[b, r, c])
                v = row + c
                dist[v] = inf
                if x != x:
                    code = 1
                elif x < 0.0:
                    if x == -inf:
                        if code != 1:
                            code = 2
                    elif clamp:
                        x = np.float64(0.0)
                    elif code == 0:
                        code = 3
                cpad[v] = x
                pos[v] = -1
                hops[v] = 0 if x == inf else n
        if code != 0:
            status[b] = code
            continue
        if cpad[s] == inf:
            status[b] = 4
            continue
        dist[s] = cpad[s]
        hops[s] = 0
        size = 1
        hkey[0] = dist[s]
        htie[0] = s
        pos[s] = 0
        reached = False
        while size > 0:
            u = htie[0] & _REF_CELL
            size -= 1
            if size > 0:
                _ref_sift_down(hkey, htie, pos, size, hkey[size], htie[size])
            if u == t:
                reached = True
                break
            du = dist[u]
            nh = hops[u] + 1
            for k in range(off.shape[0]):
                v = u + off[k]
                nd = du + cpad[v]
                dv = dist[v]
                if nd < dv or (nd == dv and nh < hops[v]):
                    pv = pos[v]
                    dist[v] = nd
                    hops[v] = nh
                    pred[v] = u
                    if pv == -1:
                        _ref_sift_up(hkey, htie, pos, size, nd, (nh << 32) | v)
                        size += 1
                    else:
                        _ref_sift_up(hkey, htie, pos, pv, nd, (nh << 32) | v)
        if not reached:
            status[b] = 4
            continue
        status[b] = 0
        v = t
        while True:
            out[b, v // Wp - 1, v % Wp - 1] = 1
            if v == s:
                break
            v = np.int64(pred[v])


def dijkstra_reference(
    costs: np.ndarray,
    source: Cell = (0, 0),
    target: Cell = (-1, -1),
    *,
    neighbourhood: int = 8,
    clamp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The grid kernel as it was before the bucket queues and A* (issue 15), serial, on [B, H, W].

    Dijkstra on lexicographic labels (distance, hops) with an indexed binary heap ordered by
    (distance, hops, row-major cell), a predecessor replaced only on a strict improvement, early
    exit at the target; status codes as `imle_fn._kernels.dijkstra`. Returns ``(status [B] int8,
    paths [B, H, W] float64)``: the oracle that pins the tie rule bit for bit
    (tests/kernels/test_dijkstra.py) and the "before" timing in bench/bench_shortest_path.py.
    """
    costs = np.ascontiguousarray(costs)
    B, H, W = costs.shape
    s = (source[0] % H, source[1] % W)
    t = (target[0] % H, target[1] % W)
    out = np.zeros((B, H, W))
    status = np.zeros(B, dtype=np.int8)
    _ref_solve(costs, s[0], s[1], t[0], t[1], neighbourhood == 8, clamp, out, status)
    return status, out


# ------------------------------------------------- pure-Python Dijkstras timed by bench/
EIGHT_STEPS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _grid_neighbours(r: int, c: int, H: int, W: int) -> list[tuple[int, int]]:
    return [(r + dr, c + dc) for dr, dc in EIGHT_STEPS if 0 <= r + dr < H and 0 <= c + dc < W]


def heapq_dijkstra(costs: np.ndarray) -> np.ndarray:
    """``[H, W]`` costs >= 0 -> ``[H, W]`` 0/1 shortest path, behaving as the reference does.

    Like the reference solver shared by torch-imle, tf-imle, torch-adaptive-imle and
    blackbox-backprop: the search runs until the heap is empty (no early exit), popped entries
    that are already settled are expanded again (the reference's ``pass`` where a ``continue``
    belongs), the number of shortest paths is counted, the neighbours come from a function
    returning a list, and the grid is read as ``costs[x][y]``. Warcraft convention (both ends
    counted, 8-neighbourhood, (0, 0) -> (H-1, W-1)). The "what users have today" baseline of
    bench/bench_shortest_path.py and bench/bench_warcraft.py.
    """
    H, W = costs.shape
    dist = np.full_like(costs, 1.0e10)
    dist[0][0] = costs[0][0]
    count = np.zeros_like(costs)
    count[0][0] = 1
    queue = [(costs[0][0], (0, 0))]
    settled: set[tuple[int, int]] = set()
    pred: dict[tuple[int, int], tuple[int, int]] = {}
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
    """A leaner pure-Python heapq Dijkstra: stale entries skipped, early exit at the target.

    ``[H, W]`` costs >= 0 -> ``[H, W]`` 0/1 shortest path, Warcraft convention as
    `heapq_dijkstra`: the best-case pure-Python baseline of bench/bench_shortest_path.py.
    """
    H, W = costs.shape
    dist = np.full((H, W), np.inf)
    pred: dict[tuple[int, int], tuple[int, int]] = {}
    dist[0, 0] = costs[0, 0]
    queue = [(costs[0, 0], 0, 0)]
    while queue:
        d, r, c = heapq.heappop(queue)
        if d > dist[r, c]:
            continue
        if (r, c) == (H - 1, W - 1):
            break
        for dr, dc in EIGHT_STEPS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W:
                nd = d + costs[rr, cc]
                if nd < dist[rr, cc]:
                    dist[rr, cc] = nd
                    pred[(rr, cc)] = (r, c)
                    heapq.heappush(queue, (nd, rr, cc))
    return _walk_back(pred, H, W)


def _walk_back(pred: dict[tuple[int, int], tuple[int, int]], H: int, W: int) -> np.ndarray:
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


# ----------------------------------------------------------------------------------- demo
def naive_learning(
    configs: list[LearningConfig],
    gold: torch.Tensor,
    theta0: torch.Tensor,
    hyper: Hyper,
    seed: int,
    solver: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's loop written plainly: one Adam and one `imle` call per configuration.

    Per-configuration losses [C, steps] and final scores [C, *gold.shape] of the I-MLE demo's
    learning loop with ``solver``, one configuration after another from one shared noise pool per
    step: the oracle for the lock-step `imle_fn.apps.demo.learning.learn`
    (tests/apps/test_demo.py).
    """
    g = torch.Generator().manual_seed(seed)
    thetas = [theta0.clone().requires_grad_(True) for _ in configs]
    optims = [torch.optim.Adam([t], lr=hyper.lr) for t in thetas]
    s_max = max(c.num_samples for c in configs)
    losses = np.zeros((len(configs), hyper.steps))
    for step in range(hyper.steps):
        pool = sum_of_gamma((s_max, *gold.shape), k=hyper.k, num_terms=hyper.num_terms, generator=g)
        for i, (c, theta, optim) in enumerate(zip(configs, thetas, optims, strict=True)):
            optim.zero_grad()
            noise, t_in, t_out = pool[: c.num_samples], c.input_temperature, c.target_temperature
            if t_in == 0:  # no noise: S identical samples
                noise, t_in, t_out = torch.zeros_like(noise), 1.0, 1.0
            z = imle(theta, noise, solver, lam=hyper.lam, alpha=hyper.alpha, temperature=t_in,
                     target_temperature=t_out, divide_by_lam=False)  # fmt: skip
            loss = (z * (1 - gold) + (1 - z) * gold).mean(0).sum()
            loss.backward()
            optim.step()
            losses[i, step] = float(loss.detach())
    return losses, np.stack([t.detach().numpy() for t in thetas])
