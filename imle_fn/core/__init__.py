"""The pipeline every estimator runs on, knowing no concrete solver.

noise (`noise`) -> `perturbation.perturb` -> `solving.map_solve` (through `boundary`, the one
tensor/solver crossing) -> the estimator wiring (`wiring`). `contract` defines what a solver is,
`handles` how it crosses a custom op, `checks` validates every user argument of the library.

Import rule: core imports only ``imle_fn.core`` and the private ``imle_fn._kernels``; never a solver,
an estimator, ``imle_fn.distributed`` or an app.
"""

from imle_fn.core.contract import Backend, FunctionSolver, Solver, SolverLike, as_solver
from imle_fn.core.noise import gaussian, gumbel, sum_of_gamma
from imle_fn.core.perturbation import perturb
from imle_fn.core.solving import map_solve
from imle_fn.core.wiring import Estimator, Saved, Solve, estimate

__all__ = [
    "Backend",
    "Estimator",
    "FunctionSolver",
    "Saved",
    "Solve",
    "Solver",
    "SolverLike",
    "as_solver",
    "estimate",
    "gaussian",
    "gumbel",
    "map_solve",
    "perturb",
    "sum_of_gamma",
]
