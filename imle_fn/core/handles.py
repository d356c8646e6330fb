"""Solver handles: how a solver object crosses a custom op's boundary (ops take no Python objects).

A solver is registered once and travels through ``torch.ops.imle_fn.*`` as an integer handle;
`solver_from_handle` turns the handle back into the object inside the op.
"""

from __future__ import annotations

import threading

from imle_fn.core.contract import Solver

__all__ = ["solver_from_handle", "solver_handle"]

# Custom ops cannot take Python callables, so solvers travel through the op boundary as integer
# handles. Handles are kept for the life of the process (a solver is small and long-lived).
_REGISTRY: dict[int, Solver] = {}
_HANDLES: dict[object, int] = {}
_LOCK = threading.Lock()


def solver_handle(solver: Solver) -> int:
    """Return a stable integer handle for ``solver`` (registering it on first use).

    Hashable solvers are keyed by value, so ``GridShortestPath()`` created afresh in every training
    step reuses one handle; unhashable ones are keyed by identity and kept alive.
    """
    try:
        key: object = ("value", type(solver), solver)
        hash(key)
    except TypeError:
        key = ("id", id(solver))
    with _LOCK:
        handle = _HANDLES.get(key)
        if handle is None:
            handle = len(_REGISTRY)
            _REGISTRY[handle] = solver
            _HANDLES[key] = handle
    return handle


def solver_from_handle(handle: int) -> Solver:
    """Inverse of `solver_handle`."""
    try:
        return _REGISTRY[handle]
    except KeyError:
        raise ValueError(f"solver handle {handle} is unknown in this process") from None
