"""attention: multi-head self-attention over all positions via scaled_dot_product_attention.

With ``sr_ratio`` > 1 keys/values come from a strided conv + LN reduction of the map (PVT's spatial
reduction), which makes attention affordable at high resolution. Heads = C // head_dim.
"""
from __future__ import annotations

import math

from nas.blocks.costs import Cost, conv_cost, linear_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register


def _reduced(spatial: tuple[int, ...], r: int) -> tuple[int, ...]:
    return tuple((s - r) // r + 1 for s in spatial)


def attention_cost(cfg) -> Cost:
    """qkv/q,kv projections, QK^T and AV (2 * L * M * C MACs), output projection."""
    c, sp = cfg.c, cfg.spatial
    n_tok = numel(sp)
    r = cfg.opt("sr_ratio")
    if r > 1:
        red = _reduced(sp, r)
        m = numel(red)
        cost = linear_cost(c, c, n_tok) + conv_cost(c, c, r, red, bias=True) + Cost(2 * c) + linear_cost(c, 2 * c, m)
    else:
        m = n_tok
        cost = linear_cost(c, 3 * c, n_tok)
    heads = max(1, c // cfg.opt("head_dim"))
    return cost + Cost(0, 2 * n_tok * m * c, heads * n_tok * m) + linear_cost(c, c, n_tok)


def _check(cfg) -> str | None:
    heads = max(1, cfg.c // cfg.opt("head_dim"))
    if cfg.c % heads:
        return f"attention: channels {cfg.c} not divisible into {heads} heads of head_dim {cfg.opt('head_dim')}"
    r = cfg.opt("sr_ratio")
    if r > 1 and any(s < r for s in cfg.spatial):
        return f"attention: sr_ratio {r} larger than the feature map {cfg.spatial}"
    return None


def _entropy(cfg) -> float:
    """``2 log c + log M`` (+ the reduction conv's ``log c + d log r``): q/k/v/proj and M attended positions."""
    c, r = cfg.c, cfg.opt("sr_ratio")
    if r > 1:
        m = numel(tuple((s - r) // r + 1 for s in cfg.spatial))
        return 2 * math.log(c) + (math.log(c) + cfg.dims * math.log(r)) + math.log(m)
    return 2 * math.log(c) + math.log(numel(cfg.spatial))


def _segments(cfg, name: str) -> tuple[int, ...] | None:
    """The fused projections' rows: q|k|v (or k|v with spatial reduction), c each."""
    if name in ("qkv.weight", "qkv.bias"):
        return (cfg.c,) * 3
    if name in ("kv.weight", "kv.bias"):
        return (cfg.c,) * 2
    return None


register(MixerDef(
    name="attention",
    abbrev="at",
    build=module_builder("nas.blocks.modules.attention:build"),
    cost=attention_cost,
    uses_kernel=False,
    options={"head_dim": 32, "sr_ratio": 1},
    check=_check, entropy=_entropy, segments=_segments,
))
