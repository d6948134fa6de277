"""The torch module of the ``lka`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.lka."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import make_conv
from nas.blocks.mixers.lka import decompose


class LKAttention(nn.Module):
    """VAN spatial attention: proj, GELU, large-kernel attention gate, proj."""

    def __init__(self, c: int, k: int, dims: int):
        super().__init__()
        k_dw, k_dil, d = decompose(k)
        self.proj_1 = make_conv(c, c, 1, dims, bias=True)
        self.act = nn.GELU()
        self.dw = make_conv(c, c, k_dw, dims, groups=c, bias=True)
        self.dil = make_conv(c, c, k_dil, dims, groups=c, bias=True, dilation=d)
        self.conv1 = make_conv(c, c, 1, dims, bias=True)
        self.proj_2 = make_conv(c, c, 1, dims, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.act(self.proj_1(x))
        attn = self.conv1(self.dil(self.dw(u)))
        return self.proj_2(u * attn)


def build(cfg) -> nn.Module:
    """The large-kernel attention of a layer configuration."""
    return LKAttention(cfg.c, cfg.kernel, cfg.dims)
