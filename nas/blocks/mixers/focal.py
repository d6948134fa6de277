"""focal: FocalNet's focal modulation with ``focal_level`` L levels (option, default 2, at least 1).

A 1x1 conv (bias) maps C to a query q (C), a context ctx (C) and L+1 gates. Level l = 0..L-1 applies a
depthwise conv (no bias) with kernel k + 2l (k = ``cfg.kernel``; e.g. k=3, L=2: 3 then 5) and GELU to the
previous level's context, hierarchically growing the receptive field; a global level is GELU of the
spatial mean of the last context. The levels are summed, each weighted by its gate channel; a 1x1 conv
(bias) turns the sum into the modulator; q * modulator goes through a final 1x1 projection (bias).
"""

from __future__ import annotations

import math

from nas.blocks.costs import Cost, conv_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register


def level_kernels(k: int, levels: int) -> list[int]:
    """Depthwise kernel of each focal level: k, k+2, k+4, ..."""
    return [k + 2 * lv for lv in range(levels)]


def focal_cost(cfg) -> Cost:
    """f, L depthwise convs without bias, modulator h and proj; act adds the gated sums and q*modulator."""
    c, sp = cfg.c, cfg.spatial
    levels = cfg.opt("focal_level")
    cost = conv_cost(c, 2 * c + levels + 1, 1, sp, bias=True)
    for kl in level_kernels(cfg.kernel, levels):
        cost = cost + conv_cost(c, c, kl, sp, groups=c)
    pw = conv_cost(c, c, 1, sp, bias=True)
    return cost + pw + pw + Cost(0, 0, (levels + 2) * c * numel(sp))


def _check(cfg) -> str | None:
    levels = cfg.opt("focal_level")
    if not isinstance(levels, int) or levels < 1:
        return f"focal: focal_level {levels} must be an integer >= 1"
    if cfg.kernel % 2 == 0:
        return f"focal: kernel {cfg.kernel} must be odd"
    return None


def _entropy(cfg) -> float:
    """``3 log c + d sum log k_l``: projections and the stacked depthwise levels (structural entropy)."""
    levels = level_kernels(cfg.kernel, cfg.opt("focal_level"))
    return 3 * math.log(cfg.c) + cfg.dims * sum(math.log(k) for k in levels)


def _segments(cfg, name: str) -> tuple[int, ...] | None:
    """The input projection's rows: q (c), ctx (c) and the L+1 gates."""
    return (cfg.c, cfg.c, cfg.opt("focal_level") + 1) if name in ("f.weight", "f.bias") else None


register(
    MixerDef(
        name="focal",
        abbrev="fm",
        build=module_builder("nas.blocks.modules.focal:build"),
        cost=focal_cost,
        options={"focal_level": 2},
        check=_check, entropy=_entropy, segments=_segments,
    )
)
