"""partial_conv: FasterNet's partial convolution (PConv).

A dense (not depthwise) k x k conv without bias runs on the first ``int(C * partial_ratio)`` channels; the
other channels pass through unchanged and are concatenated back after them. Cheap in MACs and, unlike a
depthwise conv, in memory traffic, because only a slice of the map is read and written by the conv.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nas.blocks.common import Cost, conv_cost, make_conv, numel
from nas.blocks.registry import MixerDef, register


def conv_width(c: int, ratio: float) -> int:
    """Channels that go through the conv."""
    return int(c * ratio)


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


def partial_cost(cfg) -> Cost:
    """One dense conv on cp channels; act adds the concatenated output."""
    cp = conv_width(cfg.c, cfg.opt("partial_ratio"))
    return conv_cost(cp, cp, cfg.kernel, cfg.spatial) + Cost(0, 0, cfg.c * numel(cfg.spatial))


def _check(cfg) -> str | None:
    if cfg.kernel % 2 == 0:
        return f"partial_conv: kernel {cfg.kernel} must be odd"
    ratio = cfg.opt("partial_ratio")
    if not 0 < ratio <= 1:
        return f"partial_conv: partial_ratio {ratio} must be in (0, 1]"
    if conv_width(cfg.c, ratio) < 1:
        return f"partial_conv: partial_ratio {ratio} of {cfg.c} channels leaves no channel to convolve"
    return None


def _entropy(cfg) -> float:
    """``(c_p / c) * (log c_p + d log k)``: a dense conv on the c_p channels it touches (structural entropy)."""
    cp = conv_width(cfg.c, cfg.opt("partial_ratio"))
    return (cp / cfg.c) * (math.log(cp) + cfg.dims * math.log(cfg.kernel)) if cp > 0 else 0.0


register(
    MixerDef(
        name="partial_conv",
        abbrev="pc",
        build=lambda cfg: PartialConv(cfg.c, cfg.kernel, cfg.dims, cfg.opt("partial_ratio")),
        cost=partial_cost,
        options={"partial_ratio": 0.25},
        check=_check, entropy=_entropy,
    )
)
