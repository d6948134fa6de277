"""lka: VAN's spatial attention around large-kernel attention (LKA).

proj_1 (1x1, bias) -> GELU -> LKA -> proj_2 (1x1, bias), where LKA(u) = u * conv1(dil(dw(u))):
``dw`` a k_dw depthwise conv, ``dil`` a k_dil depthwise conv with dilation d, ``conv1`` a 1x1 conv; every
conv has bias. The skip connection is the layer's own residual (no extra shortcut inside the mixer).

Decomposition of the requested kernel K (:func:`decompose`, K odd):
- d = max(1, round(K / 7));
- k_dw = max(3, 2d - 1);
- k_dil = the smallest odd size with k_dw + d * (k_dil - 1) >= K (the stack's receptive field covers K).
VAN's K=21 gives (5, 7, 3); K=3 -> (3, 1, 1); 5 -> (3, 3, 1); 7 -> (3, 5, 1); 11 -> (3, 5, 2);
13 -> (3, 7, 2); 31 -> (7, 7, 4).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nas.blocks.common import Cost, conv_cost, make_conv, numel
from nas.blocks.registry import MixerDef, register


def decompose(k: int) -> tuple[int, int, int]:
    """(k_dw, k_dil, dilation) for a requested kernel k (see the module docstring)."""
    d = max(1, round(k / 7))
    k_dw = max(3, 2 * d - 1)
    k_dil = 1
    while k_dw + d * (k_dil - 1) < k:
        k_dil += 2
    return k_dw, k_dil, (d if k_dil > 1 else 1)


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


def lka_cost(cfg) -> Cost:
    """Three 1x1 convs and two depthwise convs, all with bias; act adds the GELU and gating outputs."""
    c, sp = cfg.c, cfg.spatial
    k_dw, k_dil, _ = decompose(cfg.kernel)
    pw = conv_cost(c, c, 1, sp, bias=True)
    dw = conv_cost(c, c, k_dw, sp, groups=c, bias=True) + conv_cost(c, c, k_dil, sp, groups=c, bias=True)
    return pw + pw + pw + dw + Cost(0, 0, 2 * c * numel(sp))


def _check(cfg) -> str | None:
    if cfg.kernel % 2 == 0 or cfg.kernel < 3:
        return f"lka: kernel {cfg.kernel} must be odd and at least 3"
    return None


def _entropy(cfg) -> float:
    """``3 log c + d log k_dw + d log k_dil``: proj_1, the two stacked depthwise convs, conv1 (structural entropy)."""
    k_dw, k_dil, _ = decompose(cfg.kernel)
    return 3 * math.log(cfg.c) + cfg.dims * (math.log(k_dw) + math.log(k_dil))


register(
    MixerDef(
        name="lka",
        abbrev="lk",
        build=lambda cfg: LKAttention(cfg.c, cfg.kernel, cfg.dims),
        cost=lka_cost,
        check=_check, entropy=_entropy,
    )
)
