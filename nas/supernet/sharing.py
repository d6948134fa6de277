"""How the supernet shares weights between the configurations a layer slot can take.

Every tensor of a standard module (a parameter or buffer of ``nas.blocks.modules.layer.build_layer(cfg)``, a stem/downsample
unit or the head) is read from a *bank* tensor of its slot. This module says, for one tensor name:

- which bank tensor it reads (:func:`bank_name`): by default the tensor's own name, so e.g. every
  kernel size of a dwconv reads the same ``weight``; a few mixers whose structure changes with the
  kernel get a variant tag so that only like reads like (LKA's dilated conv per dilation, the
  dilated re-param branches per dilation);
- how its channel axes are laid out (:func:`segments`): most axes are one block, sliced first-n;
  an axis that concatenates several C-dependent blocks (attention's fused q|k|v projection, focal's
  q|ctx|gates, HorNet's gate widths, a GLU's value|gate halves) is declared as segments, and each
  segment is sliced first-n on its own, so a narrower layer's ``k`` rows are the wider layer's
  ``k`` rows, not a slice across the q/k boundary.

Anything not declared here is sliced first-n along every channel axis and centre-cropped along
kernel axes. That is always *exact* (the standard module defines the maths; the supernet only
supplies its tensors), so a new mixer works without an entry here; an entry only makes the
sharing more meaningful.
"""

from __future__ import annotations

from nas.blocks.layer import LayerCfg, hidden_width

Segs = tuple[int, ...]


def _lka_dilation(cfg: LayerCfg) -> int:
    from nas.blocks.mixers.lka import decompose

    return decompose(cfg.kernel)[2]


def bank_name(cfg: LayerCfg | None, owner: str, name: str) -> str:
    """The bank tensor (within the slot and owner) that tensor ``name`` of this configuration reads."""
    if cfg is None:
        return name
    if owner == "lka" and name.startswith("dil."):
        return f"dil@d{_lka_dilation(cfg)}.{name[4:]}"
    if owner == "dilated_reparam" and name.startswith("branches."):
        from nas.blocks.mixers.dilated_reparam import branch_schedule

        idx, rest = name[len("branches.") :].split(".", 1)
        _, dil = branch_schedule(cfg.kernel)[int(idx)]
        return f"branch@d{dil}.{rest}"
    return name


def segments(
    cfg: LayerCfg | None, owner: str, name: str, shape: tuple[int, ...]
) -> tuple[Segs | None, ...] | None:
    """Per axis, the sizes of the blocks concatenated along it (None: one block), or None for all axes."""
    if cfg is None or not shape:
        return None
    c = cfg.c
    rows: Segs | None = None
    if owner == "attention" and name in ("qkv.weight", "qkv.bias"):
        rows = (c, c, c)
    elif owner == "attention" and name in ("kv.weight", "kv.bias"):
        rows = (c, c)
    elif owner == "focal" and name in ("f.weight", "f.bias"):
        rows = (c, c, cfg.opt("focal_level") + 1)
    elif owner == "gnconv" and name in ("proj_in.weight", "proj_in.bias", "dw.weight", "dw.bias"):
        from nas.blocks.mixers.gnconv import order_widths

        w = tuple(order_widths(c, cfg.opt("order")))
        rows = (w[0], *w) if name.startswith("proj_in") else w
    elif owner == "shared" and cfg.channel_mixer == "glu" and name in ("mlp.fc1.weight", "mlp.fc1.bias"):
        h = hidden_width(c, cfg.ratio)
        rows = (h, h)
    if rows is None:
        return None
    if sum(rows) != shape[0]:  # the module changed under us: fall back to plain first-n (still exact)
        return None
    return (rows,) + (None,) * (len(shape) - 1)
