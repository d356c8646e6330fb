"""`AIMLE`: adaptive I-MLE as a layer whose adaptive state is a buffer, updated once per backward.

The state is the buffer ``state = [beta, ema]``, exactly the tensor that `imle_fn.aimle_state`
makes and `imle_fn.aimle` / `imle_fn.aimle_update` thread by hand. In training mode, with
gradients on, the forward hands `imle_fn.aimle` the state plus a zero ``[2]`` tensor that
requires grad (the layer's statistics sink, a leaf it keeps on the state's device): the value is
the state's, and the gradient that arrives at the sink is the statistics ``[nnz_sum, count]`` of
every call it fed, summed by autograd. When a backward has accumulated them, a hook on the sink
(``register_post_accumulate_grad_hook``, once per backward) replaces the buffer by
``aimle_update(state, stats, target=, step=, decay=)`` and clears the sink. That is the
hand-threaded recipe

    state = aimle_state(beta).requires_grad_()
    loss(aimle(theta, noise, solver, state)).backward()
    state = aimle_update(state.detach(), state.grad, target=target, step=step, decay=decay)

step for step (tests/nn/test_adaptive.py pins identical trajectories), eagerly and under
`torch.compile` (the sink is an input of the compiled graph; its hook runs in autograd's engine).
In eval mode, under ``torch.no_grad()`` or when no backward reaches the layer, the state is used
and left unchanged; that includes `torch.func.grad` / ``vjp`` of a function calling the layer,
which differentiate only their own inputs (there, pass the state through `functional_call` and
thread it with `imle_fn.aimle_update`, as below).
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
from imle_fn.nn.base import (
    HyperParameter,
    NoiseType,
    NoisyLayer,
    Reduction,
    hyper,
    solver_repr,
)

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
    `imle_fn.aimle_update` yourself). Under `torch.compile` the layer compiles whole
    (``fullgraph=True``) and updates its state as eagerly.

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
        noise_type: ``"sum_of_gamma"`` (default), ``"gumbel"``, ``"gaussian"`` or None (no noise).
        k: Sum-of-Gamma's ``k`` (default: the solver's integer ``k``, e.g. `imle_fn.TopK`).
        num_terms: Sum-of-Gamma's number of terms.
        num_samples: None (one sample, output shaped like ``theta``) or ``S`` (``[S, *theta]``).
        reduction: ``"none"`` or ``"mean"`` over the samples (see `NoisyLayer`).
        generator: a `torch.Generator`, an int seed, or None (seeded from torch's generator).
        event_ndim: trailing dims of one instance (default: ``solver.event_ndim``).
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
        self._make_sink()

    def _make_sink(self) -> None:
        """A zero leaf like ``state`` whose gradient (the statistics) updates ``state`` (see the
        module docstring); a plain attribute, remade when the state moves or is copied."""
        sink = torch.zeros_like(self.state).requires_grad_()
        sink.register_post_accumulate_grad_hook(_update_hook(weakref.ref(self)))
        self.__dict__["_stats_sink"] = sink
        self.__dict__["_stats_owner"] = self.state  # the buffer the sink updates

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
        state = self.state
        if not self.training:
            state = state.detach()
        elif torch.is_grad_enabled() and state is self.__dict__["_stats_owner"]:
            # not under functional_call, whose buffer is the caller's to thread
            state = state + self.__dict__["_stats_sink"]
        z = aimle(
            theta, self._noise_for(theta, noise), self.solver, state,
            alpha=hyper(self, "alpha"), temperature=hyper(self, "temperature"),
            target_temperature=hyper(self, "target_temperature"), central=self.central,
            norm=self.norm, event_ndim=self.event_ndim,
        )  # fmt: skip
        return self._reduce(z, theta)

    def extra_repr(self) -> str:
        return (
            f"solver={solver_repr(self.solver)}, target={self.target}, step={self.step},"
            f" decay={self.decay}, alpha={self.alpha}, temperature={self.temperature},"
            f" target_temperature={self.target_temperature}, central={self.central},"
            f" norm={self.norm!r}, {self._noise_repr()}"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_stats_sink"], state["_stats_owner"]  # the sink's hook knows this layer only
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._make_sink()

    def _apply(self, fn: Any, recurse: bool = True) -> AIMLE:
        super()._apply(fn, recurse)
        self._make_sink()  # on the state's new device, in its new dtype
        return self


def _update_hook(layer_ref: weakref.ref[AIMLE]) -> Any:
    """The sink's hook: one backward's statistics -> the layer's next state."""

    def update(sink: torch.Tensor) -> None:
        stats, sink.grad = sink.grad, None
        layer = layer_ref()
        if layer is None or stats is None or sink is not layer.__dict__["_stats_sink"]:
            return  # the layer is gone, or its state moved since the forward: stale statistics
        with torch.no_grad():
            layer.state.copy_(
                aimle_update(
                    layer.state, stats, target=layer.target, step=layer.step, decay=layer.decay
                )
            )

    return update
