"""The torch module of the ``partial_conv`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.partial_conv."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import make_conv
from nas.blocks.mixers.partial_conv import conv_width


class PartialConv(nn.Module):
    """k x k conv on the first ``cp`` channels, identity on the rest."""

    def __init__(self, c: int, k: int, dims: int, ratio: float):
        super().__init__()
        self.cp = conv_width(c, ratio)
        self.rest = c - self.cp
        self.conv = make_conv(self.cp, self.cp, k, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.cp, self.rest], dim=1)
        return torch.cat([self.conv(a), b], dim=1)


def build(cfg) -> nn.Module:
    """The partial convolution of a layer configuration."""
    return PartialConv(cfg.c, cfg.kernel, cfg.dims, cfg.opt("partial_ratio"))
