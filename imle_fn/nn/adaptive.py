"""`AIMLE`: adaptive I-MLE as a layer whose adaptive state is a buffer, updated once per backward.

The state is the buffer ``state = [beta, ema]``, exactly the tensor that `imle_fn.aimle_state`
makes and `imle_fn.aimle` / `imle_fn.aimle_update` thread by hand. In training mode, with
gradients on, the forward hands `imle_fn.aimle` a copy of the buffer that requires grad (one
copy shared by every call of the layer until the next update); when a backward reaches it, its
gradient is the statistics ``[nnz_sum, count]`` of every call it fed, and a hook replaces the
buffer by ``aimle_update(state, stats, target=, step=, decay=)``. That is the hand-threaded recipe

    state = aimle_state(beta).requires_grad_()
    loss(aimle(theta, noise, solver, state)).backward()
    state = aimle_update(state.detach(), state.grad, target=target, step=step, decay=decay)

step for step (tests/nn/test_adaptive.py pins identical trajectories). In eval mode, under
``torch.no_grad()`` or when no backward reaches the layer, the state is used and left unchanged.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from imle_fn.core.checks import (
    check_choice,
    check_finite,
    check_nonnegative,
)
from imle_fn.core.contract import SolverLike
from imle_fn.estimators.adaptive import Norm, aimle, aimle_state, aimle_update
from imle_fn.nn.base import HyperParameter, NoiseType, NoisyLayer, Reduction, hyper

__all__ = ["AIMLE"]


def _check_decay(name: str, value: object) -> float:
    decay = check_finite(name, value)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return decay


class AIMLE(NoisyLayer):
    """Adaptive I-MLE as a layer (`imle_fn.aimle`), its ``[beta, ema]`` state a buffer.

    ``forward(theta, noise=None)`` is `imle_fn.aimle` with the buffer ``state`` (see the module
    docstring for when and how it is updated: once per backward pass that reaches the layer, with
    the statistics summed over the calls since the last update, exactly as threading the state
    by hand with `imle_fn.aimle_update`). ``state`` is in the ``state_dict`` and moves with the
    layer (``.to(device)``); ``layer.beta`` and ``layer.ema`` read it. Noise, samples and modes
    are those of `imle_fn.nn.IMLE`: in eval mode the layer draws no noise, returns the noise-free
    MAP state and leaves the state unchanged.

    Under `torch.func.functional_call` (ensembles), the state is the buffer you pass: the layer
    does not update it; its gradient, if you take one, carries the statistics (thread it with
    `imle_fn.aimle_update` yourself). Under `torch.compile`, taking the state for a training
    forward is a graph break (like drawing noise); in eval mode the layer compiles fullgraph.

    Args:
        solver: a `imle_fn.Solver`.
        beta: the initial ``beta`` (>= 0).
        ema: the initial moving average of non-zero gradient entries per (instance, sample).
        target: the wanted number of non-zero gradient entries per (instance, sample).
        step: the change of ``beta`` per update (0: a fixed ``beta``).
        decay: the moving average's decay, in [0, 1].
        alpha: scale on ``theta`` in the target.
        temperature: input noise temperature (>= 0).
        target_temperature: target noise temperature (>= 0).
        central: central differences instead of one-sided.
        norm: ``"instance"`` or ``"pooled"`` (see `imle_fn.aimle`).
        noise_type, k, num_terms, num_samples, reduction, generator, event_ndim: as in
            `imle_fn.nn.IMLE`.
        dtype: the state's dtype (float32 by default; ``.double()`` converts it with the layer).

    Raises:
        TypeError: a ``generator`` of the wrong type.
        ValueError: a hyper-parameter out of range (named), an unknown ``norm``, ``noise_type``
            or ``reduction``, Sum-of-Gamma noise without ``k``, ``num_samples < 1``.

    Example:
        >>> import torch, imle_fn
        >>> layer = imle_fn.nn.AIMLE(imle_fn.TopK(1), beta=1.0, step=0.1, noise_type=None)
        >>> theta = torch.tensor([[0.0, 0.5]], requires_grad=True)
        >>> (layer(theta) * torch.tensor([[0.0, 1.0]])).sum().backward()  # 2 non-zero entries
        >>> layer.state  # ema = 0.9 * 1 + 0.1 * 2 = 1.1 > target 1: beta -= 0.1
        tensor([0.9000, 1.1000])

    References:
        Minervini, Franceschi, Niepert, "Adaptive Perturbation-Based Gradient Estimation for
        Discrete Latent Variable Models", AAAI 2023 (arXiv:2209.04862).
    """

    state: torch.Tensor
    alpha = HyperParameter(check_finite)
    temperature = HyperParameter(check_nonnegative)
    target_temperature = HyperParameter(check_nonnegative)
    target = HyperParameter(check_nonnegative)
    step = HyperParameter(check_nonnegative)
    decay = HyperParameter(_check_decay)

    def __init__(
        self,
        solver: SolverLike,
        *,
        beta: float | torch.Tensor = 1.0,
        ema: float | torch.Tensor = 1.0,
        target: float | torch.Tensor = 1.0,
        step: float | torch.Tensor = 1e-4,
        decay: float | torch.Tensor = 0.9,
        alpha: float | torch.Tensor = 1.0,
        temperature: float | torch.Tensor = 1.0,
        target_temperature: float | torch.Tensor = 1.0,
        central: bool = False,
        norm: Norm = "instance",
        noise_type: NoiseType | None = "sum_of_gamma",
        k: float | None = None,
        num_terms: int = 10,
        num_samples: int | None = None,
        reduction: Reduction = "none",
        generator: torch.Generator | int | None = None,
        event_ndim: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            solver, noise_type=noise_type, k=k, num_terms=num_terms, num_samples=num_samples,
            reduction=reduction, generator=generator, event_ndim=event_ndim,
        )  # fmt: skip
        self.register_buffer("state", aimle_state(beta, ema, dtype=dtype))
        self.target = target
        self.step = step
        self.decay = decay
        self.alpha = alpha
        self.temperature = temperature
        self.target_temperature = target_temperature
        self.central = bool(central)
        self.norm: Norm = check_choice("norm", norm, ("instance", "pooled"))
        self._pending: _Pending | None = None

    @property
    def beta(self) -> float:
        """The current ``beta`` (reads the buffer: a device sync on a GPU)."""
        return float(self.state[0])

    @property
    def ema(self) -> float:
        """The current moving average of non-zero gradient entries."""
        return float(self.state[1])

    def forward(self, theta: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sampled MAP states of ``theta``, with the adaptive I-MLE gradient."""
        state = _state_for_forward(self) if self.training else self.state.detach()
        z = aimle(
            theta, self._noise_for(theta, noise), self.solver, state,
            alpha=hyper(self, "alpha"), temperature=hyper(self, "temperature"),
            target_temperature=hyper(self, "target_temperature"), central=self.central,
            norm=self.norm, event_ndim=self.event_ndim,
        )  # fmt: skip
        return self._reduce(z, theta)

    def extra_repr(self) -> str:
        return (
            f"solver={self.solver!r}, target={self.target}, step={self.step},"
            f" decay={self.decay}, alpha={self.alpha}, temperature={self.temperature},"
            f" target_temperature={self.target_temperature}, central={self.central},"
            f" norm={self.norm!r}, {self._noise_repr()}"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pending"] = None  # a copy or a pickle starts without a pending update
        return state


class _Pending:
    """The copy of the state that the layer's calls share until a backward updates the state."""

    __slots__ = ("__weakref__", "leaf", "source", "version")

    def __init__(self, leaf: torch.Tensor, source: torch.Tensor) -> None:
        self.leaf = leaf
        self.source = weakref.ref(source)
        self.version = source._version

    def matches(self, state: torch.Tensor) -> bool:
        """True while the buffer is the one this copy was taken from, unchanged since."""
        return self.source() is state and self.version == state._version


@torch.compiler.disable
def _state_for_forward(layer: AIMLE) -> torch.Tensor:
    """The state tensor a training forward passes to `imle_fn.aimle` (see the module docstring).

    Eager (a graph break under `torch.compile`): a hook on a tensor is autograd bookkeeping that
    dynamo does not trace.
    """
    state = layer.state
    if not torch.is_grad_enabled() or bool(torch._C._functorch.is_functorch_wrapped_tensor(state)):
        return state  # no backward will come, or functional_call's buffer: the caller's to thread
    pending = layer._pending
    if pending is None or not pending.matches(state):
        leaf = state.detach().clone().requires_grad_()
        pending = _Pending(leaf, state)
        leaf.register_hook(_make_update_hook(weakref.ref(layer), weakref.ref(pending)))
        layer._pending = pending
    return pending.leaf


def _make_update_hook(layer_ref: weakref.ref[AIMLE], pending_ref: weakref.ref[_Pending]) -> Any:
    """The hook that turns one backward's statistics into the next state (once per backward)."""

    def update(stats: torch.Tensor) -> None:
        layer, pending = layer_ref(), pending_ref()
        if layer is None or pending is None:
            return
        if layer._pending is pending:
            layer._pending = None
        if pending.source() is not layer.state:
            return  # the buffer was replaced meanwhile (.to(...)): these statistics are stale
        with torch.no_grad():
            layer.state.copy_(
                aimle_update(
                    layer.state, stats, target=layer.target, step=layer.step, decay=layer.decay
                )
            )

    return update
