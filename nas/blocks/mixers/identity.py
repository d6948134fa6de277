"""identity: no token mixing (MetaFormer's IdentityFormer baseline); the layer keeps norm and MLP."""
from __future__ import annotations

from nas.blocks.costs import Cost
from nas.blocks.registry import MixerDef, module_builder, register

register(MixerDef(name="identity", abbrev="id", build=module_builder("nas.blocks.modules.identity:build"), cost=lambda cfg: Cost(), entropy=lambda cfg: 0.0,
                  uses_kernel=False))
