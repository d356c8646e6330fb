"""imle_fn: Implicit MLE as composable, functional PyTorch.

Data flows one way: noise (`sum_of_gamma`, `gumbel`, `gaussian`) -> `perturb` -> `map_solve` ->
`imle` (forward) with `imle_vjp` (backward). The other estimators (`aimle`, `imle_central`, `dbb`,
`perturbed`, `fenchel_young_loss`, `ste`) share the same interface; `simple` (SIMPLE) samples the
k-subset family exactly and takes ``(theta, noise, k)``, with the family's exact `topk_marginals` and
`topk_log_partition`. Ready-made solvers live in `imle_fn.solvers`, `imle_fn.nn` holds `torch.nn`
layers over the estimators (``imle_fn.nn.IMLE``, ...), `imle_fn.compat` is a drop-in for
uclnlp/torch-imle, and `RaySolver` spreads solver calls over a Ray cluster.

The package's layers (see the README's "Layout"): `imle_fn.core` (the pipeline, knowing no concrete
solver), `imle_fn.estimators`, `imle_fn.solvers`, the private Numba kernels `imle_fn._kernels`,
`imle_fn.distributed`, `imle_fn.nn` and `imle_fn.apps` (the command line, the demo, the
benchmarks).
"""

from importlib.metadata import PackageNotFoundError, version

from imle_fn import nn as nn  # the layers stay in their namespace: imle_fn.nn.IMLE, ...
from imle_fn.core import (
    Backend,
    FunctionSolver,
    Solver,
    as_solver,
    gaussian,
    gumbel,
    map_solve,
    perturb,
    sum_of_gamma,
)
from imle_fn.distributed import RaySolver, SolverWorkerError
from imle_fn.estimators import (
    aimle,
    aimle_state,
    aimle_update,
    dbb,
    fenchel_young_loss,
    imle,
    imle_central,
    imle_vjp,
    perturbed,
    simple,
    ste,
    topk_log_partition,
    topk_marginals,
    topk_marginals_vjp,
    topk_sample,
)
from imle_fn.solvers import (
    Assignment,
    GridShortestPath,
    Knapsack,
    Ranking,
    SpanningTree,
    TopK,
    TorchGridShortestPath,
    path_cost,
    shortest_path,
    shortest_path_torch,
)

try:
    __version__ = version("imle_fn")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Assignment",
    "Backend",
    "FunctionSolver",
    "GridShortestPath",
    "Knapsack",
    "Ranking",
    "RaySolver",
    "Solver",
    "SolverWorkerError",
    "SpanningTree",
    "TopK",
    "TorchGridShortestPath",
    "aimle",
    "aimle_state",
    "aimle_update",
    "as_solver",
    "dbb",
    "fenchel_young_loss",
    "gaussian",
    "gumbel",
    "imle",
    "imle_central",
    "imle_vjp",
    "map_solve",
    "path_cost",
    "perturb",
    "perturbed",
    "shortest_path",
    "shortest_path_torch",
    "simple",
    "ste",
    "sum_of_gamma",
    "topk_log_partition",
    "topk_marginals",
    "topk_marginals_vjp",
    "topk_sample",
]
