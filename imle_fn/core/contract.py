"""The solver contract: what `map_solve` and every estimator accept as a MAP solver.

A *solver* is a batched black-box **maximiser**: given scores ``theta`` of shape ``[N, *event]`` it
returns MAP states ``z`` of the same shape, ``z[n] = argmax_{z in C} <theta[n], z>``. Solvers that
minimise a cost (Dijkstra, say) negate the scores themselves; `imle_fn.GridShortestPath` does.

A solver is either

* an object with the attributes of `Solver` (``event_ndim``, ``backend`` and ``__call__``), such as
  the ready-made ones in this package, or
* any plain callable, wrapped with `as_solver` (or passed to `map_solve` together with
  ``event_ndim=``). Plain callables are treated as NumPy solvers.

``backend="numpy"`` solvers receive a C-contiguous CPU ``numpy.ndarray`` (float32 or float64; bfloat16
and float16 scores arrive as float32) and may return anything ``numpy.asarray`` accepts.
``backend="torch"`` solvers receive a detached tensor on the scores' own device and return a tensor.
Either way the result is checked (shape, finite values) and cast back to the scores' dtype and device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from imle_fn.core.checks import check_choice, check_event_ndim

__all__ = ["Backend", "FunctionSolver", "Solver", "SolverLike", "as_solver", "resolve_solver"]

Backend = Literal["numpy", "torch"]
"""What a solver takes and returns: ``"numpy"`` arrays on the CPU or ``"torch"`` tensors on the
scores' device (see the module docstring)."""


@runtime_checkable
class Solver(Protocol):
    """Protocol of a batched MAP solver ``[N, *event] -> [N, *event]`` (a maximiser)."""

    @property
    def event_ndim(self) -> int:
        """Number of trailing dims that form one instance."""

    @property
    def backend(self) -> Backend:
        """``"numpy"`` or ``"torch"``: what the solver takes and returns."""

    def __call__(self, theta: Any) -> Any:
        """Solve a batch: ``[N, *event] -> [N, *event]``."""


SolverLike = Solver | Callable[[Any], Any]
"""What every ``solver=`` argument accepts: a `Solver`, or a plain batched callable (then pass
``event_ndim=`` too, or wrap it with `as_solver`)."""


@dataclass(frozen=True)
class FunctionSolver:
    """A plain function turned into a `Solver`.

    Attributes:
        fn: the batched maximiser, ``[N, *event] -> [N, *event]``.
        event_ndim: number of trailing dimensions that make up one instance (2 for a grid map,
            1 for a k-subset over a vector).
        backend: ``"numpy"`` (``fn`` takes and returns arrays on the CPU) or ``"torch"``.

    Raises:
        TypeError: ``fn`` is not callable, or ``event_ndim`` is not an int.
        ValueError: ``event_ndim < 0`` or an unknown ``backend``.
    """

    fn: Callable[[Any], Any]
    event_ndim: int
    backend: Backend = "numpy"

    def __post_init__(self) -> None:
        check_event_ndim(self.event_ndim)
        check_choice("backend", self.backend, ("numpy", "torch"))
        if not callable(self.fn):
            raise TypeError(f"fn: expected a callable, got {type(self.fn).__name__}")

    def __call__(self, theta: Any) -> Any:
        return self.fn(theta)


def as_solver(fn: Callable[[Any], Any], *, event_ndim: int, backend: Backend = "numpy") -> Solver:
    """Wrap a batched maximiser ``[N, *event] -> [N, *event]`` as a `Solver`.

    Args:
        fn: the user's solver; a maximiser of ``<theta, z>`` over its discrete set.
        event_ndim: how many trailing dimensions form one instance.
        backend: ``"numpy"`` or ``"torch"``; see the module docstring.

    Returns:
        A `Solver` that `map_solve`, `imle` and the other estimators accept.

    Raises:
        TypeError: ``fn`` is not callable, or ``event_ndim`` is not an int.
        ValueError: ``event_ndim < 0`` or an unknown ``backend``.
    """
    return FunctionSolver(fn, event_ndim, backend)


def resolve_solver(solver: SolverLike, event_ndim: int | None = None) -> Solver:
    """Return ``solver`` as a `Solver`, wrapping a plain callable when ``event_ndim`` is given.

    Wrappers are cached per (callable, event_ndim), so calling this in a training loop does not
    register a new solver on every step.

    Raises:
        TypeError: ``solver`` is not callable, or ``event_ndim`` is not an int.
        ValueError: a plain callable arrived without ``event_ndim``.
    """
    # Attribute checks, not isinstance(solver, Solver): runtime Protocol checks cost ~100 us a call.
    if hasattr(solver, "event_ndim") and hasattr(solver, "backend") and callable(solver):
        check_event_ndim(solver.event_ndim)
        if event_ndim is None or event_ndim == solver.event_ndim:
            return solver  # type: ignore[return-value]  # it has Solver's attributes
        backend = solver.backend
    elif not callable(solver):
        raise TypeError(f"solver: expected a callable or a Solver, got {type(solver).__name__}")
    elif event_ndim is None:
        raise ValueError(
            "solver: a plain callable needs event_ndim= (how many trailing dims form one instance),"
            " or wrap it with imle_fn.as_solver(fn, event_ndim=...)"
        )
    else:
        backend = "numpy"
    check_event_ndim(event_ndim)
    key = (id(solver), event_ndim)
    with _LOCK:
        cached = _WRAPPED.get(key)
        if cached is None or cached.fn is not solver:
            cached = _WRAPPED[key] = FunctionSolver(solver, event_ndim, backend)
    return cached


# Plain callables are wrapped once per (callable, event_ndim), so wrapping in a loop is cheap.
_WRAPPED: dict[tuple[int, int], FunctionSolver] = {}
_LOCK = threading.Lock()
