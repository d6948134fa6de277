"""The torch module of the ``dwconv`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.dwconv."""
from __future__ import annotations

from torch import nn

from nas.blocks.common import make_conv


def build(cfg) -> nn.Module:
    """The depthwise conv of a layer configuration."""
    return make_conv(cfg.c, cfg.c, cfg.kernel, cfg.dims, groups=cfg.c, bias=True)
