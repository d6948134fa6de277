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

from nas.blocks.costs import Cost, conv_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register


def decompose(k: int) -> tuple[int, int, int]:
    """(k_dw, k_dil, dilation) for a requested kernel k (see the module docstring)."""
    d = max(1, round(k / 7))
    k_dw = max(3, 2 * d - 1)
    k_dil = 1
    while k_dw + d * (k_dil - 1) < k:
        k_dil += 2
    return k_dw, k_dil, (d if k_dil > 1 else 1)


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


def _bank_name(cfg, name: str) -> str:
    """The dilated conv's weights are shared per dilation (a 5-tap conv at d=2 is not one at d=1)."""
    return f"dil@d{decompose(cfg.kernel)[2]}.{name[4:]}" if name.startswith("dil.") else name


register(
    MixerDef(
        name="lka",
        abbrev="lk",
        build=module_builder("nas.blocks.modules.lka:build"),
        cost=lka_cost,
        check=_check, entropy=_entropy, bank_name=_bank_name,
    )
)
