"""Argument validation for the whole library: the one place where user input is checked.

Every check raises ``TypeError`` (wrong kind) or ``ValueError`` (right kind, wrong value) with a
message that starts with the user's argument name, says what was expected and what arrived, and, for
batched data, the index of the offending instance. Checks return the value in its normalised form
(a Python float or int, a ``(row, col)`` tuple, ...), so callers write ``lam = check_positive("lam",
lam)`` and use the result.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeGuard, TypeVar, cast

import numpy as np
import torch

__all__ = [
    "NaNError",
    "as_number",
    "check_cell",
    "check_choice",
    "check_device",
    "check_device_dtype",
    "check_dtype",
    "check_estimator_inputs",
    "check_event_ndim",
    "check_finite",
    "check_floating_tensor",
    "check_generator",
    "check_grid",
    "check_has_data",
    "check_hyper",
    "check_hyper_at_run",
    "check_int",
    "check_int_array",
    "check_k_subset_scores",
    "check_no_nan",
    "check_no_nan_split",
    "check_nonnegative",
    "check_positive",
    "check_positive_tensor",
    "check_positive_values",
    "check_shape",
    "check_solver_output",
    "check_state_tensor",
    "check_target_states",
    "check_unit_interval",
    "finite_sum",
    "first_bad_instance",
    "index_text",
    "is_int",
    "sum_is_nan",
    "unravel",
]

T = TypeVar("T")

_add_reduce = np.add.reduce  # a sum without ndarray.sum's Python wrapper


def is_int(value: object) -> TypeGuard[int]:
    """True for a Python or NumPy integer that is not a bool."""
    if type(value) is int:
        return True  # the common case, without the ABC check
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def as_number(name: str, value: object) -> object:
    """A hyper-parameter as a plain Python number: the one place where numbers are converted.

    Python ints and floats pass unchanged; NumPy scalars (``np.float32(10)``), 0-d NumPy arrays and
    0-d real tensors become a Python float (an integer tensor or array an int). Tensors are read
    eagerly with ``.item()`` (a device sync, and a graph break under `torch.compile`: pass a float
    there). Anything else (bools, strings, tensors with elements other than one) comes back
    unchanged, for the caller's check to refuse with its own message.

    Raises:
        ValueError: a tensor that requires grad (hyper-parameters receive no gradient) or has no
            data (a ``meta`` tensor).
    """
    if isinstance(value, (bool, np.bool_)) or type(value) in (int, float):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        value = value.item()
    elif isinstance(value, torch.Tensor) and value.ndim == 0 and value.dtype != torch.bool:
        _check_scalar_tensor(name, value)
        if not value.is_complex():
            value = value.item()
    return value


def _check_scalar_tensor(name: str, value: torch.Tensor) -> None:
    """A 0-d hyper-parameter tensor has a value and takes no gradient."""
    if value.requires_grad:
        raise ValueError(
            f"{name}: got a tensor that requires grad; imle_fn hyper-parameters receive no"
            f" gradient: pass {name}.detach() (or a float)"
        )
    if value.device.type == "meta":
        raise ValueError(f"{name}: got a meta tensor, which has no value; pass a float")


def check_finite(name: str, value: object) -> float:
    """``value`` as a float; ValueError unless it is a finite real number (bools are refused).

    Python numbers, NumPy scalars and 0-d tensors are accepted (see `as_number`).
    """
    if type(value) is float and math.isfinite(value):
        return value  # the common case
    value = as_number(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """``value`` as a float; ValueError unless it is finite and > 0."""
    result = check_finite(name, value)
    if result <= 0:
        raise ValueError(f"{name}: expected > 0, got {value!r}")
    return result


def check_nonnegative(name: str, value: object) -> float:
    """``value`` as a float; ValueError unless it is finite and >= 0."""
    result = check_finite(name, value)
    if result < 0:
        raise ValueError(f"{name}: expected >= 0, got {value!r}")
    return result


def check_hyper(name: str, value: object, check: Callable[[str, object], float]) -> float:
    """A hyper-parameter of an estimator (``lam``, ``alpha``, a temperature, ``sigma``, ...),
    checked by ``check`` (`check_positive`, `check_finite`, `check_nonnegative`).

    Eagerly this is ``check(name, value)``: Python numbers, NumPy scalars and 0-d tensors become a
    float (a tensor is read with ``.item()``). Inside `torch.compile` the value is returned
    unchanged, for the estimator to carry into its custom op as tensor data, so that a new value
    is new data and not a recompile: a Python float may be a symbolic float there (dynamo makes a
    float that changed between calls symbolic, and it looks like a float but has no value at
    trace time) and a tensor is a graph input. Their values are checked when the compiled code
    runs (inside ``imle_fn::estimate``, or by `check_hyper_at_run`); only what is known while
    tracing (a tensor's shape, dtype, device, ``requires_grad``) is checked here.

    Raises:
        TypeError: a tensor that is not real (bool, complex).
        ValueError: ``check``'s errors (eagerly); a tensor with more than one element, one that
            requires grad or a meta tensor (also inside `torch.compile`).
    """
    if not torch.compiler.is_compiling():
        return check(name, value)
    if isinstance(value, torch.Tensor):
        if value.ndim != 0:
            raise ValueError(
                f"{name}: expected a number or a 0-d tensor, got a tensor of shape"
                f" {tuple(value.shape)}"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name}: expected a real number, got a tensor of dtype {value.dtype}")
        _check_scalar_tensor(name, value)
        return cast(float, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # perhaps symbolic: checked when the compiled code runs
    return check(name, value)


_RULES: dict[str, Callable[[str, object], float]] = {}


def check_hyper_at_run(name: str, value: object, rule: str) -> float:
    """``value`` checked by ``rule`` (``"finite"``, ``"positive"`` or ``"nonnegative"``) where it
    cannot be checked while tracing: inside `torch.compile`, a hyper-parameter that is used in
    the graph directly (not carried into an estimator's custom op) goes through the op
    ``imle_fn::check_hyper``, which checks its value when the compiled code runs and returns it
    as a 0-d float64 CPU tensor; eagerly, the check itself. The op reads a CPU scalar (a tensor
    on another device is first copied to the CPU: one device sync).

    Raises:
        ValueError: a value out of range (eagerly, or when the compiled code runs).
    """
    check = _RULES[rule]
    if not torch.compiler.is_compiling():
        return check(name, value)
    value = check_hyper(name, value, check)
    tensor = (  # as imle_fn.core.wiring.scalar_tensor: ones * value keeps a symbolic float data
        value.detach().reshape(()).to(device="cpu", dtype=torch.float64)
        if isinstance(value, torch.Tensor)
        else torch.ones((), dtype=torch.float64) * value
    )
    return cast(float, torch.ops.imle_fn.check_hyper(tensor, name, rule))


@torch.library.custom_op("imle_fn::check_hyper", mutates_args=())
def _check_hyper_op(value: torch.Tensor, name: str, rule: str) -> torch.Tensor:
    _RULES[rule](name, value.item())
    return value.clone()


@_check_hyper_op.register_fake
def _check_hyper_fake(value: torch.Tensor, name: str, rule: str) -> torch.Tensor:
    return torch.empty_like(value)


def check_int(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int; TypeError unless it is an integer (not a bool), ValueError if out of range.

    Raises:
        TypeError: ``value`` is not a Python/NumPy integer, or is a bool.
        ValueError: ``value < minimum`` or ``value > maximum``.
    """
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point():
        value = as_number(name, value)
    if not is_int(value):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    result = operator.index(value)
    if minimum is not None and result < minimum:
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name}: expected >= {minimum}{bound}, got {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name}: expected <= {maximum}, got {result}")
    return result


def check_int_array(name: str, value: object, *, minimum: int = 0, min_ndim: int = 0) -> np.ndarray:
    """``value`` (an int, a sequence, a NumPy array or a tensor of integers) as a read-only int64 array.

    Floating values are accepted when they are whole numbers (``2.0``); a fractional, non-finite or
    too small entry is refused with its index.

    Returns:
        A C-contiguous, read-only ``int64`` NumPy copy with the input's shape (on the CPU).

    Raises:
        TypeError: not an int, a sequence, an array or a tensor of a real dtype (bools are refused).
        ValueError: fewer than ``min_ndim`` dims, or an entry that is not a whole number
            ``>= minimum`` (its index is named).
    """
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name}: expected integers, got a tensor of dtype {value.dtype}")
        value = value.detach().to("cpu")
        array = (value.double() if value.is_floating_point() else value).numpy()
    elif isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name}: expected integers, got {type(value).__name__} {value!r}")
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name}: expected integers, got {type(value).__name__} ({err})"
            ) from None
        if array.dtype == object and array.size and all(type(v) is int for v in array.flat):
            outside = [i for i, v in np.ndenumerate(array) if not -(2**63) <= v < 2**63]
            if outside:
                raise ValueError(
                    f"{name}: expected integers that fit in int64, got {array[outside[0]]} at"
                    f" index {outside[0]}"
                )
            array = array.astype(np.int64)  # Python ints that all fit
        if array.dtype.kind not in "iuf":
            raise TypeError(
                f"{name}: expected integers, got {type(value).__name__} of dtype {array.dtype}"
            )
    if array.ndim < min_ndim:
        raise ValueError(
            f"{name}: expected at least {min_ndim} dims, got shape {tuple(array.shape)}"
        )
    if array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name}: expected whole numbers, got {array[index].item()!r} at index {index}"
            )
    big = None  # signed integers fit already
    if array.dtype.kind == "f":
        big = np.abs(array) >= 2.0**63
    elif array.dtype.kind == "u":
        big = array > np.iinfo(np.int64).max
    if big is not None and big.any():
        index = tuple(int(i) for i in np.argwhere(big)[0])
        raise ValueError(
            f"{name}: expected integers that fit in int64, got {array[index].item()!r} at index"
            f" {index}"
        )
    low = array < minimum
    if low.any():
        index = tuple(int(i) for i in np.argwhere(low)[0])
        raise ValueError(
            f"{name}: expected integers >= {minimum}, got {array[index].item()!r} at index {index}"
        )
    result = np.array(array, dtype=np.int64, order="C")  # a copy the caller cannot reach
    result.flags.writeable = False
    return result


def check_choice(name: str, value: T, choices: Collection[object]) -> T:
    """``value`` unchanged; ValueError unless it is one of ``choices`` (bools never match ints)."""
    if type(value) is str:
        ok = value in choices  # the common case: an option name
    elif isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        ok = False
    else:
        try:
            ok = value in choices
        except TypeError:  # an unhashable value
            ok = False
    if not ok:
        expected = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return value


def check_event_ndim(value: object) -> int:
    """A solver's ``event_ndim``: an int >= 0."""
    if not is_int(value):
        raise TypeError(f"event_ndim: expected an int, got {type(value).__name__}")
    result = operator.index(value)
    if result < 0:
        raise ValueError(f"event_ndim: expected >= 0, got {result}")
    return result


def check_floating_tensor(name: str, value: object) -> torch.Tensor:
    """``value`` unchanged; TypeError unless it is a floating-point ``torch.Tensor``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    return value


def check_state_tensor(name: str, value: object, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """A floating tensor of exactly ``shape`` (e.g. an estimator's state); ``what`` describes it."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: expected a {list(shape)} tensor {what}, got {type(value).__name__}"
        )
    if tuple(value.shape) != shape or not value.is_floating_point():
        raise ValueError(
            f"{name}: expected a floating {list(shape)} tensor {what}, got shape"
            f" {tuple(value.shape)} and dtype {value.dtype}"
        )
    return value


def check_shape(value: object, name: str = "shape") -> torch.Size:
    """A sample shape: an int or a sequence of ints >= 0, as a ``torch.Size``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int or a sequence of ints, got {value!r}")
    dims: tuple[object, ...]
    if isinstance(value, numbers.Integral):
        dims = (value,)
    elif isinstance(value, (Sequence, torch.Size)) and not isinstance(value, (str, bytes)):
        dims = tuple(value)
    else:
        raise TypeError(
            f"{name}: expected an int or a sequence of ints, got {type(value).__name__}"
        )
    sizes = []
    for i, dim in enumerate(dims):
        if not is_int(dim):
            raise TypeError(f"{name}: expected ints, got {dim!r} at position {i}")
        if operator.index(dim) < 0:
            raise ValueError(f"{name}: expected non-negative sizes, got {dim} at position {i}")
        sizes.append(operator.index(dim))
    return torch.Size(sizes)


def check_positive_values(name: str, value: object, size: torch.Size) -> np.ndarray:
    """Positive finite values with a finite reciprocal: a number, or a tensor / array of them
    broadcastable to ``size``.

    Returns:
        A contiguous float64 array: shape (1,) for one value, else ``(size.numel(),)``.

    Raises:
        TypeError: not a real number, tensor or array.
        ValueError: a bad entry (its index is named) or a shape that does not broadcast to ``size``.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise TypeError(f"{name}: expected a real array, got dtype {value.dtype}")
        value = torch.from_numpy(np.array(value, dtype=np.float64))  # a copy, never read-only
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real tensor, got dtype {value.dtype}")
        v = value.detach().to(device="cpu", dtype=torch.float64)
        try:
            broadcast = torch.broadcast_shapes(v.shape, size)
        except RuntimeError:
            broadcast = None
        if broadcast != size:
            raise ValueError(
                f"{name}: expected a tensor broadcastable to the sample shape {tuple(size)}, "
                f"got shape {tuple(v.shape)}"
            )
        bad = ~(torch.isfinite(v) & (v > 0) & torch.isfinite(1.0 / v))
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0]) if v.dim() else ()
            raise ValueError(
                f"{name}: expected positive finite values with a finite 1/{name}, got "
                f"{v[index].item()} at index {index}"
            )
        if v.numel() == 1:
            return v.reshape(1).numpy()
        return v.expand(size).contiguous().reshape(-1).numpy()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name}: expected a positive float or a tensor, got {type(value).__name__}"
        )
    v_f = float(value)
    if not (math.isfinite(v_f) and v_f > 0 and math.isfinite(1.0 / v_f)):
        raise ValueError(
            f"{name}: expected a positive finite float with a finite 1/{name}, got {v_f}"
        )
    return np.array([v_f], dtype=np.float64)


def check_dtype(dtype: object) -> torch.dtype:
    """A floating ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    return dtype


def check_device(device: object) -> None:
    """None, or a ``torch.device`` / string that names a device."""
    if device is None:
        return
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"device: expected a torch.device, a str or None, got {type(device).__name__}"
        )
    try:
        torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: expected a valid device, got {device!r} ({err})") from None


def check_generator(generator: object) -> None:
    """None or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
        )


def check_device_dtype(dtype: torch.dtype, device: torch.device) -> None:
    """``dtype`` can live on ``device``: MPS has no float64."""
    if device.type == "mps" and dtype == torch.float64:
        raise ValueError(
            f"dtype: torch.float64 is not supported on {device} (MPS has no float64); "
            "request torch.float32, or a CPU result"
        )


def check_positive_tensor(
    name: str, value: object, size: torch.Size, dtype: torch.dtype
) -> torch.Tensor:
    """Positive finite values whose reciprocal is finite in ``dtype``, checked where they live.

    ``value`` is a number, a NumPy array or a tensor on any device, broadcastable to ``size``. Host
    values (numbers, arrays, CPU tensors) first pass `check_positive_values` (types, shape, values
    in float64). A tensor on another device is checked there, without copying it to the host: one
    boolean is read back (the device waits for the check), or, while a CUDA graph is being
    captured (where no read-back is allowed), a device-side assertion (``torch._assert_async``)
    stops the run instead of a ``ValueError``.

    Returns:
        ``value`` as a tensor of ``dtype`` on its own device (a number: a 0-dim CPU tensor), not
        expanded.

    Raises:
        TypeError: not a real number, array or tensor.
        ValueError: a shape that does not broadcast to ``size``, or a bad entry (its index named).
    """
    if not isinstance(value, torch.Tensor) or value.device.type == "cpu":
        check_positive_values(name, value, size)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.array(value, dtype=np.float64))
        elif not isinstance(value, torch.Tensor):
            value = torch.tensor(float(value), dtype=torch.float64)  # type: ignore[arg-type]
    else:
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real tensor, got dtype {value.dtype}")
        try:
            broadcast = torch.broadcast_shapes(value.shape, size)
        except RuntimeError:
            broadcast = None
        if broadcast != size:
            raise ValueError(
                f"{name}: expected a tensor broadcastable to the sample shape {tuple(size)}, "
                f"got shape {tuple(value.shape)}"
            )
    v = value.detach().to(dtype)
    ok = (torch.isfinite(v) & (v > 0) & torch.isfinite(v.reciprocal())).all()
    message = f"{name}: expected positive finite values with a finite 1/{name} in {dtype}"
    if _capturing(v.device):
        torch._assert_async(ok, message)
    elif not bool(ok):
        bad = ~(torch.isfinite(v) & (v > 0) & torch.isfinite(v.reciprocal()))
        index = tuple(int(i) for i in bad.nonzero()[0]) if v.dim() else ()
        raise ValueError(f"{message}, got {value[index].item()} at index {index}")
    return v


def _capturing(device: torch.device) -> bool:
    """True while a CUDA graph is being captured on ``device`` (no value may be read back)."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def check_cell(cell: object, name: str) -> tuple[int, int]:
    """``cell`` as a ``(row, col)`` tuple of ints; TypeError otherwise."""
    if type(cell) is tuple and len(cell) == 2 and type(cell[0]) is int and type(cell[1]) is int:
        return cell  # the common case, checked fast
    if not isinstance(cell, (tuple, list)) or len(cell) != 2 or not all(is_int(i) for i in cell):
        raise TypeError(f"{name}: expected a (row, col) pair of ints, got {cell!r}")
    return int(cell[0]), int(cell[1])


def check_grid(costs: object, name: str) -> tuple[int, int]:
    """Validate the kind, dtype and shape of a ``[*batch, H, W]`` grid; return ``(H, W)``."""
    if isinstance(costs, torch.Tensor):
        if costs.dtype == torch.bool or costs.is_complex():
            raise TypeError(f"{name}: expected a real dtype, got {costs.dtype}")
    elif isinstance(costs, np.ndarray):
        if costs.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected a real dtype, got {costs.dtype}")
    else:
        raise TypeError(
            f"{name}: expected a numpy.ndarray or torch.Tensor, got {type(costs).__name__}"
        )
    shape = tuple(costs.shape)
    if len(shape) < 2 or shape[-2] < 1 or shape[-1] < 1:
        raise ValueError(f"{name}: expected shape [*batch, H, W] with H, W >= 1, got {list(shape)}")
    return shape[-2], shape[-1]


def first_bad_instance(mask: Any) -> int | None:
    """Index of the first instance (dim 0) of ``mask: [N, ...]`` with a True entry, else None.

    ``mask`` is a boolean NumPy array or torch tensor.
    """
    if isinstance(mask, torch.Tensor):
        per_instance_t = mask.reshape(mask.shape[0], -1).any(dim=1)
        return int(per_instance_t.int().argmax()) if bool(per_instance_t.any()) else None
    per_instance = mask.reshape(mask.shape[0], -1).any(axis=1)
    return int(per_instance.argmax()) if per_instance.any() else None


class NaNError(ValueError):
    """NaN where a solver needs scores; ``index`` is the offending instance's index into the
    leading (batch) dims of the checked tensor."""

    def __init__(self, message: str, index: tuple[int, ...]) -> None:
        super().__init__(message)
        self.index = index


def unravel(flat_index: int, lead: Sequence[int]) -> tuple[int, ...]:
    """The index into ``lead`` dims of instance ``flat_index`` of their row-major flattening."""
    return tuple(int(i) for i in np.unravel_index(flat_index, tuple(lead))) if lead else ()


def index_text(index: tuple[int, ...]) -> str:
    """``(1, 2)`` as ``"(1, 2)"``, a 1-tuple as its number."""
    return str(index[0]) if len(index) == 1 else str(index)


def sum_is_nan(values: Any) -> bool:
    """True if the sum of ``values`` (array or tensor) is NaN: always when one of them is NaN, and
    for ``inf + -inf`` (including overflowing partial sums), so False proves there is no NaN.
    One pass, without NumPy's overflow warning."""
    if isinstance(values, torch.Tensor):
        return bool(values.numel()) and math.isnan(values.detach().sum())
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(values.size) and math.isnan(_add_reduce(values, None))


def finite_sum(values: np.ndarray) -> bool:
    """True if the sum of ``values`` is finite, so every value is (one pass, without NumPy's
    overflow warning; an overflowing sum of finite values answers False)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(_add_reduce(values, None))


def check_no_nan(name: str, flat: Any, lead: Sequence[int] | None = None) -> None:
    """`NaNError` (a ValueError) naming the first instance of ``flat: [N, ...]`` (array or tensor)
    that holds a NaN, as an index into ``lead`` (the dims folded into ``N``; default ``[N]``)."""
    if not sum_is_nan(flat):
        return  # the common case, in one pass: a sum is NaN if any term is NaN
    bad = first_bad_instance(flat != flat)  # NaN is the only value != itself
    if bad is not None:
        lead = (flat.shape[0],) if lead is None else tuple(lead)
        index = unravel(bad, lead)
        raise NaNError(
            f"{name}: contains NaN at instance {index_text(index)} (of leading dims {list(lead)})"
            if index
            else f"{name}: contains NaN (its only instance: no leading dims)",
            index,
        )


def check_no_nan_split(
    name: str,
    value: torch.Tensor,
    num_sample_dims: int,
    event_ndim: int,
    *,
    finite: bool = False,
) -> None:
    """NaN check (with ``finite=True``: NaN and infinity check) of an estimator argument
    ``[*sample, *batch, *event]``, naming the (sample, instance) index of the first bad instance.
    Plain (eager, unbatched) tensors only.

    Raises:
        ValueError: ``value`` holds a NaN (or, with ``finite``, an infinity).
    """
    lead = tuple(value.shape[: value.ndim - event_ndim])
    if math.prod(lead) == 0:
        return
    flat = value.detach().reshape(math.prod(lead), *value.shape[value.ndim - event_ndim :])
    bad = first_bad_instance(~torch.isfinite(flat) if finite else torch.isnan(flat))
    if bad is None:
        return
    index = unravel(bad, lead)
    sample, instance = index[:num_sample_dims], index[num_sample_dims:]
    where = f"instance {index_text(instance)}" if instance else "its only instance"
    if num_sample_dims:
        where = f"sample {index_text(sample)}, {where}"
    found = "NaN"
    if finite:
        values = flat[bad]
        found = "NaN" if bool(torch.isnan(values).any()) else "an infinite value"
    dims = f"batch dims {list(lead[num_sample_dims:])}"
    if num_sample_dims:
        dims = f"sample dims {list(lead[:num_sample_dims])}, {dims}"
    raise ValueError(f"{name}: contains {found} at {where} ({dims})")


def check_solver_output(
    z: Any, expected: tuple[int, ...], solver_name: str, lead: Sequence[int] | None = None
) -> None:
    """A solver's result ``z`` (array or tensor): real numbers, shaped ``expected``, finite where
    floating; a bad instance is named by its index into ``lead`` (the dims folded into ``N``).

    Raises:
        TypeError: ``z`` holds strings, Python objects or complex numbers.
        ValueError: a wrong shape or non-finite values.
    """
    if isinstance(z, torch.Tensor):
        kind_ok = not z.is_complex()
        dtype: object = z.dtype
    else:
        kind_ok = z.dtype.kind in "biuf"
        dtype = z.dtype
    if not kind_ok:
        raise TypeError(
            f"solver: {solver_name} returned values of dtype {dtype}; a MAP solver must return"
            " real numbers (0/1 states, or bools), shaped like its scores"
        )
    if tuple(z.shape) != expected:
        raise ValueError(
            f"solver: {solver_name} returned shape {tuple(z.shape)} for input of shape {expected};"
            " a MAP solver must return one state per instance, shaped like its scores"
        )
    if isinstance(z, torch.Tensor):
        floating = z.is_floating_point()
        if floating and z.numel() and math.isfinite(z.detach().sum()):
            return  # one pass: a sum is finite only if every term is (overflow takes the long way)
        bad = first_bad_instance(~torch.isfinite(z)) if floating else None
    else:
        floating = z.dtype.kind in "fc"
        if floating and z.size and finite_sum(z):
            return
        bad = first_bad_instance(~np.isfinite(z)) if floating else None
    if bad is not None:
        lead = (expected[0],) if lead is None else tuple(lead)
        raise ValueError(
            f"solver: {solver_name} returned non-finite values at instance"
            f" {index_text(unravel(bad, lead))} (of leading dims {list(lead)})"
        )


def check_has_data(name: str, value: torch.Tensor) -> torch.Tensor:
    """``value`` unchanged; ValueError for a ``meta`` tensor (shapes only, no values to solve)."""
    if value.device.type == "meta":
        raise ValueError(
            f"{name}: a meta tensor has a shape but no values, and a MAP solver needs values;"
            " run on a real device (for shape-only tracing use torch.compile, whose fake tensors"
            " imle_fn supports)"
        )
    return value


def check_estimator_inputs(theta: object, noise: object) -> None:
    """An estimator's ``theta`` (floating tensor with data) and ``noise`` (None, or a floating
    tensor without gradient shaped ``[*samples, *theta.shape]``, trailing dims broadcastable to
    theta's, at least one sample).

    Raises:
        TypeError: ``theta`` or ``noise`` is not a floating-point tensor.
        ValueError: a meta ``theta``; ``noise`` requiring grad, of a wrong shape, or with a
            zero-size sample dim (zero samples: the mean over samples is undefined).
    """
    theta = check_has_data("theta", check_floating_tensor("theta", theta))
    if noise is None:
        return
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise: expected a torch.Tensor or None, got {type(noise).__name__}")
    if not noise.is_floating_point():
        raise TypeError(f"noise: expected a floating-point tensor, got dtype {noise.dtype}")
    if noise.requires_grad:
        raise ValueError("noise: must not require grad (noise is data; I-MLE gives it no gradient)")
    ns = max(noise.ndim - theta.ndim, 0)
    shape: torch.Size | None = noise.shape[ns:]
    if shape != theta.shape:  # equal shapes broadcast trivially (torch's check costs ~15 us)
        try:
            shape = torch.broadcast_shapes(shape, theta.shape)
        except RuntimeError:
            shape = None
    if shape != theta.shape:
        raise ValueError(
            f"noise: expected shape [*samples, *{tuple(theta.shape)}] (trailing dims broadcastable"
            f" to theta's), got {tuple(noise.shape)}"
        )
    if 0 in noise.shape[:ns]:
        raise ValueError(
            f"noise: has zero samples (sample dims {list(noise.shape[:ns])} of shape"
            f" {tuple(noise.shape)}); the estimate averages over samples, so pass at least one"
        )


def check_target_states(y: object, theta: torch.Tensor) -> torch.Tensor:
    """A loss's target states ``y``: a real tensor broadcastable to ``theta.shape``, on theta's
    device.

    Raises:
        TypeError: ``y`` is not a tensor, or is complex.
        ValueError: a shape that does not broadcast to theta's, or another device.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y: expected a torch.Tensor, got {type(y).__name__}")
    if y.is_complex():
        raise TypeError(f"y: expected real target states, got dtype {y.dtype}")
    try:
        shape = torch.broadcast_shapes(y.shape, theta.shape)
    except RuntimeError:
        shape = None
    if shape != theta.shape:
        raise ValueError(
            f"y: expected target states of theta's shape {tuple(theta.shape)} (or broadcastable"
            f" to it), got {tuple(y.shape)}"
        )
    if y.device != theta.device:
        raise ValueError(f"y: expected device {theta.device}, got {y.device}")
    return y


def check_k_subset_scores(name: str, flat: torch.Tensor, k: int) -> None:
    """Scores ``flat: [N, n]`` of the k-subset family: no NaN or ``+inf``, and at least ``k`` finite
    scores in every instance (``-inf`` masks an item); ValueError naming the first bad instance."""
    check_no_nan(name, flat)
    bad = first_bad_instance(flat == math.inf)
    if bad is not None:
        raise ValueError(
            f"{name}: contains +inf at instance {bad} (of {flat.shape[0]}); scores are finite,"
            " or -inf to mask an item"
        )
    finite = torch.isfinite(flat).sum(-1)  # [N]
    short = first_bad_instance((finite < k)[:, None])
    if short is not None:
        raise ValueError(
            f"{name}: instance {short} (of {flat.shape[0]}) has {int(finite[short])} finite scores,"
            f" fewer than k = {k}: no k-subset avoids its masked (-inf) items"
        )


def check_unit_interval(name: str, flat: torch.Tensor) -> None:
    """``flat: [N, ...]`` holds uniforms: every value in ``[0, 1]`` (NaN refused); ValueError naming
    the first bad instance."""
    bad = first_bad_instance(~((flat >= 0) & (flat <= 1)))
    if bad is not None:
        raise ValueError(
            f"{name}: expected uniforms in [0, 1] (e.g. torch.rand), got a value outside at"
            f" instance {bad} (of {flat.shape[0]})"
        )


_RULES.update(finite=check_finite, positive=check_positive, nonnegative=check_nonnegative)
