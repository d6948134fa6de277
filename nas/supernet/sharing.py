"""How the supernet shares weights between the configurations a layer slot can take.

Every tensor of a standard module (a parameter or buffer of ``build_layer(cfg)``, a stem/downsample
unit or the head) is read from a *bank* tensor of its slot. Each block declares how in its own
definition (``MixerDef.bank_name``, ``MixerDef.segments``, ``nas.blocks.layer.mlp_segments``); this
module asks it, for one tensor name:

- which bank tensor it reads (:func:`bank_name`): by default the tensor's own name, so e.g. every
  kernel size of a dwconv reads the same ``weight``; a few mixers whose structure changes with the
  kernel get a variant tag so that only like reads like (LKA's dilated conv per dilation, the
  dilated re-param branches per dilation);
- how its channel axes are laid out (:func:`segments`): most axes are one block, sliced first-n;
  an axis that concatenates several C-dependent blocks (attention's fused q|k|v projection, focal's
  q|ctx|gates, HorNet's gate widths, a GLU's value|gate halves) is declared as segments, and each
  segment is sliced first-n on its own, so a narrower layer's ``k`` rows are the wider layer's
  ``k`` rows, not a slice across the q/k boundary.

Anything not declared is sliced first-n along every channel axis and centre-cropped along
kernel axes. That is always *exact* (the standard module defines the maths; the supernet only
supplies its tensors), so a new mixer works without declaring anything; a declaration only makes the
sharing more meaningful.
"""

from __future__ import annotations

from nas.blocks.layer import LayerCfg, mlp_segments
from nas.blocks.registry import get_mixer

Segs = tuple[int, ...]
SHARED = "shared"
"""The owner of a layer's own tensors (norms, channel mixer, layer scales) around its mixer."""
SHARINGS = ("mlp", "none")
"""What the mixers of a layer slot share: ``mlp`` = the parts around the mixer (norms, channel mixer, layer
scales), owned by :data:`SHARED`; ``none`` = nothing: each mixer owns a whole layer (``shared@<mixer>``
owns its parts around the mixer), so every choice of a slot gets the same share of training, as a
self-contained mixer (mbconv) always does."""


def is_shared(owner: str) -> bool:
    """Whether ``owner`` holds the parts around a mixer (:data:`SHARED`, or ``shared@<mixer>``)."""
    return owner == SHARED or owner.startswith(SHARED + "@")


def around_owner(mixer: str, mode: str) -> str:
    """The owner of the parts around ``mixer`` in a slot under sharing ``mode`` (see :data:`SHARINGS`)."""
    return SHARED if mode == "mlp" else f"{SHARED}@{mixer}"


def bank_name(cfg: LayerCfg | None, owner: str, name: str) -> str:
    """The bank tensor (within the slot and owner) that tensor ``name`` of this configuration reads."""
    if cfg is None or is_shared(owner):
        return name
    hook = get_mixer(owner).bank_name
    return hook(cfg, name) if hook is not None else name


def segments(
    cfg: LayerCfg | None, owner: str, name: str, shape: tuple[int, ...]
) -> tuple[Segs | None, ...] | None:
    """Per axis, the sizes of the blocks concatenated along it (None: one block), or None for all axes."""
    if cfg is None or not shape:
        return None
    if is_shared(owner):
        rows = mlp_segments(cfg, name)
    else:
        hook = get_mixer(owner).segments
        rows = hook(cfg, name) if hook is not None else None
    if rows is None:
        return None
    if sum(rows) != shape[0]:  # the module changed under us: fall back to plain first-n (still exact)
        return None
    return (rows,) + (None,) * (len(shape) - 1)
