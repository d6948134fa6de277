"""The torch module of the ``mbconv`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.mbconv."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import ConvNormAct, DropPath, SqueezeExcite
from nas.blocks.mixers.mbconv import block_se_width, has_expand, mb_hidden


class MBConv(nn.Module):
    """Inverted residual block."""

    def __init__(self, cfg):
        super().__init__()
        d, hid = cfg.dims, mb_hidden(cfg.cin, cfg.ratio)
        g = cfg.groups
        self.expand = ConvNormAct(cfg.cin, hid, 1, d, groups=g, norm=cfg.norm, act=cfg.act) if has_expand(cfg) else None
        self.dw = ConvNormAct(hid, hid, cfg.kernel, d, stride=cfg.stride, groups=hid, norm=cfg.norm, act=cfg.act)
        self.se = (SqueezeExcite(hid, block_se_width(cfg), d, cfg.opt("se_act"), cfg.opt("se_gate"))
                   if cfg.se else None)
        self.project = ConvNormAct(hid, cfg.cout, 1, d, groups=g, norm=cfg.norm, act="none")
        self.residual = cfg.stride == 1 and cfg.cin == cfg.cout
        self.drop_path = DropPath(cfg.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.dw(h)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return x + self.drop_path(h) if self.residual else h
