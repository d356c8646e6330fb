"""The perturbed Fenchel-Young loss (Berthet et al., NeurIPS 2020) for a target state ``y``.

``loss(theta; y) = mean_s <theta + sigma * eps_s, z_s - y>`` with ``z_s = MAP(theta + sigma * eps_s)``.

Each term is ``max_z <theta_s', z> - <theta_s', y> >= 0`` (``theta_s' = theta + sigma * eps_s``) when
``y`` is a feasible state, and 0 exactly when ``y`` is a MAP state of every perturbed score. Its
expectation is the Fenchel-Young loss ``F_sigma(theta) + sigma * Omega(y) - <theta, y>`` up to a term
that does not depend on ``theta``. By Danskin's theorem its gradient is ``mean_s z_s - y``, the
estimate of ``E[MAP(theta + sigma * eps)] - y``: plain autograd through the linear term gives exactly
that (the solver output is a constant), so the loss composes with every `torch.func` transform.
That gradient is first-order only: differentiating it again raises (the loss's curvature, the
covariance of the perturbed states, is not what autograd would return). Entries with ``z = y`` add
nothing to the loss, also where the score is ``-inf`` (a masked item), so masking an item gives the
loss of the problem without it.
"""

from __future__ import annotations

import torch

from imle_fn.core.checks import check_estimator_inputs, check_hyper_at_run, check_target_states
from imle_fn.core.contract import SolverLike, resolve_solver
from imle_fn.core.solving import map_solve, solver_key
from imle_fn.core.wiring import event_sum, first_order_input, num_sample_dims

__all__ = ["fenchel_young_loss"]


def fenchel_young_loss(
    theta: torch.Tensor,
    y: torch.Tensor,
    noise: torch.Tensor | None,
    solver: SolverLike,
    *,
    sigma: float | torch.Tensor = 1.0,
    event_ndim: int | None = None,
) -> torch.Tensor:
    """Per-instance perturbed Fenchel-Young loss (see the module docstring).

    Args:
        theta: ``[*batch, *event]`` scores (maximised).
        y: ``[*batch, *event]`` (or broadcastable) target states, e.g. 0/1 ground-truth solutions;
            0 on masked items (``-inf`` scores), where a target is infeasible (infinite loss).
        noise: ``[S, *batch, *event]`` (or ``[*batch, *event]``, one sample) noise of any law, or None
            (then the loss is ``<theta, MAP(theta) - y>``, gradient ``MAP(theta) - y``).
        solver: any `imle_fn.Solver`.
        sigma: noise scale (>= 0): a number or a 0-d tensor (under `torch.compile` a new value
            is data, checked when the compiled code runs).
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*batch]`` losses; ``grad_theta loss.sum() = mean_s z_s - y``.

    Raises:
        TypeError: ``theta`` / ``y`` / ``noise`` is not a tensor of the right kind, or ``solver`` is
            not a callable / `imle_fn.Solver`.
        ValueError: ``sigma < 0``; ``y`` not broadcastable to ``theta``; ``noise`` requiring grad,
            of a wrong shape or with zero samples; a meta ``theta``; NaN scores or a bad solver
            output (the message names the instance).
        NotImplementedError: second derivatives (see the module docstring).

    Example:
        >>> import torch, imle_fn
        >>> theta = torch.tensor([[0.0, 0.5, 2.0]], requires_grad=True)
        >>> y = torch.tensor([[1.0, 0.0, 0.0]])
        >>> loss = imle_fn.fenchel_young_loss(theta, y, None, imle_fn.TopK(1))
        >>> loss.detach()  # <theta, MAP(theta) - y> = 2 - 0
        tensor([2.])
        >>> loss.sum().backward()
        >>> theta.grad  # MAP(theta) - y
        tensor([[-1.,  0.,  1.]])

    References:
        Berthet, Blondel, Teboul, Cuturi, Vert, Bach, "Learning with Differentiable Perturbed
        Optimizers", NeurIPS 2020 (arXiv:2002.08676).
    """
    sigma = check_hyper_at_run("sigma", sigma, "nonnegative")
    check_estimator_inputs(theta, noise)
    y = check_target_states(y, theta)
    if noise is not None and noise.device != theta.device:
        raise ValueError(f"noise: expected device {theta.device}, got {noise.device}")
    if torch.compiler.is_compiling():
        _, ndim = solver_key(solver, event_ndim)
    else:
        ndim = resolve_solver(solver, event_ndim).event_ndim
    ns = num_sample_dims(theta, noise)
    scores = first_order_input(theta, "fenchel_young_loss")  # its Hessian is not the loss's
    shifted = scores if noise is None else scores + sigma * noise  # [*sample, *theta.shape]
    z = map_solve(shifted, solver, event_ndim=ndim)
    diff = z - y
    # Entries where z = y add nothing, also where the score is -inf (a masked item): never -inf * 0.
    terms = torch.where(diff != 0, shifted, shifted.new_zeros(())) * diff
    per_sample = event_sum(terms, ndim)  # [*sample, *batch]
    loss = per_sample.mean(dim=tuple(range(ns))) if ns else per_sample
    return loss.to(theta.dtype)
