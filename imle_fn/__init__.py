"""imle_fn: Implicit MLE as composable, functional PyTorch."""

from imle_fn.solver import Backend, FunctionSolver, Solver, as_solver

__all__ = ["Backend", "FunctionSolver", "Solver", "as_solver"]
__version__ = "0.1.0"
