"""imle_fn: Implicit MLE as composable, functional PyTorch.

Data flows one way: noise (`sum_of_gamma`, `gumbel`) -> `perturb` -> `map_solve` -> `imle`
(forward) with `imle_vjp` (backward). `imle_fn.compat` is a drop-in for uclnlp/torch-imle.
"""

from imle_fn.imle import imle, imle_vjp
from imle_fn.map_solve import map_solve
from imle_fn.noise import gumbel, sum_of_gamma
from imle_fn.perturb import perturb
from imle_fn.shortest_path import GridShortestPath, path_cost, shortest_path
from imle_fn.solver import Backend, FunctionSolver, Solver, as_solver

__all__ = [
    "Backend",
    "FunctionSolver",
    "GridShortestPath",
    "Solver",
    "as_solver",
    "gumbel",
    "imle",
    "imle_vjp",
    "map_solve",
    "path_cost",
    "perturb",
    "shortest_path",
    "sum_of_gamma",
]
__version__ = "0.1.0"
