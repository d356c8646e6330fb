"""The discrete VAE's networks: an MLP encoder to k-subset scores and an MLP Bernoulli decoder.

The architecture of the I-MLE paper's DVAE (nec-research/tf-imle ``DVAE`` notebook) and of
EdinburghNLP/torch-adaptive-imle's ``DiscreteVAE``: encoder ``D -> 512 -> 256 -> m * n`` and decoder
``m * n -> 256 -> 512 -> D``, ReLU between the linear layers, no activation on the outputs (scores and
pixel logits). Weights are initialised as torch-adaptive-imle does (Xavier-uniform with the ReLU gain,
zero biases), drawn from an explicit generator so that a seed fixes them.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from imle_fn.core.checks import check_int

__all__ = ["DiscreteVAE", "mlp"]


def mlp(sizes: tuple[int, ...], generator: torch.Generator) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (not after the last)."""
    layers: list[nn.Module] = []
    gain = nn.init.calculate_gain("relu")
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            nn.init.xavier_uniform_(linear.weight, gain=gain, generator=generator)
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DiscreteVAE(nn.Module):
    """Encoder ``x [B, D] -> theta [B, m, n]`` (scores of ``m`` k-subset blocks of ``n`` items) and
    decoder ``z [*, m, n] -> [*, D]`` pixel logits.

    Args:
        num_pixels: ``D``.
        blocks: ``m``, the number of latent blocks.
        items: ``n``, the items per block.
        generator: the source of the initial weights.
        hidden: the two hidden widths (encoder ``hidden[0], hidden[1]``; decoder reversed).

    Raises:
        TypeError: a size is not an int.
        ValueError: a size below 1.
    """

    def __init__(
        self,
        num_pixels: int,
        blocks: int,
        items: int,
        generator: torch.Generator,
        hidden: tuple[int, int] = (512, 256),
    ) -> None:
        super().__init__()
        self.num_pixels = check_int("num_pixels", num_pixels, minimum=1)
        self.blocks = check_int("blocks", blocks, minimum=1)
        self.items = check_int("items", items, minimum=1)
        code = self.blocks * self.items
        h1, h2 = (check_int("hidden", h, minimum=1) for h in hidden)
        self.encoder = mlp((self.num_pixels, h1, h2, code), generator)
        self.decoder = mlp((code, h2, h1, self.num_pixels), generator)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` images -> ``[B, m, n]`` block scores."""
        return self.encoder(x).unflatten(-1, (self.blocks, self.items))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[*, m, n]`` codes (0/1, or relaxed) -> ``[*, D]`` pixel logits."""
        return self.decoder(z.flatten(-2))
