"""pool: PoolFormer's mixer, average pooling (stride 1, padding excluded) minus the input. No MACs."""
from __future__ import annotations

from nas.blocks.costs import Cost, numel
from nas.blocks.registry import MixerDef, module_builder, register

register(MixerDef(
    name="pool",
    abbrev="pl",
    build=module_builder("nas.blocks.modules.pool:build"),
    cost=lambda cfg: Cost(0, 0, cfg.c * numel(cfg.spatial)),
    check=lambda cfg: None if cfg.kernel % 2 == 1 else f"pool kernel {cfg.kernel} must be odd",
    entropy=lambda cfg: 0.0,  # fixed weights: no fan-in to learn
))
