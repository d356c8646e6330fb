"""Straight-through estimator (STE): Perturb-and-MAP forward, identity backward."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import torch

from imle_fn.core.checks import check_hyper, check_nonnegative
from imle_fn.core.contract import SolverLike
from imle_fn.core.wiring import Estimator, PerturbAndMAP, Saved, estimate, reduce_to_theta

__all__ = ["STE", "ste", "ste_vjp"]


def ste_vjp(dz: torch.Tensor, theta: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """The straight-through VJP: ``dtheta = mean over samples of dz``.

    Args:
        dz: ``[*sample, *theta.shape]`` cotangent of the sampled states.
        theta: ``[*batch, *event]`` scores.
        noise: the forward's noise (only its sample dims matter), or None.

    Returns:
        ``theta.shape`` gradient estimate.

    References:
        Bengio, Leonard, Courville, "Estimating or Propagating Gradients Through Stochastic Neurons
        for Conditional Computation", arXiv:1308.3432, 2013.
    """
    return reduce_to_theta(dz, theta, noise)


@dataclasses.dataclass(frozen=True)
class STE(PerturbAndMAP, Estimator):
    """STE's hyper-parameters (see `ste`)."""

    name: ClassVar[str] = "ste"
    finite_cotangent: ClassVar[bool] = False  # dz passes through, inf and NaN as autograd's would
    checks: ClassVar[dict[str, Callable[[str, object], float]]] = {"temperature": check_nonnegative}
    temperature: float = 1.0

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        return ste_vjp(dout, saved.theta, saved.noise)


def ste(
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    solver: SolverLike,
    *,
    temperature: float | torch.Tensor = 1.0,
    event_ndim: int | None = None,
) -> torch.Tensor:
    """Sample MAP states ``z = MAP(theta + temperature * noise)``; backpropagate ``dz`` unchanged.

    The straight-through estimator treats the solver as the identity in the backward pass: no solver
    call, ``dtheta = mean over samples of dz``. Same noise and sample-dim conventions as
    `imle_fn.imle`.

    Args:
        theta: ``[*batch, *event]`` scores (maximised).
        noise: None, ``[*batch, *event]`` (or broadcastable) or ``[S, *batch, *event]`` noise.
        solver: any `imle_fn.Solver`.
        temperature: input noise temperature (>= 0).
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*sample, *batch, *event]`` MAP states.

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
        >>> theta = torch.tensor([[0.0, 0.5, 2.0]], requires_grad=True)
        >>> z = imle_fn.ste(theta, None, imle_fn.TopK(2))
        >>> z.detach()
        tensor([[0., 1., 1.]])
        >>> (z * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
        >>> theta.grad  # the cotangent, unchanged
        tensor([[1., 2., 3.]])

    References:
        Bengio, Leonard, Courville, "Estimating or Propagating Gradients Through Stochastic Neurons
        for Conditional Computation", arXiv:1308.3432, 2013.
    """
    estimator = STE(check_hyper("temperature", temperature, check_nonnegative))
    return estimate(estimator, theta, noise, solver, event_ndim)
