"""The training losses of the Warcraft benchmark, one per method, with solver and noise timing.

Every solver-based method turns the network's non-negative cell COSTS into SCORES ``theta = -costs``
(imle_fn maximises scores) and solves with `imle_fn.GridShortestPath`, which returns the
shortest path of ``-theta``. The loss is the Hamming loss between the predicted and the label path,
averaged over the batch (summed over cells), as in blackbox-backprop and the I-MLE paper.

* ``imle``: I-MLE, MAP-MAP (no noise), lambda ``lam_imle`` (the paper: 50).
* ``aimle``: adaptive I-MLE (`imle_fn.estimators.adaptive`), MAP-MAP, ``beta`` starting at 1 and
  adapted by `aimle_update`'s defaults (target of one non-zero gradient entry per map).
* ``dbb``: blackbox differentiation (`imle_fn.estimators.blackbox`), lambda ``lam_dbb`` (the paper: 20),
  target costs clamped at 0.
* ``fy``: the perturbed Fenchel-Young loss (DPO; `imle_fn.estimators.fenchel_young`), Gaussian noise
  of scale ``sigma_fy`` (the paper: 0.01), ``num_samples`` samples per map, loss averaged over the
  batch (its gradient is ``mean_s MAP(theta + sigma * eps_s) - y`` per map). The Gaussian noise is
  drawn with `imle_fn.gaussian` from the run's generator.
* ``ste``: straight-through (`imle_fn.estimators.straight_through`), MAP forward, identity backward.
* ``baseline``: no solver; `PathResNet18` logits against the label path, binary cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from imle_fn.apps.timing import TimedSolver, Timer

if TYPE_CHECKING:
    from imle_fn.apps.warcraft.train import TrainConfig

__all__ = ["METHODS", "MethodLoss", "batch_mean_hamming", "make_loss"]

METHODS: tuple[str, ...] = ("imle", "aimle", "dbb", "fy", "ste", "baseline")

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_mean_hamming(z: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
    """``z, paths: [B, K, K]`` -> the number of differing cells, averaged over the batch."""
    errors = z * (1.0 - paths) + (1.0 - z) * paths  # [B, K, K]
    return errors.mean(dim=0).sum()


class MethodLoss:
    """``loss(network_output [B, K, K], paths [B, K, K]) -> scalar``, plus a hook after backward.

    Args:
        fn: the loss.
        after_backward: updates any estimator state from the last backward's gradients.
        state: the tensors ``fn`` and ``after_backward`` read and replace (AIMLE's beta), held in
            this dict so that a checkpoint can save and restore them (`state_dict`).
    """

    def __init__(
        self,
        fn: Loss,
        after_backward: Callable[[], None] | None = None,
        state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.fn = fn
        self._after_backward = after_backward
        self.state: dict[str, torch.Tensor] = state if state is not None else {}

    def __call__(self, output: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        return self.fn(output, paths)

    def after_backward(self) -> None:
        """Update any estimator state from the gradients of the last backward (AIMLE's beta)."""
        if self._after_backward is not None:
            self._after_backward()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A detached copy of the estimator state (empty for the stateless methods)."""
        return {name: value.detach().clone() for name, value in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the estimator state by ``state`` (from `state_dict`), in place.

        Raises:
            ValueError: ``state`` does not hold exactly this method's state tensors.
        """
        if set(state) != set(self.state):
            raise ValueError(
                f"state: expected the tensors {sorted(self.state)}, got {sorted(state)}"
            )
        for name, value in state.items():
            old = self.state[name]
            self.state[name] = value.detach().clone().to(old).requires_grad_(old.requires_grad)


def make_loss(config: TrainConfig, timer: Timer, generator: torch.Generator) -> MethodLoss:
    """Return the training loss of ``config.method`` (see the module docstring).

    Args:
        config: the run's settings (method and hyper-parameters).
        timer: receives solver and noise times.
        generator: the source of any noise the method draws.
    """
    if config.method == "baseline":
        bce = torch.nn.BCEWithLogitsLoss()
        return MethodLoss(lambda logits, paths: bce(logits, paths))

    from imle_fn.solvers.grid import GridShortestPath

    solver = TimedSolver(GridShortestPath(), timer)
    if config.method == "imle":
        from imle_fn.estimators.implicit_mle import imle

        def imle_loss(costs: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
            return batch_mean_hamming(imle(-costs, None, solver, lam=config.lam_imle), paths)

        return MethodLoss(imle_loss)
    if config.method == "dbb":
        from imle_fn.estimators.blackbox import dbb

        def dbb_loss(costs: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
            return batch_mean_hamming(
                dbb(-costs, solver, lam=config.lam_dbb, clamp_costs=True), paths
            )

        return MethodLoss(dbb_loss)
    if config.method == "fy":
        from imle_fn.core.noise import gaussian
        from imle_fn.estimators.fenchel_young import fenchel_young_loss

        def fy_loss(costs: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
            with timer("noise"):
                noise = gaussian((config.num_samples, *costs.shape), generator=generator)
            theta = -costs
            loss = fenchel_young_loss(theta, paths, noise, solver, sigma=config.sigma_fy)
            return loss.mean()  # [B] -> scalar, averaged over the batch

        return MethodLoss(fy_loss)
    if config.method == "ste":
        from imle_fn.estimators.straight_through import ste

        return MethodLoss(lambda costs, paths: batch_mean_hamming(ste(-costs, None, solver), paths))
    if config.method == "aimle":
        from imle_fn.estimators.adaptive import aimle, aimle_state, aimle_update

        state = {"aimle": aimle_state(beta=1.0).requires_grad_()}

        def aimle_loss(costs: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
            return batch_mean_hamming(aimle(-costs, None, solver, state["aimle"]), paths)

        def update() -> None:
            old = state["aimle"]
            state["aimle"] = aimle_update(old.detach(), old.grad).requires_grad_()

        return MethodLoss(aimle_loss, update, state)
    raise ValueError(f"method: expected one of {METHODS}, got {config.method!r}")
