"""partial_conv: FasterNet's partial convolution (PConv).

A dense (not depthwise) k x k conv without bias runs on the first ``int(C * partial_ratio)`` channels; the
other channels pass through unchanged and are concatenated back after them. Cheap in MACs and, unlike a
depthwise conv, in memory traffic, because only a slice of the map is read and written by the conv.
"""

from __future__ import annotations

import math

from nas.blocks.costs import Cost, conv_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register


def conv_width(c: int, ratio: float) -> int:
    """Channels that go through the conv."""
    return int(c * ratio)


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
        build=module_builder("nas.blocks.modules.partial_conv:build"),
        cost=partial_cost,
        options={"partial_ratio": 0.25},
        check=_check, entropy=_entropy,
    )
)
