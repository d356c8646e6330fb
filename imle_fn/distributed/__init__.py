"""Solver calls spread over a Ray cluster (`RaySolver`), for solvers too slow for one machine.

`remote` holds the solver users wrap; `worker` the code that runs on the Ray workers.

Import rule: distributed imports ``imle_fn.core`` and itself; never an estimator, a solver or an app.
"""

from imle_fn.distributed.remote import RaySolver, SolverWorkerError

__all__ = ["RaySolver", "SolverWorkerError"]
