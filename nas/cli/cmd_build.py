"""`nas build ARCH --summary`: build the standard model of an arch and show it stage by stage."""
from __future__ import annotations

import argparse

from nas.cli import ui
from nas.units import fmt_macs, fmt_params

MACS_TOLERANCE = 0.01
"""Largest relative gap between counted and fvcore MACs that --verify accepts."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build an arch's PyTorch model; --summary prints its stages")
    p.add_argument("arch", help="arch YAML/JSON file, or a space YAML with one arch (every choice a single value)")
    p.add_argument("--space", help="the space, when the arch file does not name a findable one")
    p.add_argument("--summary", action="store_true", help="table of stages with shapes, params, MACs")
    p.add_argument("--verify", action="store_true",
                   help="also check the count against the built model (params) and fvcore (MACs, within 1%%); "
                        "exits 1 when they disagree")
    p.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    import nas
    from nas.cost.count import conv_unit_cost, count_plan, head_cost
    from nas.space import load_arch
    from nas.space.resolve import resolve

    arch = load_arch(args.arch, args.space)
    plan = resolve(arch)
    total = count_plan(plan)
    model = nas.build(arch)
    stem = conv_unit_cost(plan.stem)
    stem_shape = (arch.stem, *plan.stem.out_spatial)
    rows = [{"stage": "stem", "layers": 1, "out": "x".join(map(str, stem_shape)), "params": stem.params,
             "macs": stem.macs}]
    for i, (sp, sc) in enumerate(zip(plan.stages, total.stages)):
        rows.append({"stage": i, "layers": len(sp.layers), "out": "x".join(map(str, (sp.channels, *sp.out_spatial))),
                     "params": sc.params, "macs": sc.macs})
    hc = head_cost(plan.head_unit)
    rows.append({"stage": "head", "layers": 1, "out": str(plan.head.classes), "params": hc.params, "macs": hc.macs})
    out = {"id": arch.id, "arch": str(arch), "params": total.params, "macs": total.macs, "memory": total.memory,
           "provenance": "counted analytically"}
    if args.verify:
        from nas.cost.reference import fvcore_macs, param_count

        shape = (1, plan.in_channels, *plan.input_spatial)
        out["built_params"] = param_count(model)
        out["fvcore_macs"] = fvcore_macs(model, shape)
        out["macs_rel_diff"] = abs(out["fvcore_macs"] - total.macs) / max(1, out["fvcore_macs"])
        out["verified"] = out["built_params"] == total.params and out["macs_rel_diff"] <= MACS_TOLERANCE
    rc = 0 if not args.verify or out["verified"] else 1
    if ui.json_mode():
        ui.print_json({**out, "stages": rows})
        return rc
    if args.summary:
        ui.print_table(f"{arch.space.name} {arch.id} (counted analytically)", ["stage", "layers", "out", "params", "macs"],
                       [{**r, "params": fmt_params(r["params"]), "macs": fmt_macs(r["macs"])} for r in rows])
    print(f"{arch.id}: {fmt_params(total.params)}, {fmt_macs(total.macs)} (counted) — {arch}")
    if args.verify:
        print(f"check: built model has {out['built_params']:,} params (counted {total.params:,}); "
              f"fvcore {fmt_macs(out['fvcore_macs'])} vs counted {fmt_macs(total.macs)} "
              f"({100 * out['macs_rel_diff']:.3f}% apart)")
        if not out["verified"]:
            ui.warn(f"verify failed: the count disagrees with the built model or fvcore "
                     f"(params must be equal, MACs within {100 * MACS_TOLERANCE:g}%)")
    return rc
