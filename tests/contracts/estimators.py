"""Every public estimator and loss behind one signature, and solvers of every kind, for the contract
tests: ``run(name, theta, noise, solver) -> out`` where ``out`` is what a loss is built from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from imle_fn.core.contract import as_solver
from imle_fn.estimators.adaptive import aimle
from imle_fn.estimators.blackbox import dbb
from imle_fn.estimators.central import imle_central
from imle_fn.estimators.fenchel_young import fenchel_young_loss
from imle_fn.estimators.implicit_mle import imle
from imle_fn.estimators.perturbed_optimizer import perturbed
from imle_fn.estimators.straight_through import ste
from imle_fn.solvers.topk import topk_map

__all__ = [
    "NAMES",
    "NEEDS_NOISE",
    "NOISE_FREE",
    "mutating_torch_topk",
    "numpy_topk",
    "run",
    "sign_solver",
    "target_of",
]

Run = Callable[..., torch.Tensor]

# fenchel_young_loss takes a target: a fixed 0/1 state, the first k entries (broadcast over batch).
_Y_K = 2


def target_of(theta: torch.Tensor, k: int = _Y_K) -> torch.Tensor:
    """The Fenchel-Young target used by `run`: ones on the last ``k`` entries of the last dim,
    except on infinite scores (a target on a masked item or a wall is infeasible: infinite loss)."""
    y = torch.zeros(theta.shape[-1:], dtype=theta.dtype, device=theta.device)
    if theta.ndim and k:
        y[-k:] = 1.0
    return torch.where(torch.isfinite(theta), y, theta.new_zeros(()))


_RUNS: dict[str, Run] = {
    "imle": lambda t, e, s, y=None: imle(t, e, s, lam=0.7),
    "aimle": lambda t, e, s, y=None: aimle(t, e, s, beta=0.6),
    "aimle_central_pooled": lambda t, e, s, y=None: aimle(
        t, e, s, beta=0.6, central=True, norm="pooled"
    ),
    "imle_central": lambda t, e, s, y=None: imle_central(t, e, s, lam=0.7),
    "dbb": lambda t, e, s, y=None: dbb(t, s, lam=0.7),
    "perturbed": lambda t, e, s, y=None: perturbed(t, e, s, sigma=0.8, control_variate=True),
    "ste": lambda t, e, s, y=None: ste(t, e, s),
    "fenchel_young_loss": lambda t, e, s, y=None: fenchel_young_loss(
        t, target_of(t) if y is None else y, e, s, sigma=0.8
    ),
}
NAMES = list(_RUNS)
NEEDS_NOISE = {"perturbed"}  # no noise-free form
NOISE_FREE = {"dbb"}  # takes no noise


def run(
    name: str,
    theta: torch.Tensor,
    noise: torch.Tensor | None,
    solver: Any,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """The estimator or loss ``name`` on ``(theta, noise, solver)`` (dbb ignores ``noise``; only
    fenchel_young_loss uses the target ``y``, default `target_of`)."""
    return _RUNS[name](theta, noise, solver, y)


def numpy_topk(k: int) -> Callable[[np.ndarray], np.ndarray]:
    """A user's NumPy top-k over the last dim (stable ties: the lower index wins)."""

    def solve(x: np.ndarray) -> np.ndarray:
        z = np.zeros_like(x)
        order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
        np.put_along_axis(z, order, 1.0, axis=-1)
        return z

    return solve


def mutating_torch_topk(k: int) -> Any:
    """A torch top-k that scales its input IN PLACE first (same maximiser, mutated input)."""
    return as_solver(lambda x: topk_map(x.mul_(2.0), k), event_ndim=1, backend="torch")


def sign_solver(backend: str) -> Any:
    """event_ndim = 0: each scalar is its own instance, ``z = 1[theta > 0]``."""
    if backend == "torch":
        return as_solver(lambda x: (x > 0).to(x.dtype), event_ndim=0, backend="torch")
    return as_solver(lambda x: (x > 0).astype(x.dtype), event_ndim=0)
