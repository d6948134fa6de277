"""nas.build(arch): the standard nn.Module of an arch, from the same plan nas.count reads.

The network is stem -> stages (optional downsample, then layers) -> head. ``forward_features`` returns
every stage's output (multi-scale features for dense prediction); ``forward`` returns logits, or the
feature list when built with ``features_only``. ``fuse()`` returns the deploy form (BN folded,
re-parameterised branches merged) with unchanged outputs.
"""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import ConvNormAct, make_act, make_conv, make_norm
from nas.blocks.modules.layer import build_layer
from nas.space.arch import Arch
from nas.space.language import StemSpec
from nas.space.resolve import ConvUnit, NetPlan, resolve


def _stem_ops(u: ConvUnit, dims: int) -> nn.Module:
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


def _conv_unit(u: ConvUnit, dims: int) -> nn.Module:
    s = u.spec
    if isinstance(s, StemSpec):
        return _stem_ops(u, dims)
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

    def __init__(self, plan: NetPlan):
        super().__init__()
        h, c, d = plan.head, plan.head_cin, plan.dims
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


class Network(nn.Module):
    """A backbone built from an arch: ``stem``, ``stages`` (each an nn.Sequential), ``head``."""

    def __init__(self, plan: NetPlan, features_only: bool = False, out_indices: tuple[int, ...] | None = None):
        super().__init__()
        d = plan.dims
        self.stem = _conv_unit(plan.stem, d)
        stages = []
        for sp in plan.stages:
            mods = ([_conv_unit(sp.downsample, d)] if sp.downsample is not None else [])
            mods += [build_layer(cfg) for cfg in sp.layers]
            stages.append(nn.Sequential(*mods))
        self.stages = nn.ModuleList(stages)
        self.features_only = features_only or plan.head.type == "features"
        n = len(plan.stages)
        self.out_indices = tuple(out_indices if out_indices is not None else (plan.head.out_indices or range(n)))
        self.feature_channels = [plan.stages[i].channels for i in self.out_indices]
        self.head = None if self.features_only else Head(plan)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the stages named by ``out_indices`` (all stages by default)."""
        x = self.stem(x)
        feats = []
        last = max(self.out_indices) if self.features_only else len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                feats.append(x)
            if i >= last:
                break
        return feats

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output (the map the head pools)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_features(x)
        return self.head(self.forward_backbone(x))

    def fuse(self) -> Network:
        """Deploy form in place: BN folded into convs, re-parameterised branches merged (eval mode)."""
        return fuse(self)


@torch.no_grad()
def fuse(model: nn.Module) -> nn.Module:
    """Call ``fuse()`` on every submodule that has one, innermost first; sets eval mode."""
    model.eval()
    for m in list(model.modules())[::-1]:
        if m is not model and hasattr(m, "fuse") and callable(m.fuse):
            m.fuse()
    return model


def build(arch: Arch, features_only: bool = False, out_indices: tuple[int, ...] | None = None,
          drop_path: float | None = None) -> Network:
    """The standard nn.Module of ``arch`` (plain torch; depends on no supernet code)."""
    if not isinstance(arch, Arch):
        from nas.nb201.space import NB201Arch

        if isinstance(arch, NB201Arch):
            from nas.nb201.network import build as build_nb201

            return build_nb201(arch)
    return Network(resolve(arch, drop_path), features_only, out_indices)
