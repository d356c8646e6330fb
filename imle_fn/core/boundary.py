"""The one place where tensors cross into a solver and back (NumPy copies, device moves, dtypes).

`call_solver` takes scores ``theta: [*lead, *event]`` (a plain tensor: every vmapped dim has already
been folded into ``lead`` by the caller), calls the solver ONCE on ``[N, *event]`` and returns
``z: [*lead, *event]`` with the dtype and device of ``theta``. It validates the solver's input (no NaN)
and output (shape, finite values) and never lets the solver write into ``theta``.
"""

from __future__ import annotations

import numpy as np
import torch

from imle_fn.core.checks import check_no_nan, check_solver_output
from imle_fn.core.contract import Solver

__all__ = ["call_solver"]

# NumPy has no bfloat16 and Numba kernels are not compiled for float16: such scores go over as float32.
_NUMPY_SAFE = {torch.float32, torch.float64}


def _solver_name(solver: Solver) -> str:
    return str(getattr(solver, "__name__", type(solver).__name__))


def _to_numpy(flat: torch.Tensor) -> np.ndarray:
    dtype = flat.dtype if flat.dtype in _NUMPY_SAFE else torch.float32
    array = flat.detach().to(device="cpu", dtype=dtype).contiguous().numpy()
    # Zero-copy where possible, but read-only: a solver that writes into its input gets an error
    # from NumPy instead of silently changing the caller's theta.
    array = array.view()
    array.flags.writeable = False
    return array


def _from_numpy(array: np.ndarray, shared: np.ndarray) -> torch.Tensor:
    if array.dtype == object:
        raise TypeError("solver: returned an array of Python objects")
    if not array.flags.writeable or np.shares_memory(array, shared):
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


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
        ``[*lead, *event]`` MAP states, same dtype and device as ``theta``.

    Raises:
        ValueError: ``theta`` has fewer dims than ``event_ndim`` or contains NaN; the solver's output
            has the wrong shape or non-finite values (the message names the instance).
    """
    if theta.ndim < event_ndim:
        raise ValueError(
            f"{context}: expected at least {event_ndim} dims (the solver's event dims), "
            f"got shape {tuple(theta.shape)}"
        )
    event = theta.shape[theta.ndim - event_ndim :]
    flat = theta.detach().reshape(-1, *event)  # [N, *event]
    if flat.shape[0] == 0:
        return theta.new_zeros(theta.shape)
    # NumPy solvers are checked on the host copy (one single-threaded pass, no torch thread-pool
    # wake-ups between the solver's parallel regions); torch solvers on their own device.
    if solver.backend == "numpy":
        array = _to_numpy(flat)
        check_no_nan(context, array)
        out = np.asarray(solver(array))
        check_solver_output(out, tuple(flat.shape), _solver_name(solver))
        z = _from_numpy(out, array)
    else:
        check_no_nan(context, flat)
        z = solver(flat)
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"solver: a torch-backend solver must return a tensor, got {type(z)}")
        check_solver_output(z, tuple(flat.shape), _solver_name(solver))
    z = z.to(device=theta.device, dtype=theta.dtype)
    if z.data_ptr() == theta.data_ptr() and z.numel() > 0:
        z = z.clone()  # custom ops must not return an alias of their input
    return z.reshape(theta.shape).contiguous()  # [*lead, *event]
