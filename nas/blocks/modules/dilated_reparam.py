"""The torch module of the ``dilated_reparam`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.dilated_reparam."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks.common import ConvNormAct, conv_nd
from nas.blocks.mixers.dilated_reparam import branch_schedule


def _dw_bn(c: int, k: int, dims: int, dilation: int = 1) -> ConvNormAct:
    return ConvNormAct(c, c, k, dims, groups=c, norm="bn", act="none", dilation=dilation)


class DilatedReparam(nn.Module):
    """Sum of a k x k depthwise conv + BN and small dilated depthwise conv + BN branches; fusable."""

    def __init__(self, c: int, k: int, dims: int):
        super().__init__()
        self.c, self.k, self.dims = c, k, dims
        self.main: nn.Module = _dw_bn(c, k, dims)
        self.branches = nn.ModuleList(_dw_bn(c, kb, dims, d) for kb, d in branch_schedule(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x)
        for b in self.branches:
            out = out + b(x)
        return out

    @torch.no_grad()
    def fuse(self) -> None:
        """Merge every branch into one k x k depthwise conv with bias (eval-mode equivalent)."""
        if not self.branches and not isinstance(self.main, ConvNormAct):
            return
        weight, bias = self._folded(self.main, 1)
        for b in self.branches:
            w, bb = self._folded(b, b.conv.dilation[0])
            pad = (self.k - w.shape[-1]) // 2
            weight = weight + F.pad(w, [pad] * (2 * self.dims))
            bias = bias + bb
        fused = conv_nd(self.dims)(self.c, self.c, self.k, padding=self.k // 2, groups=self.c, bias=True)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.main = fused
        self.branches = nn.ModuleList()

    @staticmethod
    def _folded(unit: ConvNormAct, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A branch's BN-folded kernel, expanded to its effective (dilated) size with zeros."""
        unit.fuse()
        w, b = unit.conv.weight, unit.conv.bias
        if dilation > 1:
            ks = w.shape[-1]
            size = dilation * (ks - 1) + 1
            big = w.new_zeros(*w.shape[:2], *([size] * (w.dim() - 2)))
            idx = (slice(None), slice(None)) + (slice(None, None, dilation),) * (w.dim() - 2)
            big[idx] = w
            w = big
        return w, b


def build(cfg) -> nn.Module:
    """The re-parameterisable mixer of a layer configuration."""
    return DilatedReparam(cfg.c, cfg.kernel, cfg.dims)
