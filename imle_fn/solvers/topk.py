"""Top-k (k-subset) MAP solver in pure torch.

The k-subset family over ``n`` items has states ``z in {0, 1}^n`` with exactly ``k`` ones and
``p(z; theta) = exp(<theta, z> - A(theta))``. Its MAP state is the indicator of the ``k`` largest
scores (`TopK`). The family's exact log-partition, marginals and samples are in
`imle_fn.estimators.k_subset`, `imle_fn.estimators.k_subset_sampling` and
`imle_fn.estimators.simple_estimator` (SIMPLE).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from imle_fn.core.checks import check_int, check_int_array, is_int
from imle_fn.solvers._instances import ValueSemantics, check_rows, instance_name

__all__ = ["TopK", "topk_map"]


def _subset_size(k: object, n: int | None = None) -> int:
    """The subset size ``k`` as an int in ``[0, n]``."""
    k = check_int("k", k, minimum=0)
    if n is not None and k > n:
        raise ValueError(f"k: expected >= 0 and <= n = {n}, got {k}")
    return k


SubsetSize = int | torch.Tensor | np.ndarray | Sequence[int]
"""A k: an int, or integers (a tensor, an array or a sequence) for one k per instance."""


def _instance(flat_index: int, batch: tuple[int, ...]) -> str:
    """``theta[i, j]`` for the instance at ``flat_index`` (row-major) of a batch shape."""
    if not batch:
        return "theta"
    index = ", ".join(str(int(j)) for j in np.unravel_index(flat_index, batch))
    return f"theta[{index}]"


def _check_scores(theta: object) -> torch.Tensor:
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
        raise TypeError(f"theta: expected a floating-point tensor, got {type(theta).__name__}")
    if theta.ndim < 1:
        raise ValueError(
            f"theta: expected at least 1 dim [*batch, n], got shape {tuple(theta.shape)}"
        )
    return theta


def topk_map(theta: torch.Tensor, k: SubsetSize) -> torch.Tensor:
    """Indicator of the ``k`` largest entries along the last dim (ties: the lower index wins).

    Args:
        theta: ``[*batch, n]`` scores, floating point. ``-inf`` marks items that are never chosen
            (a mask); ``+inf`` items are always chosen.
        k: subset size ``0 <= k <= n``: an int, or integers of a shape broadcastable to ``[*batch]``
            (a tensor, array or sequence: one ``k`` per instance, broadcast as torch broadcasts).

    Returns:
        ``[*batch, n]`` 0/1 tensor with exactly ``k`` ones per row, dtype and device of ``theta``.

    Raises:
        TypeError: ``theta`` is not a floating-point tensor, or ``k`` is not integers.
        ValueError: ``k`` negative, fractional, larger than ``n``, or not broadcastable to the
            batch shape; an instance with fewer than its ``k`` items of score above ``-inf`` (the
            message names the instance; under a direct `torch.func.vmap` its row is NaN instead).

    Example:
        >>> import torch
        >>> topk_map(torch.tensor([[3.0, 1.0, 2.0], [0.0, -float("inf"), 5.0]]), torch.tensor([1, 2]))
        tensor([[1., 0., 0.],
                [1., 0., 1.]])
    """
    theta = _check_scores(theta)
    batch = tuple(theta.shape[:-1])
    if not is_int(k):
        k = check_int_array("k", k)  # checked here: `_topk` trusts int64 arrays (TopK's own)
    return _topk(theta, k, lambda i: _instance(i, batch))


def _topk(theta: torch.Tensor, k: SubsetSize, name_of: Callable[[int], str]) -> torch.Tensor:
    """`topk_map` on checked scores; ``name_of(i)`` names the instance at flat batch index i."""
    batch, n = tuple(theta.shape[:-1]), theta.shape[-1]
    # A stable descending sort puts equal scores in index order: deterministic tie-breaking, and
    # -inf (masked) items last.
    values, order = torch.sort(theta, dim=-1, descending=True, stable=True)  # [*batch, n]
    if is_int(k) or (isinstance(k, torch.Tensor) and k.ndim == 0 and not k.is_floating_point()):
        size = _subset_size(int(k), n)
        ones = torch.ones_like(theta[..., :size])  # [*batch, k]
        z = torch.zeros_like(theta).scatter(-1, order[..., :size], ones)
        if size == 0:
            return z
        return _enough(z, values[..., size - 1 : size], name_of, lambda i: size)
    per = k if isinstance(k, np.ndarray) and k.dtype == np.int64 else check_int_array("k", k)
    if per.size and per.max() > n:
        index = tuple(int(j) for j in np.argwhere(per > n)[0])
        raise ValueError(f"k: expected <= n = {n}, got {int(per[index])} at index {index}")
    try:
        per = np.broadcast_to(per, batch)
    except ValueError:
        raise ValueError(
            f"k: expected a shape broadcastable to the batch shape {batch}, got {per.shape}"
        ) from None
    k_t = torch.tensor(per, dtype=torch.int64, device=theta.device)  # [*batch], a copy
    keep = torch.arange(n, device=theta.device) < k_t[..., None]  # [*batch, n]: first k_i sorted
    kth = values.gather(-1, (k_t - 1).clamp(min=0)[..., None])  # [*batch, 1]: k-th largest
    kth = torch.where(k_t[..., None] > 0, kth, math.inf)  # k = 0 needs nothing
    flat_k = per.reshape(-1)
    z = torch.zeros_like(theta).scatter(-1, order, keep.to(theta.dtype))
    return _enough(z, kth, name_of, lambda i: int(flat_k[i]))


def _enough(
    z: torch.Tensor,
    kth: torch.Tensor,
    name_of: Callable[[int], str],
    k_of: Callable[[int], int],
) -> torch.Tensor:
    """``z``, after checking that no instance's k-th largest score is ``-inf`` (masked).

    Raises a ValueError naming the first such instance; under a direct `torch.func.vmap` (no
    data-dependent check possible) such instances come back as NaN instead, never as a state
    with a masked item in it.
    """
    short = kth == -math.inf  # [*batch, 1]
    if torch._C._functorch.is_functorch_wrapped_tensor(short):
        return torch.where(short, math.nan, z)
    if bool(short.any()):
        i = int(short.reshape(-1).int().argmax())
        raise ValueError(
            f"{name_of(i)}: fewer than k = {k_of(i)} items with a score above -inf"
            " (masked items are never chosen)"
        )
    return z


@dataclass(frozen=True, eq=False)
class TopK(ValueSemantics):
    """The k-subset maximiser ``z = argmax_{z in {0,1}^n, sum z = k} <theta, z>`` as a `Solver`.

    Pure torch (``backend="torch"``): it runs on the scores' device, composes with `torch.func.vmap`
    when called directly, and breaks ties deterministically (equal scores: the lower index is chosen).

    * **Masks.** ``-inf`` scores mark items that are never chosen; an instance with fewer than
      ``k`` items above ``-inf`` is refused with a ValueError naming it (called directly under
      `torch.func.vmap`, where no data-dependent check can run, its state is NaN instead).
      ``-inf`` stays ``-inf`` through `imle_fn.imle`, `imle_fn.imle_central`, `imle_fn.dbb` and
      `imle_fn.ste` (masked items get no I-MLE gradient); `imle_fn.aimle` (its step uses
      ``||theta||``) and `imle_fn.fenchel_young_loss` (its value multiplies ``theta`` by states)
      need finite scores: mask with a large negative finite score there.
    * **Per-instance k.** ``k`` may be integers of shape ``[*batch]`` (a tensor, array or
      sequence): instance ``i`` of the ``[N, n]`` batch the solver receives uses
      ``k.flatten()[i % B]``, ``B = k.numel()`` (the rule of `imle_fn.Knapsack`): scores
      ``[*samples, *batch, n]`` line up with ``k`` for any sample dims, and ``N`` must be a
      multiple of ``B``. A vmap over the batch dims themselves moves them in front of the sample
      dims, where they no longer line up.
    * **Equality.** ``TopK(2) == TopK(2)`` and both hash alike, as before; a per-instance ``k`` is
      stored as a read-only int64 NumPy copy and compared and hashed by value too (so the solver
      registry gives equal solvers one handle). A 0-d ``k`` is stored as an int.

    Attributes:
        k: subset size (an int), or one size per instance (given as integers of shape ``[*batch]``,
            stored as a read-only int64 array); each instance needs ``n >= k``.

    Example:
        >>> import torch, imle_fn
        >>> imle_fn.map_solve(torch.tensor([[0.3, -1.0, 2.0, 0.3]]), TopK(2))
        tensor([[1., 0., 1., 0.]])
        >>> theta = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, -float("inf")]])
        >>> imle_fn.map_solve(theta, TopK(torch.tensor([1, 2])))  # k = 1, then k = 2
        tensor([[0., 0., 1.],
                [1., 1., 0.]])

    Raises:
        TypeError: ``k`` is not an int or integers.
        ValueError: ``k < 0`` or fractional, or an empty per-instance ``k``; when called, ``k``
            larger than the number of items ``n``, fewer than ``k`` unmasked items in an
            instance, or ``N`` not a multiple of a per-instance ``k``'s size.
    """

    k: SubsetSize
    event_ndim: int = 1
    backend: Literal["torch"] = "torch"

    def __post_init__(self) -> None:
        k = self.k
        if isinstance(k, (torch.Tensor, np.ndarray, list, tuple)):
            per = check_int_array("k", k)
            if per.size == 0:
                raise ValueError("k: expected at least one subset size, got an empty array")
            # A 0-d tensor or array is one shared size.
            object.__setattr__(self, "k", int(per) if per.ndim == 0 else per)
        else:
            object.__setattr__(self, "k", _subset_size(k))
        if self.event_ndim != 1:
            raise ValueError(f"event_ndim: TopK works on vectors (1), got {self.event_ndim}")
        if self.backend != "torch":
            raise ValueError(f"backend: TopK is a torch solver, got {self.backend!r}")

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """``[N, n]`` scores -> ``[N, n]`` k-hot MAP states (any leading dims when called directly)."""
        theta = _check_scores(theta)
        n = theta.shape[-1]
        N = math.prod(theta.shape[:-1])
        if not isinstance(self.k, np.ndarray):
            return _topk(theta, self.k, lambda i: f"theta: instance {i} (of {N})")
        batch = tuple(self.k.shape)
        B = check_rows(N, batch, "TopK")
        view = theta.reshape(N // B, *batch, n)  # row-major: instance i uses k.flatten()[i % B]
        z = _topk(view, self.k, lambda i: f"theta: {instance_name(i, N, batch)}")
        return z.reshape(theta.shape)
