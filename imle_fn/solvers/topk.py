"""Top-k (k-subset) MAP solver in pure torch.

The k-subset family over ``n`` items has states ``z in {0, 1}^n`` with exactly ``k`` ones and
``p(z; theta) = exp(<theta, z> - A(theta))``. Its MAP state is the indicator of the ``k`` largest
scores (`TopK`). The family's exact log-partition, marginals and samples are in
`imle_fn.estimators.k_subset`, `imle_fn.estimators.k_subset_sampling` and
`imle_fn.estimators.simple_estimator` (SIMPLE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from imle_fn.core.checks import check_int

__all__ = ["TopK", "topk_map"]


def _subset_size(k: object, n: int | None = None) -> int:
    """The subset size ``k`` as an int in ``[0, n]``."""
    k = check_int("k", k, minimum=0)
    if n is not None and k > n:
        raise ValueError(f"k: expected >= 0 and <= n = {n}, got {k}")
    return k


def topk_map(theta: torch.Tensor, k: int) -> torch.Tensor:
    """Indicator of the ``k`` largest entries along the last dim (ties: the lower index wins).

    Args:
        theta: ``[*batch, n]`` scores, floating point.
        k: subset size, ``0 <= k <= n``.

    Returns:
        ``[*batch, n]`` 0/1 tensor with exactly ``k`` ones per row, dtype and device of ``theta``.
    """
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
        raise TypeError(f"theta: expected a floating-point tensor, got {type(theta).__name__}")
    if theta.ndim < 1:
        raise ValueError(
            f"theta: expected at least 1 dim [*batch, n], got shape {tuple(theta.shape)}"
        )
    k = _subset_size(k, theta.shape[-1])
    # A stable descending sort puts equal scores in index order: deterministic tie-breaking.
    order = torch.sort(theta, dim=-1, descending=True, stable=True).indices  # [*batch, n]
    ones = torch.ones_like(theta[..., :k])  # [*batch, k]
    return torch.zeros_like(theta).scatter(-1, order[..., :k], ones)


@dataclass(frozen=True)
class TopK:
    """The k-subset maximiser ``z = argmax_{z in {0,1}^n, sum z = k} <theta, z>`` as a `Solver`.

    Pure torch (``backend="torch"``): it runs on the scores' device, composes with `torch.func.vmap`
    when called directly, and breaks ties deterministically (equal scores: the lower index is chosen).

    Attributes:
        k: subset size; each instance must have ``n >= k`` items.

    Example:
        >>> import torch, imle_fn
        >>> imle_fn.map_solve(torch.tensor([[0.3, -1.0, 2.0, 0.3]]), TopK(2))
        tensor([[1., 0., 1., 0.]])

    Raises:
        TypeError: ``k`` is not an int.
        ValueError: ``k < 0``; when called, ``k`` larger than the number of items ``n``.
    """

    k: int
    event_ndim: int = 1
    backend: Literal["torch"] = "torch"

    def __post_init__(self) -> None:
        _subset_size(self.k)
        if self.event_ndim != 1:
            raise ValueError(f"event_ndim: TopK works on vectors (1), got {self.event_ndim}")
        if self.backend != "torch":
            raise ValueError(f"backend: TopK is a torch solver, got {self.backend!r}")

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """``[N, n]`` scores -> ``[N, n]`` k-hot MAP states."""
        return topk_map(theta, self.k)
