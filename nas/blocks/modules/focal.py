"""The torch module of the ``focal`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.focal."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import make_conv
from nas.blocks.mixers.focal import level_kernels


class FocalModulation(nn.Module):
    """Focal modulation on (N, C, *S) maps (see the module docstring)."""

    def __init__(self, c: int, k: int, dims: int, levels: int):
        super().__init__()
        self.c, self.levels = c, levels
        self.f = make_conv(c, 2 * c + levels + 1, 1, dims, bias=True)
        self.focal = nn.ModuleList(
            nn.Sequential(make_conv(c, c, kl, dims, groups=c), nn.GELU()) for kl in level_kernels(k, levels)
        )
        self.act = nn.GELU()
        self.h = make_conv(c, c, 1, dims, bias=True)
        self.proj = make_conv(c, c, 1, dims, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, ctx, gates = torch.split(self.f(x), [self.c, self.c, self.levels + 1], dim=1)
        agg = 0
        for lv, level in enumerate(self.focal):
            ctx = level(ctx)
            agg = agg + ctx * gates[:, lv : lv + 1]
        glob = self.act(ctx.mean(dim=tuple(range(2, ctx.dim())), keepdim=True))
        agg = agg + glob * gates[:, self.levels :]
        return self.proj(q * self.h(agg))


def build(cfg) -> nn.Module:
    """The focal modulation of a layer configuration."""
    return FocalModulation(cfg.c, cfg.kernel, cfg.dims, cfg.opt("focal_level"))
