"""`perturb`: Perturb-and-MAP's perturbation step, a pure differentiable function."""

from __future__ import annotations

import torch

__all__ = ["perturb"]


def perturb(
    theta: torch.Tensor, noise: torch.Tensor | None, temperature: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """Perturbed scores ``theta + temperature * noise``.

    Args:
        theta: ``[*batch, *event]`` scores.
        noise: ``[*sample, *batch, *event]`` noise (or any shape broadcastable against ``theta``), or
            None for no noise.
        temperature: the noise scale tau: a number, or a 0-d tensor (read as a float eagerly; a
            factor of the graph inside `torch.compile`).

    Returns:
        ``broadcast(noise, theta)`` shaped perturbed scores (``theta`` expanded to that shape when
        the temperature is 0, so infinite scores never meet ``0 * noise``); ``theta`` when ``noise``
        is None.
    """
    if noise is None:
        return theta
    if isinstance(temperature, torch.Tensor):
        if torch.compiler.is_compiling():
            return theta + temperature.to(theta.dtype) * noise
        temperature = temperature.item()
    if temperature == 0.0:
        return theta.expand(torch.broadcast_shapes(noise.shape, theta.shape))
    return torch.add(theta, noise, alpha=temperature)
