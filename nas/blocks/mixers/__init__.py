"""The token-mixer catalogue: importing this package registers every mixer (one file each).

Import order is the catalogue order users see in listings and error messages.
"""
# isort: skip_file
# ruff: noqa: F401, I001
from nas.blocks.mixers import identity
from nas.blocks.mixers import dwconv
from nas.blocks.mixers import inception_dw
from nas.blocks.mixers import dilated_reparam
from nas.blocks.mixers import pool
from nas.blocks.mixers import partial_conv
from nas.blocks.mixers import lka
from nas.blocks.mixers import gnconv
from nas.blocks.mixers import focal
from nas.blocks.mixers import attention
from nas.blocks.mixers import mbconv
from nas.blocks.mixers import resnet
