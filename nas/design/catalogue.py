"""The design catalogue: per resolution, every layer choice of every stage with its entropy and costs.

The programmes of :mod:`nas.design.milp` choose among these units; non-dominated choices only
(:func:`pareto_choices`), tabulated once per space and resolution.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.blocks.costs import conv_spatial, numel
from nas.blocks.layer import check_layer, layer_cost
from nas.blocks.skeleton import HeadCfg, conv_unit_cost, head_cost
from nas.proxies.entropy import conv_entropy, layer_entropy, stem_unit
from nas.space.arch import LayerChoice
from nas.space.resolve import ConvUnit, layer_cfg
from nas.space.space import SearchSpace


# ------------------------------------------------------------------------------------- catalogue
@dataclass
class CatUnit:
    entropy: float
    params: int
    macs: int
    peak: int
    width: int = 0
    active: int = 0


ZERO_UNIT = CatUnit(0.0, 0, 0, 0)


@dataclass
class Catalogue:
    """Every unit of a space at one resolution, costed by the same functions nas.count uses."""

    res: int
    widths: list[tuple[int, ...]]  # W_{-1} (stem) .. W_{S-1}
    pairs: dict[tuple, CatUnit]  # (s, w', w) -> downsample (+ stem at s=0, + head at s=S-1)
    firsts: dict[tuple, list[tuple[LayerChoice, CatUnit]]]  # (s, w', w) -> in_block first-layer choices
    rests: dict[tuple, list[tuple[LayerChoice, CatUnit]]]  # (s, w) -> choices of the other layers
    rest_slots: list[int]  # T_s
    n_out_sp: int  # positions of the final feature map


def stage_combos(space: SearchSpace, si: int, first: bool) -> list[LayerChoice]:
    st = space.stages[si]
    mixers = st.mixer_choices(0) if first else st.mixers
    out: dict[LayerChoice, None] = {}
    for m, k, r, g in itertools.product(mixers, st.kernels, st.ratios, st.groups):
        out[space._canon_layer(st, m, k, r, g)] = None
    return list(out)


def catalogue(space: SearchSpace, res: int) -> Catalogue:
    cache = _CATS.get(space)
    if cache is None:
        cache = _CATS[space] = {}
    if res in cache:
        return cache[res]
    spec, dims = space.spec, space.dims
    in_sp = (res,) * dims
    stem_u = ConvUnit(spec.in_channels, spec.stem_widths[0], in_sp, spec.stem)
    sp = stem_u.out_spatial
    stem_h = stem_unit(space, res)[0]  # the stem's own term (a multi-op stem's, at the first stem width)
    widths = [tuple(spec.stem_widths)] + [tuple(st.widths) for st in space.stages]
    pairs: dict[tuple, CatUnit] = {}
    firsts: dict[tuple, list] = {}
    rests: dict[tuple, list] = {}
    slots = []
    n_st = len(space.stages)
    for si, st in enumerate(space.stages):
        sp_in = sp
        if st.downsample == "conv":
            sp = conv_spatial(sp, st.down.kernel, st.down.stride, padding=st.down.padding)
        elif st.downsample == "in_block":
            sp = tuple((s + st.stride - 1) // st.stride for s in sp)
        for pw, w in itertools.product(widths[si], widths[si + 1]):
            u = CatUnit(0.0, 0, 0, 0)
            if si == 0:
                su = ConvUnit(spec.in_channels, pw, in_sp, spec.stem)
                sc = conv_unit_cost(su)
                u = CatUnit(stem_h, sc.params, sc.macs, spec.in_channels * numel(in_sp) + sc.act)
            if st.downsample == "conv":
                du = ConvUnit(pw, w, sp_in, st.down)
                dc = conv_unit_cost(du)
                u = CatUnit(
                    u.entropy + conv_entropy(pw, st.down.kernel, dims),
                    u.params + dc.params,
                    u.macs + dc.macs,
                    max(u.peak, pw * numel(sp_in) + dc.act),
                )
            if st.downsample == "in_block":
                lst = []
                for lc in stage_combos(space, si, True):
                    cfg = layer_cfg(st, lc, pw, w, sp_in, st.stride, dims)
                    if check_layer(cfg):
                        continue
                    lcost = layer_cost(cfg)
                    lst.append(
                        (
                            lc,
                            CatUnit(
                                layer_entropy(cfg),
                                lcost.params,
                                lcost.macs,
                                pw * numel(sp_in) + lcost.act,
                                w,
                                1,
                            ),
                        )
                    )
                firsts[(si, pw, w)] = lst
            pairs[(si, pw, w)] = u
        for w in widths[si + 1]:
            lst = []
            for lc in stage_combos(space, si, False):
                if lc.mixer == "skip":
                    lst.append((lc, ZERO_UNIT))
                    continue
                cfg = layer_cfg(st, lc, w, w, sp, 1, dims)
                lcost = layer_cost(cfg)
                lst.append(
                    (lc, CatUnit(layer_entropy(cfg), lcost.params, lcost.macs, w * numel(sp) + lcost.act, w, 1))
                )
            rests[(si, w)] = lst
        slots.append(max(st.depths) - (1 if st.downsample == "in_block" else 0))
    # the head, on the last stage's pairs
    for (si, pw, w), u in pairs.items():
        if si == n_st - 1:
            hc = head_cost(HeadCfg(w, sp, dims, spec.head))
            pairs[(si, pw, w)] = CatUnit(u.entropy, u.params + hc.params, u.macs + hc.macs, u.peak)
    cat = Catalogue(res, widths, pairs, firsts, rests, slots, numel(sp))
    cache[res] = cat
    return cat


_CATS: weakref.WeakKeyDictionary[SearchSpace, dict[int, Catalogue]] = weakref.WeakKeyDictionary()


def pareto_choices(
    items: list[tuple[LayerChoice, CatUnit]],
    lat: list[float] | None,
    use_peak: bool,
    group: Callable[[LayerChoice], Any],
) -> list[int]:
    """Indices of the choices not dominated (more entropy or less of some limited cost); ties keep the first."""
    idx = [i for i, (lc, _) in enumerate(items) if lc.mixer != "skip"]
    keep = [i for i, (lc, _) in enumerate(items) if lc.mixer == "skip"]
    if not idx:
        return keep
    cols = [[-items[i][1].entropy, items[i][1].params, items[i][1].macs] for i in idx]
    if use_peak:
        for row, i in zip(cols, idx):
            row.append(items[i][1].peak)
    if lat is not None:
        for row, i in zip(cols, idx):
            row.append(lat[i])
    m = np.asarray(cols, dtype=np.float64)
    m = np.round(m, 9)
    groups = [group(items[i][0]) for i in idx]
    same = np.array([[a == b for b in groups] for a in groups])
    le = np.all(m[None, :, :] <= m[:, None, :], axis=2)  # le[i, j]: j <= i everywhere
    lt = np.any(m[None, :, :] < m[:, None, :], axis=2)
    eq = le & ~lt
    n = len(idx)
    earlier = np.tri(n, n, -1, dtype=bool)  # earlier[i, j]: j < i
    dominated = np.any(same & ((le & lt) | (eq & earlier)), axis=1)
    keep += [i for i, d in zip(idx, dominated) if not d]
    return sorted(keep)
