"""Layers over the estimators: `IMLE`, `CentralIMLE`, `STE`, `DBB` and `Perturbed`.

Each is a `torch.nn.Module` whose ``forward(theta, noise=None)`` calls the functional estimator of
the same name (`imle_fn.imle`, `imle_fn.imle_central`, `imle_fn.ste`, `imle_fn.dbb`,
`imle_fn.perturbed`) with the layer's solver, hyper-parameters and noise; see `imle_fn.nn` for
the rules they share (noise, samples, train / eval, ``state_dict``, compile, ``vmap``).
"""

from __future__ import annotations

from typing import Literal

import torch

from imle_fn.core.checks import check_choice, check_finite, check_nonnegative, check_positive
from imle_fn.core.contract import SolverLike
from imle_fn.core.solving import map_solve
from imle_fn.estimators.blackbox import dbb
from imle_fn.estimators.central import imle_central
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.perturbed_optimizer import perturbed
from imle_fn.estimators.straight_through import ste
from imle_fn.nn.base import (
    HyperParameter,
    NoiseType,
    NoisyLayer,
    Reduction,
    hyper,
    solver_repr,
)

__all__ = ["DBB", "IMLE", "STE", "CentralIMLE", "Perturbed"]


class IMLE(NoisyLayer):
    """I-MLE as a layer: ``z = MAP(theta + temperature * noise)``, the I-MLE gradient backward.

    ``forward(theta, noise=None)`` is `imle_fn.imle` with this layer's solver and
    hyper-parameters. In training mode the layer draws the noise from its generator
    (``noise_type``, ``num_samples``); in eval mode it draws none and returns the noise-free MAP
    state ``MAP(theta)``, shaped like ``theta`` (its gradient is I-MLE's without noise). A
    ``noise`` tensor passed to the forward is used as it is, in both modes.

    Args:
        solver: a `imle_fn.Solver` (or a plain callable with ``event_ndim``).
        lam: target step size lambda (> 0).
        alpha: target scale on theta.
        temperature: input noise temperature (>= 0).
        target_temperature: target noise temperature (>= 0).
        divide_by_lam: the gradient scale convention of `imle_fn.imle`.
        noise_type: ``"sum_of_gamma"`` (default; the I-MLE paper's noise for k-subsets and
            paths), ``"gumbel"``, ``"gaussian"`` or None (MAP-MAP, no noise).
        k: Sum-of-Gamma's ``k`` (default: the solver's integer ``k``, e.g. `imle_fn.TopK`).
        num_terms: Sum-of-Gamma's number of terms.
        num_samples: None (one sample, output shaped like ``theta``) or ``S`` (``[S, *theta]``).
        reduction: ``"none"`` or ``"mean"`` over the samples (see `NoisyLayer`).
        generator: a `torch.Generator`, an int seed, or None (seeded from torch's generator).
        event_ndim: trailing dims of one instance (default: ``solver.event_ndim``).

    Shape:
        ``theta: [*batch, *event]`` -> ``[S, *batch, *event]`` (``num_samples=S``,
        ``reduction="none"``), else ``[*batch, *event]``.

    Raises:
        TypeError: a ``generator`` of the wrong type; the forward's errors are `imle_fn.imle`'s.
        ValueError: a hyper-parameter out of range (named), an unknown ``noise_type`` or
            ``reduction``, Sum-of-Gamma noise without ``k``, ``num_samples < 1``.

    Example:
        >>> import torch, imle_fn
        >>> layer = imle_fn.nn.IMLE(imle_fn.TopK(2), lam=1.0, num_samples=5, generator=0)
        >>> theta = torch.randn(3, 6, requires_grad=True)
        >>> layer(theta).shape  # 5 samples of 3 2-subsets of 6 items
        torch.Size([5, 3, 6])
        >>> z = layer.eval()(theta)  # eval: the noise-free MAP state, no sample dim
        >>> z.shape, z.sum(-1).tolist()
        (torch.Size([3, 6]), [2.0, 2.0, 2.0])

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798).
    """

    lam = HyperParameter(check_positive)
    alpha = HyperParameter(check_finite)
    temperature = HyperParameter(check_nonnegative)
    target_temperature = HyperParameter(check_nonnegative)

    def __init__(
        self,
        solver: SolverLike,
        *,
        lam: float | torch.Tensor = 1.0,
        alpha: float | torch.Tensor = 1.0,
        temperature: float | torch.Tensor = 1.0,
        target_temperature: float | torch.Tensor = 1.0,
        divide_by_lam: bool = True,
        noise_type: NoiseType | None = "sum_of_gamma",
        k: float | None = None,
        num_terms: int = 10,
        num_samples: int | None = None,
        reduction: Reduction = "none",
        generator: torch.Generator | int | None = None,
        event_ndim: int | None = None,
    ) -> None:
        super().__init__(
            solver, noise_type=noise_type, k=k, num_terms=num_terms, num_samples=num_samples,
            reduction=reduction, generator=generator, event_ndim=event_ndim,
        )  # fmt: skip
        self.lam = lam
        self.alpha = alpha
        self.temperature = temperature
        self.target_temperature = target_temperature
        self.divide_by_lam = bool(divide_by_lam)

    def forward(self, theta: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sampled MAP states of ``theta`` (see the class docstring for shapes and modes)."""
        z = imle(
            theta, self._noise_for(theta, noise), self.solver, lam=hyper(self, "lam"),
            alpha=hyper(self, "alpha"), temperature=hyper(self, "temperature"),
            target_temperature=hyper(self, "target_temperature"),
            divide_by_lam=self.divide_by_lam, event_ndim=self.event_ndim,
        )  # fmt: skip
        return self._reduce(z, theta)

    def extra_repr(self) -> str:
        return (
            f"solver={solver_repr(self.solver)}, lam={self.lam}, alpha={self.alpha},"
            f" temperature={self.temperature}, target_temperature={self.target_temperature},"
            f" {self._noise_repr()}"
        )


class CentralIMLE(IMLE):
    """I-MLE with central differences as a layer (`imle_fn.imle_central`).

    Arguments, noise, shapes and modes are those of `IMLE`; the backward solves both targets
    ``alpha * theta +- lam * dz`` in one solver call.

    Raises:
        TypeError: a ``generator`` of the wrong type.
        ValueError: as `IMLE`.

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798).
        Minervini, Franceschi, Niepert, "Adaptive Perturbation-Based Gradient Estimation for
        Discrete Latent Variable Models", AAAI 2023 (arXiv:2209.04862): central differences.
    """

    def forward(self, theta: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sampled MAP states of ``theta``, with the central-difference gradient."""
        z = imle_central(
            theta, self._noise_for(theta, noise), self.solver, lam=hyper(self, "lam"),
            alpha=hyper(self, "alpha"), temperature=hyper(self, "temperature"),
            target_temperature=hyper(self, "target_temperature"),
            divide_by_lam=self.divide_by_lam, event_ndim=self.event_ndim,
        )  # fmt: skip
        return self._reduce(z, theta)


class STE(NoisyLayer):
    """The straight-through estimator as a layer (`imle_fn.ste`): Perturb-and-MAP forward, the
    cotangent passed straight through.

    Noise, samples and modes are those of `IMLE` (eval: the noise-free MAP state).

    Args:
        solver: a `imle_fn.Solver`.
        temperature: input noise temperature (>= 0).
        noise_type: ``"sum_of_gamma"`` (default), ``"gumbel"``, ``"gaussian"`` or None (no noise).
        k: Sum-of-Gamma's ``k`` (default: the solver's integer ``k``, e.g. `imle_fn.TopK`).
        num_terms: Sum-of-Gamma's number of terms.
        num_samples: None (one sample, output shaped like ``theta``) or ``S`` (``[S, *theta]``).
        reduction: ``"none"`` or ``"mean"`` over the samples (see `NoisyLayer`).
        generator: a `torch.Generator`, an int seed, or None (seeded from torch's generator).
        event_ndim: trailing dims of one instance (default: ``solver.event_ndim``).

    Raises:
        TypeError: a ``generator`` of the wrong type.
        ValueError: as `IMLE`.

    References:
        Bengio, Leonard, Courville, "Estimating or Propagating Gradients Through Stochastic Neurons
        for Conditional Computation", arXiv:1308.3432, 2013.
    """

    temperature = HyperParameter(check_nonnegative)

    def __init__(
        self,
        solver: SolverLike,
        *,
        temperature: float | torch.Tensor = 1.0,
        noise_type: NoiseType | None = "sum_of_gamma",
        k: float | None = None,
        num_terms: int = 10,
        num_samples: int | None = None,
        reduction: Reduction = "none",
        generator: torch.Generator | int | None = None,
        event_ndim: int | None = None,
    ) -> None:
        super().__init__(
            solver, noise_type=noise_type, k=k, num_terms=num_terms, num_samples=num_samples,
            reduction=reduction, generator=generator, event_ndim=event_ndim,
        )  # fmt: skip
        self.temperature = temperature

    def forward(self, theta: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sampled MAP states of ``theta``; the gradient is the cotangent (mean over samples)."""
        z = ste(
            theta, self._noise_for(theta, noise), self.solver,
            temperature=hyper(self, "temperature"), event_ndim=self.event_ndim,
        )  # fmt: skip
        return self._reduce(z, theta)

    def extra_repr(self) -> str:
        return f"solver={solver_repr(self.solver)}, temperature={self.temperature}, {self._noise_repr()}"


class DBB(torch.nn.Module):
    """Blackbox backprop as a layer (`imle_fn.dbb`): ``MAP(theta)`` forward, the DBB gradient.

    DBB uses no noise, so the layer has no generator and behaves the same in training and eval
    mode.

    Args:
        solver: a `imle_fn.Solver`.
        lam: interpolation step (> 0).
        clamp_costs: clamp the target's costs at 0 (see `imle_fn.dbb`).
        event_ndim: trailing dims of one instance (default: ``solver.event_ndim``).

    Shape:
        ``theta: [*batch, *event]`` -> ``[*batch, *event]``.

    Raises:
        ValueError: ``lam`` not a positive number; the forward's errors are `imle_fn.dbb`'s.

    References:
        Vlastelica, Paulus, Musil, Martius, Rolinek, "Differentiation of Blackbox Combinatorial
        Solvers", ICLR 2020 (arXiv:1912.02175).
    """

    lam = HyperParameter(check_positive)

    def __init__(
        self,
        solver: SolverLike,
        *,
        lam: float | torch.Tensor = 1.0,
        clamp_costs: bool = False,
        event_ndim: int | None = None,
    ) -> None:
        super().__init__()
        self.solver = solver
        self.lam = lam
        self.clamp_costs = bool(clamp_costs)
        self.event_ndim = event_ndim

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """The MAP state of ``theta``, with the blackbox-backprop gradient."""
        return dbb(
            theta, self.solver, lam=hyper(self, "lam"), clamp_costs=self.clamp_costs,
            event_ndim=self.event_ndim,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"solver={solver_repr(self.solver)}, lam={self.lam}, clamp_costs={self.clamp_costs}"


class Perturbed(NoisyLayer):
    """The perturbed optimizer as a layer (`imle_fn.perturbed`): the mean over samples of
    ``MAP(theta + sigma * eps)``, differentiable through the noise's score function.

    In training mode it draws ``num_samples`` standard ``noise_type`` samples (Gaussian by
    default, or Gumbel) and returns their mean state, shaped like ``theta``. In eval mode it
    returns the noise-free MAP state ``MAP(theta)``, which carries no gradient (the perturbed
    optimizer's gradient needs noise); a ``noise`` tensor passed to the forward is used in both
    modes.

    Args:
        solver: a `imle_fn.Solver`.
        sigma: noise scale (> 0).
        noise_type: ``"gaussian"`` or ``"gumbel"``.
        num_samples: the number of noise samples (None: one).
        control_variate: subtract the unperturbed state's contribution (see `imle_fn.perturbed`).
        generator: a `torch.Generator`, an int seed, or None (seeded from torch's generator).
        event_ndim: trailing dims of one instance (default: ``solver.event_ndim``).

    Shape:
        ``theta: [*batch, *event]`` -> ``[*batch, *event]``.

    Raises:
        TypeError: a ``generator`` of the wrong type.
        ValueError: ``sigma`` not positive, ``noise_type`` not Gaussian or Gumbel,
            ``num_samples < 1``.

    References:
        Berthet, Blondel, Teboul, Cuturi, Vert, Bach, "Learning with Differentiable Perturbed
        Optimizers", NeurIPS 2020 (arXiv:2002.08676).
    """

    noise_types = ("gaussian", "gumbel")
    sigma = HyperParameter(check_positive)

    def __init__(
        self,
        solver: SolverLike,
        *,
        sigma: float | torch.Tensor = 1.0,
        noise_type: Literal["gaussian", "gumbel"] = "gaussian",
        num_samples: int | None = None,
        control_variate: bool = False,
        generator: torch.Generator | int | None = None,
        event_ndim: int | None = None,
    ) -> None:
        check_choice("noise_type", noise_type, self.noise_types)
        super().__init__(
            solver, noise_type=noise_type, k=None, num_terms=1, num_samples=num_samples,
            reduction="none", generator=generator, event_ndim=event_ndim,
        )  # fmt: skip
        self.sigma = sigma
        self.control_variate = bool(control_variate)

    def forward(self, theta: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The mean perturbed MAP state (training), or ``MAP(theta)`` (eval, no noise given)."""
        noise = self._noise_for(theta, noise)
        if noise is None:
            return map_solve(theta, self.solver, event_ndim=self.event_ndim)
        return perturbed(
            theta, noise, self.solver, sigma=hyper(self, "sigma"),
            noise_type="gumbel" if self.noise_type == "gumbel" else "gaussian",
            control_variate=self.control_variate, event_ndim=self.event_ndim,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"solver={solver_repr(self.solver)}, sigma={self.sigma}, noise_type={self.noise_type!r},"
            f" num_samples={self.num_samples}, control_variate={self.control_variate}"
        )
