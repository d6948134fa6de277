"""The torch module of the ``identity`` mixer; its definition (cost, checks, options) is nas.blocks.mixers.identity."""
from __future__ import annotations

from torch import nn


def build(cfg) -> nn.Module:
    """No token mixing."""
    return nn.Identity()
