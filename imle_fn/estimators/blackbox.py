"""Differentiable blackbox (DBB; Vlastelica et al., ICLR 2020) in the library's score convention.

DBB is stated for a cost MINIMISER ``y(w) = argmin_y <w, y>``: with ``w' = w + lam * dL/dy`` and
``y' = y(w')`` the gradient is ``dL/dw = -(y(w) - y') / lam``. This library passes scores
``theta = -w`` to a maximiser, so ``MAP(theta) = y(w)`` and, substituting,

    ``theta' = theta - lam * dz``,  ``z' = MAP(theta')``,  ``dtheta = -dL/dw = (z - z') / lam``,

which is exactly noise-free I-MLE (``alpha = 1``) -- the two methods coincide here; only the cost
clamp differs. ``clamp_costs=True`` applies DBB's ``w' = max(w + lam * dz, 0)`` for solvers that need
non-negative costs (Dijkstra), i.e. ``theta' = min(theta - lam * dz, 0)``. No noise is used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from imle_fn.core.checks import check_hyper, check_positive
from imle_fn.core.contract import SolverLike
from imle_fn.core.wiring import Estimator, Saved, Solve, estimate, reduce_to_theta

__all__ = ["DBB", "dbb", "dbb_vjp"]


def dbb_vjp(
    dz: torch.Tensor,
    theta: torch.Tensor,
    z: torch.Tensor,
    solve: Any,
    *,
    lam: float = 1.0,
    clamp_costs: bool = False,
) -> torch.Tensor:
    """The DBB VJP in score form: ``(z - MAP(theta - lam * dz)) / lam``.

    Args:
        dz: ``theta.shape`` (or broadcast) cotangent of ``z``.
        theta: ``[*batch, *event]`` scores (``= -costs``).
        z: ``MAP(theta)`` from the forward.
        solve: ``x -> MAP(x)``.
        lam: interpolation step (> 0).
        clamp_costs: clamp the target costs at 0 (target scores at 0 from above).

    Returns:
        ``theta.shape`` gradient.

    References:
        Vlastelica, Paulus, Musil, Martius, Rolinek, "Differentiation of Blackbox Combinatorial
        Solvers", ICLR 2020 (arXiv:1912.02175).
    """
    target = theta.detach() - lam * dz
    if clamp_costs:
        target = target.clamp_max(0.0)
    return reduce_to_theta((z - solve(target)) / lam, theta, None)


@dataclasses.dataclass(frozen=True)
class DBB(Estimator):
    """DBB's hyper-parameters (see `dbb`)."""

    name: ClassVar[str] = "dbb"
    checks: ClassVar[dict[str, Callable[[str, object], float]]] = {"lam": check_positive}
    lam: float = 1.0
    clamp_costs: bool = False

    def forward(
        self, theta: torch.Tensor, noise: torch.Tensor | None, solve: Solve
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = solve(theta)
        return z, z.new_empty(0)

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        return dbb_vjp(
            dout, saved.theta, saved.out, saved.solve, lam=self.lam, clamp_costs=self.clamp_costs
        )


def dbb(
    theta: torch.Tensor,
    solver: SolverLike,
    *,
    lam: float | torch.Tensor = 1.0,
    clamp_costs: bool = False,
    event_ndim: int | None = None,
) -> torch.Tensor:
    """MAP states ``z = MAP(theta)`` with the blackbox-backprop gradient (see the module docstring).

    Args:
        theta: ``[*batch, *event]`` scores (maximised; for a cost ``w`` pass ``-w``, or use a solver
            that negates, such as `imle_fn.GridShortestPath`).
        solver: any `imle_fn.Solver`.
        lam: interpolation step (> 0).
        clamp_costs: clamp the target's costs at 0 (``theta' = min(theta - lam * dz, 0)``).
        event_ndim: trailing dims of one instance; defaults to ``solver.event_ndim``.

    Returns:
        ``[*batch, *event]`` MAP states.

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
        >>> z = imle_fn.dbb(theta, imle_fn.TopK(1), lam=1.0)
        >>> z.detach()
        tensor([[0., 1.]])
        >>> (z * torch.tensor([[0.0, 1.0]])).sum().backward()  # target MAP([0, -0.5]) = [1, 0]
        >>> theta.grad
        tensor([[-1.,  1.]])

    References:
        Vlastelica, Paulus, Musil, Martius, Rolinek, "Differentiation of Blackbox Combinatorial
        Solvers", ICLR 2020 (arXiv:1912.02175).
    """
    estimator = DBB(check_hyper("lam", lam, check_positive), bool(clamp_costs))
    return estimate(estimator, theta, None, solver, event_ndim)
