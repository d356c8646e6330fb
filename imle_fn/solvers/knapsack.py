"""0/1 knapsack: ``z = argmax <theta, z>`` over ``z in {0, 1}^n`` with ``<w, z> <= C``, exactly.

Integer weights and capacities, solved by dynamic programming over capacities (the Numba kernel
`imle_fn._kernels.knapsack`, ``O(n C)`` per instance, the batch spread over Numba's threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from imle_fn._kernels import knapsack
from imle_fn.core.checks import check_int_array
from imle_fn.solvers._instances import ValueSemantics, check_rows, instance_name

__all__ = ["MAX_TABLE", "Knapsack"]

# The largest DP table (items x (capacity + 1) cells) one instance may need: 2**28 one-byte cells.
MAX_TABLE = 1 << 28


@dataclass(frozen=True, eq=False)
class Knapsack(ValueSemantics):
    """The 0/1 knapsack maximiser ``argmax_z <theta, z>`` s.t. ``<weights, z> <= capacity`` as a `Solver`.

    Exact: dynamic programming over integer capacities (Bellman's recursion), float64 values.
    A NumPy-backend solver (``event_ndim = 1``): it receives ``[N, n]`` scores on the CPU.

    * **Scores.** Only items with a positive score are ever taken (a maximiser gains nothing from
      an item of score <= 0). ``-inf`` scores mark items that are never taken; ``+inf`` is refused.
    * **Weights.** Whole numbers >= 0 (an integer dtype, or floats such as ``3.0``). Non-integer
      weights are refused with a ValueError rather than rounded: rescale them yourself (e.g.
      ``Knapsack((w * 100).round(), (capacity * 100) // 1)``), so that the problem solved exactly is
      the one you chose. The table has ``n * (C' + 1)`` cells, ``C'`` the capacity capped at the
      total weight of the positive-score items that fit; more than ``MAX_TABLE`` (2**28) is refused.
    * **Per-instance data.** ``weights: [*batch, n]`` and ``capacity: [*batch]`` (or an int) are
      broadcast against each other to one batch shape of ``B`` entries; instance ``i`` of the
      ``[N, n]`` batch the solver receives uses entry ``i % B`` (row-major). So scores
      ``[*samples, *batch, n]`` line up with the data for any sample dims (the noise samples of an
      estimator, a `torch.func.vmap` over samples), and ``N`` must be a multiple of ``B``. A
      `vmap` over the *batch* dims themselves moves them in front of the sample dims, where they no
      longer line up: vmap over samples, or give the solver one shared instance (``B = 1``).
    * **Ties.** Deterministic: among optimal selections, the items are decided from the last to
      the first and an item is left out whenever an optimal selection without it exists. So an item
      of score 0 is never taken and, of two interchangeable items, the lower index is taken (as in
      `TopK`). The selection depends only on the instance's scores and data, never on its
      position in the batch or the thread count.
    * **Equality.** By value (see `imle_fn.solvers._instances`): ``weights`` and ``capacity`` are
      stored as read-only int64 NumPy copies, with the broadcast batch shape.

    Attributes:
        weights: ``[*batch, n]`` non-negative integer item weights.
        capacity: ``[*batch]`` non-negative integer capacities (``[]`` for one shared capacity).

    Example:
        >>> import torch, imle_fn
        >>> solver = imle_fn.Knapsack(weights=[3, 4, 2], capacity=5)
        >>> imle_fn.map_solve(torch.tensor([[4.0, 5.0, 3.0], [1.0, -2.0, 0.0]]), solver)
        tensor([[1., 0., 1.],
                [1., 0., 0.]])

    Raises:
        TypeError: ``weights`` or ``capacity`` are not integers (bools, strings, ...).
        ValueError: negative or fractional entries, ``weights`` without an item dim, shapes that do
            not broadcast, an empty batch; when called: scores whose item count differs from the
            weights', ``N`` not a multiple of ``B``, ``+inf`` scores, or a table beyond
            ``MAX_TABLE`` (each naming the instance).

    References:
        Bellman, "Dynamic Programming", Princeton University Press, 1957 (the 0/1 knapsack
        recursion); Kellerer, Pferschy and Pisinger, "Knapsack Problems", Springer, 2004, ch. 2.
    """

    weights: Any
    capacity: Any
    event_ndim: ClassVar[int] = 1
    backend: ClassVar[Literal["numpy"]] = "numpy"

    def __post_init__(self) -> None:
        weights = check_int_array("weights", self.weights, min_ndim=1)
        capacity = check_int_array("capacity", self.capacity)
        try:
            batch = np.broadcast_shapes(weights.shape[:-1], capacity.shape)
        except ValueError:
            raise ValueError(
                f"weights, capacity: batch shapes {weights.shape[:-1]} (weights [*batch, n]) and"
                f" {capacity.shape} (capacity [*batch]) do not broadcast"
            ) from None
        if 0 in batch:
            raise ValueError(f"weights, capacity: empty batch shape {batch}")
        weights = np.broadcast_to(weights, (*batch, weights.shape[-1])).copy()
        capacity = np.broadcast_to(capacity, batch).copy()
        weights.flags.writeable = False
        capacity.flags.writeable = False
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "capacity", capacity)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The data's batch shape (``()`` for one shared instance)."""
        return tuple(self.capacity.shape)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """``[N, n]`` scores -> ``[N, n]`` 0/1 selections (float64)."""
        N, n = theta.shape
        batch = self.batch_shape
        B = check_rows(N, batch, "Knapsack")
        weights = self.weights.reshape(B, -1)  # [B, n]
        if weights.shape[1] != n:
            raise ValueError(
                f"theta: Knapsack has weights for {weights.shape[1]} items, the scores have {n}"
            )
        scores = np.array(theta, dtype=np.float64)  # [N, n], a writable copy (one Numba signature)
        plus = np.isposinf(scores).any(axis=1)
        if plus.any():
            i = int(plus.argmax())
            raise ValueError(f"theta: +inf score at {instance_name(i, N, batch)}")
        rows = np.arange(N) % B
        given = self.capacity.reshape(B)[rows]  # [N]
        w = weights[rows]  # [N, n]
        # The total weight of the items that can be taken (positive score, weight <= capacity)
        # bounds the useful capacity; summed in float64 (no overflow), cast after the size check.
        fits = (scores > 0) & (w <= given[:, None])
        useful = np.where(fits, w, 0).sum(axis=1, dtype=np.float64)  # [N]
        capacity = np.minimum(given, useful)  # [N]
        cells = n * (capacity + 1.0)
        if (cells > MAX_TABLE).any():
            i = int(cells.argmax())
            raise ValueError(
                f"capacity: the dynamic-programming table of {instance_name(i, N, batch)} would"
                f" have {int(cells[i])} cells (n = {n}, capacity {int(given[i])}, of which"
                f" {int(capacity[i])} can be used: the weight of the items that fit), more than"
                f" {MAX_TABLE}: scale the weights and the capacity down"
            )
        return knapsack.solve(np.ascontiguousarray(scores), weights, capacity.astype(np.int64))
