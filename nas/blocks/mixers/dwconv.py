"""dwconv: k x k depthwise convolution with bias (ConvNeXt's token mixer); any odd kernel size."""
from __future__ import annotations

import math

from nas.blocks.costs import conv_cost
from nas.blocks.registry import MixerDef, module_builder, register

register(MixerDef(
    name="dwconv",
    abbrev="dw",
    build=module_builder("nas.blocks.modules.dwconv:build"),
    cost=lambda cfg: conv_cost(cfg.c, cfg.c, cfg.kernel, cfg.spatial, groups=cfg.c, bias=True),
    odd_kernel=True,
    entropy=lambda cfg: cfg.dims * math.log(cfg.kernel),  # d log k: a k^d depthwise kernel  # 'same' padding (k-1)//2 keeps the shape only for odd k
))
