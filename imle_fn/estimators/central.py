"""Central (two-sided) differences for I-MLE: targets ``theta + lam * dz`` and ``theta - lam * dz``.

One-sided I-MLE (`imle_fn.imle`) differences the forward sample against one target:
``(z - MAP(theta - lam * dz + eps)) / lam``. Its mirror image ``(MAP(theta + lam * dz + eps) - z) / lam``
is the other one-sided estimate, and their average is the central difference

    ``dtheta = (MAP(alpha * theta + lam * dz + eps) - MAP(alpha * theta - lam * dz + eps)) / (2 lam)``,

with the same noise ``eps`` as the forward and both targets solved in ONE solver call. Its sign is
I-MLE's: for a loss that grows with ``z_i`` (``dz_i > 0``) the estimate is ``>= 0``, so gradient
descent lowers ``theta_i``. The forward sample ``z`` itself does not enter the gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from imle_fn.core.checks import check_finite, check_hyper, check_nonnegative, check_positive
from imle_fn.core.contract import SolverLike
from imle_fn.core.perturbation import perturb
from imle_fn.core.wiring import Saved, estimate, reduce_to_theta, scale_scores
from imle_fn.estimators.implicit_mle import IMLE

__all__ = ["CentralIMLE", "imle_central", "imle_central_vjp", "target_difference"]


def target_difference(
    dz: torch.Tensor,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    z: torch.Tensor | None,
    solve: Any,
    *,
    lam: float | torch.Tensor,
    alpha: float = 1.0,
    target_temperature: float = 1.0,
    central: bool = False,
) -> torch.Tensor:
    """Per-sample I-MLE differences, not yet divided by ``lam`` nor averaged over samples.

    One-sided: ``z - MAP(alpha * theta - lam * dz + t * noise)``. Central: half of
    ``MAP(alpha * theta + lam * dz + t * noise) - MAP(alpha * theta - lam * dz + t * noise)``
    (both targets in one solver call).

    Args:
        dz: ``[*sample, *theta.shape]`` cotangent.
        theta: ``[*batch, *event]`` scores.
        noise: the forward's noise, or None.
        z: ``[*sample, *theta.shape]`` the forward's states (one-sided only; None when ``central``).
        solve: ``x -> MAP(x)``.
        lam: step size, a float or a tensor broadcastable to ``dz`` (e.g. per instance).
        alpha: scale on ``theta`` in the targets.
        target_temperature: noise temperature of the target MAP calls.
        central: two-sided (True) or one-sided (False).

    Returns:
        ``[*sample, *theta.shape]`` differences.
    """
    base = scale_scores(theta.detach(), alpha)  # infinite scores (masks, walls) stay put
    if not central:
        if z is None:
            raise ValueError("z: the one-sided difference needs the forward's states, got None")
        return z - solve(perturb(base - lam * dz, noise, target_temperature))
    step = lam * dz  # [*sample, *theta.shape]
    targets = torch.stack(torch.broadcast_tensors(base + step, base - step))  # [2, *sample, *shape]
    z_plus, z_minus = solve(perturb(targets, noise, target_temperature)).unbind(0)
    return (z_plus - z_minus) / 2


def imle_central_vjp(
    dz: torch.Tensor,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    solve: Any,
    *,
    lam: float = 1.0,
    alpha: float = 1.0,
    target_temperature: float = 1.0,
    divide_by_lam: bool = True,
) -> torch.Tensor:
    """The central-difference I-MLE VJP (see the module docstring).

    Returns:
        ``theta.shape``: mean over samples of ``(z_plus - z_minus) / (2 lam)`` (no ``/ lam`` when
        ``divide_by_lam=False``).

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798).
    """
    grad = target_difference(
        dz, theta, noise, None, solve, lam=lam, alpha=alpha,
        target_temperature=target_temperature, central=True,
    )  # fmt: skip
    if divide_by_lam:
        grad = grad / lam
    return reduce_to_theta(grad, theta, noise)


@dataclasses.dataclass(frozen=True)
class CentralIMLE(IMLE):
    """Central-difference I-MLE: I-MLE's hyper-parameters and forward, another VJP."""

    name: ClassVar[str] = "imle_central"

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        return imle_central_vjp(
            dout, saved.theta, saved.noise, saved.solve, lam=self.lam, alpha=self.alpha,
            target_temperature=self.target_temperature, divide_by_lam=self.divide_by_lam,
        )  # fmt: skip


def imle_central(
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    solver: SolverLike,
    *,
    lam: float | torch.Tensor = 1.0,
    alpha: float | torch.Tensor = 1.0,
    temperature: float | torch.Tensor = 1.0,
    target_temperature: float | torch.Tensor = 1.0,
    divide_by_lam: bool = True,
    event_ndim: int | None = None,
) -> torch.Tensor:
    """I-MLE with central differences: forward ``z = MAP(theta + temperature * noise)``.

    Backward: `imle_central_vjp`. Arguments, shapes and composability are those of
    `imle_fn.imle`; the backward makes one solver call on twice the batch.

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
        >>> z = imle_fn.imle_central(theta, None, imle_fn.TopK(1), lam=1.0)
        >>> (z * torch.tensor([[0.0, 1.0]])).sum().backward()  # (MAP([0, 1.5]) - MAP([0, -0.5])) / 2
        >>> theta.grad
        tensor([[-0.5000,  0.5000]])

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798).
        Minervini, Franceschi, Niepert, "Adaptive Perturbation-Based Gradient Estimation for
        Discrete Latent Variable Models", AAAI 2023 (arXiv:2209.04862): central differences.
    """
    estimator = CentralIMLE(
        check_hyper("lam", lam, check_positive),
        check_hyper("alpha", alpha, check_finite),
        check_hyper("temperature", temperature, check_nonnegative),
        check_hyper("target_temperature", target_temperature, check_nonnegative),
        bool(divide_by_lam),
    )
    return estimate(estimator, theta, noise, solver, event_ndim)
