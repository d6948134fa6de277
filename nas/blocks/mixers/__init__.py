"""The token-mixer catalogue: importing this package registers every mixer (one file each)."""
from nas.blocks.mixers import (  # noqa: F401
    attention,
    dilated_reparam,
    dwconv,
    focal,
    gnconv,
    identity,
    inception_dw,
    lka,
    mbconv,
    partial_conv,
    pool,
)
