"""nas.count(arch): params, MACs and memory analytically, without building the model.

Reads the same network plan as nas.build, and each unit's cost comes from its block's own definition,
so params equal the built model's exactly. MACs count conv, linear and matmul/attention only.
Memory is an inference estimate at batch 1 in fp32: weight bytes plus the largest per-layer working set
(the layer's input plus every tensor it writes).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from nas.blocks.costs import Cost, conv_norm_act_cost, linear_cost, norm_cost, numel
from nas.blocks.layer import layer_cost
from nas.space.arch import Arch
from nas.space.language import StemSpec
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


@lru_cache(maxsize=10_000)
def conv_unit_cost(u: ConvUnit) -> Cost:
    """Cost of a stem/downsample conv unit."""
    s = u.spec
    if isinstance(s, StemSpec):
        cost, sp = Cost(), u.spatial
        for op, cin, cout in s.conv_widths(u.cin, u.cout):
            sp = op.out_spatial(sp)
            if op.op == "conv":
                cost = cost + conv_norm_act_cost(cin, cout, op.kernel, sp, norm=op.norm, bias=op.bias)
            else:
                cost = cost + Cost(0, 0, cout * numel(sp))
        return cost
    out = u.out_spatial
    if s.norm_position == "pre":
        bias = True if s.bias is None else s.bias
        from nas.blocks.costs import conv_cost

        return Cost(norm_cost(s.norm, u.cin, u.spatial).params) + conv_cost(u.cin, u.cout, s.kernel, out, bias=bias)
    return conv_norm_act_cost(u.cin, u.cout, s.kernel, out, norm=s.norm, bias=s.bias)


def head_cost(plan: NetPlan) -> Cost:
    """Cost of the classification head (zero for features-only heads)."""
    h = plan.head
    if h.type == "features":
        return Cost()
    c, sp = plan.head_cin, plan.head_spatial
    cost = Cost()
    if h.pre is not None:
        w, nm, _ = h.pre
        cost = cost + conv_norm_act_cost(c, w, 1, sp, norm=nm)
        c = w
    if h.norm != "none":
        cost = cost + Cost(2 * c)
    if h.post is not None:
        w, _, bias = h.post
        cost = cost + linear_cost(c, w, 1, bias)
        c = w
        if h.post_norm != "none":
            cost = cost + Cost(2 * c)
    return cost + linear_cost(c, h.classes, 1)


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
    total = total + head_cost(plan)
    memory = BYTES_PER_ELEMENT * (total.params + peak)
    return ArchCost(total.params, total.macs, memory, total.act, tuple(stage_costs))


def count(arch: Arch) -> ArchCost:
    """Params, MACs and memory of an arch, analytically (no model is built).

    Same sums as ``count_plan(resolve(arch))``, with every unit's cost memoised per space under a cheap
    tuple key, so counting runs at tens of thousands of archs per second.
    """
    if not isinstance(arch, Arch):
        return _count_nb201(arch)
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
        hc = cache[key] = head_cost(resolve(arch))
    params += hc.params
    macs += hc.macs
    act += hc.act
    return ArchCost(params, macs, BYTES_PER_ELEMENT * (params + peak), act, tuple(stage_costs))


def _count_nb201(arch) -> ArchCost:  # noqa: ANN001 - an NB201Arch
    """Cost of a NAS-Bench-201 cell network on the CIFAR-10 skeleton (32x32, 10 classes)."""
    from nas.nb201.network import count as count_nb201
    from nas.nb201.space import NB201Arch

    if not isinstance(arch, NB201Arch):
        raise TypeError(f"nas.count takes an Arch or NB201Arch, not {type(arch).__name__}")
    c = count_nb201(arch)
    peak = 3 * 32 * 32 + 2 * 16 * 32 * 32 * 4  # input plus a cell's working set at full resolution
    return ArchCost(c["params"], c["macs"], BYTES_PER_ELEMENT * (c["params"] + peak), 0, ())
