"""Linear assignment (bipartite matching): ``z = argmax <theta, z>`` over matchings that cover the
smaller side, by `scipy.optimize.linear_sum_assignment`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

__all__ = ["Assignment"]


@dataclass(frozen=True)
class Assignment:
    """The linear assignment maximiser over ``[n, m]`` score matrices as a `Solver`.

    ``z = argmax_z <theta, z>`` over 0/1 matrices ``z: [n, m]`` with at most one 1 in each row and
    each column and exactly ``min(n, m)`` ones: every row is matched when ``n <= m``, every column
    when ``n >= m`` (a perfect matching of the smaller side; for ``n = m`` a permutation matrix).
    Negative scores are therefore still matched when a pair must be formed. Solved exactly, one
    instance at a time, by `scipy.optimize.linear_sum_assignment(theta, maximize=True)` (a
    shortest-augmenting-path method). A NumPy-backend solver (``event_ndim = 2``): any leading
    dims and vmapped dims arrive folded into ``[N, n, m]``.

    * **Forbidden pairs.** A ``-inf`` score forbids its pair. An instance where no matching of the
      smaller side avoids every forbidden pair is refused with a ValueError naming it; so is
      ``+inf`` (it has no meaning for a maximiser that must stay finite).
    * **Ties.** Deterministic: among optimal matchings, the one scipy's algorithm returns. It is a
      function of the instance's scores alone (the same in any batch, position or vmap), but not a
      simple ordering rule; only the optimal value is guaranteed.

    Example:
        >>> import torch, imle_fn
        >>> theta = torch.tensor([[[1.0, 5.0], [4.0, 3.0]]])
        >>> imle_fn.map_solve(theta, imle_fn.Assignment())
        tensor([[[0., 1.],
                 [1., 0.]]])

    Raises:
        ValueError: when called, ``+inf`` scores, or an instance whose ``-inf`` (forbidden)
            pairs leave no matching of the smaller side (the message names the instance).

    References:
        Kuhn, "The Hungarian method for the assignment problem", Naval Research Logistics
        Quarterly 2, 1955; Crouse, "On implementing 2D rectangular assignment algorithms", IEEE
        Transactions on Aerospace and Electronic Systems 52(4), 2016 (scipy's algorithm).
    """

    event_ndim: ClassVar[int] = 2
    backend: ClassVar[Literal["numpy"]] = "numpy"

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """``[N, n, m]`` scores -> ``[N, n, m]`` 0/1 matchings (same dtype)."""
        from scipy.optimize import linear_sum_assignment  # imported on first use: ~0.3 s

        N = theta.shape[0]
        plus = np.isposinf(theta).reshape(N, -1).any(axis=1)
        if plus.any():
            raise ValueError(f"theta: +inf score at instance {int(plus.argmax())} (of {N})")
        z = np.zeros(theta.shape, dtype=theta.dtype)
        for i in range(N):
            try:
                rows, cols = linear_sum_assignment(theta[i], maximize=True)
            except ValueError as err:  # scipy: "cost matrix is infeasible"
                raise ValueError(
                    f"theta: instance {i} (of {N}) has no matching of its smaller side that avoids"
                    f" the -inf (forbidden) pairs ({err})"
                ) from None
            z[i, rows, cols] = 1
        return z
