"""How each method turns the encoder's scores into latent codes that gradients flow through.

Every method sees the same model, the same exact KL and (but SIMPLE) the same noise: Sum-of-Gamma noise
``eps ~ SoG(k, num_terms)`` (`imle_fn.sum_of_gamma` with ``k`` = the subset size), scaled by the noise
temperature ``tau``, and `imle_fn.TopK` as the MAP solver. With scores ``theta`` the variational law of
a block is the k-subset family ``q(z) = p(z; theta / tau)``, which the papers sample by
perturb-and-MAP ``z = TopK(theta + tau * eps)``. That is not a sample of ``q``: SoG noise makes a
k-subset's total score Gumbel-like, not its law exact, and at the scores learnt here those codes
are far less random than ``q`` (``tests/apps/test_dvae.py``). Methods differ only in the codes the decoder sees during training
and in how the gradient reaches ``theta``:

* ``imle``: `imle_fn.imle`, target ``theta - lam * dz`` with the same noise, gradient
  ``(z - z') / lam`` (the I-MLE paper's DVAE: ``lam = 10``, ``tau = 10``).
* ``aimle``: `imle_fn.aimle` with central differences and the adaptive ``lam = beta * ||theta_b|| /
  ||dz_b||`` per block, ``beta`` updated after every step by `imle_fn.aimle_update` towards
  ``aimle_target`` non-zero gradient entries per (block, sample) (torch-adaptive-imle's DVAE command:
  central, target 10, step 1e-3).
* ``imle_central``: `imle_fn.imle_central`, fixed ``lam``, targets ``theta +- lam * dz``.
* ``ste``: `imle_fn.ste`, the sampled codes forward, ``dz`` straight back to ``theta``.
* ``relaxed_topk``: the classic continuous relaxation, no solver in training: the decoder gets the
  relaxed k-hot vector of Xie & Ermon (2019, "Reparameterizable Subset Sampling via Continuous
  Relaxations", arXiv:1901.10517): ``k`` successive softmaxes of the perturbed log-parameters
  ``s = theta / tau + eps`` at relaxation temperature ``t``, each step lowering the scores of the items
  already taken by ``log(1 - a)`` (`relaxed_topk`). As ``t -> 0`` it becomes ``TopK(s)``, the sample of
  the other methods. Xie & Ermon perturb with Gumbel noise; here the same SoG noise as every other
  method is used, so that only the gradient path differs.

* ``simple``: `imle_fn.simple` (SIMPLE, Ahmed et al., ICLR 2023, arXiv:2210.01941) on ``theta / tau``:
  the training codes are EXACT samples of ``q = p(.; theta / tau)`` (drawn from uniforms, not from the
  SoG noise: SIMPLE samples the law itself), and the gradient is that of the exact marginals,
  ``J_mu^T dz``, through ``theta / tau``. No solver in training.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch

from imle_fn.apps.timing import TimedSolver, Timer
from imle_fn.core.checks import check_int, check_nonnegative, check_positive
from imle_fn.core.noise import sum_of_gamma
from imle_fn.core.solving import map_solve
from imle_fn.estimators.adaptive import aimle, aimle_state, aimle_update
from imle_fn.estimators.central import imle_central
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.simple_estimator import simple
from imle_fn.estimators.straight_through import ste
from imle_fn.solvers.topk import TopK

__all__ = [
    "METHODS",
    "AdaptiveIMLE",
    "CentralIMLE",
    "ImplicitMLE",
    "LatentMethod",
    "MethodSettings",
    "RelaxedTopK",
    "Simple",
    "StraightThrough",
    "make_method",
    "perturb_and_map",
    "relaxed_topk",
]


@dataclass(frozen=True)
class MethodSettings:
    """Hyper-parameters of the methods (the defaults are the papers', see the module docstring).

    Attributes:
        k: subset size of every block.
        temperature: noise temperature ``tau`` (q = p(z; theta / tau)).
        noise_terms: Sum-of-Gamma terms.
        samples: codes sampled per image and training step (gradients averaged over them).
        lam: lambda of ``imle`` and ``imle_central``.
        aimle_beta: AIMLE's initial ``beta``.
        aimle_target: AIMLE's target number of non-zero gradient entries per (block, sample).
        aimle_step: AIMLE's ``beta`` change per step.
        relax_temperature: ``t`` of ``relaxed_topk``.
    """

    k: int
    temperature: float = 10.0
    noise_terms: int = 10
    samples: int = 1
    lam: float = 10.0
    aimle_beta: float = 1.0
    aimle_target: float = 10.0
    aimle_step: float = 1e-3
    relax_temperature: float = 0.5

    def __post_init__(self) -> None:
        check_int("k", self.k, minimum=1)
        check_positive("temperature", self.temperature)
        check_int("noise_terms", self.noise_terms, minimum=1)
        check_int("samples", self.samples, minimum=1)
        check_positive("lam", self.lam)
        check_nonnegative("aimle_beta", self.aimle_beta)
        check_nonnegative("aimle_target", self.aimle_target)
        check_nonnegative("aimle_step", self.aimle_step)
        check_positive("relax_temperature", self.relax_temperature)


def perturb_and_map(
    theta: torch.Tensor, noise: torch.Tensor, temperature: float, solver: TopK | TimedSolver
) -> torch.Tensor:
    """``[S, *batch, n]`` codes ``TopK(theta + temperature * noise)`` (no gradient): the
    perturb-and-MAP codes every method is evaluated with in the papers' protocol (not samples of
    ``q = p(.; theta / temperature)``; the exact-q evaluation uses `imle_fn.topk_sample`)."""
    return map_solve(theta + temperature * noise, solver)


def relaxed_topk(scores: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """Relaxed k-hot vector of Xie & Ermon (2019): ``k`` successive softmaxes at ``temperature``.

    ``a_1 = softmax(s / t)``; ``a_{j+1} = softmax((s + sum_{i<=j} log(1 - a_i)) / t)``; result
    ``sum_j a_j``: non-negative with sum ``k`` (entries are not capped at 1: items whose scores nearly
    tie can share mass over several steps). As ``t -> 0`` it tends to the indicator of the ``k``
    largest scores (distinct scores).

    Args:
        scores: ``[*batch, n]`` (perturbed) log-parameters.
        k: subset size, ``1 <= k <= n``.
        temperature: ``t > 0``.

    Returns:
        ``[*batch, n]`` relaxed k-hot vectors, differentiable with respect to ``scores``.

    Raises:
        TypeError: ``k`` is not an int.
        ValueError: ``k`` outside ``[1, n]`` or ``temperature <= 0``.

    References:
        Xie, Ermon, "Reparameterizable Subset Sampling via Continuous Relaxations", IJCAI 2019
        (arXiv:1901.10517), Sec. 3.
    """
    k = check_int("k", k, minimum=1, maximum=scores.shape[-1])
    t = check_positive("temperature", temperature)
    tiny = torch.finfo(scores.dtype).tiny
    logits = scores
    khot = torch.zeros_like(scores)
    onehot = torch.zeros_like(scores)
    for _ in range(k):
        logits = logits + torch.log((1.0 - onehot).clamp_min(tiny))
        onehot = torch.softmax(logits / t, dim=-1)
        khot = khot + onehot
    return khot


class LatentMethod(abc.ABC):
    """A way to sample training codes from scores, with the gradient path it provides.

    Args:
        settings: the hyper-parameters.
        timer: receives ``"noise"`` and ``"solver"`` seconds.
    """

    name: ClassVar[str]

    def __init__(self, settings: MethodSettings, timer: Timer) -> None:
        self.settings = settings
        self.timer = timer
        self.solver = TimedSolver(TopK(settings.k), timer)

    @property
    def temperature(self) -> float:
        """``tau``: the variational law of a block is ``p(z; theta / tau)``."""
        return self.settings.temperature

    def noise(self, shape: torch.Size, samples: int, generator: torch.Generator) -> torch.Tensor:
        """``[samples, *shape]`` Sum-of-Gamma noise (k = subset size)."""
        with self.timer("noise"):
            return sum_of_gamma(
                (samples, *shape), k=float(self.settings.k),
                num_terms=self.settings.noise_terms, generator=generator,
            )  # fmt: skip

    @abc.abstractmethod
    def sample(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, m, n]`` scores -> ``[S, B, m, n]`` training codes with the method's gradient."""

    def after_backward(self) -> None:  # noqa: B027 (a hook: most methods keep no state)
        """Update any estimator state from the last backward (AIMLE's beta)."""

    def diagnostics(self) -> dict[str, float]:
        """Values worth logging once per epoch (AIMLE: beta)."""
        return {}


class ImplicitMLE(LatentMethod):
    """``imle``: see the module docstring."""

    name = "imle"

    def sample(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = self.noise(theta.shape, self.settings.samples, generator)
        tau = self.temperature
        return imle(
            theta, noise, self.solver, lam=self.settings.lam, temperature=tau,
            target_temperature=tau,
        )  # fmt: skip


class CentralIMLE(LatentMethod):
    """``imle_central``: see the module docstring."""

    name = "imle_central"

    def sample(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = self.noise(theta.shape, self.settings.samples, generator)
        tau = self.temperature
        return imle_central(
            theta, noise, self.solver, lam=self.settings.lam, temperature=tau,
            target_temperature=tau,
        )  # fmt: skip


class AdaptiveIMLE(LatentMethod):
    """``aimle``: see the module docstring; its ``[beta, ema]`` state lives here between steps."""

    name = "aimle"

    def __init__(self, settings: MethodSettings, timer: Timer) -> None:
        super().__init__(settings, timer)
        self.state = aimle_state(beta=settings.aimle_beta).requires_grad_()

    def sample(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = self.noise(theta.shape, self.settings.samples, generator)
        tau = self.temperature
        return aimle(
            theta, noise, self.solver, self.state, temperature=tau, target_temperature=tau,
            central=True,
        )  # fmt: skip

    def after_backward(self) -> None:
        self.state = aimle_update(
            self.state.detach(), self.state.grad, target=self.settings.aimle_target,
            step=self.settings.aimle_step,
        ).requires_grad_()  # fmt: skip

    def diagnostics(self) -> dict[str, float]:
        return {"aimle_beta": float(self.state[0].detach())}


class StraightThrough(LatentMethod):
    """``ste``: see the module docstring."""

    name = "ste"

    def sample(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = self.noise(theta.shape, self.settings.samples, generator)
        return ste(theta, noise, self.solver, temperature=self.temperature)


class RelaxedTopK(LatentMethod):
    """``relaxed_topk``: see the module docstring."""

    name = "relaxed_topk"

    def sample(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = self.noise(theta.shape, self.settings.samples, generator)
        scores = theta / self.temperature + noise  # [S, B, m, n]
        return relaxed_topk(scores, self.settings.k, self.settings.relax_temperature)


class Simple(LatentMethod):
    """``simple``: see the module docstring."""

    name = "simple"

    def sample(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with self.timer("noise"):
            uniforms = torch.rand(
                (self.settings.samples, *theta.shape), generator=generator, dtype=theta.dtype
            )
        return simple(theta / self.temperature, uniforms, self.settings.k)


# The registry: the command's --methods choices, in this order.
METHODS: dict[str, type[LatentMethod]] = {
    cls.name: cls
    for cls in (ImplicitMLE, AdaptiveIMLE, CentralIMLE, StraightThrough, RelaxedTopK, Simple)
}


def make_method(name: str, settings: MethodSettings, timer: Timer) -> LatentMethod:
    """The registered method ``name`` with its settings.

    Raises:
        ValueError: an unknown ``name``.
    """
    if name not in METHODS:
        raise ValueError(f"method: expected one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name](settings, timer)
