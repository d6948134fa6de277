"""Latency units of a network and their keys: what a device profile's block table is indexed by.

A network is the stem conv unit, then per stage an optional downsample conv unit and its layers, then
the head. Layers already have :func:`nas.blocks.layer.latency_key`; this module adds keys in the same
``name|k=v|...`` style for conv units (stem and downsample share one form) and for the head, and:

* :func:`arch_units` - the units of one arch, in order, each with its key, a builder of its standard
  module and its input shape (without batch);
* :func:`space_units` - every distinct unit a space can produce, enumerated stage by stage over
  resolution x incoming width x width x every layer choice (first layer vs later ones), not sampled;
* :class:`KeyIndex` - the fast path from archs to keys and to a sparse count matrix over a profile's
  key vocabulary (per-stage and per-layer caches, so featurising many archs is a few dict look-ups
  per layer), used by the latency predictors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from torch import nn

from nas.blocks.layer import LayerCfg, build_layer, check_layer, latency_key
from nas.space.arch import Arch, LayerChoice
from nas.space.language import ConvSpec, HeadSpec, StemSpec
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


@dataclass(frozen=True, slots=True)
class HeadCfg:
    """The head at its input: channels, spatial shape, dims and the space's head description."""

    cin: int
    spatial: tuple[int, ...]
    dims: int
    head: HeadSpec


# ------------------------------------------------------------------------------------------- keys


def _hw(spatial: Sequence[int]) -> str:
    return "x".join(str(s) for s in spatial)


@lru_cache(maxsize=100_000)
def conv_key(u: ConvUnit) -> str:
    """Key of a stem/downsample conv unit, e.g. ``conv|cin=3|cout=32|hw=224x224|k=3|s=2|d=2|norm=bn|act=gelu``."""
    s = u.spec
    if isinstance(s, StemSpec):  # a multi-op stem: one unit, its ops in order
        ops = ",".join(op.text() for op in s.ops)
        return f"stem|cin={u.cin}|cout={u.cout}|hw={_hw(u.spatial)}|d={len(u.spatial)}|ops={ops}"
    parts = [
        "conv",
        f"cin={u.cin}",
        f"cout={u.cout}",
        f"hw={_hw(u.spatial)}",
        f"k={s.kernel}",
        f"s={s.stride}",
        f"p={s.padding}",
        f"d={len(u.spatial)}",
        f"norm={s.norm}",
        f"act={s.act}",
    ]
    if s.bias is not None:
        parts.append(f"bias={int(s.bias)}")
    if s.norm_position != "post":
        parts.append(f"normpos={s.norm_position}")
    return "|".join(parts)


@lru_cache(maxsize=10_000)
def head_key(h: HeadCfg) -> str:
    """Key of the classifier head, e.g. ``head|cin=384|hw=7x7|d=2|pre=1024,bn,gelu|norm=none|classes=1000``.

    Dropout is left out (it does nothing at inference).
    """
    spec = h.head
    parts = ["head", f"cin={h.cin}", f"hw={_hw(h.spatial)}", f"d={h.dims}"]
    if spec.pre is not None:
        parts.append("pre={},{},{}".format(*spec.pre))
    parts.append(f"norm={spec.norm}")
    if spec.norm_at != "pooled":
        parts.append(f"norm_at={spec.norm_at}")
    if spec.post is not None:
        w, act, bias = spec.post
        parts.append(f"post={w},{act},{int(bias)}")
        if spec.post_norm != "none":
            parts.append(f"post_norm={spec.post_norm},{spec.post_order}")
    parts.append(f"classes={spec.classes}")
    return "|".join(parts)


def key_fields(key: str) -> tuple[str, dict[str, str]]:
    """Split a key into its type and its ``k=v`` fields: ``('layer:dwconv', {'cin': '64', ...})``."""
    head, *rest = key.split("|")
    out = {}
    for part in rest:
        k, _, v = part.partition("=")
        out[k] = v
    return head, out


# ---------------------------------------------------------------------------------------- modules


class _HeadPlan:
    """The three fields :class:`nas.models.build.Head` reads from a NetPlan."""

    def __init__(self, h: HeadCfg):
        self.head, self.head_cin, self.dims = h.head, h.cin, h.dims


def _deploy(module: nn.Module) -> nn.Module:
    from nas.models.build import fuse

    return fuse(module)


def build_conv_unit(u: ConvUnit) -> nn.Module:
    """The deploy-form module of a conv unit (as in ``nas.build(...).fuse()``)."""
    from nas.models.build import _conv_unit

    return _deploy(_conv_unit(u, len(u.spatial)))


def build_layer_unit(cfg: LayerCfg) -> nn.Module:
    """The deploy-form module of a layer."""
    return _deploy(build_layer(cfg))


def build_head_unit(h: HeadCfg) -> nn.Module:
    """The deploy-form module of the head (input: the last stage's feature map)."""
    from nas.models.build import Head

    return _deploy(Head(_HeadPlan(h)))  # type: ignore[arg-type]


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
        units.append(head_unit(HeadCfg(plan.head_cin, plan.head_spatial, plan.dims, plan.head)))
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


# ------------------------------------------------------------------------------------ fast keys


class KeyIndex:
    """Fast arch -> keys, and archs -> sparse count matrix over a key vocabulary, for one space.

    A stage's units depend only on (stage, incoming channels, incoming spatial, width) and its
    layer choices, so per such context the index keeps the downsample key and two small maps
    (first layer, later layers) from LayerChoice to key and column; featurising an arch is then a
    dict look-up per stage and per layer. With a ``vocab`` the columns are the keys' numbers in it
    (-1: not in the vocabulary). ``keys(arch)`` equals ``arch_keys(arch)``.
    """

    _SKIP = -2

    def __init__(self, space: SearchSpace, vocab: dict[str, int] | None = None):
        self.space = space
        self.vocab = vocab
        self._stem: dict[tuple[int, int], tuple[str, int, tuple[int, ...]]] = {}
        self._ctx: dict[tuple, _StageCtx] = {}
        self._head: dict[tuple[int, tuple[int, ...]], tuple[tuple[str, ...], tuple[int, ...]]] = {}
        self._features = space.spec.head.type == "features"

    def _col(self, key: str) -> int:
        return -1 if self.vocab is None else self.vocab.get(key, -1)

    def _stem_key(self, r: int, sw: int) -> tuple[str, int, tuple[int, ...]]:
        hit = self._stem.get((r, sw))
        if hit is None:
            spec = self.space.spec
            u = ConvUnit(spec.in_channels, sw, (r,) * self.space.dims, spec.stem)
            k = conv_key(u)
            hit = self._stem[(r, sw)] = (k, self._col(k), u.out_spatial)
        return hit

    def _context(self, si: int, c: int, sp: tuple[int, ...], width: int) -> _StageCtx:
        st = self.space.stages[si]
        down = None
        if st.downsample == "conv":
            u = ConvUnit(c, width, sp, st.down)
            k = conv_key(u)
            down = (k, self._col(k))
            sp, c = u.out_spatial, width
        return _StageCtx(self, si, c, width, sp, down)

    def _head_keys(self, c: int, sp: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        h = self._head.get((c, sp))
        if h is None:
            if self._features:
                h = ((), ())
            else:
                k = head_key(HeadCfg(c, sp, self.space.dims, self.space.spec.head))
                h = ((k,), (self._col(k),))
            self._head[(c, sp)] = h
        return h

    def _walk(self, arch: Arch, want_keys: bool) -> list:
        j = 0 if want_keys else 1
        stem = self._stem.get((arch.resolution, arch.stem)) or self._stem_key(arch.resolution, arch.stem)
        out: list = [stem[j]]
        append = out.append
        sp = stem[2]
        c = arch.stem
        ctxs = self._ctx
        for si, ch in enumerate(arch.stages):
            ck = (si, c, sp, ch.width)
            ctx = ctxs.get(ck)
            if ctx is None:
                ctx = self._context(si, c, sp, ch.width)
                ctxs[ck] = ctx
            if ctx.down is not None:
                append(ctx.down[j])
            layers = ch.layers
            if ctx.in_block and layers:
                got = ctx.first.get(layers[0]) or ctx._make(layers[0], True)
                append(got[j])
                layers = layers[1:]
            later = ctx.later
            for lc in layers:
                got = later.get(lc)
                if got is None:
                    if lc.mixer == "skip":
                        continue
                    got = ctx._make(lc, False)
                append(got[j])
            c, sp = ctx.c_out, ctx.sp_out
        out.extend(self._head_keys(c, sp)[j])
        return out

    def keys(self, arch: Arch) -> list[str]:
        """The unit keys of ``arch`` in order (same as :func:`arch_keys`, much faster)."""
        return self._walk(arch, True)

    def columns(self, arch: Arch) -> list[int]:
        """Column numbers of the arch's units in the vocabulary (-1 for keys outside it), in order."""
        return self._walk(arch, False)

    def count_matrix(self, archs: Sequence[Arch], missing: str = "error"):
        """Sparse CSR matrix (len(archs), len(vocab)) of unit counts per arch (needs a ``vocab``).

        Keys outside the vocabulary: ``missing='error'`` raises KeyError naming the first one;
        ``'ignore'`` drops them; ``'collect'`` returns ``(matrix, [(row, key), ...])`` with those left out.
        """
        from scipy import sparse

        if self.vocab is None:
            raise ValueError("KeyIndex.count_matrix needs a vocabulary")
        cols: list[int] = []
        indptr = [0]
        columns = self.columns
        for arch in archs:
            cols.extend(columns(arch))
            indptr.append(len(cols))
        idx = np.asarray(cols, dtype=np.int64)
        ptr = np.asarray(indptr, dtype=np.int64)
        left_out: list[tuple[int, str]] = []
        bad = idx < 0
        if bad.any():
            rows = np.repeat(np.arange(len(archs)), np.diff(ptr))
            first = int(np.flatnonzero(bad)[0])
            if missing == "error":
                raise KeyError(self.keys(archs[rows[first]])[first - ptr[rows[first]]])
            if missing == "collect":
                for r in np.unique(rows[bad]):
                    ks = self.keys(archs[r])
                    cs = idx[ptr[r] : ptr[r + 1]]
                    left_out += [(int(r), ks[i]) for i in np.flatnonzero(cs < 0)]
            keep = ~bad
            idx = idx[keep]
            ptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(archs)))])
        m = sparse.csr_matrix((np.ones(idx.size), idx, ptr), shape=(len(archs), len(self.vocab)))
        m.sum_duplicates()
        return (m, left_out) if missing == "collect" else m


class _StageCtx:
    """Units of one stage in one context (incoming channels/spatial, width): downsample + layer maps."""

    __slots__ = (
        "index",
        "si",
        "c",
        "width",
        "sp",
        "down",
        "first",
        "later",
        "c_out",
        "sp_out",
        "in_block",
        "stride",
    )

    def __init__(
        self, index: KeyIndex, si: int, c: int, width: int, sp: tuple[int, ...], down: tuple[str, int] | None
    ):
        st = index.space.stages[si]
        self.index, self.si, self.c, self.width, self.sp, self.down = index, si, c, width, sp, down
        self.in_block = st.downsample == "in_block"
        self.stride = st.stride
        self.first: dict[LayerChoice, tuple[str, int]] = {}
        self.later: dict[LayerChoice, tuple[str, int]] = {}
        if self.in_block:
            self.c_out, self.sp_out = width, tuple((s + st.stride - 1) // st.stride for s in sp)
        else:
            self.c_out, self.sp_out = c, sp

    def _make(self, lc: LayerChoice, first: bool) -> tuple[str, int]:
        ix = self.index
        if first:
            cfg = _layer_cfg(ix.space, self.si, lc, self.c, self.width, self.sp, self.stride)
        elif self.in_block:
            cfg = _layer_cfg(ix.space, self.si, lc, self.width, self.width, self.sp_out, 1)
        else:
            cfg = _layer_cfg(ix.space, self.si, lc, self.c, self.c, self.sp, 1)
        k = latency_key(cfg)
        got = (k, ix._col(k))
        (self.first if first else self.later)[lc] = got
        return got


_INDEX: dict[int, KeyIndex] = {}


def key_index(space: SearchSpace) -> KeyIndex:
    """The (cached) KeyIndex of a space object."""
    idx = _INDEX.get(id(space))
    if idx is None or idx.space is not space:
        idx = _INDEX[id(space)] = KeyIndex(space)
    return idx


__all__ = [
    "UNIT_KINDS",
    "ConvSpec",
    "HeadCfg",
    "KeyIndex",
    "Unit",
    "arch_keys",
    "arch_units",
    "conv_key",
    "head_key",
    "key_fields",
    "key_index",
    "layer_choices",
    "plan_units",
    "space_units",
]
