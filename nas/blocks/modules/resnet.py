"""The torch modules of the ``basic`` and ``bottleneck`` blocks; its definition (cost, checks, options) is nas.blocks.mixers.resnet."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import ConvNormAct, DropPath, make_act
from nas.blocks.mixers.resnet import mid_width, needs_projection


class Shortcut(nn.Module):
    """The projection shortcut: [avg pool for ResNet-D] -> 1x1 conv (stride) -> norm."""

    def __init__(self, cfg):
        super().__init__()
        d, s = cfg.dims, cfg.stride
        avg = cfg.opt("shortcut") == "avgpool" and s > 1
        pool = nn.AvgPool2d if d == 2 else nn.AvgPool1d
        self.pool = pool(s, s, ceil_mode=True, count_include_pad=False) if avg else None
        self.proj = ConvNormAct(cfg.cin, cfg.cout, 1, d, stride=1 if avg else s, norm=cfg.norm, act="none",
                                bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x) if self.pool is not None else x)


class ResBlock(nn.Module):
    """A residual block of dense convs: ``body`` (a Sequential of ConvNormAct) plus a shortcut."""

    def __init__(self, cfg, kind: str):
        super().__init__()
        d, k, mid, g = cfg.dims, cfg.kernel, mid_width(cfg), cfg.groups
        bn = {"norm": cfg.norm, "bias": False}
        if kind == "basic":
            body = [ConvNormAct(cfg.cin, mid, k, d, stride=cfg.stride, groups=g, act=cfg.act, **bn),
                    ConvNormAct(mid, cfg.cout, k, d, groups=g, act="none", **bn)]
        else:
            body = [ConvNormAct(cfg.cin, mid, 1, d, act=cfg.act, **bn),
                    ConvNormAct(mid, mid, k, d, stride=cfg.stride, groups=g, act=cfg.act, **bn),
                    ConvNormAct(mid, cfg.cout, 1, d, act="none", **bn)]
        self.body = nn.Sequential(*body)
        self.shortcut = Shortcut(cfg) if needs_projection(cfg) else None
        self.drop_path = DropPath(cfg.drop_path)
        self.act = make_act(cfg.act if cfg.opt("act_after_sum") else "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.shortcut(x) if self.shortcut is not None else x
        return self.act(short + self.drop_path(self.body(x)))


def build_basic(cfg) -> nn.Module:
    """A basic residual block of a layer configuration."""
    return ResBlock(cfg, "basic")


def build_bottleneck(cfg) -> nn.Module:
    """A bottleneck residual block of a layer configuration."""
    return ResBlock(cfg, "bottleneck")
