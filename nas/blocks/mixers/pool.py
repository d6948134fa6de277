"""pool: PoolFormer's mixer, average pooling (stride 1, padding excluded) minus the input. No MACs."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import Cost, numel
from nas.blocks.registry import MixerDef, register


class PoolMixer(nn.Module):
    """avg_pool(x) - x with a k-wide window."""

    def __init__(self, k: int, dims: int):
        super().__init__()
        cls = nn.AvgPool2d if dims == 2 else nn.AvgPool1d
        self.pool = cls(k, stride=1, padding=k // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


register(MixerDef(
    name="pool",
    abbrev="pl",
    build=lambda cfg: PoolMixer(cfg.kernel, cfg.dims),
    cost=lambda cfg: Cost(0, 0, cfg.c * numel(cfg.spatial)),
    check=lambda cfg: None if cfg.kernel % 2 == 1 else f"pool kernel {cfg.kernel} must be odd",
    entropy=lambda cfg: 0.0,  # fixed weights: no fan-in to learn
))
