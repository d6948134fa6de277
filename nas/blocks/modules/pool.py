"""The torch module of the ``pool`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.pool."""
from __future__ import annotations

import torch
from torch import nn


class PoolMixer(nn.Module):
    """avg_pool(x) - x with a k-wide window."""

    def __init__(self, k: int, dims: int):
        super().__init__()
        cls = nn.AvgPool2d if dims == 2 else nn.AvgPool1d
        self.pool = cls(k, stride=1, padding=k // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


def build(cfg) -> nn.Module:
    """The pooling mixer of a layer configuration."""
    return PoolMixer(cfg.kernel, cfg.dims)
