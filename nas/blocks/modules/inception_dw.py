"""The torch module of the ``inception_dw`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.inception_dw."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import conv_nd
from nas.blocks.mixers.inception_dw import branch_kernels, branch_width


class InceptionDW(nn.Module):
    """Identity group + square depthwise + band depthwise branches on channel groups, concatenated."""

    def __init__(self, c: int, k: int, dims: int, square: int, ratio: float):
        super().__init__()
        g = branch_width(c, ratio)
        shapes = branch_kernels(k, square, dims)
        conv = conv_nd(dims)
        self.branches = nn.ModuleList(
            conv(g, g, ks, padding=tuple(s // 2 for s in ks), groups=g, bias=True) for ks in shapes
        )
        self.sizes = [c - g * len(shapes)] + [g] * len(shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ident, *parts = torch.split(x, self.sizes, dim=1)
        return torch.cat([ident] + [b(p) for b, p in zip(self.branches, parts, strict=True)], dim=1)


def build(cfg) -> nn.Module:
    """The inception depthwise mixer of a layer configuration."""
    return InceptionDW(cfg.c, cfg.kernel, cfg.dims, cfg.opt("square_kernel"), cfg.opt("branch_ratio"))
