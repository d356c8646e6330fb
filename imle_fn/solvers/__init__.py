"""Ready-made MAP solvers: each a `imle_fn.Solver` (a batched maximiser of ``<theta, z>``).

* `grid`: shortest paths on grids (`GridShortestPath`; the Numba Dijkstra, or the pure-torch twin in
  `grid_torch` with ``backend="torch"``), with the problem's shared policies in `grid_rules`.
* `topk`: the k-subset maximiser `TopK` (per-instance ``k``, ``-inf`` masks); the family's exact
  log-partition, marginals and samples are estimators' business (`imle_fn.estimators.k_subset`).
* `assignment`: linear assignment / bipartite matching `Assignment` (scipy).
* `spanning_tree`: maximum spanning trees `SpanningTree` (scipy).
* `knapsack`: the exact 0/1 knapsack `Knapsack` (dynamic programming, a Numba kernel).
* `ranking`: ranks as the permutahedron's MAP state, `Ranking`.
* `_instances`: what solvers holding per-instance data share (the broadcasting rule, equality).

``-inf`` scores mark forbidden items, pairs or edges for the solvers that accept them (`TopK`,
`Assignment`, `SpanningTree`, `Knapsack`); see `TopK` for the estimators they compose with.

Import rule: solvers import ``imle_fn.core``, ``imle_fn._kernels`` and each other; never an
estimator, ``imle_fn.distributed`` or an app. A new solver goes here as its own module.
"""

from imle_fn.solvers.assignment import Assignment
from imle_fn.solvers.grid import GridShortestPath, TorchGridShortestPath, path_cost, shortest_path
from imle_fn.solvers.grid_torch import shortest_path_torch
from imle_fn.solvers.knapsack import Knapsack
from imle_fn.solvers.ranking import Ranking, ranks
from imle_fn.solvers.spanning_tree import SpanningTree
from imle_fn.solvers.topk import TopK, topk_map

__all__ = [
    "Assignment",
    "GridShortestPath",
    "Knapsack",
    "Ranking",
    "SpanningTree",
    "TopK",
    "TorchGridShortestPath",
    "path_cost",
    "ranks",
    "shortest_path",
    "shortest_path_torch",
    "topk_map",
]
