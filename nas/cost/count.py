"""nas.count(arch): params, MACs and memory analytically, without building the model.

Reads the same network plan as nas.build, and each unit's cost comes from its block's own definition,
so params equal the built model's exactly. MACs count conv, linear and matmul/attention only.
Memory is an inference estimate at batch 1 in fp32: weight bytes plus the largest per-layer working set
(the layer's input plus every tensor it writes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.blocks.costs import Cost, numel
from nas.blocks.layer import layer_cost
from nas.blocks.skeleton import conv_unit_cost, head_cost  # noqa: F401  (the unit costs, re-exported)
from nas.space.arch import Arch
from nas.space.resolve import ConvUnit, NetPlan, layer_cfg, resolve
from nas.units import fmt_bytes, fmt_macs, fmt_params

BYTES_PER_ELEMENT = 4


@dataclass(frozen=True)
class ArchCost:
    """Counted costs of an arch (provenance: analytic count)."""

    params: int
    macs: int
    memory: int
    activations: int
    stages: tuple[Cost, ...] = ()

    def as_dict(self) -> dict[str, int]:
        return {"params": self.params, "macs": self.macs, "memory": self.memory, "activations": self.activations}

    def __str__(self) -> str:
        return f"{fmt_params(self.params)}, {fmt_macs(self.macs)}, {fmt_bytes(self.memory)} (counted)"


def count_plan(plan: NetPlan) -> ArchCost:
    """Sum the costs of a network plan."""
    stem = conv_unit_cost(plan.stem)
    total = stem
    peak = plan.in_channels * numel(plan.input_spatial) + stem.act
    stage_costs = []
    for sp in plan.stages:
        sc = Cost()
        if sp.downsample is not None:
            dc = conv_unit_cost(sp.downsample)
            sc = sc + dc
            peak = max(peak, sp.downsample.cin * numel(sp.downsample.spatial) + dc.act)
        for cfg in sp.layers:
            lc = layer_cost(cfg)
            sc = sc + lc
            peak = max(peak, cfg.cin * numel(cfg.spatial) + lc.act)
        stage_costs.append(sc)
        total = total + sc
    total = total + head_cost(plan.head_unit)
    memory = BYTES_PER_ELEMENT * (total.params + peak)
    return ArchCost(total.params, total.macs, memory, total.act, tuple(stage_costs))


def count(arch: Any) -> ArchCost:
    """Params, MACs and memory of an arch of any space family, analytically (no model is built)."""
    space = getattr(arch, "space", None)
    if space is None:
        raise TypeError(f"nas.count takes an arch of a space family (Arch, NB201Arch), not {type(arch).__name__}")
    return space.count(arch)


def count_arch(arch: Arch) -> ArchCost:
    """Params, MACs and memory of an arch of a YAML space (its family's ``count``).

    Same sums as ``count_plan(resolve(arch))``, with every unit's cost memoised per space under a cheap
    tuple key, so counting runs at tens of thousands of archs per second.
    """
    space = arch.space
    cache = space._count_cache
    res = arch.resolution
    c = arch.stem
    key = ("stem", res, c)
    hit = cache.get(key)
    if hit is None:
        plan = resolve(arch)
        u = plan.stem
        cost = conv_unit_cost(u)
        hit = cache[key] = (cost, u.cin * numel(u.spatial) + cost.act, u.out_spatial)
    total, peak, sp = hit
    params, macs, act = total.params, total.macs, total.act
    stage_costs = []
    dims = space.dims
    for si, (st, ch) in enumerate(zip(space.stages, arch.stages)):
        sp_p, sp_m, sp_a = 0, 0, 0
        if st.downsample == "conv":
            key = ("down", si, c, ch.width, sp)
            hit = cache.get(key)
            if hit is None:
                u = ConvUnit(c, ch.width, sp, st.down)
                dc = conv_unit_cost(u)
                hit = cache[key] = (dc, c * numel(sp) + dc.act, u.out_spatial)
            dc, pk, sp = hit
            sp_p, sp_m, sp_a = dc.params, dc.macs, dc.act
            peak = max(peak, pk)
            c = ch.width
        for i, lc in enumerate(ch.layers):
            if lc.mixer == "skip":
                continue
            first = i == 0 and st.downsample == "in_block"
            key = (si, lc, c, sp, first, ch.width)
            hit = cache.get(key)
            if hit is None:
                cfg = layer_cfg(st, lc, c, ch.width if first else c, sp, st.stride if first else 1, dims)
                lcost = layer_cost(cfg)
                hit = cache[key] = (lcost, c * numel(sp) + lcost.act, cfg.cout, cfg.out_spatial)
            lcost, pk, c, sp = hit
            sp_p += lcost.params
            sp_m += lcost.macs
            sp_a += lcost.act
            peak = max(peak, pk)
        stage_costs.append(Cost(sp_p, sp_m, sp_a))
        params += sp_p
        macs += sp_m
        act += sp_a
    key = ("head", c, sp)
    hc = cache.get(key)
    if hc is None:
        hc = cache[key] = head_cost(resolve(arch).head_unit)
    params += hc.params
    macs += hc.macs
    act += hc.act
    return ArchCost(params, macs, BYTES_PER_ELEMENT * (params + peak), act, tuple(stage_costs))
