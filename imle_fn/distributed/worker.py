"""The worker side of `imle_fn.RaySolver`: chunking, and solving rows on a Ray worker.

This module imports neither Ray, torch nor the rest of ``imle_fn`` when it is loaded:
`imle_fn.distributed.remote` ships it to the Ray workers by value, so a worker starts with NumPy
alone (``import imle_fn`` pulls in torch and Numba, seconds per new worker process) and a cluster
node needs ``imle_fn`` only if the solver itself does.

Whatever fails on a worker (unpickling the solver, ``make_solver``, the solver itself, a result
that is not an array of numbers) comes back as a `describe_failure` record, a dict of plain
values, instead of an exception: Ray would have to pickle the exception, and one that does not
pickle on the worker or unpickle on the driver would reach the caller as a lost worker.
"""

from __future__ import annotations

import itertools
import traceback
from typing import Any

import numpy as np

__all__ = ["SolverActor", "chunk_bounds", "describe_failure", "solve_rows", "solve_task"]


def chunk_bounds(n: int, chunk_size: int | None, num_workers: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive, non-empty ``(start, stop)`` chunks.

    With ``chunk_size`` every chunk but the last holds that many instances; without it there are
    ``min(n, num_workers)`` chunks whose sizes differ by at most one.
    """
    if chunk_size is None:
        k = max(1, min(n, num_workers))
        edges = [n * i // k for i in range(k + 1)]
    else:
        edges = [*range(0, n, chunk_size), n]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def solve_rows(
    solver: Any, backend: str, theta: np.ndarray, start: int, stop: int
) -> np.ndarray | dict[str, Any]:
    """Solve rows ``start:stop`` of ``theta: [N, *event]`` (read-only, in the object store).

    A ``"numpy"`` solver gets the rows as a zero-copy, read-only, C-contiguous view; a ``"torch"``
    solver gets a CPU tensor (a copy: torch wants writable memory). A solver's own ``backend``
    attribute wins over ``backend``. Returns ``z: [stop - start, *event]``, or the
    `describe_failure` record of what the solver raised (or of a result that is no array of
    numbers: objects would not pickle, strings are no MAP state).
    """
    try:
        rows = theta[start:stop]  # [n, *event], a view: no copy
        if getattr(solver, "backend", backend) == "torch":
            import torch

            out = solver(torch.from_numpy(np.array(rows)))
            z = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        else:
            z = np.asarray(solver(rows))
        if z.dtype.kind not in "biuf":
            raise TypeError(f"solver: returned an array of dtype {z.dtype}, expected numbers")
    except Exception as error:
        return describe_failure(error, "solver")
    return z


def solve_task(
    blob: bytes, backend: str, theta: np.ndarray, start: int, stop: int
) -> np.ndarray | dict[str, Any]:
    """Body of a stateless Ray task: unpickle the solver from ``blob``, then `solve_rows`."""
    try:
        solver = _load(blob)
    except Exception as error:
        return describe_failure(error, "unpickle")
    return solve_rows(solver, backend, theta, start, stop)


class SolverActor:
    """Body of a Ray actor that unpickles (or builds) the solver once and keeps it, state and all.

    ``blob`` is the pickled solver, or with ``build`` the pickled ``make_solver``, called here once.
    When either step raises, the actor stays up and answers every call with the record of that
    error, so the caller sees the error instead of a dead actor.
    """

    def __init__(self, blob: bytes, build: bool, backend: str) -> None:
        self.solver: Any = None
        self.backend = backend
        self.failure: dict[str, Any] | None = None
        try:
            made = _load(blob)
        except Exception as error:
            self.failure = describe_failure(error, "unpickle")
            return
        try:
            self.solver = made() if build else made
        except Exception as error:
            self.failure = describe_failure(error, "make_solver")

    def solve(self, theta: np.ndarray, start: int, stop: int) -> np.ndarray | dict[str, Any]:
        """Solve rows ``start:stop`` of the shared batch ``theta: [N, *event]``."""
        if self.failure is not None:
            return self.failure
        return solve_rows(self.solver, self.backend, theta, start, stop)


def describe_failure(error: BaseException, stage: str) -> dict[str, Any]:
    """A record of ``error`` made of plain values, which always pickle; the driver raises it.

    Keys: ``stage`` (``"unpickle"``, ``"make_solver"`` or ``"solver"``), ``type`` (qualified class
    name), ``name`` (class name), ``message``, ``index`` (the exception's integer ``index``
    attribute, else ``None``), ``traceback`` (text), ``pickled`` (the exception pickled, ``None``
    where it does not pickle) and ``unpicklable`` (why it does not, else ``None``).
    """
    cls = type(error)
    try:
        message = str(error)
    except Exception as failure:  # a broken __str__ must not hide the error itself
        message = f"<str() of the exception raised {type(failure).__name__}>"
    try:
        index = getattr(error, "index", None)
    except Exception:  # a broken __getattr__
        index = None
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        index = None
    try:
        from ray import cloudpickle  # pickles classes defined in functions too, as Ray does

        pickled, unpicklable = cloudpickle.dumps(error), None
    except Exception as failure:
        pickled, unpicklable = None, f"{type(failure).__name__}: {failure}"
    return {
        "stage": stage,
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "name": cls.__name__,
        "message": message,
        "index": None if index is None else int(index),
        "traceback": "".join(traceback.format_exception(error)),
        "pickled": pickled,
        "unpicklable": unpicklable,
    }


def _load(blob: bytes) -> Any:
    from ray import cloudpickle

    return cloudpickle.loads(blob)
