"""inception_dw: InceptionNeXt's token mixer, a depthwise conv decomposed into parallel channel groups.

The channels are split four ways (2D): ``g = int(C * branch_ratio)`` channels each go through a square
``square_kernel`` depthwise conv, a 1 x k band and a k x 1 band (k = ``cfg.kernel``); the remaining
``C - 3g`` channels pass through untouched. The groups are concatenated back in that order
(identity, square, 1 x k, k x 1). In 1D there is one band: identity (``C - 2g``), square, k-long band.
Every conv is depthwise with bias and 'same' padding, so kernels must be odd.
"""

from __future__ import annotations

import math

from nas.blocks.costs import Cost, conv_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register


def branch_kernels(k: int, square: int, dims: int) -> list[tuple[int, ...]]:
    """Kernel shapes of the conv branches, in concatenation order after the identity group."""
    if dims == 1:
        return [(square,), (k,)]
    return [(square, square), (1, k), (k, 1)]


def branch_width(c: int, ratio: float) -> int:
    """Channels given to each conv branch."""
    return int(c * ratio)


def inception_cost(cfg) -> Cost:
    """Three (2D) or two (1D) depthwise convs with bias on g channels; act adds the concatenated output."""
    c, sp = cfg.c, cfg.spatial
    g = branch_width(c, cfg.opt("branch_ratio"))
    cost = Cost(0, 0, c * numel(sp))
    for ks in branch_kernels(cfg.kernel, cfg.opt("square_kernel"), cfg.dims):
        cost = cost + conv_cost(g, g, ks, sp, groups=g, bias=True)
    return cost


def _check(cfg) -> str | None:
    k, sq, ratio = cfg.kernel, cfg.opt("square_kernel"), cfg.opt("branch_ratio")
    if k % 2 == 0 or sq % 2 == 0:
        return f"inception_dw: kernels must be odd (band {k}, square {sq})"
    g = branch_width(cfg.c, ratio)
    n_branches = 3 if cfg.dims == 2 else 2
    if g < 1:
        return f"inception_dw: branch_ratio {ratio} of {cfg.c} channels leaves no channel per conv branch"
    if n_branches * g > cfg.c:
        return f"inception_dw: {n_branches} branches of {g} channels exceed the {cfg.c} channels"
    return None


def _entropy(cfg) -> float:
    """``(g / c) * sum log taps``: the conv branches' kernels, weighted by the share of channels (entropy)."""
    g = branch_width(cfg.c, cfg.opt("branch_ratio"))
    taps = branch_kernels(cfg.kernel, cfg.opt("square_kernel"), cfg.dims)
    return (g / cfg.c) * sum(math.log(math.prod(t)) for t in taps)


register(
    MixerDef(
        name="inception_dw",
        abbrev="ic",
        build=module_builder("nas.blocks.modules.inception_dw:build"),
        cost=inception_cost,
        options={"square_kernel": 3, "branch_ratio": 0.125},
        check=_check, entropy=_entropy,
    )
)
