"""Maximum-weight spanning trees: ``z = argmax <theta, z>`` over the symmetric 0/1 adjacency
matrices of spanning trees, by `scipy.sparse.csgraph.minimum_spanning_tree`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

__all__ = ["SpanningTree"]


@dataclass(frozen=True)
class SpanningTree:
    """The maximum spanning tree of a complete graph on ``n`` nodes as a `Solver`.

    ``z: [n, n]`` is the symmetric 0/1 adjacency matrix of a spanning tree (``n - 1`` edges, zero
    diagonal) maximising ``<theta, z> = sum_{i<j} (theta[i, j] + theta[j, i]) z[i, j]``. So the
    score of the edge ``{i, j}`` is ``theta[i, j] + theta[j, i]`` (computed in float64): a
    symmetric ``theta`` counts each edge twice, which changes no tree, and an asymmetric one (the
    perturbed scores ``theta + noise`` and I-MLE targets ``theta - lam * dz`` usually are) is
    solved exactly for the objective above, so no symmetrisation is needed anywhere. The diagonal
    is ignored (no self-loops). A NumPy-backend solver (``event_ndim = 2``).

    * **Absent edges.** ``theta[i, j] = -inf`` or ``theta[j, i] = -inf`` removes the edge
      ``{i, j}``; ``+inf`` off the diagonal is refused.
    * **Disconnected graphs.** When the remaining edges do not connect all ``n`` nodes there is
      no spanning tree: ``forest=False`` (the default) raises a ValueError naming the instance;
      ``forest=True`` returns a maximum spanning forest (a maximum spanning tree of each connected
      component, ``n - components`` edges).
    * **How scipy is used.** `minimum_spanning_tree` reads 0 as "no edge" and a tree depends only
      on the order of the edge weights, so the edges are given the costs ``1, 2, ..., E`` in
      decreasing order of their scores (exact for any finite scores, however large or negative):
      the minimum spanning tree under these distinct costs is the maximum spanning tree under
      the scores, and it is unique.
    * **Ties.** Deterministic: edges of equal score are ranked in row-major order of ``(i, j)``,
      ``i < j``, the earlier edge first. The tree is the one Kruskal's algorithm builds from the
      edges in decreasing score, ties in that order: among optimal trees, the one that prefers
      earlier edges.

    Attributes:
        forest: return a maximum spanning forest for disconnected graphs instead of raising.

    Example:
        >>> import torch, imle_fn
        >>> theta = torch.tensor([[0.0, 3.0, 1.0], [3.0, 0.0, 2.0], [1.0, 2.0, 0.0]])
        >>> imle_fn.map_solve(theta, imle_fn.SpanningTree())  # edges {0, 1} and {1, 2}
        tensor([[0., 1., 0.],
                [1., 0., 1.],
                [0., 1., 0.]])

    Raises:
        TypeError: ``forest`` is not a bool.
        ValueError: when called, non-square scores, ``+inf`` off the diagonal, or (unless
            ``forest=True``) an instance whose finite edges leave the graph disconnected (the
            message names the instance).

    References:
        Kruskal, "On the shortest spanning subtree of a graph and the traveling salesman
        problem", Proceedings of the AMS 7(1), 1956.
    """

    forest: bool = False
    event_ndim: ClassVar[int] = 2
    backend: ClassVar[Literal["numpy"]] = "numpy"

    def __post_init__(self) -> None:
        if not isinstance(self.forest, bool):
            raise TypeError(f"forest: expected a bool, got {type(self.forest).__name__}")

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """``[N, n, n]`` scores -> ``[N, n, n]`` symmetric 0/1 tree adjacency (same dtype)."""
        from scipy.sparse import csr_array
        from scipy.sparse.csgraph import minimum_spanning_tree

        N, n, m = theta.shape
        if n != m:
            raise ValueError(f"theta: SpanningTree expects square [n, n] scores, got [{n}, {m}]")
        rows, cols = np.triu_indices(n, 1)  # the E = n (n - 1) / 2 edges, row-major
        upper = theta[:, rows, cols].astype(np.float64)  # [N, E]
        lower = theta[:, cols, rows].astype(np.float64)  # [N, E]
        plus = np.isposinf(upper) | np.isposinf(lower)
        if plus.any():
            i = int(plus.any(axis=1).argmax())
            raise ValueError(f"theta: +inf edge score at instance {i} (of {N})")
        edges = upper + lower  # [N, E]: -inf for absent edges
        E = edges.shape[1]
        order = np.argsort(-edges, axis=1, kind="stable")  # decreasing score, ties row-major
        cost = np.empty((N, E), dtype=np.float64)
        np.put_along_axis(cost, order, np.arange(1.0, E + 1.0)[None], axis=1)  # distinct, >= 1
        present = edges > -np.inf
        z = np.zeros(theta.shape, dtype=theta.dtype)
        for i in range(N):
            keep = present[i]
            graph = csr_array((cost[i, keep], (rows[keep], cols[keep])), shape=(n, n))
            u, v = minimum_spanning_tree(graph).nonzero()
            if len(u) < n - 1 and not self.forest:
                raise ValueError(
                    f"theta: instance {i} (of {N}) has no spanning tree: its finite edges leave"
                    f" {n - len(u)} connected components (pass SpanningTree(forest=True) for a"
                    " maximum spanning forest)"
                )
            z[i, u, v] = 1
            z[i, v, u] = 1
        return z
