"""Adaptive I-MLE (AIMLE; Minervini, Franceschi, Niepert, AAAI 2023) with its state as data.

Backward, per instance ``i`` and sample ``s``: ``lam = beta * ||theta_i|| / ||dz_{s,i}||`` (norms over
the event dims), the one-sided or central I-MLE difference with that ``lam`` (see
`imle_fn.estimators.central.target_difference`), divided by ``lam``, averaged over samples. ``beta``
adapts so that an exponential moving average (decay 0.9) of the number of non-zero gradient entries
per (instance, sample) tracks a target (default 1): ``beta += step`` while the average is below the
target, ``beta -= step`` (never below 0) otherwise.

**Which norms.** By default (``norm="instance"``) ``lam`` is per (instance, sample): it keeps
``vmap`` equal to a loop and the estimate independent of the batch it sits in. The reference code,
EdinburghNLP/torch-adaptive-imle, pools instead: Frobenius norms over the whole batch and all
samples, one ``lam`` per call. At ``B = 1`` with ``S`` samples whose cotangents have equal norms
its ``lam`` is ours divided by ``sqrt(S)``. ``norm="pooled"`` offers that rule for porting (one
``lam`` for the target step and the division; the reference steps its target with ``theta``
repeated over the samples, i.e. ``sqrt(S)`` times that ``lam``, and divides by ``lam`` itself).
Infinite scores (masked items, walls) are left out of every norm (`aimle_lambda`).

**State, JAX-style.** The adaptive state is a tensor ``state = [beta, ema]`` (`aimle_state`) that
the caller passes to `aimle` and gets back from the pure function `aimle_update`. Nothing is mutated:
the backward returns this call's statistics ``[nnz_sum, count]`` as the *gradient of the state*
(sums over several calls and vmapped slices add up, as counts should)::

    state = aimle_state(beta=1.0)
    dtheta, stats = torch.func.grad(loss_fn, argnums=(0, 1))(theta, state)  # loss_fn calls aimle
    state = aimle_update(state, stats, target=1.0, step=1e-3)

With ``.backward()``: ``state.requires_grad_()`` before the forward, then
``state = aimle_update(state.detach(), state.grad)``. Without a state, ``beta`` is a fixed float.
Under `torch.compile` a state shared by the whole batch works (beta is a tensor input, so changing it
does not recompile); a per-slice state under ``vmap`` inside a compiled function raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch

from imle_fn.core.checks import (
    check_choice,
    check_finite,
    check_hyper,
    check_nonnegative,
    check_state_tensor,
)
from imle_fn.core.contract import SolverLike
from imle_fn.core.wiring import (
    Estimator,
    PerturbAndMAP,
    Saved,
    estimate,
    event_norm,
    event_sum,
    reduce_to_theta,
)
from imle_fn.estimators.central import target_difference

__all__ = ["AIMLE", "Norm", "aimle", "aimle_lambda", "aimle_state", "aimle_update", "aimle_vjp"]

Norm = Literal["instance", "pooled"]


def aimle_state(
    beta: float | torch.Tensor = 1.0,
    ema: float | torch.Tensor = 1.0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A fresh AIMLE state ``[beta, ema]`` (a ``[2]`` tensor).

    Args:
        beta: initial ``beta`` (>= 0).
        ema: initial moving average of non-zero gradient entries per (instance, sample).

    Raises:
        ValueError: a negative or non-finite ``beta`` or ``ema``.
    """
    values = [check_nonnegative("beta", beta), check_nonnegative("ema", ema)]
    return torch.tensor(values, dtype=dtype, device=device)


def aimle_update(
    state: torch.Tensor,
    stats: torch.Tensor | None,
    *,
    target: float | torch.Tensor = 1.0,
    step: float | torch.Tensor = 1e-4,
    decay: float | torch.Tensor = 0.9,
) -> torch.Tensor:
    """The next AIMLE state, a pure function of the state and one backward's statistics.

    ``ema' = decay * ema + (1 - decay) * nnz_sum / count``; ``beta' = max(beta + step, 0)`` if
    ``ema' < target`` else ``max(beta - step, 0)``. A state with no statistics (None, or
    ``count == 0``: no backward reached it) comes back unchanged.

    Args:
        state: ``[2]`` tensor ``[beta, ema]``.
        stats: ``[2]`` tensor ``[nnz_sum, count]``, the gradient of ``state`` (or None).
        target: wanted number of non-zero gradient entries per (instance, sample).
        step: the change of ``beta`` per update.
        decay: the moving average's decay.

    Returns:
        ``[2]`` new state (a new tensor, without gradient history).


    Raises:
        TypeError: ``state`` is not a tensor.
        ValueError: ``state`` or ``stats`` not a ``[2]`` floating tensor; a negative ``target`` or
            ``step``; ``decay`` outside ``[0, 1]``.

    References:
        Minervini, Franceschi, Niepert, "Adaptive Perturbation-Based Gradient Estimation for
        Discrete Latent Variable Models", AAAI 2023 (arXiv:2209.04862).
    """
    check_state_tensor("state", state, (2,), "[beta, ema] (see aimle_state)")
    target = check_nonnegative("target", target)
    step = check_nonnegative("step", step)
    decay = check_finite("decay", decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay: expected a number in [0, 1], got {decay!r}")
    state = state.detach()
    if stats is None:
        return state.clone()
    if not isinstance(stats, torch.Tensor) or stats.shape != (2,):
        got = tuple(stats.shape) if isinstance(stats, torch.Tensor) else type(stats).__name__
        raise ValueError(f"stats: expected a [2] tensor [nnz_sum, count], got {got}")
    stats = stats.detach().to(state.dtype)
    beta, ema = state.unbind(0)
    nnz_sum, count = stats.unbind(0)
    new_ema = decay * ema + (1.0 - decay) * nnz_sum / count.clamp_min(1.0)
    new_beta = (beta + torch.where(new_ema < target, step, -step)).clamp_min(0.0)
    return torch.where(count > 0, torch.stack([new_beta, new_ema]), state)


def aimle_lambda(
    theta: torch.Tensor,
    dz: torch.Tensor,
    *,
    beta: float | torch.Tensor,
    event_ndim: int,
    norm: Norm = "instance",
) -> torch.Tensor:
    """AIMLE's target step ``lam = beta * ||theta|| / ||dz||`` (0 where ``||dz|| = 0``).

    Infinite scores (masked items, walls) are constraints, not scores: their entries are left out
    of both norms, so masking an item with ``-inf`` gives the ``lam`` of the problem without it
    (and never ``lam = inf``).

    Args:
        theta: ``[*batch, *event]`` scores.
        dz: ``[*sample, *theta.shape]`` cotangent.
        beta: the adaptive multiplier.
        event_ndim: number of event dims.
        norm: ``"instance"``: norms over each instance's event dims, one ``lam`` per (sample,
            instance); ``"pooled"``: Frobenius norms of the whole call (every instance and
            sample), one ``lam`` for all, as EdinburghNLP/torch-adaptive-imle scales its gradient.
            At ``B = 1`` with ``S`` samples whose cotangents have equal norms, the pooled ``lam``
            is the per-instance one divided by ``sqrt(S)``.

    Returns:
        ``[*sample, *batch, 1..]`` (``"instance"``) or ``[]`` (``"pooled"``) step sizes, ``>= 0``.

    References:
        Minervini, Franceschi, Niepert, "Adaptive Perturbation-Based Gradient Estimation for
        Discrete Latent Variable Models", AAAI 2023 (arXiv:2209.04862).
    """
    theta = theta.detach()
    finite = torch.isfinite(theta)
    zero = torch.zeros((), dtype=theta.dtype, device=theta.device)
    scores = torch.where(finite, theta, zero)
    dz = torch.where(finite, dz, torch.zeros((), dtype=dz.dtype, device=dz.device))
    if norm == "pooled":
        theta_norm = torch.linalg.vector_norm(scores)
        dz_norm = torch.linalg.vector_norm(dz)
    else:
        theta_norm = event_norm(scores, event_ndim, keepdim=True)  # [*batch, 1..]
        dz_norm = event_norm(dz, event_ndim, keepdim=True)  # [*sample, *batch, 1..]
    safe_dz_norm = torch.where(dz_norm > 0, dz_norm, torch.ones_like(dz_norm))
    return torch.where(dz_norm > 0, beta * theta_norm / safe_dz_norm, torch.zeros_like(dz_norm))


def aimle_vjp(
    dz: torch.Tensor,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    z: torch.Tensor,
    solve: Any,
    *,
    beta: float | torch.Tensor,
    event_ndim: int,
    alpha: float = 1.0,
    target_temperature: float = 1.0,
    central: bool = False,
    norm: Norm = "instance",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The AIMLE VJP and its statistics.

    Args:
        dz: ``[*sample, *theta.shape]`` cotangent.
        theta: ``[*batch, *event]`` scores.
        noise: the forward's noise, or None.
        z: ``[*sample, *theta.shape]`` the forward's states.
        solve: ``x -> MAP(x)``.
        beta: the adaptive multiplier (a float or a 0-dim tensor).
        event_ndim: number of event dims (the norms are taken over them).
        alpha: scale on ``theta`` in the target.
        target_temperature: noise temperature of the target MAP call(s).
        central: central differences instead of one-sided.
        norm: ``"instance"`` or ``"pooled"`` (see `aimle_lambda`).

    Returns:
        ``(dtheta, stats)``: the ``theta.shape`` gradient estimate and ``[2]``
        ``[nnz_sum, count]``: non-zero gradient entries summed over (sample, instance) pairs, and
        the number of pairs.

    References:
        Minervini, Franceschi, Niepert, "Adaptive Perturbation-Based Gradient Estimation for
        Discrete Latent Variable Models", AAAI 2023 (arXiv:2209.04862).
    """
    lam = aimle_lambda(theta, dz, beta=beta, event_ndim=event_ndim, norm=norm)
    diff = target_difference(
        dz, theta, noise, z, solve, lam=lam, alpha=alpha,
        target_temperature=target_temperature, central=central,
    )  # fmt: skip
    grad = diff / torch.where(lam > 0, lam, torch.ones_like(lam))  # [*sample, *theta.shape]
    nnz = event_sum((diff != 0).to(dz.dtype), event_ndim)  # [*sample, *batch]
    stats = torch.stack([nnz.sum(), torch.full_like(nnz.sum(), nnz.numel())])
    return reduce_to_theta(grad, theta, noise), stats


@dataclasses.dataclass(frozen=True)
class AIMLE(PerturbAndMAP, Estimator):
    """AIMLE's hyper-parameters (see `aimle`); ``beta`` is used when no state is passed."""

    name: ClassVar[str] = "aimle"
    checks: ClassVar[dict[str, Callable[[str, object], float]]] = {
        "beta": check_nonnegative,
        "alpha": check_finite,
        "temperature": check_nonnegative,
        "target_temperature": check_nonnegative,
    }
    beta: float = 1.0
    alpha: float = 1.0
    temperature: float = 1.0
    target_temperature: float = 1.0
    central: bool = False
    pooled: bool = False

    def _vjp(
        self, dout: torch.Tensor, saved: Saved, beta: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return aimle_vjp(
            dout, saved.theta, saved.noise, saved.out, saved.solve, beta=beta,
            event_ndim=saved.solve.event_ndim,
            alpha=self.alpha, target_temperature=self.target_temperature, central=self.central,
            norm="pooled" if self.pooled else "instance",
        )  # fmt: skip

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        return self._vjp(dout, saved, self.beta)[0]

    def pools_over_batch(self) -> bool:
        return self.pooled

    def vjp_with_state(self, dout: torch.Tensor, saved: Saved) -> tuple[torch.Tensor, torch.Tensor]:
        assert saved.state is not None  # the wiring calls this only with a state
        beta = saved.state[0].detach().to(dout.dtype)
        dtheta, stats = self._vjp(dout, saved, beta)
        return dtheta, stats.to(saved.state.dtype)


def aimle(
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    solver: SolverLike,
    state: torch.Tensor | None = None,
    *,
    beta: float | torch.Tensor | None = None,
    alpha: float | torch.Tensor = 1.0,
    temperature: float | torch.Tensor = 1.0,
    target_temperature: float | torch.Tensor = 1.0,
    central: bool = False,
    norm: Norm = "instance",
    event_ndim: int | None = None,
) -> torch.Tensor:
    """Sample MAP states by Perturb-and-MAP; backpropagate with adaptive I-MLE.

    Forward: ``z = MAP(theta + temperature * noise)``. Backward: `aimle_vjp` with ``beta`` from
    ``state`` (whose gradient becomes ``[nnz_sum, count]``, see the module docstring) or from the
    ``beta`` argument. Composes with `torch.func`, ``.backward()`` and `torch.compile` like
    `imle_fn.imle`.

    Args:
        theta: ``[*batch, *event]`` scores (maximised).
        noise: None, ``[*batch, *event]`` (or broadcastable) or ``[S, *batch, *event]`` noise.
        solver: any `imle_fn.Solver`.
        state: ``[2]`` tensor ``[beta, ema]`` from `aimle_state` / `aimle_update`, or None.
        beta: a fixed ``beta`` (only without ``state``; default 1.0).
        alpha: scale on ``theta`` in the target.
        temperature: input noise temperature.
        target_temperature: target noise temperature.
        central: central differences (targets ``theta +- lam * dz``) instead of one-sided.
        norm: ``"instance"`` (default): one ``lam`` per (sample, instance), norms over the
            instance's event dims; ``"pooled"``: one ``lam`` from the norms of the whole batch and
            all samples, the rule of EdinburghNLP/torch-adaptive-imle (see `aimle_lambda`).
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*sample, *batch, *event]`` sampled MAP states.

    Raises:
        TypeError: ``theta`` (or ``noise``) is not a floating-point tensor, or ``solver`` is not a
            callable / `imle_fn.Solver`.
        ValueError: a hyper-parameter out of its range (the message names it); ``noise`` of the
            wrong shape or device, requiring grad or with zero samples; a meta ``theta``; NaN in
            ``theta`` or ``noise`` (named by (sample, instance)), or a solver output of the wrong
            shape or with non-finite values.
        NotImplementedError: forward-mode AD (``torch.func.jvp``, ``jacfwd``) through the result,
            second derivatives (differentiating its gradient again) and legacy batched gradients
            (``is_grads_batched=True``; use ``torch.func.jacrev``).

    Example:
        >>> import torch, imle_fn
        >>> theta = torch.tensor([[0.0, 0.5]], requires_grad=True)
        >>> state = imle_fn.aimle_state(beta=1.0).requires_grad_()
        >>> z = imle_fn.aimle(theta, None, imle_fn.TopK(1), state)
        >>> (z * torch.tensor([[0.0, 1.0]])).sum().backward()  # lam = 1 * 0.5 / 1
        >>> theta.grad, state.grad  # state.grad = [non-zero entries, (instance, sample) pairs]
        (tensor([[-2.,  2.]]), tensor([2., 1.]))
        >>> imle_fn.aimle_update(state.detach(), state.grad, target=1.0, step=0.1)
        tensor([0.9000, 1.1000])

    References:
        Minervini, Franceschi, Niepert, "Adaptive Perturbation-Based Gradient Estimation for
        Discrete Latent Variable Models", AAAI 2023 (arXiv:2209.04862).
    """
    if state is not None:
        check_state_tensor("state", state, (2,), "[beta, ema] (see aimle_state)")
        if beta is not None:
            raise ValueError("beta: pass either a state or a fixed beta, not both")
        if isinstance(theta, torch.Tensor) and state.device != theta.device:
            raise ValueError(f"state: expected device {theta.device}, got {state.device}")
    fixed_beta = 1.0 if beta is None else check_hyper("beta", beta, check_nonnegative)
    estimator = AIMLE(
        fixed_beta,
        check_hyper("alpha", alpha, check_finite),
        check_hyper("temperature", temperature, check_nonnegative),
        check_hyper("target_temperature", target_temperature, check_nonnegative),
        bool(central),
        check_choice("norm", norm, ("instance", "pooled")) == "pooled",
    )
    return estimate(estimator, theta, noise, solver, event_ndim, state=state)
