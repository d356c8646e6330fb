"""The reference example's 16x16 map, its flat twin and the Hamming loss of the reference's learning example."""

from __future__ import annotations

import torch

__all__ = ["MAP_SIZE", "WALL", "WEIGHT", "flat_map", "reference_map", "sample_mean_hamming"]

MAP_SIZE = 16
"""Height and width of the reference map."""
WEIGHT = -1.0
"""Score of an ordinary cell (cost 1 for the shortest-path solver, which minimises ``-theta``)."""
WALL = -100.0
"""Score of a wall cell (cost 100)."""


def reference_map(
    *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return the reference's map: weights -1 everywhere and -100 on three walls.

    The walls are ``w[1:6, 0:12]``, ``w[8:12, 1:]`` and ``w[14:, 6:10]`` (row, column), exactly as in
    uclnlp/torch-imle's example, so the shortest path from the top-left to the bottom-right corner
    snakes right, left and right again.

    Args:
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        theta: [16, 16] scores (higher is preferred).
    """
    theta = torch.full((MAP_SIZE, MAP_SIZE), WEIGHT, dtype=dtype, device=device)
    theta[1:6, 0:12] = WALL
    theta[8:12, 1:] = WALL
    theta[14:, 6:10] = WALL
    return theta


def flat_map(
    *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return the flat map of the reference example's "Gradients" section: every weight equal to `WEIGHT`.

    Returns:
        theta: [16, 16] scores, all -1.
    """
    return torch.full((MAP_SIZE, MAP_SIZE), WEIGHT, dtype=dtype, device=device)


def sample_mean_hamming(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference's loss ``(z * (1 - y) + (1 - z) * y).mean(0).sum()``, per map.

    Args:
        z: [S, *batch, H, W] sampled paths (0/1 indicators); the leading dim holds the S samples.
        y: [H, W] gold path.

    Returns:
        [*batch] the number of cells where a sampled path and the gold path disagree, averaged over
        the S samples (a scalar without batch dims, exactly the reference's value). Its cotangent for
        each sample is ``(1 - 2 y) / S``.
    """
    if y.dim() != 2 or z.dim() < 3 or z.shape[-2:] != y.shape:
        raise ValueError(
            f"z, y: expected z of shape [S, *batch, H, W] and y of shape [H, W], got z "
            f"{list(z.shape)} and y {list(y.shape)}"
        )
    return (z * (1 - y) + (1 - z) * y).mean(0).sum((-2, -1))
