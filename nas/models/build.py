"""nas.build(arch): the standard nn.Module of an arch, from the same plan nas.count reads.

The network is stem -> stages (optional downsample, then layers) -> head. ``forward_features`` returns
every stage's output (multi-scale features for dense prediction); ``forward`` returns logits, or the
feature list when built with ``features_only``. ``fuse()`` returns the deploy form (BN folded,
re-parameterised branches merged) with unchanged outputs.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas.blocks.modules.layer import build_layer
from nas.blocks.modules.skeleton import Head, build_conv_unit  # noqa: F401  (Head: part of nas.models.build's API)
from nas.space.arch import Arch
from nas.space.resolve import NetPlan, resolve


class Network(nn.Module):
    """A backbone built from an arch: ``stem``, ``stages`` (each an nn.Sequential), ``head``."""

    def __init__(self, plan: NetPlan, features_only: bool = False, out_indices: tuple[int, ...] | None = None):
        super().__init__()
        d = plan.dims
        self.stem = build_conv_unit(plan.stem, d)
        stages = []
        for sp in plan.stages:
            mods = ([build_conv_unit(sp.downsample, d)] if sp.downsample is not None else [])
            mods += [build_layer(cfg) for cfg in sp.layers]
            stages.append(nn.Sequential(*mods))
        self.stages = nn.ModuleList(stages)
        self.features_only = features_only or plan.head.type == "features"
        n = len(plan.stages)
        self.out_indices = tuple(out_indices if out_indices is not None else (plan.head.out_indices or range(n)))
        self.feature_channels = [plan.stages[i].channels for i in self.out_indices]
        self.head = None if self.features_only else Head(plan.head_unit)

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


def build(arch: Any, features_only: bool = False, out_indices: tuple[int, ...] | None = None,
          drop_path: float | None = None) -> nn.Module:
    """The standard nn.Module of an arch of any space family (plain torch; depends on no supernet code)."""
    return arch.space.build(arch, features_only, out_indices, drop_path)


def build_network(arch: Arch, features_only: bool = False, out_indices: tuple[int, ...] | None = None,
                  drop_path: float | None = None) -> Network:
    """The standard network of an arch of a YAML space (its family's ``build``)."""
    return Network(resolve(arch, drop_path), features_only, out_indices)
