"""Perturbed optimizers (Berthet et al., NeurIPS 2020): a smooth MAP via the noise's score function.

``y_sigma(theta) = E[MAP(theta + sigma * eps)]``, estimated by the mean over noise samples. For noise
with density ``p(eps) ~ exp(-nu(eps))`` its Jacobian is ``E[MAP(theta + sigma * eps) grad nu(eps)^T] /
sigma``, so the VJP needs no solver call: the per-sample states are saved in the forward.

* Gaussian noise: ``grad nu(eps) = eps``;
* Gumbel noise (standard): ``grad nu(eps) = 1 - exp(-eps)``.

``control_variate=True`` subtracts ``<MAP(theta), dout>`` (the unperturbed state, solved in the same
forward call) from each sample's ``<z_s, dout>``; since ``E[grad nu(eps)] = 0`` the expectation is
unchanged and the variance is usually lower.

Draw the noise outside: ``imle_fn.gaussian((S, *theta.shape), generator=g)`` (Gaussian) or
`imle_fn.gumbel` ``((S, *theta.shape), generator=g)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import ClassVar, Literal

import torch

from imle_fn.core.checks import check_hyper, check_positive
from imle_fn.core.contract import SolverLike
from imle_fn.core.wiring import Estimator, Saved, Solve, estimate, event_sum, num_sample_dims

__all__ = ["Perturbed", "noise_score", "perturbed", "perturbed_vjp"]


def noise_score(noise: torch.Tensor, gumbel: bool) -> torch.Tensor:
    """``grad nu(eps) = -grad log p(eps)`` of standard Gaussian (``eps``) or Gumbel noise."""
    return -torch.expm1(-noise) if gumbel else noise


def perturbed_vjp(
    dout: torch.Tensor,
    theta: torch.Tensor,
    noise: torch.Tensor,
    z: torch.Tensor,
    *,
    event_ndim: int,
    sigma: float = 1.0,
    gumbel: bool = False,
    z_base: torch.Tensor | None = None,
) -> torch.Tensor:
    """The perturbed optimizer's VJP ``mean_s (<z_s, dout> - c) * grad nu(eps_s) / sigma``.

    Args:
        dout: ``theta.shape`` cotangent of the mean state.
        theta: ``[*batch, *event]`` scores.
        noise: ``[S, *theta.shape]`` (trailing dims broadcastable) the forward's noise, sample dims
            flattened into one.
        z: ``[S, *theta.shape]`` per-sample MAP states.
        event_ndim: number of event dims (the inner product runs over them).
        sigma: noise scale.
        gumbel: Gumbel (True) or Gaussian (False) noise.
        z_base: ``theta.shape`` control variate state ``MAP(theta)`` (``c = <z_base, dout>``), or None.

    Returns:
        ``theta.shape`` gradient.

    References:
        Berthet, Blondel, Teboul, Cuturi, Vert, Bach, "Learning with Differentiable Perturbed
        Optimizers", NeurIPS 2020 (arXiv:2002.08676).
    """
    inner = event_sum(z * dout, event_ndim, keepdim=True)  # [S, *batch, 1..]
    if z_base is not None:
        inner = inner - event_sum(z_base * dout, event_ndim, keepdim=True)
    grad = (inner * noise_score(noise, gumbel)).mean(dim=0) / sigma  # [*theta.shape]
    return grad.sum_to_size(theta.shape).to(theta.dtype)


@dataclasses.dataclass(frozen=True)
class Perturbed(Estimator):
    """The perturbed optimizer's hyper-parameters (see `perturbed`)."""

    name: ClassVar[str] = "perturbed"
    checks: ClassVar[dict[str, Callable[[str, object], float]]] = {"sigma": check_positive}
    sigma: float = 1.0
    gumbel: bool = False
    control_variate: bool = False

    def forward(
        self, theta: torch.Tensor, noise: torch.Tensor | None, solve: Solve
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if noise is None:
            raise ValueError("noise: the perturbed optimizer needs noise samples, got None")
        ns = num_sample_dims(theta, noise)
        eps = noise.reshape(math.prod(noise.shape[:ns]), *noise.shape[ns:])  # [S, *theta-like]
        x = torch.broadcast_to(theta + self.sigma * eps, (eps.shape[0], *theta.shape))
        if self.control_variate:
            x = torch.cat([x, theta.unsqueeze(0)])  # [S + 1, *theta.shape]: one solver call
        z = solve(x)
        out = z[: eps.shape[0]].mean(dim=0)  # [*theta.shape]
        return out, z

    def out_dims(self, num_sample_dims: int) -> tuple[int | None, int | None]:
        return 0, 1  # out [V, ...]; residual [S(+1), V, ...]

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        theta, noise, residual = saved.theta, saved.noise, saved.residual
        if noise is None:
            raise ValueError("noise: the perturbed optimizer needs noise samples, got None")
        ns = num_sample_dims(theta, noise)
        eps = noise.reshape(math.prod(noise.shape[:ns]), *noise.shape[ns:])  # [S, *theta-like]
        num = eps.shape[0]
        z_base = residual[num] if self.control_variate else None
        return perturbed_vjp(
            dout, theta, eps, residual[:num], event_ndim=saved.solve.event_ndim, sigma=self.sigma,
            gumbel=self.gumbel, z_base=z_base,
        )  # fmt: skip


def perturbed(
    theta: torch.Tensor,
    noise: torch.Tensor,
    solver: SolverLike,
    *,
    sigma: float | torch.Tensor = 1.0,
    noise_type: Literal["gaussian", "gumbel"] = "gaussian",
    control_variate: bool = False,
    event_ndim: int | None = None,
) -> torch.Tensor:
    """The perturbed optimizer ``mean_s MAP(theta + sigma * eps_s)``, differentiable.

    Args:
        theta: ``[*batch, *event]`` scores (maximised).
        noise: ``[S, *batch, *event]`` standard noise of ``noise_type`` (a ``[*batch, *event]``
            tensor is one sample); drawn outside, reused by nothing else.
        solver: any `imle_fn.Solver`.
        sigma: noise scale (> 0).
        noise_type: ``"gaussian"`` or ``"gumbel"``: the law ``noise`` was drawn from (it sets the
            score function used by the gradient).
        control_variate: subtract the unperturbed state's contribution (one extra instance per
            forward solver call).
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*batch, *event]`` the mean perturbed MAP state (an estimate of ``E[z]``).

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
        >>> import torch
        >>> from imle_fn.core.noise import gumbel
        >>> from imle_fn.solvers.topk import TopK
        >>> theta = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
        >>> noise = gumbel((1000, 3), generator=torch.Generator().manual_seed(0))
        >>> y = perturbed(theta, noise, TopK(1), noise_type="gumbel")  # about softmax(theta)
        >>> y.shape
        torch.Size([3])

    References:
        Berthet, Blondel, Teboul, Cuturi, Vert, Bach, "Learning with Differentiable Perturbed
        Optimizers", NeurIPS 2020 (arXiv:2002.08676).
    """
    if noise is None:
        raise ValueError("noise: the perturbed optimizer needs noise samples, got None")
    if noise_type not in ("gaussian", "gumbel"):
        raise ValueError(f"noise_type: expected 'gaussian' or 'gumbel', got {noise_type!r}")
    estimator = Perturbed(
        check_hyper("sigma", sigma, check_positive), noise_type == "gumbel", bool(control_variate)
    )
    return estimate(estimator, theta, noise, solver, event_ndim)
