"""How an estimator's forward and VJP are wired into PyTorch so that everything composes.

An `Estimator` is a frozen set of hyper-parameters plus two plain functions made of torch ops and
solver calls: ``forward(theta, noise, solve) -> (out, residual)`` and
``vjp(dout, theta, noise, out, residual, solve) -> dtheta``. `estimate` attaches the VJP as the
custom gradient of the forward, by one of two routes that compute the same thing:

* eager: a new-style `torch.autograd.Function` with ``generate_vmap_rule = True``, which composes
  with `torch.func.grad`, `vjp`, `jacrev`, `vmap` (nested, and ``vmap(grad)``) and ``.backward()``;
* under `torch.compile`: the custom op ``imle_fn::estimate`` with ``register_autograd`` and a vmap
  rule, because dynamo drops the gradient of an autograd.Function whose body runs under vmap
  (pytorch#129845). Its backward is the op ``imle_fn::estimate_vjp``. The estimator's float fields
  (its hyper-parameters) enter both ops as a ``[n]`` float64 CPU tensor (`_pack`), read and
  checked (``Estimator.checks``) when the op runs: a new ``lam`` is new data, not a recompile,
  and a value dynamo made symbolic (or a 0-d tensor) is still checked. Its int / bool fields
  (structure: ``central``, ``control_variate``, ...) are constants of the graph.

Both routes hand back the same contract: the output in ``theta``'s dtype (whatever the noise's);
a gradient in ``theta``'s dtype that is exactly zero on infinite scores (masked items, walls: they
are constraints, and removing them changes nothing); the solver kept alive by the autograd graph
that needs it, and no longer. Forward-mode AD (``torch.func.jvp``, ``jacfwd``), second derivatives
(differentiating the estimated gradient again) and PyTorch's legacy batched gradients
(``is_grads_batched``) raise NotImplementedError saying what to use instead.
Noise is data: it never receives a gradient (passing noise that requires grad is an error).
Reductions over an instance's event dims go through `event_sum` / `event_norm`, which are right for
``event_ndim = 0`` too.

An estimator may also take an optional ``state`` tensor (adaptive I-MLE's ``(beta, ema)``): it is
saved for the backward, which then calls ``vjp_with_state`` and returns a cotangent for it (AIMLE
returns additive statistics there, so several uses and vmapped slices sum as they should).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers

from imle_fn.core.checks import NaNError, check_estimator_inputs, check_no_nan_split
from imle_fn.core.contract import Backend, SolverLike, assume_constant_result, resolve_solver
from imle_fn.core.perturbation import perturb
from imle_fn.core.solving import Solve, is_plain, refuse_grad_transforms, solver_key

__all__ = [
    "Estimator",
    "PerturbAndMAP",
    "Saved",
    "Solve",
    "estimate",
    "event_norm",
    "event_sum",
    "first_order_input",
    "first_order_only",
    "num_sample_dims",
    "reduce_to_theta",
    "scalar_tensor",
    "scale_scores",
]

_REGISTRY: dict[str, type[Estimator]] = {}


class Saved(NamedTuple):
    """What an estimator's forward leaves for its VJP.

    Attributes:
        theta: ``[*batch, *event]`` the scores of the forward.
        noise: the forward's noise (``[*sample, *batch, *event]`` or broadcastable), or None.
        out: the forward's output (for Perturb-and-MAP estimators ``z``, ``[*sample, *batch, *event]``).
        residual: whatever else the forward saved (an empty tensor if nothing).
        solve: the solver, ``x -> MAP(x)``.
        state: the optional estimator state tensor (AIMLE's ``[beta, ema]``), or None.
    """

    theta: torch.Tensor
    noise: torch.Tensor | None
    out: torch.Tensor
    residual: torch.Tensor
    solve: Solve
    state: torch.Tensor | None = None


def num_sample_dims(theta: torch.Tensor, noise: torch.Tensor | None) -> int:
    """Number of leading sample dims of ``noise`` (its dims beyond those of ``theta``)."""
    return 0 if noise is None else max(noise.ndim - theta.ndim, 0)


def reduce_to_theta(
    grad: torch.Tensor, theta: torch.Tensor, noise: torch.Tensor | None
) -> torch.Tensor:
    """Average ``grad: [*sample, *shape]`` over the sample dims, then sum broadcast dims of theta."""
    ns = num_sample_dims(theta, noise)
    if ns == 1 and grad.shape[0] == 1:
        grad = grad[0]  # the mean of one sample, exactly, without a reduction kernel
    elif ns:
        grad = grad.mean(dim=tuple(range(ns)))  # [*shape]
    if grad.shape != theta.shape:
        grad = grad.sum_to_size(theta.shape)
    return grad if grad.dtype == theta.dtype else grad.to(theta.dtype)


# Reductions over an instance's event dims. Never ``dim=tuple(range(-event_ndim, 0))``: for
# ``event_ndim = 0`` that is ``()``, which torch reads as ALL dims (batch and samples too).


def event_sum(x: torch.Tensor, event_ndim: int, *, keepdim: bool = False) -> torch.Tensor:
    """Sum of ``x: [*lead, *event]`` over its ``event_ndim`` trailing dims (``x`` itself for 0)."""
    if event_ndim == 0:
        return x
    return x.sum(dim=tuple(range(-event_ndim, 0)), keepdim=keepdim)


def event_norm(x: torch.Tensor, event_ndim: int, *, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm of ``x: [*lead, *event]`` over its event dims (``|x|`` for 0)."""
    if event_ndim == 0:
        return x.abs()
    return torch.linalg.vector_norm(x, dim=tuple(range(-event_ndim, 0)), keepdim=keepdim)


def scale_scores(theta: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * theta`` on the finite scores; infinite scores (masked items, walls) stay as they
    are, so a target never turns a mask into NaN (``0 * -inf``) or into a forced item (``-1 * -inf``).
    """
    if alpha == 1.0:
        return theta
    return torch.where(torch.isfinite(theta), alpha * theta, theta)


_SECOND_ORDER = (
    "{name}: second derivatives are not supported: differentiating its gradient again"
    " (create_graph=True then backward, torch.func.jacrev or grad of torch.func.grad,"
    " torch.func.hessian, torch.autograd.functional.hessian). The estimated gradient is piecewise"
    " constant in theta (its exact derivative is zero almost everywhere and undefined at the"
    " jumps), so there is no second-order information to return. Use first-order methods, or a"
    " smooth model of the distribution (e.g. exact marginals) where curvature is needed"
)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on a first-order gradient whose own derivative is refused.

    ``apply(grad, message, *anchors)``: ``anchors`` (theta, the cotangent) tie the result to the
    graph being differentiated, so that differentiating it again reaches this node and raises
    instead of silently returning zeros (or the derivative of an unrelated formula).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(grad: torch.Tensor, message: str, *anchors: torch.Tensor) -> torch.Tensor:
        return grad.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.message = inputs[1]

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[Any, ...]:
        raise NotImplementedError(ctx.message)

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Any:
        raise NotImplementedError(ctx.message)


class _FirstOrderInput(torch.autograd.Function):
    """Identity whose backward passes the gradient through `first_order_only`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, name: str) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.name = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        return first_order_only(grad, ctx.name, x), None

    @staticmethod
    def jvp(ctx: Any, x_tangent: torch.Tensor, _name: Any) -> torch.Tensor:
        return x_tangent  # first-order forward mode is the identity's


def first_order_input(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` unchanged, marked so that the gradient reaching it through plain autograd (e.g. the
    Fenchel-Young loss ``<x, z - y>`` with a solver's ``z`` held constant) is first-order only.

    Eager only: under `torch.compile` ``x`` comes back as it is (compiled graphs refuse double
    backward themselves).
    """
    if torch.compiler.is_compiling() or not x.requires_grad:
        return x
    return _FirstOrderInput.apply(x, name)


def first_order_only(grad: torch.Tensor, name: str, *anchors: torch.Tensor | None) -> torch.Tensor:
    """``grad`` unchanged, made to raise NotImplementedError if it is differentiated again.

    Call it on a gradient computed inside a backward (an estimator's VJP) or on a tensor whose
    gradient is only first-order exact; a no-op unless grad mode is on (``create_graph=True``,
    `torch.func` transforms), so ordinary ``.backward()`` pays nothing.
    """
    if not torch.is_grad_enabled():
        return grad
    tied = [a for a in anchors if a is not None]
    return _FirstOrderOnly.apply(grad, _SECOND_ORDER.format(name=name), *tied)


@dataclasses.dataclass(frozen=True)
class Estimator(ABC):
    """Hyper-parameters of a gradient estimator (every field a float, int or bool).

    ``checks`` maps float fields to their argument checks (`imle_fn.core.checks`); under
    `torch.compile` the float fields travel into the custom op as a tensor (new values are data,
    not recompiles) and ``checks`` validates them there, when the compiled code runs.
    """

    name: ClassVar[str]
    checks: ClassVar[Mapping[str, Callable[[str, object], float]]] = {}
    finite_cotangent: ClassVar[bool] = True
    """The VJP needs a finite ``dz``: an infinite entry would enter a target as a mask
    (``theta - lam * inf = -inf``) or turn into NaN (``inf * 0``), so the backward refuses it,
    naming ``dz``. False for a VJP that passes ``dz`` through as autograd would (STE)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    @abstractmethod
    def forward(
        self, theta: torch.Tensor, noise: torch.Tensor | None, solve: Solve
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(out, residual)``; ``residual`` is saved for the VJP (an empty tensor if unused)."""

    @abstractmethod
    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        """Return the estimated gradient with respect to ``saved.theta`` (shaped like it)."""

    def vjp_with_state(self, dout: torch.Tensor, saved: Saved) -> tuple[torch.Tensor, torch.Tensor]:
        """The VJP when a ``state`` tensor was passed (``saved.state``): ``(dtheta, dstate)``."""
        raise TypeError(f"estimator {self.name!r} takes no state tensor")

    def out_dims(self, num_sample_dims: int) -> tuple[int | None, int | None]:
        """Where a vmapped dim lands in ``(out, residual)`` when the op is batched."""
        return num_sample_dims, None

    def pools_over_batch(self) -> bool:
        """True if the VJP mixes instances of the batch (pooled statistics): then a vmapped
        compiled call runs one op per slice, so that slices never pool with each other."""
        return False

    def params(self) -> list[float]:
        """The fields as floats, in declaration order (how a custom op carries them)."""
        return [float(getattr(self, f.name)) for f in dataclasses.fields(self)]

    @classmethod
    def from_params(cls, params: list[float]) -> Estimator:
        """Inverse of `params`: each float converted back to its field's declared type."""
        types = _field_types(cls)
        values = {
            f.name: types[f.name](v) for f, v in zip(dataclasses.fields(cls), params, strict=True)
        }
        return cls(**values)


_SPLITS: dict[type[Estimator], tuple[tuple[str, ...], tuple[str, ...]]] = {}


@assume_constant_result  # dynamo cannot trace typing.get_type_hints: a constant of the graph
def _split_fields(cls: type[Estimator]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(hyper, flags)``: the names of ``cls``'s float fields (hyper-parameters, which travel as
    tensor data under `torch.compile`) and of its int / bool fields (structural flags, constants
    of the compiled graph), each in declaration order."""
    split = _SPLITS.get(cls)
    if split is None:
        types = _field_types(cls)
        hyper = tuple(name for name, kind in types.items() if kind is float)
        flags = tuple(name for name, kind in types.items() if kind is not float)
        split = _SPLITS[cls] = (hyper, flags)
    return split


def _rebuild(
    name: str, flags: list[float], hyper: list[float] | None, *, validate: bool = False
) -> Estimator:
    """The estimator of a custom-op call: its flags, and its hyper-parameters read from the op's
    ``hyper`` tensor (``None``: placeholders 1.0, for the structural questions and the fake
    forward, whose shapes never depend on a hyper-parameter's value). ``validate`` runs the
    class's ``checks`` on the values (the run-time check of a compiled call).

    Raises:
        ValueError: ``validate`` and a hyper-parameter out of its range (the message names it).
    """
    cls = _REGISTRY[name]
    hyper_names, flag_names = _split_fields(cls)
    types = _field_types(cls)
    values: dict[str, Any] = {f: types[f](v) for f, v in zip(flag_names, flags, strict=True)}
    if hyper is None:
        values.update(dict.fromkeys(hyper_names, 1.0))
    else:
        for field, value in zip(hyper_names, hyper, strict=True):
            check = cls.checks.get(field) if validate else None
            values[field] = check(field, value) if check is not None else value
    return cls(**values)


def _pack(estimator: Estimator) -> tuple[list[float], torch.Tensor]:
    """``(flags, hyper)`` of an estimator inside a compiled function: its int / bool fields as
    constants, its float fields as a ``[n]`` float64 CPU tensor built in the graph. A field may
    hold a Python float (a constant, or a float dynamo made symbolic after it changed) or a 0-d
    tensor (a graph input): either way a new value is new data for the op, not a recompile."""
    hyper_names, flag_names = _split_fields(type(estimator))
    flags = [float(getattr(estimator, f)) for f in flag_names]
    parts = [scalar_tensor(getattr(estimator, f)).reshape(1) for f in hyper_names]
    if not parts:  # no float hyper-parameter (SIMPLE's k is an int flag): an empty [0] tensor
        return flags, torch.zeros(0, dtype=torch.float64)
    return flags, torch.cat(parts)


def scalar_tensor(value: float | torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-d float64 CPU tensor, in a way `torch.compile` keeps as data.

    A float that dynamo made symbolic must meet a tensor in arithmetic (``ones * value``, exact):
    ``torch.tensor([value])`` would make AOTAutograd specialise it back into a constant, one
    recompile per value. A tensor is converted (a tensor on another device is copied to the CPU).
    """
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(()).to(device="cpu", dtype=torch.float64)
    return torch.ones((), dtype=torch.float64) * value


@functools.cache
def _field_types(cls: type[Estimator]) -> dict[str, Callable[[float], Any]]:
    """``{field: float | int | bool}`` of an estimator class, whether or not its module uses
    ``from __future__ import annotations`` (resolved annotations, never their strings)."""
    hints = typing.get_type_hints(cls)
    types: dict[str, Callable[[float], Any]] = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if kind not in (float, int, bool):
            raise TypeError(
                f"{cls.__name__}.{field.name}: estimator fields must be float, int or bool,"
                f" got {kind!r}"
            )
        types[field.name] = kind
    return types


class PerturbAndMAP:
    """Mixin for estimators whose forward is Perturb-and-MAP: ``z = MAP(theta + temperature * noise)``.

    The subclass provides the ``temperature`` field; nothing is saved besides ``z``.
    """

    temperature: float

    def forward(
        self, theta: torch.Tensor, noise: torch.Tensor | None, solve: Solve
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = solve(perturb(theta, noise, self.temperature))
        return z, z.new_empty(0)


_FORWARD_MODE = (
    "{name}: forward-mode AD (torch.func.jvp, jacfwd, hessian, torch.autograd.forward_ad) is not"
    " supported: the estimator defines a vector-Jacobian product only, and its forward is"
    " piecewise constant. Use reverse mode: .backward(), torch.func.grad, vjp or jacrev"
)

_LEGACY_VMAP = (
    "{name}: PyTorch's legacy batched gradients (torch.autograd.grad(..., is_grads_batched=True),"
    " torch.autograd.functional.jacobian/hessian(vectorize=True)) are not supported; use"
    " torch.func.jacrev (one batched backward through torch.func.vmap), or loop over the"
    " cotangents"
)


def _finish(
    estimator: Estimator, dtheta: torch.Tensor, theta: torch.Tensor, dout: torch.Tensor
) -> torch.Tensor:
    """The estimator's gradient as the wiring returns it: theta's dtype, exactly zero on infinite
    scores (a masked item or a wall is constant, whatever its score: removing it changes nothing),
    and refusing to be differentiated again."""
    if not _all_finite_on_host(theta):
        dtheta = torch.where(torch.isfinite(theta.detach()), dtheta, 0.0)
    if dtheta.dtype != theta.dtype:
        dtheta = dtheta.to(theta.dtype)
    return first_order_only(dtheta, estimator.name, theta, dout)  # theta, not detached: the anchor


def _all_finite_on_host(theta: torch.Tensor) -> bool:
    """True if ``theta`` is a plain CPU tensor without infinities or NaN (its sum is finite):
    then `_finish` has nothing to mask. Anything else (other devices: no read-back; wrappers,
    compiled graphs) answers False and takes the masking ops."""
    return theta.is_cpu and is_plain(theta) and math.isfinite(theta.detach().sum())


def _backward(
    estimator: Estimator, dout: torch.Tensor, saved: Saved
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Both routes' backward: the estimator's VJP, finished (`_finish`), with its errors named."""
    if torch._C._functorch.is_legacy_batchedtensor(dout):
        raise NotImplementedError(_LEGACY_VMAP.format(name=estimator.name))
    if estimator.finite_cotangent:
        dout = _finite_cotangent(estimator, dout, saved)
    try:
        dtheta, dstate = _vjp(estimator, dout, saved)
    except NaNError as err:
        raise _blame_backward(estimator, dout, saved, err) from None
    dtheta = _finish(estimator, dtheta, saved.theta, dout)
    if dstate is not None:
        dstate = first_order_only(dstate, estimator.name, saved.state, dout)
    return dtheta, dstate


def _finite_cotangent(estimator: Estimator, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
    """``dout`` checked finite (see `Estimator.finite_cotangent`). On the CPU: one pass (a sum)
    over its data (under `torch.func` wrappers too: their data is read, not changed), then the
    first bad (sample, instance) named in a ValueError (a vmapped dim counts as a leading batch
    dim). Elsewhere (other devices: no read-back; compiled graphs, dispatch modes) its non-finite
    entries become NaN, which the solver boundary refuses (`_blame_backward` names ``dz``)."""
    what = f"{estimator.name}: the gradient of its output (dz)"
    data, vmapped = _data_of(dout)
    if not dout.is_cpu or (data is None and _is_traced(dout)):
        return torch.where(torch.isfinite(dout), dout, torch.nan)
    if data is None:  # a tensor subclass or a dispatch mode (FlopCounterMode): read through it
        if not bool(torch.isfinite(dout).all()):
            raise ValueError(
                f"{what}: contains NaN or an infinite value (seen through a tensor subclass or a"
                " dispatch mode; call it on a plain tensor to locate the instance)"
            )
        return dout
    if not data.numel() or math.isfinite(data.detach().sum()):
        return dout
    ns = max(dout.ndim - saved.theta.ndim, 0)
    ndim = min(saved.solve.event_ndim, dout.ndim)
    if len(vmapped) > 1:
        raise ValueError(
            f"{what}: contains NaN or an infinite value (under nested torch.func.vmap; call the"
            " function on one slice to locate the instance)"
        )
    if vmapped:
        data = data.movedim(vmapped[0], ns)  # [*sample, V, *batch, *event]
    check_no_nan_split(what, data, ns, ndim, finite=True)
    return dout


def _is_traced(value: torch.Tensor) -> bool:
    """True while compiling or for fake / functional tensors: no data to read."""
    from torch._subclasses.fake_tensor import is_fake

    return (
        torch.compiler.is_compiling()
        or is_fake(value)
        or torch._is_functional_tensor(value)
        or value.is_meta
    )


def _data_of(value: torch.Tensor) -> tuple[torch.Tensor | None, list[int]]:
    """The plain tensor under ``value``'s `torch.func` wrappers and the dims vmap added to it
    (one per vmap level), or ``(None, [])`` when there is no readable data (compiling, fake or
    functional tensors, dispatch modes)."""
    vmapped: list[int] = []
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(value):
        if functorch.is_batchedtensor(value):
            vmapped.append(functorch.maybe_get_bdim(value))
        value = functorch.get_unwrapped(value)
    if type(value) is not torch.Tensor or torch.compiler.is_compiling():
        return None, []
    if torch._C._len_torch_dispatch_stack() != 0:
        return None, []
    return value, vmapped


def _blame_backward(
    estimator: Estimator, dout: torch.Tensor, saved: Saved, err: NaNError
) -> ValueError:
    """Name the culprit of NaN target scores in a backward: the incoming gradient, if it holds NaN."""
    ndim = saved.solve.event_ndim
    if is_plain(dout) and dout.ndim >= ndim:
        ns = max(dout.ndim - saved.theta.ndim, 0)
        try:
            check_no_nan_split(f"{estimator.name}: the gradient of its output (dz)", dout, ns, ndim)
        except ValueError as named:
            return named
    return ValueError(
        f"{estimator.name} (backward): the target scores for the solver: {err} (NaN in a target"
        " comes from a NaN or infinite gradient of the output, dz, or from NaN scores)"
    )


class _Estimate(torch.autograd.Function):
    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """`torch.autograd.Function.apply` without re-binding the arguments on every call.

        ``Function.apply`` binds its arguments to ``forward``'s signature (``inspect.signature``
        and ``bind``: about 35 us a call) only to fill in defaults; `estimate` passes all five
        positionally, so outside `torch.func` transforms they go straight to the C++ apply, as
        ``Function.apply`` itself does after binding (dead functorch wrappers unwrapped the same
        way). Anything else takes ``Function.apply``.
        """
        if kwargs or len(args) != 5 or torch._C._are_functorch_transforms_active():
            return super().apply(*args, **kwargs)
        args = _unwrap_dead_wrappers(args)
        return super(torch.autograd.Function, cls).apply(*args)  # type: ignore[misc]  # C++ apply

    @staticmethod
    def forward(
        theta: torch.Tensor,
        noise: torch.Tensor | None,
        estimator: Estimator,
        solve: Solve,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, residual = estimator.forward(theta, noise, solve)
        return (out if out.dtype == theta.dtype else out.to(theta.dtype)), residual

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        theta, noise, estimator, solve, state = inputs
        out, residual = output
        ctx.mark_non_differentiable(residual)
        ctx.save_for_backward(theta, noise, out, residual, state)
        ctx.estimator = estimator
        ctx.solve = solve  # keeps the solver alive exactly as long as this graph

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor, _dres: Any) -> tuple[Any, ...]:
        theta, noise, out, residual, state = ctx.saved_tensors
        saved = Saved(theta, noise, out, residual, ctx.solve, state)
        dtheta, dstate = _backward(ctx.estimator, dout, saved)
        return dtheta, None, None, None, dstate

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Any:
        raise NotImplementedError(_FORWARD_MODE.format(name=ctx.estimator.name))


def _vjp(
    estimator: Estimator, dout: torch.Tensor, saved: Saved
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if saved.state is None:
        return estimator.vjp(dout, saved), None
    return estimator.vjp_with_state(dout, saved)


@torch.library.custom_op("imle_fn::estimate", mutates_args=())
def _estimate_op(
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    name: str,
    flags: list[float],
    hyper: torch.Tensor,
    handle: int,
    event_ndim: int,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    # The hyper-parameters are data: read (a [n] CPU tensor: no device sync) and checked here.
    estimator = _rebuild(name, flags, hyper.tolist(), validate=True)
    out, residual = estimator.forward(theta, noise, Solve.from_handle(handle, event_ndim))
    out = out.to(theta.dtype)
    # Fresh, contiguous outputs: the fake below promises exactly that.
    inputs = (theta, noise, state)
    return _not_aliasing(out.contiguous(), inputs), _not_aliasing(residual.contiguous(), inputs)


@_estimate_op.register_fake
def _estimate_fake(
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    name: str,
    flags: list[float],
    hyper: torch.Tensor,
    handle: int,
    event_ndim: int,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    # The forward is torch ops plus the map_solve op, which has its own fake: run it on fakes.
    out, residual = _rebuild(name, flags, None).forward(
        theta, noise, Solve.from_handle(handle, event_ndim)
    )
    return out.new_empty(out.shape, dtype=theta.dtype), residual.new_empty(residual.shape)


@torch.library.custom_op("imle_fn::estimate_vjp", mutates_args=())
def _estimate_vjp_op(
    dout: torch.Tensor,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    out: torch.Tensor,
    residual: torch.Tensor,
    name: str,
    flags: list[float],
    hyper: torch.Tensor,
    handle: int,
    event_ndim: int,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward of ``imle_fn::estimate``: opaque, so that the hyper-parameters are read when
    it runs (not baked into the traced backward) and the VJP is exactly the eager one."""
    estimator = _rebuild(name, flags, hyper.tolist())
    saved = Saved(theta, noise, out, residual, Solve.from_handle(handle, event_ndim), state)
    dtheta, dstate = _backward(estimator, dout, saved)
    inputs = (dout, theta, noise, out, residual, state)
    dtheta = _not_aliasing(dtheta.contiguous(), inputs)  # STE's gradient is dout itself
    if dstate is None:
        return dtheta, theta.new_empty(0)
    return dtheta, _not_aliasing(dstate.contiguous(), inputs)


def _not_aliasing(result: torch.Tensor, inputs: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
    """``result``, cloned if it shares memory with one of a custom op's ``inputs`` (an op's
    outputs must not alias its inputs)."""
    if result.numel() == 0:
        return result
    ptr = result.untyped_storage().data_ptr()
    for t in inputs:
        if t is not None and t.numel() and t.untyped_storage().data_ptr() == ptr:
            return result.clone()
    return result


@_estimate_vjp_op.register_fake
def _estimate_vjp_fake(
    dout: torch.Tensor,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    out: torch.Tensor,
    residual: torch.Tensor,
    name: str,
    flags: list[float],
    hyper: torch.Tensor,
    handle: int,
    event_ndim: int,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    dstate = state.new_empty(state.shape) if state is not None else theta.new_empty(0)
    return theta.new_empty(theta.shape), dstate


def _estimate_setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    theta, noise, name, flags, hyper, handle, event_ndim, state = inputs
    out, residual = output
    ctx.save_for_backward(theta, noise, out, residual, state, hyper)
    ctx.call = (name, flags, handle, event_ndim)


def _estimate_backward(ctx: Any, dout: torch.Tensor, _dres: Any) -> tuple[Any, ...]:
    theta, noise, out, residual, state, hyper = ctx.saved_tensors
    name, flags, handle, event_ndim = ctx.call
    dtheta, dstate = torch.ops.imle_fn.estimate_vjp(
        dout, theta, noise, out, residual, name, flags, hyper, handle, event_ndim, state
    )
    return dtheta, None, None, None, None, None, None, dstate if state is not None else None


_estimate_op.register_autograd(_estimate_backward, setup_context=_estimate_setup_context)


@_estimate_op.register_vmap
def _estimate_vmap(
    info: Any,
    in_dims: tuple[Any, ...],
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    name: str,
    flags: list[float],
    hyper: torch.Tensor,
    handle: int,
    event_ndim: int,
    state: torch.Tensor | None = None,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[int | None, int | None]]:
    theta_dim, noise_dim = in_dims[0], in_dims[1]
    if len(in_dims) > 7 and in_dims[7] is not None:
        raise NotImplementedError(
            "state: a vmapped (per-slice) estimator state is not supported under torch.compile;"
            " pass one state shared by all slices, or run eagerly"
        )
    size = info.batch_size
    structure = _rebuild(name, flags, None)
    if structure.pools_over_batch() or in_dims[4] is not None:  # or per-slice hyper-parameters
        return _estimate_by_slice(
            size, in_dims, theta, noise, name, flags, hyper, handle, event_ndim, state
        )
    # Logical (per-slice) shapes decide the sample dims, exactly as in the unbatched call.
    theta_l = theta.ndim - (theta_dim is not None)
    theta = (
        theta.movedim(theta_dim, 0)
        if theta_dim is not None
        else theta.expand(size, *theta.shape)  # [V, *theta]: per-slice gradients stay separate
    )
    ns = 0
    if noise is not None:
        noise = noise.movedim(noise_dim, 0) if noise_dim is not None else noise.unsqueeze(0)
        noise_l = noise.ndim - 1
        ns = max(noise_l - theta_l, 0)
        for _ in range(theta_l - noise_l):  # left-pad so the trailing dims still line up
            noise = noise.unsqueeze(1)
        noise = noise.movedim(0, ns)  # [*sample, V, *rest]
    out, residual = torch.ops.imle_fn.estimate(
        theta, noise, name, flags, hyper, handle, event_ndim, state
    )
    return (out, residual), structure.out_dims(ns)


def _estimate_by_slice(
    size: int,
    in_dims: tuple[Any, ...],
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    name: str,
    flags: list[float],
    hyper: torch.Tensor,
    handle: int,
    event_ndim: int,
    state: torch.Tensor | None,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[int, int]]:
    """The vmap rule for estimators that pool over their batch, or whose hyper-parameters differ
    by slice: one op call per slice, stacked."""
    theta_dim, noise_dim, hyper_dim = in_dims[0], in_dims[1], in_dims[4]
    outs, residuals = [], []
    for v in range(size):
        theta_v = theta.select(theta_dim, v) if theta_dim is not None else theta
        noise_v = (
            noise.select(noise_dim, v) if noise is not None and noise_dim is not None else noise
        )
        hyper_v = hyper.select(hyper_dim, v) if hyper_dim is not None else hyper
        out, residual = torch.ops.imle_fn.estimate(
            theta_v, noise_v, name, flags, hyper_v, handle, event_ndim, state
        )
        outs.append(out)
        residuals.append(residual)
    return (torch.stack(outs), torch.stack(residuals)), (0, 0)


def _blame_forward(
    theta: torch.Tensor, noise: torch.Tensor | None, event_ndim: int, err: NaNError
) -> ValueError:
    """Name the culprit of NaN solver input in a forward: theta or noise (by (sample, instance))."""
    try:
        check_no_nan_split("theta", theta, 0, event_ndim)
        if noise is not None and noise.ndim >= event_ndim:
            check_no_nan_split("noise", noise, num_sample_dims(theta, noise), event_ndim)
    except ValueError as named:
        return named
    return err  # neither holds NaN: e.g. inf - inf in theta + temperature * noise


def estimate(
    estimator: Estimator,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    solver: SolverLike,
    event_ndim: int | None = None,
    state: torch.Tensor | None = None,
    *,
    backend: Backend | None = None,
) -> torch.Tensor:
    """Run ``estimator``'s forward with its VJP attached as the custom gradient.

    ``state`` (optional) is a tensor handed to ``estimator.vjp_with_state``, whose second result
    becomes the state's gradient. Eagerly the estimator's fields are used as they are (Python
    floats: no tensor is made); under `torch.compile` its float fields may also hold 0-d tensors
    or symbolic floats, which travel into the custom op as data (see the module docstring). ``backend`` says what a plain callable ``solver`` takes
    (default ``"numpy"``). The output has ``theta``'s dtype; the gradient has ``theta``'s dtype, is
    exactly zero on infinite scores and refuses to be differentiated again.

    Raises:
        TypeError, ValueError: bad ``theta``, ``noise`` or ``solver`` (see
            `imle_fn.core.checks.check_estimator_inputs`); NaN in ``theta`` or ``noise`` (named
            by the (sample, instance) index).
        NotImplementedError: second derivatives, forward-mode AD and legacy batched gradients.
    """
    check_estimator_inputs(theta, noise)
    if noise is not None and noise.device != theta.device:
        raise ValueError(f"noise: expected device {theta.device}, got {noise.device}")
    if torch.compiler.is_compiling() and refuse_grad_transforms(estimator.name):
        handle, event_ndim = solver_key(solver, event_ndim, backend)
        flags, hyper = _pack(estimator)
        out, _ = torch.ops.imle_fn.estimate(
            theta, noise, estimator.name, flags, hyper, handle, event_ndim, state
        )
        return out
    resolved = resolve_solver(solver, event_ndim, backend)
    solve = Solve(resolved, resolved.event_ndim)
    try:
        out, _ = _Estimate.apply(theta, noise, estimator, solve, state)
    except NaNError as err:
        if not (is_plain(theta) and (noise is None or is_plain(noise))):
            raise
        raise _blame_forward(theta, noise, solve.event_ndim, err) from None
    return out
