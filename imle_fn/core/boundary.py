"""The one place where tensors cross into a solver and back (NumPy copies, device moves, dtypes).

`call_solver` takes scores ``theta: [*lead, *event]`` (a plain tensor: every vmapped dim has already
been folded into ``lead`` by the caller), calls the solver ONCE on ``[N, *event]`` and returns
``z: [*lead, *event]`` with the dtype and device of ``theta``. It validates the solver's input (no NaN)
and output (shape, finite values) and never lets the solver write into ``theta``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from imle_fn.core.checks import check_has_data, check_no_nan, check_solver_output
from imle_fn.core.contract import FunctionSolver, Solver

__all__ = ["call_solver"]

# NumPy has no bfloat16 and Numba kernels are not compiled for float16: such scores go over as float32.
_NUMPY_SAFE = {torch.float32, torch.float64}


def _solver_name(solver: Solver) -> str:
    """How errors name a solver: the user's function for an `as_solver` wrapper, else its type."""
    target = solver.fn if isinstance(solver, FunctionSolver) else solver
    name = getattr(target, "__name__", None)
    return str(name) if name else type(target).__name__


def _to_numpy(flat: torch.Tensor) -> np.ndarray:
    dtype = flat.dtype if flat.dtype in _NUMPY_SAFE else torch.float32
    array = flat.detach().to(device="cpu", dtype=dtype).contiguous().numpy()
    # Zero-copy where possible, but read-only: a solver that writes into its input gets an error
    # from NumPy instead of silently changing the caller's theta.
    array = array.view()
    array.flags.writeable = False
    return array


def _from_numpy(array: np.ndarray, shared: np.ndarray) -> torch.Tensor:
    if not array.flags.writeable or np.shares_memory(array, shared):
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def _private(flat: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``flat`` (a reshape of ``theta``), copied unless the reshape already copied.

    A torch solver may write into its input (``x.mul_(2)``); it must never reach the caller's
    tensor, nor a tensor the estimator reads again (its saved theta). The copy costs less than the
    solver's own passes over its input (measured on CPU: 1.7 us against 26 us for a TopK solve of
    [32, 20], 6 us against 0.97 ms at [256, 100]; within the noise of a whole I-MLE step).
    """
    # ``flat`` is ``theta.detach().reshape(...)``: a view starts where theta does, a copy elsewhere.
    return flat.clone() if flat.data_ptr() == theta.data_ptr() else flat


def call_solver(
    solver: Solver,
    theta: torch.Tensor,
    event_ndim: int,
    context: str = "theta (the solver input: theta, or theta + temperature * noise in an estimator)",
) -> torch.Tensor:
    """Solve every instance of ``theta`` with one solver call.

    Args:
        solver: a `Solver` (maximiser ``[N, *event] -> [N, *event]``).
        theta: ``[*lead, *event]`` scores, a plain (not vmapped) tensor.
        event_ndim: number of trailing dims of one instance.
        context: how to name ``theta`` in error messages.

    Returns:
        ``[*lead, *event]`` MAP states, same dtype and device as ``theta``. ``theta`` is never
        written: NumPy solvers get a read-only array, torch solvers a private copy.

    Raises:
        ValueError: ``theta`` has fewer dims than ``event_ndim``, contains NaN or is a meta
            tensor; the solver's output has the wrong shape or non-finite values; a NumPy solver
            wrote into its (read-only) input. Instances are named by their index into ``lead``.
        TypeError: the solver returned something other than real numbers (strings, objects,
            complex), or a torch solver returned no tensor.
    """
    if theta.ndim < event_ndim:
        raise ValueError(
            f"{context}: expected at least {event_ndim} dims (the solver's event dims), "
            f"got shape {tuple(theta.shape)}"
        )
    check_has_data(context, theta)
    lead = tuple(theta.shape[: theta.ndim - event_ndim])
    event = theta.shape[theta.ndim - event_ndim :]
    if math.prod(lead) == 0:
        return theta.new_zeros(theta.shape)
    flat = theta.detach().reshape(math.prod(lead), *event)  # [N, *event]
    name = _solver_name(solver)
    # NumPy solvers are checked on the host copy (one single-threaded pass, no torch thread-pool
    # wake-ups between the solver's parallel regions); torch solvers on their own device.
    if solver.backend == "numpy":
        array = _to_numpy(flat)
        check_no_nan(context, array, lead)
        try:
            result = solver(array)
        except ValueError as err:
            if "read-only" not in str(err):
                raise
            raise ValueError(
                f"solver: {name} wrote into its input, which is read-only (imle_fn never lets a"
                " solver change the caller's scores); copy it first: x = x.copy()"
            ) from err
        out = np.asarray(result)
        if out.dtype == object:
            raise TypeError(
                f"solver: {name} returned {type(result).__name__} of Python objects; a MAP solver"
                " returns an array of real numbers (0/1 states) shaped like its scores"
            )
        check_solver_output(out, tuple(flat.shape), name, lead)
        z = _from_numpy(out, array)
    else:
        check_no_nan(context, flat, lead)
        z = solver(_private(flat, theta))
        if not isinstance(z, torch.Tensor):
            raise TypeError(
                f"solver: {name} is a torch-backend solver and must return a tensor, got"
                f" {type(z).__name__}"
            )
        check_solver_output(z, tuple(flat.shape), name, lead)
    z = z.to(device=theta.device, dtype=theta.dtype)
    if z.numel() and z.data_ptr() == theta.data_ptr():
        z = z.clone()  # custom ops must not return an alias of their input
    return z.reshape(theta.shape).contiguous()  # [*lead, *event]
