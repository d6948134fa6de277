"""dwconv: k x k depthwise convolution with bias (ConvNeXt's token mixer); any odd kernel size."""
from __future__ import annotations

import math

from nas.blocks.common import conv_cost, make_conv
from nas.blocks.registry import MixerDef, register

register(MixerDef(
    name="dwconv",
    abbrev="dw",
    build=lambda cfg: make_conv(cfg.c, cfg.c, cfg.kernel, cfg.dims, groups=cfg.c, bias=True),
    cost=lambda cfg: conv_cost(cfg.c, cfg.c, cfg.kernel, cfg.spatial, groups=cfg.c, bias=True),
    odd_kernel=True,
    entropy=lambda cfg: cfg.dims * math.log(cfg.kernel),  # d log k: a k^d depthwise kernel  # 'same' padding (k-1)//2 keeps the shape only for odd k
))
