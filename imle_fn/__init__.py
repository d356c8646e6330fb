"""imle_fn: Implicit MLE as composable, functional PyTorch.

Data flows one way: noise (`sum_of_gamma`, `gumbel`) -> `perturb` -> `map_solve` -> `imle`
(forward) with `imle_vjp` (backward). The other estimators (`aimle`, `imle_central`, `dbb`,
`perturbed`, `fenchel_young_loss`, `ste`) share the same interface. `imle_fn.compat` is a drop-in
for uclnlp/torch-imle; `imle_fn.RaySolver` spreads solver calls over a Ray cluster.
"""

from imle_fn.core.contract import Backend, FunctionSolver, Solver, as_solver
from imle_fn.core.noise import gaussian, gumbel, sum_of_gamma
from imle_fn.core.perturbation import perturb
from imle_fn.core.solving import map_solve
from imle_fn.distributed.remote import RaySolver, SolverWorkerError
from imle_fn.estimators import (
    aimle,
    aimle_state,
    aimle_update,
    dbb,
    fenchel_young_loss,
    imle_central,
    perturbed,
    ste,
)
from imle_fn.estimators.implicit_mle import imle, imle_vjp
from imle_fn.solvers.grid import GridShortestPath, TorchGridShortestPath, path_cost, shortest_path
from imle_fn.solvers.grid_torch import shortest_path_torch
from imle_fn.solvers.topk import TopK, topk_log_partition, topk_marginals

__all__ = [
    "Backend",
    "FunctionSolver",
    "GridShortestPath",
    "RaySolver",
    "Solver",
    "SolverWorkerError",
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
    "ste",
    "sum_of_gamma",
    "topk_log_partition",
    "topk_marginals",
]
__version__ = "0.1.0"
