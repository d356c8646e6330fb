"""`map_solve`: the non-differentiable solver boundary, as a `torch.library` custom op.

The op ``imle_fn::map_solve`` is opaque to autograd, `torch.func` and `torch.compile`. Its vmap rule
moves the vmapped dim to the front and calls the op again, so any number of nested `vmap` levels and
all leading batch dims fold into ONE solver call on ``[N, *event]`` per pass.

`Solve` is the solver as estimators see it: it holds the solver object (so an autograd graph that
keeps a `Solve` for its backward keeps the solver alive, and nothing else does) and registers a
handle only when a custom op needs one (`imle_fn.core.handles`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from imle_fn.core.boundary import call_solver
from imle_fn.core.checks import check_floating_tensor, check_has_data
from imle_fn.core.contract import (
    Backend,
    Solver,
    SolverLike,
    assume_constant_result,
    resolve_solver,
)
from imle_fn.core.handles import SolverRef, pin, solver_from_handle, solver_ref

__all__ = ["Solve", "map_solve", "refuse_grad_transforms", "solver_key"]


@torch.library.custom_op("imle_fn::map_solve", mutates_args=())
def _map_solve(theta: torch.Tensor, handle: int, event_ndim: int) -> torch.Tensor:
    return call_solver(solver_from_handle(handle), theta, event_ndim)


@_map_solve.register_fake
def _map_solve_fake(theta: torch.Tensor, handle: int, event_ndim: int) -> torch.Tensor:
    return theta.new_empty(theta.shape)  # contiguous, like the real result


@_map_solve.register_vmap
def _map_solve_vmap(
    info: Any, in_dims: tuple[int | None, ...], theta: torch.Tensor, handle: int, event_ndim: int
) -> tuple[torch.Tensor, int | None]:
    (bdim, _, _) = in_dims
    if bdim is None:
        return torch.ops.imle_fn.map_solve(theta, handle, event_ndim), None
    theta = theta.movedim(bdim, 0)  # [V, *lead, *event]: the vmapped dim becomes one more lead dim
    return torch.ops.imle_fn.map_solve(theta, handle, event_ndim), 0


def is_plain(theta: torch.Tensor) -> bool:
    """True for an ordinary eager tensor: no vmap/grad wrapper, no dispatch mode, not compiling
    (its values may be read; the one test of this kind in the package)."""
    return (
        type(theta) is torch.Tensor
        and not torch.compiler.is_compiling()
        and not torch._C._functorch.is_functorch_wrapped_tensor(theta)
        and torch._C._len_torch_dispatch_stack() == 0
    )


class Solve:
    """The solver as estimators see it: ``solve(x)`` -> MAP states of ``x``, one call per pass.

    Holds the solver itself; an integer handle (for the custom op taken under ``vmap``, dispatch
    modes and `torch.compile`) is registered on first use and released with this object.

    Attributes:
        solver: the `Solver`.
        event_ndim: trailing dims of one instance.
    """

    __slots__ = ("_ref", "context", "event_ndim", "solver")

    def __init__(
        self,
        solver: Solver,
        event_ndim: int,
        ref: SolverRef | None = None,
        context: str | None = None,
    ) -> None:
        self.solver = solver
        self.event_ndim = event_ndim
        self._ref = ref
        self.context = context

    @classmethod
    def from_handle(cls, handle: int, event_ndim: int) -> Solve:
        """The `Solve` of a live handle (inside a custom op)."""
        return cls(solver_from_handle(handle), event_ndim)

    @property
    def handle(self) -> int:
        """The solver's handle, valid while this object lives."""
        if self._ref is None:
            self._ref = solver_ref(self.solver)
        return self._ref.handle

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # An ordinary eager tensor goes straight to the solver (the op's dispatch costs ~150 us a
        # call; `call_solver` detaches it); anything else (vmapped, under torch.func, fake or
        # compiled) through the op, detached.
        if is_plain(x):
            if self.context is None:
                return call_solver(self.solver, x, self.event_ndim)
            return call_solver(self.solver, x, self.event_ndim, self.context)
        return torch.ops.imle_fn.map_solve(x.detach(), self.handle, self.event_ndim)


def _half_built(solver: object) -> bool:
    """True if ``solver`` is an object whose constructor dynamo is still tracing (its attributes
    are pending side effects, not set yet): a solver built inside a `torch.compile`d function."""
    if dataclasses.is_dataclass(solver) and not isinstance(solver, type):
        values = getattr(solver, "__dict__", None)
        for field in dataclasses.fields(solver):
            if not field.init:
                continue
            if values is not None and field.name not in values:
                return True
            if values is None and not hasattr(solver, field.name):
                return True
    try:  # dynamo's own record of objects created during this trace (private API: best effort)
        from torch._dynamo.symbolic_convert import InstructionTranslator
        from torch._dynamo.variables.base import AttributeMutationNew

        tx = InstructionTranslator.current_tx()
        var = tx.output.side_effects.id_to_variable.get(id(solver))
        return var is not None and isinstance(var.mutation_type, AttributeMutationNew)
    except Exception:
        return False


@assume_constant_result
def solver_key(
    solver: SolverLike, event_ndim: int | None, backend: Backend | None = None
) -> tuple[int, int]:
    """``(handle, event_ndim)`` of a solver, for `torch.compile`: resolved once at trace time and
    baked into the graph as a constant, so the solver is pinned for the life of the process.

    Raises:
        ValueError: the solver was constructed inside the compiled function (a documented limit),
            besides the errors of `resolve_solver`.
    """
    if _half_built(solver):
        raise ValueError(
            f"solver: a {type(solver).__name__} constructed inside a torch.compile'd function;"
            " imle_fn looks solvers up once, as constants, when it compiles, before such an"
            " object exists. Construct the solver (as_solver(...) too) outside the compiled"
            " function and use it inside, or pass a plain function with event_ndim="
        )
    resolved = resolve_solver(solver, event_ndim, backend)
    return pin(solver_ref(resolved)).handle, resolved.event_ndim


@assume_constant_result
def refuse_grad_transforms(name: str) -> bool:
    """Under `torch.compile`: NotImplementedError if a ``torch.func`` grad or jvp transform is
    active inside the compiled function (a documented limit); True otherwise. Runs at trace time.

    Raises:
        NotImplementedError: ``torch.func.grad``/``vjp``/``jacrev``/``jvp`` applied inside the
            compiled function.
    """
    from torch._functorch import pyfunctorch

    kinds = {pyfunctorch.TransformType.Grad, pyfunctorch.TransformType.Jvp}
    if any(i.key() in kinds for i in pyfunctorch.retrieve_all_functorch_interpreters()):
        raise NotImplementedError(
            f"{name}: torch.func.grad / vjp / jacrev / jvp inside a torch.compile'd function are"
            " not supported (a PyTorch limit of custom ops with a registered autograd formula);"
            " inside the compiled function use .backward() or torch.autograd.grad, or apply the"
            " torch.func transform outside it: torch.func.grad(torch.compile(f)) is fine"
        )
    return True


def map_solve(
    theta: torch.Tensor, solver: SolverLike, *, event_ndim: int | None = None
) -> torch.Tensor:
    """MAP states of the scores ``theta``: ``z = argmax_z <theta, z>``, one solver call per pass.

    Not differentiable (the result carries no gradient); wrap it with `imle_fn.imle` or another
    estimator to get gradients. Composes with `torch.func.vmap` (nested too): the vmapped and the
    leading dims are folded into the single batch handed to the solver. ``theta`` is never written,
    even by a solver that writes into its input.

    Args:
        theta: ``[*batch, *event]`` scores (higher is preferred), floating point, any device.
        solver: a `imle_fn.Solver`, or a plain NumPy callable together with ``event_ndim``.
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*batch, *event]`` MAP states with the dtype and device of ``theta``.

    Raises:
        TypeError: ``theta`` is not a floating-point tensor, ``solver`` is not callable, or the
            solver returned something other than real numbers.
        ValueError: NaN scores, too few dims, a meta tensor, a solver constructed inside a
            `torch.compile`d function, or a solver output of the wrong shape or non-finite.

    Example:
        >>> import torch, imle_fn
        >>> top1 = imle_fn.as_solver(lambda t: (t == t.max(-1, keepdims=True)).astype(t.dtype),
        ...                          event_ndim=1)
        >>> imle_fn.map_solve(torch.tensor([[0.1, 2.0, -1.0]]), top1)
        tensor([[0., 1., 0.]])
    """
    check_has_data("theta", check_floating_tensor("theta", theta))
    if torch.compiler.is_compiling():
        handle, event_ndim = solver_key(solver, event_ndim)
        return torch.ops.imle_fn.map_solve(theta.detach(), handle, event_ndim)
    resolved = resolve_solver(solver, event_ndim)
    return Solve(resolved, resolved.event_ndim, context="theta")(theta)
