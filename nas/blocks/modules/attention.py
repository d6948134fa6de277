"""The torch module of the ``attention`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks.common import conv_nd


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


def build(cfg) -> nn.Module:
    """The attention module of a layer configuration."""
    return Attention(cfg.c, cfg.dims, cfg.opt("head_dim"), cfg.opt("sr_ratio"))
