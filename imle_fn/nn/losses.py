"""`FenchelYoungLoss`: the perturbed Fenchel-Young loss (`imle_fn.fenchel_young_loss`) as a
module, with the noise drawn from a generator it owns."""

from __future__ import annotations

from typing import Literal

import torch

from imle_fn.core.checks import check_choice, check_nonnegative
from imle_fn.core.contract import SolverLike
from imle_fn.estimators.fenchel_young import fenchel_young_loss
from imle_fn.nn.base import HyperParameter, NoisyLayer, hyper, solver_repr

__all__ = ["FenchelYoungLoss"]


class FenchelYoungLoss(NoisyLayer):
    """The perturbed Fenchel-Young loss of scores ``theta`` for target states ``y``.

    ``forward(theta, y, noise=None)`` is `imle_fn.fenchel_young_loss` reduced over the batch
    like `torch.nn` losses (``reduction``). In training mode it draws ``num_samples`` standard
    ``noise_type`` samples (Gaussian by default, or Gumbel) from its generator; in eval mode it
    draws none (the loss ``<theta, MAP(theta) - y>``, gradient ``MAP(theta) - y``). A ``noise``
    tensor passed to the forward is used in both modes.

    Args:
        solver: a `imle_fn.Solver`.
        sigma: noise scale (>= 0).
        noise_type: ``"gaussian"`` or ``"gumbel"``.
        num_samples: the number of noise samples (None: one).
        reduction: over the per-instance losses ``[*batch]``: ``"mean"``, ``"sum"`` or
            ``"none"``.
        generator: a `torch.Generator`, an int seed, or None (seeded from torch's generator).
        event_ndim: trailing dims of one instance (default: ``solver.event_ndim``).

    Shape:
        ``theta: [*batch, *event]``, ``y`` broadcastable to it -> ``[]`` (``"mean"``,
        ``"sum"``) or ``[*batch]`` (``"none"``).

    Raises:
        TypeError: a ``generator`` of the wrong type.
        ValueError: ``sigma < 0``, an unknown ``noise_type`` or ``reduction``,
            ``num_samples < 1``; the forward's errors are `imle_fn.fenchel_young_loss`'s.

    Example:
        >>> import torch, imle_fn
        >>> loss = imle_fn.nn.FenchelYoungLoss(imle_fn.TopK(1), num_samples=8, generator=0)
        >>> theta = torch.zeros(4, 3, requires_grad=True)
        >>> loss(theta, torch.eye(3)[[0, 1, 2, 0]]).shape
        torch.Size([])

    References:
        Berthet, Blondel, Teboul, Cuturi, Vert, Bach, "Learning with Differentiable Perturbed
        Optimizers", NeurIPS 2020 (arXiv:2002.08676).
    """

    noise_types = ("gaussian", "gumbel")
    sigma = HyperParameter(check_nonnegative)

    def __init__(
        self,
        solver: SolverLike,
        *,
        sigma: float | torch.Tensor = 1.0,
        noise_type: Literal["gaussian", "gumbel"] = "gaussian",
        num_samples: int | None = None,
        reduction: Literal["mean", "sum", "none"] = "mean",
        generator: torch.Generator | int | None = None,
        event_ndim: int | None = None,
    ) -> None:
        check_choice("noise_type", noise_type, self.noise_types)
        super().__init__(
            solver, noise_type=noise_type, k=None, num_terms=1, num_samples=num_samples,
            reduction="none", generator=generator, event_ndim=event_ndim,
        )  # fmt: skip
        self.loss_reduction = check_choice("reduction", reduction, ("mean", "sum", "none"))
        self.sigma = sigma

    def forward(
        self, theta: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss of ``theta`` for the target states ``y`` (see the class docstring)."""
        losses = fenchel_young_loss(
            theta, y, self._noise_for(theta, noise), self.solver, sigma=hyper(self, "sigma"),
            event_ndim=self.event_ndim,
        )  # fmt: skip
        if self.loss_reduction == "mean":
            return losses.mean()
        if self.loss_reduction == "sum":
            return losses.sum()
        return losses

    def extra_repr(self) -> str:
        return (
            f"solver={solver_repr(self.solver)}, sigma={self.sigma}, noise_type={self.noise_type!r},"
            f" num_samples={self.num_samples}, reduction={self.loss_reduction!r}"
        )
