"""`map_solve`: the non-differentiable solver boundary, as a `torch.library` custom op.

The op ``imle_fn::map_solve`` is opaque to autograd, `torch.func` and `torch.compile`. Its vmap rule
moves the vmapped dim to the front and calls the op again, so any number of nested `vmap` levels and
all leading batch dims fold into ONE solver call on ``[N, *event]`` per pass.
"""

from __future__ import annotations

from typing import Any

import torch

from imle_fn.core.boundary import call_solver
from imle_fn.core.contract import SolverLike, resolve_solver
from imle_fn.core.handles import solver_from_handle, solver_handle

__all__ = ["map_solve", "solve_op", "solver_key"]


def _assume_constant_result(fn: Any) -> Any:
    # What `torch.compiler.assume_constant_result` does, without importing torch._dynamo at import
    # time (that import costs 1-3 s here; torch.compile loads dynamo when it is actually used).
    fn._dynamo_marked_constant = True
    return fn


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


@_assume_constant_result
def solver_key(solver: SolverLike, event_ndim: int | None) -> tuple[int, int]:
    """``(handle, event_ndim)`` of a solver: resolved eagerly, a constant under `torch.compile`."""
    resolved = resolve_solver(solver, event_ndim)
    return solver_handle(resolved), resolved.event_ndim


def _is_plain(theta: torch.Tensor) -> bool:
    """True for an ordinary eager tensor: no vmap/grad wrapper, no dispatch mode, not compiling."""
    return (
        type(theta) is torch.Tensor
        and not torch.compiler.is_compiling()
        and not torch._C._functorch.is_functorch_wrapped_tensor(theta)
        and torch._C._len_torch_dispatch_stack() == 0
    )


def solve_op(theta: torch.Tensor, handle: int, event_ndim: int) -> torch.Tensor:
    """Solve a detached ``theta`` (used by `map_solve` and by estimators' forward and backward).

    An ordinary eager tensor goes straight to the solver (the op's dispatch costs ~150 us a call);
    anything else (vmapped, under ``torch.func``, fake or compiled) goes through the custom op.
    """
    theta = theta.detach()
    if _is_plain(theta):
        return call_solver(solver_from_handle(handle), theta, event_ndim)
    return torch.ops.imle_fn.map_solve(theta, handle, event_ndim)


def map_solve(
    theta: torch.Tensor, solver: SolverLike, *, event_ndim: int | None = None
) -> torch.Tensor:
    """MAP states of the scores ``theta``: ``z = argmax_z <theta, z>``, one solver call per pass.

    Not differentiable (the result carries no gradient); wrap it with `imle_fn.imle` or another
    estimator to get gradients. Composes with `torch.func.vmap` (nested too): the vmapped and the
    leading dims are folded into the single batch handed to the solver.

    Args:
        theta: ``[*batch, *event]`` scores (higher is preferred), floating point, any device.
        solver: a `imle_fn.Solver`, or a plain NumPy callable together with ``event_ndim``.
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*batch, *event]`` MAP states with the dtype and device of ``theta``.

    Raises:
        TypeError: ``theta`` is not a floating-point tensor, or ``solver`` is not callable.
        ValueError: NaN scores, too few dims, or a solver output of the wrong shape or non-finite.

    Example:
        >>> import torch, imle_fn
        >>> top1 = imle_fn.as_solver(lambda t: (t == t.max(-1, keepdims=True)).astype(t.dtype),
        ...                          event_ndim=1)
        >>> imle_fn.map_solve(torch.tensor([[0.1, 2.0, -1.0]]), top1)
        tensor([[0., 1., 0.]])
    """
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"theta: expected a torch.Tensor, got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise TypeError(f"theta: expected a floating-point tensor, got dtype {theta.dtype}")
    handle, event_ndim = solver_key(solver, event_ndim)
    return solve_op(theta, handle, event_ndim)
