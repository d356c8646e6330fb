"""I-MLE: Perturb-and-MAP forward, implicit maximum-likelihood VJP.

Conventions (stated once here, pinned by tests/estimators/test_implicit_mle.py):

* **Sign.** Scores are maximised: ``z = argmax_z <theta, z>``. A cost-minimising solver negates its
  input (`imle_fn.GridShortestPath` does this for you).
* **Target distribution.** ``theta' = alpha * theta - lam * dz`` (the paper's perturbation-based
  implicit differentiation is ``alpha = 1``; the reference torch-imle calls ``lam`` ``beta``).
* **Gradient scale.** ``dtheta = (z - z') / lam`` by default, so its size does not grow with
  ``lam`` and, **for a loss linear in z** (``L = <c, z>``, a cotangent that does not depend on the
  sample), its expectation tends to the gradient of the perturbed model's expected loss,
  ``grad_theta E[<c, z>]``, as ``lam -> 0``. For a loss that is not linear in z it does not: the
  cotangent ``L'(z)`` is taken at each sample and moves each target by a different amount (n = 2,
  k = 1, theta = (1, 0), Gumbel noise, ``L = ||z - b||^2`` with b = (0.5, 0): the true derivative
  in theta_0 is -0.197, the I-MLE limit -0.393). On 0/1 states every loss can be written linearly
  (``||z - b||^2 = <1 - 2b, z> + ||b||^2``) and the form you write decides the cotangent: the
  linear form's limit is the true gradient. With ``divide_by_lam=False`` the gradient is
  ``z - z'``, the reference torch-imle's scale.
* **Samples.** A leading sample dim on ``noise`` (``[S, *theta.shape]``) gives S samples; their
  gradients are AVERAGED (as in the paper and the reference). A sample axis added with
  `torch.func.vmap` is SUMMED instead, as vmap always does: divide by S yourself there.
* The same noise is used in the forward and in the backward (target) MAP call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from imle_fn.core.checks import check_finite, check_hyper, check_nonnegative, check_positive
from imle_fn.core.contract import SolverLike
from imle_fn.core.perturbation import perturb
from imle_fn.core.wiring import (
    Estimator,
    PerturbAndMAP,
    Saved,
    estimate,
    reduce_to_theta,
    scale_scores,
)

__all__ = ["IMLE", "imle", "imle_vjp"]


def imle_vjp(
    dz: torch.Tensor,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    z: torch.Tensor,
    solve: Any,
    *,
    lam: float = 1.0,
    alpha: float = 1.0,
    target_temperature: float = 1.0,
    divide_by_lam: bool = True,
) -> torch.Tensor:
    """The I-MLE vector-Jacobian product.

    ``theta' = alpha * theta - lam * dz``; ``z' = MAP(theta' + target_temperature * noise)``;
    returns the mean over samples of ``(z - z') / lam`` (or of ``z - z'``).

    Args:
        dz: ``[*sample, *theta.shape]`` cotangent of the forward's output.
        theta: ``[*batch, *event]`` scores the forward was called with.
        noise: ``[*sample, *theta.shape]`` (or broadcastable) noise of the forward, or None.
        z: ``[*sample, *theta.shape]`` the forward's MAP states.
        solve: ``x -> MAP(x)``: a `Solve`, or any function of a tensor (e.g. ``partial(map_solve,
            solver=...)``).
        lam: the target's step size lambda (> 0).
        alpha: the target's scale on theta.
        target_temperature: noise temperature of the target MAP call.
        divide_by_lam: divide by ``lam`` (the default convention) or not (reference torch-imle).

    Returns:
        ``theta.shape`` gradient estimate.

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798).
    """
    # Few, fused element-wise ops: each one wakes torch's thread pool next to the solver's.
    scaled = scale_scores(theta.detach(), alpha)  # infinite scores (masks, walls) stay put
    target = torch.add(scaled, dz, alpha=-lam)  # [*sample, *theta.shape]
    z_target = solve(perturb(target, noise, target_temperature))
    grad = reduce_to_theta(z - z_target, theta, noise)  # [*theta.shape]: reduce, then scale
    return grad / lam if divide_by_lam else grad


@dataclasses.dataclass(frozen=True)
class IMLE(PerturbAndMAP, Estimator):
    """I-MLE's hyper-parameters (see `imle`)."""

    name: ClassVar[str] = "imle"
    checks: ClassVar[dict[str, Callable[[str, object], float]]] = {
        "lam": check_positive,
        "alpha": check_finite,
        "temperature": check_nonnegative,
        "target_temperature": check_nonnegative,
    }
    lam: float = 1.0
    alpha: float = 1.0
    temperature: float = 1.0
    target_temperature: float = 1.0
    divide_by_lam: bool = True

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        return imle_vjp(
            dout,
            saved.theta,
            saved.noise,
            saved.out,
            saved.solve,
            lam=self.lam,
            alpha=self.alpha,
            target_temperature=self.target_temperature,
            divide_by_lam=self.divide_by_lam,
        )


def imle(
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
    """Sample MAP states by Perturb-and-MAP; backpropagate with I-MLE.

    Forward: ``z = MAP(theta + temperature * noise)``. Backward: `imle_vjp` (see the module
    docstring for the conventions). Composes with `torch.func` (vmap, grad, vjp, jacrev,
    ``vmap(grad)``), ``.backward()`` and ``torch.compile(fullgraph=True)``; forward-mode AD raises.

    Args:
        theta: ``[*batch, *event]`` scores (higher is preferred).
        noise: None (MAP-MAP, no noise), ``[*batch, *event]`` (or broadcastable) noise, or
            ``[S, *batch, *event]`` for S samples. Draw it with `imle_fn.sum_of_gamma` or
            `imle_fn.gumbel` outside the transformed function.
        solver: a `imle_fn.Solver` (or a plain NumPy callable with ``event_ndim``).
        lam: target step size lambda (> 0).
        alpha: target scale on theta.
        temperature: input noise temperature.
        target_temperature: target noise temperature.
        divide_by_lam: gradient scale convention; False reproduces reference torch-imle.

            The hyper-parameters (``lam``, ``alpha``, the temperatures) are Python numbers,
            NumPy scalars or 0-d tensors. Under `torch.compile` they are data of the compiled
            graph: a new value (an annealed ``lam``) does not recompile after the first change,
            and a 0-d tensor never does (see ``docs/torch-func.md``).
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*sample, *batch, *event]`` sampled MAP states, dtype and device of ``theta``.

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
        >>> theta = torch.zeros(4, 12, 12, requires_grad=True)
        >>> noise = imle_fn.sum_of_gamma((10, 4, 12, 12), k=12.0, generator=torch.Generator().manual_seed(0))
        >>> z = imle_fn.imle(theta, noise, imle_fn.GridShortestPath())  # [10, 4, 12, 12]
        >>> z.sum().backward()

    References:
        Niepert, Minervini, Franceschi, "Implicit MLE: Backpropagating Through Discrete
        Exponential Family Distributions", NeurIPS 2021 (arXiv:2106.01798).
    """
    estimator = IMLE(
        check_hyper("lam", lam, check_positive),
        check_hyper("alpha", alpha, check_finite),
        check_hyper("temperature", temperature, check_nonnegative),
        check_hyper("target_temperature", target_temperature, check_nonnegative),
        bool(divide_by_lam),
    )
    return estimate(estimator, theta, noise, solver, event_ndim)
