"""attention: multi-head self-attention over all positions via scaled_dot_product_attention.

With ``sr_ratio`` > 1 keys/values come from a strided conv + LN reduction of the map (PVT's spatial
reduction), which makes attention affordable at high resolution. Heads = C // head_dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks.common import Cost, conv_cost, conv_nd, linear_cost, numel
from nas.blocks.registry import MixerDef, register


class Attention(nn.Module):
    """Self-attention on (N, C, *S) maps; the output has the input's shape."""

    def __init__(self, c: int, dims: int, head_dim: int, sr_ratio: int):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.q = nn.Linear(c, c)
            self.kv = nn.Linear(c, 2 * c)
            self.sr = conv_nd(dims)(c, c, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(c)
        else:
            self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        shape = x.shape[2:]
        t = x.flatten(2).transpose(1, 2)  # (N, L, C)
        h = self.heads
        if self.sr_ratio > 1:
            q = self.q(t)
            r = self.sr(x).flatten(2).transpose(1, 2)
            k, v = self.kv(self.sr_norm(r)).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(t).chunk(3, dim=-1)
        q, k, v = (z.reshape(n, -1, h, c // h).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(1, 2).reshape(n, -1, c)
        return self.proj(o).transpose(1, 2).reshape(n, c, *shape)


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


register(MixerDef(
    name="attention",
    abbrev="at",
    build=lambda cfg: Attention(cfg.c, cfg.dims, cfg.opt("head_dim"), cfg.opt("sr_ratio")),
    cost=attention_cost,
    uses_kernel=False,
    options={"head_dim": 32, "sr_ratio": 1},
    check=_check, entropy=_entropy,
))
