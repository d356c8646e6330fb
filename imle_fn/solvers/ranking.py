"""Ranking: ``r = argmax <theta, r>`` over the permutations ``r`` of ``0..n-1`` (the permutahedron's
vertices), in pure torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from imle_fn.core.checks import check_floating_tensor

__all__ = ["Ranking", "ranks"]


def ranks(theta: torch.Tensor) -> torch.Tensor:
    """Ranks of the scores along the last dim: the highest score gets ``n - 1``, the lowest 0.

    ``r`` is the permutation of ``0..n-1`` maximising ``<theta, r>`` (rearrangement inequality).
    Ties: of two equal scores, the lower index gets the higher rank, so that
    ``ranks(theta) >= n - k`` is exactly ``topk_map(theta, k)`` (whose ties prefer the lower index).

    Args:
        theta: ``[*batch, n]`` scores, floating point (``-inf`` ranks lowest, ``+inf`` highest).

    Returns:
        ``[*batch, n]`` ranks, dtype and device of ``theta`` (exact integers: float16 holds them
        up to ``n = 2049``, bfloat16 up to ``n = 257``, float32 up to ``n = 2**24 + 1``).

    Raises:
        TypeError: ``theta`` is not a floating-point tensor.
        ValueError: ``theta`` has no dims, or ``n - 1`` is above the largest integer its dtype
            holds exactly (the ranks would not be a permutation).
    """
    check_floating_tensor("theta", theta)
    if theta.ndim < 1:
        raise ValueError(
            f"theta: expected at least 1 dim [*batch, n], got shape {tuple(theta.shape)}"
        )
    n = theta.shape[-1]
    exact = round(2 / torch.finfo(theta.dtype).eps)  # every integer up to this is exact
    if n - 1 > exact:
        raise ValueError(
            f"theta: {n} items need ranks up to {n - 1}, but {theta.dtype} holds integers exactly"
            f" only up to {exact}; rank in float32 or float64 (theta.float())"
        )
    # A stable descending sort puts equal scores in index order: position p gets rank n - 1 - p.
    order = torch.sort(theta, dim=-1, descending=True, stable=True).indices  # [*batch, n]
    values = torch.arange(n - 1, -1, -1, dtype=theta.dtype, device=theta.device)  # [n]
    return torch.zeros_like(theta).scatter(-1, order, values.expand(order.shape))


@dataclass(frozen=True)
class Ranking:
    """The ranking maximiser ``r = argmax_r <theta, r>`` over permutations of ``0..n-1`` as a `Solver`.

    The MAP state of a ranking is the vector of ranks: the highest score gets rank ``n - 1``, the
    lowest rank 0 (the vertex of the permutahedron that maximises ``<theta, r>``, the view of
    blackbox differentiation of rankings). Pure torch (``backend="torch"``, ``event_ndim = 1``): it
    runs on the scores' device and composes with `torch.func.vmap` when called directly.

    Ties: deterministic; of two equal scores the lower index gets the higher rank (consistent with
    `TopK`: ``Ranking()(theta) >= n - k`` is ``TopK(k)(theta)``). See `ranks`.

    Example:
        >>> import torch, imle_fn
        >>> imle_fn.map_solve(torch.tensor([[0.3, -1.0, 2.0, 0.3]]), imle_fn.Ranking())
        tensor([[2., 0., 3., 1.]])

    Raises:
        TypeError, ValueError: when called, as `ranks`.

    References:
        Rolinek, Musil, Paulus, Vlastelica, Michaelis and Martius, "Optimizing rank-based metrics
        with blackbox differentiation", CVPR 2020, arXiv:1912.03500.
    """

    event_ndim: ClassVar[int] = 1
    backend: ClassVar[Literal["torch"]] = "torch"

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """``[N, n]`` scores -> ``[N, n]`` ranks."""
        return ranks(theta)
