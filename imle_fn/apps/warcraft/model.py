"""The Warcraft benchmark's networks, in pure torch (no torchvision).

* `CostNet`: the paper's cost predictor: the ResNet18 stem (conv 7x7 stride 2, batch norm, ReLU,
  max-pool 3x3 stride 2, ``layer1`` = two basic blocks of 64 channels), adaptive max-pool to ``K x K``,
  mean over channels, absolute value: non-negative cell COSTS ``[B, K, K]``.
* `PathResNet18`: the "ResNet18 predicts the path directly" baseline: a full ResNet18 (layers 1-4,
  global average pool) whose linear head outputs ``K * K`` logits, one per cell (on the path or not).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "CostNet", "PathResNet18"]


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convolutions with batch norm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H / stride, W / stride]``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


def _stem() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    )


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class CostNet(nn.Module):
    """The paper's cost network: ``[B, 3, 8K, 8K]`` images -> ``[B, K, K]`` non-negative costs.

    Args:
        grid: cells per side (K).
    """

    def __init__(self, grid: int) -> None:
        super().__init__()
        if not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid: expected an int >= 1, got {grid!r}")
        self.grid = grid
        self.stem = _stem()
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.pool = nn.AdaptiveMaxPool2d((grid, grid))
        _init(self)

    def forward(self, images: Tensor) -> Tensor:
        """Args: images: ``[B, 3, H, W]``. Returns: ``[B, K, K]`` costs (>= 0)."""
        x = self.pool(self.layer1(self.stem(images)))  # [B, 64, K, K]
        return x.mean(dim=1).abs()


class PathResNet18(nn.Module):
    """Baseline: a full ResNet18 that predicts the path cells directly (``K * K`` logits).

    Args:
        grid: cells per side (K).
    """

    def __init__(self, grid: int) -> None:
        super().__init__()
        if not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid: expected an int >= 1, got {grid!r}")
        self.grid = grid
        self.stem = _stem()
        layers: list[nn.Module] = []
        channels = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(channels, width, stride), BasicBlock(width, width)]
            channels = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, grid * grid)
        _init(self)

    def forward(self, images: Tensor) -> Tensor:
        """Args: images: ``[B, 3, H, W]``. Returns: ``[B, K, K]`` logits (> 0 means on the path)."""
        x = self.layers(self.stem(images))  # [B, 512, h, w]
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # [B, 512]
        return self.fc(x).view(-1, self.grid, self.grid)
