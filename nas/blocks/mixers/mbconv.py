"""mbconv: the inverted residual of MobileNetV2/V3, OFA and FBNet; a self-contained layer.

1x1 expand (skipped at ratio 1) -> k x k depthwise (carries the stride) -> optional squeeze-excite ->
1x1 project (no act); identity shortcut when stride 1 and channels match. Grouped 1x1s via ``groups``.
Hidden width = make_divisible(round(cin * ratio), 8); SE width = make_divisible(hidden * se, 8).
"""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import (
    ConvNormAct,
    Cost,
    DropPath,
    SqueezeExcite,
    conv_norm_act_cost,
    make_divisible,
    numel,
    se_cost,
)
from nas.blocks.registry import MixerDef, register


def mb_hidden(cin: int, ratio: float) -> int:
    """Expanded width of an inverted residual."""
    return cin if ratio == 1 else make_divisible(round(cin * ratio), 8)


def se_width(hidden: int, se: float) -> int:
    """Squeeze-excite bottleneck width."""
    return make_divisible(hidden * se, 8)


class MBConv(nn.Module):
    """Inverted residual block."""

    def __init__(self, cfg):
        super().__init__()
        d, hid = cfg.dims, mb_hidden(cfg.cin, cfg.ratio)
        g = cfg.groups
        self.expand = ConvNormAct(cfg.cin, hid, 1, d, groups=g, norm=cfg.norm, act=cfg.act) if cfg.ratio != 1 else None
        self.dw = ConvNormAct(hid, hid, cfg.kernel, d, stride=cfg.stride, groups=hid, norm=cfg.norm, act=cfg.act)
        gate = cfg.opt("se_gate")
        self.se = SqueezeExcite(hid, se_width(hid, cfg.se), d, "relu", gate) if cfg.se else None
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


def mbconv_cost(cfg) -> Cost:
    """Cost of MBConv from its configuration."""
    hid = mb_hidden(cfg.cin, cfg.ratio)
    out_sp = cfg.out_spatial
    cost = Cost()
    if cfg.ratio != 1:
        cost = cost + conv_norm_act_cost(cfg.cin, hid, 1, cfg.spatial, cfg.groups, cfg.norm)
    cost = cost + conv_norm_act_cost(hid, hid, cfg.kernel, out_sp, hid, cfg.norm)
    if cfg.se:
        cost = cost + se_cost(hid, se_width(hid, cfg.se), cfg.dims) + Cost(0, 0, hid * numel(out_sp))
    return cost + conv_norm_act_cost(hid, cfg.cout, 1, out_sp, cfg.groups, cfg.norm)


def _check(cfg) -> str | None:
    hid = mb_hidden(cfg.cin, cfg.ratio)
    if cfg.groups > 1 and hid % cfg.groups:
        return f"mbconv: groups={cfg.groups} must divide the expanded width {hid}"
    return None


register(MixerDef(name="mbconv", abbrev="mb", build=MBConv, cost=mbconv_cost, self_contained=True,
                  options={"se_gate": "hsigmoid"}, check=_check))
