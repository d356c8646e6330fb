"""The one place where tensors cross into a solver and back (NumPy copies, device moves, dtypes).

`call_solver` takes scores ``theta: [*lead, *event]`` (a plain tensor: every vmapped dim has already
been folded into ``lead`` by the caller), calls the solver ONCE on ``[N, *event]`` and returns
``z: [*lead, *event]`` with the dtype and device of ``theta``. It validates the solver's input (no NaN)
and output (shape, finite values) and never lets the solver write into ``theta``.

On import, this module hands torch's OpenMP thread pool to the Numba kernels
(`share_torch_thread_pool`), so that the grid, knapsack and noise kernels run their parallel
chunks on torch's own team instead of waking a second pool next to it (see
`imle_fn._kernels.parallel`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from imle_fn._kernels import parallel
from imle_fn.core.checks import (
    check_has_data,
    check_no_nan,
    check_solver_output,
    finite_sum,
    sum_is_nan,
)
from imle_fn.core.contract import FunctionSolver, Solver

__all__ = ["call_solver"]


def share_torch_thread_pool() -> bool:
    """Let the Numba kernels run their parallel chunks on torch's intra-op OpenMP team, with
    ``torch.get_num_threads()`` threads (capped by Numba's). Done once, on import.

    Returns:
        True where torch's parallel backend is OpenMP and its runtime was found (Linux); False
        leaves the kernels on Numba's own threading layer.
    """
    if not torch.backends.openmp.is_available():
        return False
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return False
    return parallel.use_openmp_pool(str(torch._C.__file__), torch.get_num_threads)


share_torch_thread_pool()


# NumPy has no bfloat16 and Numba kernels are not compiled for float16: such scores go over as float32.
_NUMPY_SAFE = {torch.float32, torch.float64}


def _solver_name(solver: Solver) -> str:
    """How errors name a solver: the user's function for an `as_solver` wrapper, else its type."""
    target = solver.fn if isinstance(solver, FunctionSolver) else solver
    name = getattr(target, "__name__", None)
    return str(name) if name else type(target).__name__


def _private(flat: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``flat`` (a reshape of ``theta``), copied unless the reshape already copied.

    A torch solver may write into its input (``x.mul_(2)``); it must never reach the caller's
    tensor, nor a tensor the estimator reads again (its saved theta). The copy costs less than the
    solver's own passes over its input (measured on CPU: 1.7 us against 26 us for a TopK solve of
    [32, 20], 6 us against 0.97 ms at [256, 100]; within the noise of a whole I-MLE step).
    """
    # ``flat`` is ``theta.detach().reshape(...)``: a view starts where theta does, a copy elsewhere.
    return flat.clone() if flat.data_ptr() == theta.data_ptr() else flat


def _call_numpy_solver(
    solver: Solver,
    theta: torch.Tensor,
    flat_shape: tuple[int, ...],
    lead: tuple[int, ...],
    context: str,
) -> torch.Tensor:
    """`call_solver` for a NumPy solver. Its input and output are checked on the host arrays (one
    single-threaded NumPy pass each, no torch thread-pool wake-ups between the solver's parallel
    regions; the common case costs a sum, the exact checks run only when the sum is not finite).
    Reshapes are NumPy's (cheaper than torch ops at this size)."""
    host = theta.detach()
    if host.dtype not in _NUMPY_SAFE or not host.is_cpu:
        host = host.to(
            device="cpu", dtype=host.dtype if host.dtype in _NUMPY_SAFE else torch.float32
        )
    # A view (reshape always makes a new array object), zero-copy where possible, but read-only:
    # a solver that writes into its input gets an error from NumPy instead of silently changing
    # the caller's theta.
    array = np.ascontiguousarray(host.numpy()).reshape(flat_shape)
    array.flags.writeable = False
    if sum_is_nan(array):  # one pass; the per-instance search only when there is a NaN
        check_no_nan(context, array, lead)
    try:
        result = solver(array)
    except ValueError as err:
        if "read-only" not in str(err):
            raise
        raise ValueError(
            f"solver: {_solver_name(solver)} wrote into its input, which is read-only (imle_fn"
            " never lets a solver change the caller's scores); copy it first: x = x.copy()"
        ) from err
    out = result if type(result) is np.ndarray else np.asarray(result)
    kind = out.dtype.kind
    if out.shape != flat_shape or kind not in "biuf" or (kind == "f" and not finite_sum(out)):
        if kind == "O":
            raise TypeError(
                f"solver: {_solver_name(solver)} returned {type(result).__name__} of Python"
                " objects; a MAP solver returns an array of real numbers (0/1 states) shaped like"
                " its scores"
            )
        check_solver_output(out, flat_shape, _solver_name(solver), lead)  # raises, or overflow
    # A fresh tensor, never theta's memory: the solver saw only `array`, and a result that shares
    # memory with it (or that NumPy cannot hand over) is copied.
    if not out.flags.writeable or (
        np.may_share_memory(out, array) and np.shares_memory(out, array)
    ):
        out = out.copy()
    z = torch.from_numpy(np.ascontiguousarray(out).reshape(theta.shape))  # [*lead, *event]
    if z.dtype != theta.dtype or not theta.is_cpu:
        z = z.to(device=theta.device, dtype=theta.dtype)
    return z


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
    if theta.is_meta:
        check_has_data(context, theta)  # raises, naming the argument
    shape = theta.shape
    lead = tuple(shape[: theta.ndim - event_ndim])
    n = math.prod(lead)
    if n == 0:
        return theta.new_zeros(shape)
    flat_shape = (n, *shape[theta.ndim - event_ndim :])  # [N, *event]
    if solver.backend == "numpy":
        return _call_numpy_solver(solver, theta, flat_shape, lead, context)
    flat = theta.detach().reshape(flat_shape)
    check_no_nan(context, flat, lead)
    z = solver(_private(flat, theta))
    if not isinstance(z, torch.Tensor):
        raise TypeError(
            f"solver: {_solver_name(solver)} is a torch-backend solver and must return a tensor,"
            f" got {type(z).__name__}"
        )
    check_solver_output(z, flat_shape, _solver_name(solver), lead)
    z = z.to(device=theta.device, dtype=theta.dtype)
    if z.numel() and z.data_ptr() == theta.data_ptr():
        z = z.clone()  # custom ops must not return an alias of their input
    return z.reshape(shape).contiguous()  # [*lead, *event]
