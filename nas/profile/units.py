"""Latency units of a network and their keys: what a device profile's block table is indexed by.

A network is the stem conv unit, then per stage an optional downsample conv unit and its layers, then
the head. Layers already have :func:`nas.blocks.layer.latency_key`; this module adds keys (written by
:func:`nas.blocks.keys.format_key`) for conv units (stem and downsample share one form) and for the head, and:

* :func:`arch_units` - the units of one arch, in order, each with its key, a builder of its standard
  module and its input shape (without batch);
* :func:`space_units` - every distinct unit a space can produce, enumerated stage by stage over
  resolution x incoming width x width x every layer choice (first layer vs later ones), not sampled;
The fast path from archs to keys (:class:`nas.latency.features.KeyIndex`) walks the same plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nas.blocks.layer import LayerCfg, check_layer, latency_key
from nas.blocks.modules.layer import build_layer
from nas.blocks.modules.skeleton import Head
from nas.blocks.modules.skeleton import build_conv_unit as conv_unit_module
from nas.blocks.skeleton import HeadCfg, conv_key, head_key
from nas.space.arch import Arch, LayerChoice
from nas.space.language import ConvSpec
from nas.space.resolve import ConvUnit, NetPlan, layer_cfg, resolve
from nas.space.space import SearchSpace

UNIT_KINDS = ("conv", "layer", "head")


@dataclass(frozen=True)
class Unit:
    """One latency unit: its key, a builder of its (deploy-form) module, and its input shape.

    ``input_shape`` excludes the batch dimension: ``(channels, *spatial)``. ``kind`` is one of
    ``conv`` (stem or downsample), ``layer`` or ``head``; ``cfg`` is the configuration it was made
    from (a ConvUnit, a LayerCfg, or a :class:`HeadCfg`).
    """

    key: str
    build: Callable[[], nn.Module] = field(repr=False, compare=False)
    input_shape: tuple[int, ...]
    kind: str = "layer"
    cfg: Any = field(default=None, repr=False, compare=False)


# ------------------------------------------------------------------------------------------- keys


# ---------------------------------------------------------------------------------------- modules


def _deploy(module: nn.Module) -> nn.Module:
    from nas.models.build import fuse

    return fuse(module)


def build_conv_unit(u: ConvUnit) -> nn.Module:
    """The deploy-form module of a conv unit (as in ``nas.build(...).fuse()``)."""
    return _deploy(conv_unit_module(u, len(u.spatial)))


def build_layer_unit(cfg: LayerCfg) -> nn.Module:
    """The deploy-form module of a layer."""
    return _deploy(build_layer(cfg))


def build_head_unit(h: HeadCfg) -> nn.Module:
    """The deploy-form module of the head (input: the last stage's feature map)."""
    return _deploy(Head(h))


def conv_unit(u: ConvUnit) -> Unit:
    return Unit(conv_key(u), lambda: build_conv_unit(u), (u.cin, *u.spatial), "conv", u)


def layer_unit(cfg: LayerCfg) -> Unit:
    if cfg.drop_path:
        cfg = _no_drop(cfg)
    return Unit(latency_key(cfg), lambda: build_layer_unit(cfg), (cfg.cin, *cfg.spatial), "layer", cfg)


def head_unit(h: HeadCfg) -> Unit:
    return Unit(head_key(h), lambda: build_head_unit(h), (h.cin, *h.spatial), "head", h)


def _no_drop(cfg: LayerCfg) -> LayerCfg:
    from dataclasses import replace

    return replace(cfg, drop_path=0.0)


# ------------------------------------------------------------------------------------ arch units


def plan_units(plan: NetPlan) -> list[Unit]:
    """The units of a network plan, in execution order."""
    units = [conv_unit(plan.stem)]
    for sp in plan.stages:
        if sp.downsample is not None:
            units.append(conv_unit(sp.downsample))
        units += [layer_unit(cfg) for cfg in sp.layers]
    if plan.head.type != "features":
        units.append(head_unit(plan.head_unit))
    return units


def arch_units(arch: Arch) -> list[Unit]:
    """The latency units of an arch (stem, per stage downsample + layers, head), in order."""
    return plan_units(resolve(arch, drop_path=0.0))


def arch_keys(arch: Arch) -> list[str]:
    """The keys of an arch's units (slow reference path; :class:`KeyIndex` is the fast one)."""
    return [u.key for u in arch_units(arch)]


# ------------------------------------------------------------------------------------ space units


def _layer_cfg(
    space: SearchSpace, si: int, lc: LayerChoice, cin: int, cout: int, sp: tuple[int, ...], stride: int
) -> LayerCfg:
    return layer_cfg(space.stages[si], lc, cin, cout, sp, stride, space.dims)


def layer_choices(space: SearchSpace, si: int, first: bool) -> list[LayerChoice]:
    """Every distinct canonical (non-skip) layer choice of stage ``si`` (at its first layer or later)."""
    st = space.stages[si]
    mixers = st.mixer_choices(0) if first else st.mixers
    out: dict[LayerChoice, None] = {}
    for m in mixers:
        if m == "skip":
            continue
        for k in st.kernels:
            for r in st.ratios:
                for g in st.groups:
                    out[space._canon_layer(st, m, k, r, g)] = None
    return list(out)


def _stage_inputs(
    space: SearchSpace, resolutions: Iterable[int]
) -> list[dict[tuple[int, tuple[int, ...]], None]]:
    """Per stage: the distinct (incoming channels, incoming spatial) pairs over the given resolutions."""
    spec = space.spec
    pairs: list[dict] = [dict() for _ in space.stages]
    for r in resolutions:
        stem_out = None
        for sw in spec.stem_widths:
            stem = ConvUnit(spec.in_channels, sw, (r,) * space.dims, spec.stem)
            stem_out = stem.out_spatial
            pairs[0][(sw, stem_out)] = None
        sp = stem_out
        for si, st in enumerate(space.stages):
            if si + 1 < len(space.stages):
                if st.downsample == "conv":
                    sp = ConvUnit(1, 1, sp, st.down).out_spatial
                elif st.downsample == "in_block":
                    sp = tuple((s + st.stride - 1) // st.stride for s in sp)
                for w in st.widths:
                    pairs[si + 1][(w, sp)] = None
    return pairs


def space_units(space: SearchSpace, resolutions: Sequence[int] | None = None) -> dict[str, Unit]:
    """Every distinct unit ``space`` can produce at the given resolutions (default: all), by key.

    Enumerated, not sampled: stem at every resolution x stem width; then stage by stage over every
    incoming (width, spatial) x width x layer choice, the first layer of a stride-carrying
    (``in_block``) stage apart from the later ones; the head at every last width x final spatial.
    """
    spec = space.spec
    res = tuple(spec.resolutions if resolutions is None else resolutions)
    bad = [r for r in res if r not in spec.resolutions]
    if bad:
        from nas.errors import ProfileError

        raise ProfileError(
            f"resolution {bad[0]} is not one of space {space.name}'s: {list(spec.resolutions)}"
        )
    units: dict[str, Unit] = {}

    def add(u: Unit) -> None:
        units.setdefault(u.key, u)

    for r in res:
        for sw in spec.stem_widths:
            add(conv_unit(ConvUnit(spec.in_channels, sw, (r,) * space.dims, spec.stem)))
    inputs = _stage_inputs(space, res)
    last: dict[tuple[int, tuple[int, ...]], None] = {}
    for si, st in enumerate(space.stages):
        later = layer_choices(space, si, first=False)
        first = layer_choices(space, si, first=True) if st.downsample == "in_block" else later
        for cin, sp in inputs[si]:
            for w in st.widths:
                if st.downsample == "none" and w != cin:
                    continue
                c, lsp = cin, sp
                if st.downsample == "conv":
                    down = ConvUnit(cin, w, sp, st.down)
                    add(conv_unit(down))
                    c, lsp = w, down.out_spatial
                if st.downsample == "in_block":
                    out_sp = tuple((s + st.stride - 1) // st.stride for s in sp)
                    for lc in first:
                        cfg = _layer_cfg(space, si, lc, cin, w, sp, st.stride)
                        if check_layer(cfg) is None:
                            add(layer_unit(cfg))
                    if st.max_depth > 1:
                        for lc in later:
                            cfg = _layer_cfg(space, si, lc, w, w, out_sp, 1)
                            if check_layer(cfg) is None:
                                add(layer_unit(cfg))
                    lsp = out_sp
                else:
                    for lc in later:
                        cfg = _layer_cfg(space, si, lc, c, c, lsp, 1)
                        if check_layer(cfg) is None:
                            add(layer_unit(cfg))
                if si == len(space.stages) - 1:
                    last[(w, lsp)] = None
    if spec.head.type != "features":
        for c, sp in last:
            add(head_unit(HeadCfg(c, sp, space.dims, spec.head)))
    return units


__all__ = [
    "UNIT_KINDS",
    "ConvSpec",
    "HeadCfg",
    "Unit",
    "arch_keys",
    "arch_units",
    "conv_key",
    "head_key",
    "layer_choices",
    "plan_units",
    "space_units",
]
