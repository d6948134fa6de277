"""The torch modules of the skeleton's units (stem and downsample convs, the head); see nas.blocks.skeleton."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import ConvNormAct, make_act, make_conv, make_norm
from nas.blocks.skeleton import ConvUnit, HeadCfg, StemSpec


def stem_ops(u: ConvUnit, dims: int) -> nn.Module:
    """A multi-op stem as a Sequential of ConvNormAct and pooling modules."""
    mods = []
    for op, cin, cout in u.spec.conv_widths(u.cin, u.cout):
        if op.op == "conv":
            mods.append(ConvNormAct(cin, cout, op.kernel, dims, op.stride, norm=op.norm, act=op.act, bias=op.bias,
                                    padding=op.padding))
        else:
            pool = {("maxpool", 2): nn.MaxPool2d, ("maxpool", 1): nn.MaxPool1d, ("avgpool", 2): nn.AvgPool2d,
                    ("avgpool", 1): nn.AvgPool1d}[(op.op, dims)]
            mods.append(pool(op.kernel, op.stride, op.padding))
    return nn.Sequential(*mods)


def build_conv_unit(u: ConvUnit, dims: int) -> nn.Module:
    """The module of a stem or downsample conv unit (a multi-op stem: a Sequential of its ops)."""
    s = u.spec
    if isinstance(s, StemSpec):
        return stem_ops(u, dims)
    if s.norm_position == "pre":  # ConvNeXt downsampling: norm on the input, then a (patchify) conv
        bias = True if s.bias is None else s.bias
        return nn.Sequential(make_norm(s.norm, u.cin, dims),
                             make_conv(u.cin, u.cout, s.kernel, dims, s.stride, bias=bias, padding=s.padding),
                             make_act(s.act))
    return ConvNormAct(u.cin, u.cout, s.kernel, dims, s.stride, norm=s.norm, act=s.act, bias=s.bias,
                       padding=s.padding)


def _vector_norm(kind: str, c: int) -> nn.Module:
    """A norm over a pooled (N, C) vector."""
    if kind == "ln":
        return nn.LayerNorm(c, eps=1e-6)
    if kind == "bn":
        return nn.BatchNorm1d(c)
    return nn.Identity()


class Head(nn.Module):
    """Optional 1x1 conv, [norm on the map], global average pool, [norm], optional linear + [norm] + act,
    dropout, classifier."""

    def __init__(self, unit: HeadCfg):
        super().__init__()
        h, c, d = unit.head, unit.cin, unit.dims
        self.pre = None
        if h.pre is not None:
            w, nm, ac = h.pre
            self.pre = ConvNormAct(c, w, 1, d, norm=nm, act=ac)
            c = w
        self.map_norm = make_norm(h.norm, c, d) if h.norm != "none" and h.norm_at == "map" else None
        self.norm = _vector_norm(h.norm, c) if h.norm_at == "pooled" else nn.Identity()
        self.post = None
        if h.post is not None:
            w, ac, bias = h.post
            mods = [nn.Linear(c, w, bias=bias), make_act(ac)]
            if h.post_norm != "none":
                mods.insert(1 if h.post_order == "norm_act" else 2, _vector_norm(h.post_norm, w))
            self.post = nn.Sequential(*mods)
            c = w
        self.dropout = nn.Dropout(h.dropout)
        self.fc = nn.Linear(c, h.classes)
        self.num_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre is not None:
            x = self.pre(x)
        if self.map_norm is not None:
            x = self.map_norm(x)
        x = self.norm(x.mean(dim=tuple(range(2, x.dim()))))
        if self.post is not None:
            x = self.post(x)
        return self.fc(self.dropout(x))
