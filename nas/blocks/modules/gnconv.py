"""The torch module of the ``gnconv`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.gnconv."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import make_conv
from nas.blocks.mixers.gnconv import order_widths


class GnConv(nn.Module):
    """Recursive gated convolution (see the module docstring)."""

    def __init__(self, c: int, k: int, dims: int, order: int):
        super().__init__()
        self.widths = order_widths(c, order)
        total = sum(self.widths)
        self.proj_in = make_conv(c, self.widths[0] + total, 1, dims, bias=True)
        self.dw = make_conv(total, total, k, dims, groups=total, bias=True)
        self.pws = nn.ModuleList(
            make_conv(self.widths[i], self.widths[i + 1], 1, dims, bias=True) for i in range(order - 1)
        )
        self.proj_out = make_conv(c, c, 1, dims, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(x)
        p, rest = torch.split(h, [self.widths[0], h.shape[1] - self.widths[0]], dim=1)
        gates = torch.split(self.dw(rest), self.widths, dim=1)
        p = p * gates[0]
        for pw, q in zip(self.pws, gates[1:], strict=True):
            p = pw(p) * q
        return self.proj_out(p)


def build(cfg) -> nn.Module:
    """The gated convolution of a layer configuration."""
    return GnConv(cfg.c, cfg.kernel, cfg.dims, cfg.opt("order"))
