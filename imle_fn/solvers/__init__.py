"""Ready-made MAP solvers: each a `imle_fn.Solver` (a batched maximiser of ``<theta, z>``).

* `grid`: shortest paths on grids (`GridShortestPath`; the Numba Dijkstra, or the pure-torch twin in
  `grid_torch` with ``backend="torch"``), with the problem's shared policies in `grid_rules`.
* `topk`: the k-subset maximiser `TopK` (the family's exact marginals and samples are estimators'
  business: `imle_fn.estimators.k_subset`).

Import rule: solvers import ``imle_fn.core``, ``imle_fn._kernels`` and each other; never an
estimator, ``imle_fn.distributed`` or an app. A new solver goes here as its own module.
"""

from imle_fn.solvers.grid import GridShortestPath, TorchGridShortestPath, path_cost, shortest_path
from imle_fn.solvers.grid_torch import shortest_path_torch
from imle_fn.solvers.topk import TopK, topk_map

__all__ = [
    "GridShortestPath",
    "TopK",
    "TorchGridShortestPath",
    "path_cost",
    "shortest_path",
    "shortest_path_torch",
    "topk_map",
]
