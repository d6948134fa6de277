"""identity: no token mixing (MetaFormer's IdentityFormer baseline); the layer keeps norm and MLP."""
from __future__ import annotations

from torch import nn

from nas.blocks.common import Cost
from nas.blocks.registry import MixerDef, register

register(MixerDef(name="identity", abbrev="id", build=lambda cfg: nn.Identity(), cost=lambda cfg: Cost(), entropy=lambda cfg: 0.0,
                  uses_kernel=False))
