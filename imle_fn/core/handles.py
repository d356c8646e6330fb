"""Solver handles: how a solver object crosses a custom op's boundary (ops take no Python objects).

A solver crosses ``torch.ops.imle_fn.*`` as an integer handle; `solver_from_handle` turns the
handle back into the object inside the op. A handle stays valid exactly as long as something holds
its `SolverRef`:

* eagerly, the `imle_fn.core.wiring.Solve` object that an estimator's forward creates and its
  autograd graph keeps for the backward (so the solver lives until that graph is freed), or the
  local variable of the `map_solve` call in progress;
* under `torch.compile`, the handle is baked into the compiled graph as a constant, so the
  reference is *pinned* (`pin`) for the life of the process. Compiled graphs are few (dynamo
  recompiles at most ``torch._dynamo.config.recompile_limit`` times per function, then runs it
  eagerly), so pinned solvers stay few.

A training loop that builds a new solver every step (a closure over the batch, ``as_solver(...)``
inside the loop) therefore keeps no solver, and none of the data it captures, beyond the step that
used it. Equal hashable solvers (``TopK(2)`` built afresh each step) share one live handle.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

__all__ = ["SolverRef", "live_handles", "pin", "solver_from_handle", "solver_ref"]


class SolverRef:
    """A registered solver and its integer handle; the handle is valid while this object lives.

    Attributes:
        solver: the solver object.
        handle: its integer handle (unique for the life of the process, never reused).
    """

    __slots__ = ("__weakref__", "handle", "key", "solver")

    def __init__(self, solver: Any, handle: int, key: object) -> None:
        self.solver = solver
        self.handle = handle
        self.key = key


# handle -> live reference, and (type, solver) or id -> live reference. Both weak in the value: an
# entry disappears with the last holder of its SolverRef. The key of _BY_KEY may hold the solver,
# which does not keep the SolverRef (the value) alive.
_LIVE: weakref.WeakValueDictionary[int, SolverRef] = weakref.WeakValueDictionary()
_BY_KEY: weakref.WeakValueDictionary[object, SolverRef] = weakref.WeakValueDictionary()
_PINNED: dict[int, SolverRef] = {}
_COUNTER = itertools.count()
_LOCK = threading.RLock()  # re-entrant: a weakref callback may run inside a locked section


def _key_of(solver: Any) -> tuple[Any, ...]:
    """Hashable solvers are keyed by value (equal solvers share a handle), others by identity."""
    try:
        key: tuple[Any, ...] = ("value", type(solver), solver)
        hash(key)
    except TypeError:
        key = (
            "id",
            id(solver),
        )  # the SolverRef holds the solver, so the id is not reused meanwhile
    return key


def solver_ref(solver: Any) -> SolverRef:
    """The live `SolverRef` of ``solver`` (registering it if none is alive); hold it while you use
    its handle."""
    key = _key_of(solver)
    with _LOCK:
        ref = _BY_KEY.get(key)
        if ref is None or (key[0] == "id" and ref.solver is not solver):
            ref = SolverRef(solver, next(_COUNTER), key)
            _LIVE[ref.handle] = ref
            _BY_KEY[key] = ref
    return ref


def pin(ref: SolverRef) -> SolverRef:
    """Keep ``ref`` (and its handle) alive for the life of the process (compiled graphs)."""
    with _LOCK:
        _PINNED[ref.handle] = ref
    return ref


def solver_from_handle(handle: int) -> Any:
    """The solver of a live handle (inverse of `solver_ref`).

    Raises:
        ValueError: the handle is unknown or its solver has been freed.
    """
    ref = _LIVE.get(handle)
    if ref is None:
        raise ValueError(
            f"solver handle {handle} is not registered in this process (its solver was freed, or"
            " the handle comes from another process); keep the solver alive while it is used"
        )
    return ref.solver


def live_handles() -> int:
    """How many solvers are registered now (pinned ones included): a bound for tests."""
    return len(_LIVE)
