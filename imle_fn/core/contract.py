"""The solver contract: what `map_solve` and every estimator accept as a MAP solver.

A *solver* is a batched black-box **maximiser**: given scores ``theta`` of shape ``[N, *event]`` it
returns MAP states ``z`` of the same shape, ``z[n] = argmax_{z in C} <theta[n], z>``. Solvers that
minimise a cost (Dijkstra, say) negate the scores themselves; `imle_fn.GridShortestPath` does.

A solver is either

* an object with the attributes of `Solver` (``event_ndim``, ``backend`` and ``__call__``), such as
  the ready-made ones in this package, or
* any plain callable, wrapped with `as_solver` (or passed to `map_solve` together with
  ``event_ndim=``). Plain callables are treated as NumPy solvers.

``backend="numpy"`` solvers receive a read-only, C-contiguous CPU ``numpy.ndarray`` (float32 or
float64; bfloat16 and float16 scores arrive as float32; writing into it raises, naming the solver)
and may return anything ``numpy.asarray`` accepts. ``backend="torch"`` solvers receive a detached
private copy on the scores' own device (they may write into it: the caller's tensors never change)
and return a tensor. Either way the result is checked (real numbers, shape, finite values) and cast
back to the scores' dtype and device. ``event_ndim`` may be 0 (every scalar is an instance).

Solvers are held only as long as something uses them (`imle_fn.core.handles`): building a new one
in every training step, a closure over the batch for instance, keeps no memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from imle_fn.core.checks import check_choice, check_event_ndim

__all__ = [
    "Backend",
    "FunctionSolver",
    "Solver",
    "SolverLike",
    "as_solver",
    "assume_constant_result",
    "resolve_solver",
]

Backend = Literal["numpy", "torch"]
"""What a solver takes and returns: ``"numpy"`` arrays on the CPU or ``"torch"`` tensors on the
scores' device (see the module docstring)."""
BACKENDS: tuple[Backend, ...] = ("numpy", "torch")
F = TypeVar("F", bound=Callable[..., Any])


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


def assume_constant_result(fn: F) -> F:
    """Mark ``fn`` as `torch.compiler.assume_constant_result` does: under `torch.compile` dynamo
    calls it once, for real, at trace time, and bakes its result into the graph as a constant.

    Written without importing ``torch._dynamo`` at import time (that import costs 1-3 s here;
    `torch.compile` loads dynamo when it is actually used).
    """
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


def as_solver(fn: Callable[[Any], Any], *, event_ndim: int, backend: Backend = "numpy") -> Solver:
    """Wrap a batched maximiser ``[N, *event] -> [N, *event]`` as a `Solver`.

    Cheap and safe to call in every training step: equal wrappers share one registration, and
    none outlives the autograd graph that uses it. Under `torch.compile`, wrap outside the compiled
    function (or pass the plain callable with ``event_ndim=`` to the estimator).

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


def resolve_solver(
    solver: SolverLike, event_ndim: int | None = None, backend: Backend | None = None
) -> Solver:
    """Return ``solver`` as a `Solver`, wrapping a plain callable when ``event_ndim`` is given
    (as a ``backend`` solver, default ``"numpy"``; a `Solver` keeps its own backend).

    A plain callable becomes a new `FunctionSolver` on each call; equal wrappers (same callable,
    ``event_ndim`` and backend) compare and hash equal, so they share one solver handle.

    Raises:
        TypeError: ``solver`` is not callable, or ``event_ndim`` is not an int.
        ValueError: a plain callable arrived without ``event_ndim``; a solver with an unknown
            ``backend``.
    """
    # Attribute checks, not isinstance(solver, Solver): runtime Protocol checks cost ~100 us a call.
    if hasattr(solver, "event_ndim") and hasattr(solver, "backend") and callable(solver):
        check_event_ndim(solver.event_ndim)
        check_choice("solver.backend", solver.backend, BACKENDS)
        if event_ndim is None or event_ndim == solver.event_ndim:
            return solver  # type: ignore[return-value]  # it has Solver's attributes
        kind: Backend = solver.backend
    elif not callable(solver):
        raise TypeError(f"solver: expected a callable or a Solver, got {type(solver).__name__}")
    elif event_ndim is None:
        raise ValueError(
            "solver: a plain callable needs event_ndim= (how many trailing dims form one instance),"
            " or wrap it with imle_fn.as_solver(fn, event_ndim=...)"
        )
    else:
        kind = "numpy" if backend is None else check_choice("backend", backend, BACKENDS)
    return FunctionSolver(solver, check_event_ndim(event_ndim), kind)
