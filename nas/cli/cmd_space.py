"""`nas space list | show | sample | count`: browse spaces, draw archs, count their costs."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from nas.cli import ui
from nas.errors import NASError
from nas.units import fmt_bytes, fmt_macs, fmt_params

if TYPE_CHECKING:
    from nas.space import Arch, SearchSpace

COUNTED = "counted analytically"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("space", help="list, show, sample and count search spaces")
    s = p.add_subparsers(dest="space_cmd", metavar="ACTION")
    s.add_parser("list", help="the built-in spaces").set_defaults(func=cmd_list)
    q = s.add_parser("show", help="a space's stages and choices")
    q.add_argument("space", help="built-in name or YAML path")
    q.set_defaults(func=cmd_show)
    q = s.add_parser("sample", help="draw random archs (seeded)")
    q.add_argument("space")
    q.add_argument("--n", type=int, default=5, help="how many (default 5)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", type=Path, help="write each arch as DIR/<id>.yaml")
    q.set_defaults(func=cmd_sample)
    q = s.add_parser("count", help="params/MACs/memory of an arch file, or the range of a space")
    q.add_argument("target", help="an arch YAML/JSON, or a space name/YAML")
    q.add_argument("--n", type=int, default=200, help="archs sampled to describe a space (default 200)")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_count)


def _cost_row(arch: Arch) -> dict:
    from nas.cost.count import count

    c = count(arch)
    return {"id": arch.id, "arch": str(arch), "params": c.params, "macs": c.macs, "memory": c.memory}


def _fmt(row: dict) -> dict:
    if ui.json_mode():
        return row
    return {**row, "params": fmt_params(row["params"]), "macs": fmt_macs(row["macs"]),
            "memory": fmt_bytes(row["memory"])}


def cmd_list(args: argparse.Namespace) -> int:
    from nas.space import builtin_spaces, load_space

    rows = []
    for name in builtin_spaces():
        sp = load_space(name)
        rows.append({"name": name, "dims": sp.dims, "stages": sp.structure(),
                     "log10_archs": round(sp.log10_size(), 1), "description": sp.description})
    ui.print_table("Built-in search spaces (reference backbones: search_spaces/reference/)",
                   ["name", "dims", "stages", "log10_archs", "description"], rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nas.space import load_space

    sp = load_space(args.space)
    return _SHOW.get(sp.family, _show_stages)(sp)


def _show_cell(sp) -> int:  # noqa: ANN001 - the NB201 cell space
    """The NB201 cell benchmark: one op per edge."""
    from nas.nb201.space import EDGES, OPS

    rows = [{"edge": f"{i}->{j}", "ops": list(OPS)} for i, j in EDGES]
    if ui.json_mode():
        ui.print_json({"name": sp.name, "description": sp.description, "edges": rows})
    else:
        ui.info(f"{sp.name}: {sp.description}")
        ui.print_table(f"{sp.name}: one op per edge (15,625 cells)", ["edge", "ops"], rows)
    return 0


def _show_stages(sp: SearchSpace) -> int:
    """A YAML space: its stages and choices, and the costs of its extremes."""
    rows = []
    for i, st in enumerate(sp.stages):
        rows.append({"stage": i, "depth": list(st.depths), "width": list(st.widths), "stride": st.stride,
                     "downsample": st.downsample, "mixer": list(st.mixers), "kernel": list(st.kernels),
                     "ratio": list(st.ratios), "per_layer": sorted(st.per_layer)})
    if ui.json_mode():
        ui.print_json({"name": sp.name, "dims": sp.dims, "resolution": list(sp.spec.resolutions),
                       "stem": list(sp.spec.stem_widths), "log10_archs": sp.log10_size(), "stages": rows,
                       "source": sp.spec.source})
        return 0
    size = "resolution" if sp.dims == 2 else "length"
    ui.info(f"{sp.name} ({sp.spec.source}): {sp.spec.description}")
    ui.info(f"{size} {list(sp.spec.resolutions)}, stem width {list(sp.spec.stem_widths)}, "
            f"~10^{sp.log10_size():.1f} archs")
    ui.print_table(f"{sp.name}: stages", list(rows[0]), rows)
    mn, mx = sp.count(sp.min()), sp.count(sp.max())
    ui.print_table(f"{sp.name}: extremes ({COUNTED})", ["arch", "params", "macs", "memory"],
                   [_fmt({"arch": "min", **mn.as_dict()}), _fmt({"arch": "max", **mx.as_dict()})])
    return 0


_SHOW = {"nb201": _show_cell, "yaml": _show_stages}
"""How ``space show`` prints each family (by ``SpaceFamily.family``); others as stages."""


def cmd_sample(args: argparse.Namespace) -> int:
    from nas.space import load_space

    if args.n < 1:
        raise NASError(f"--n {args.n}: must be at least 1")
    sp = load_space(args.space)
    archs = sp.sample_many(args.n, args.seed)
    rows = [_cost_row(a) for a in archs]
    if args.out:
        for a in archs:
            a.save(args.out / f"{a.id}.yaml")  # records space_file, so the file reloads from anywhere
        ui.info(f"wrote {len(archs)} arch files to {args.out}/")
    ui.print_table(f"{args.n} archs of {sp.name} (seed {args.seed}; costs {COUNTED})",
                   ["id", "params", "macs", "memory", "arch"], [_fmt(r) for r in rows])
    return 0


def _is_arch_file(target: str) -> bool:
    """An arch file, or a space file that holds exactly one arch (a reference backbone)."""
    p = Path(target)
    if not p.is_file():
        return False
    from nas.io import read_json, read_yaml
    from nas.space.space import is_space_document, load_space

    data = read_json(p) if p.suffix == ".json" else read_yaml(p)
    if is_space_document(data):
        sp = load_space(p)
        return sp.is_fixed()
    return isinstance(data, dict) and "stages" in data


def cmd_count(args: argparse.Namespace) -> int:
    from nas.cost.count import count
    from nas.space import load_arch, load_space

    if _is_arch_file(args.target):
        arch = load_arch(args.target)
        row = _cost_row(arch)
        ui.print_table(f"{arch.space.name} arch {arch.id} ({COUNTED})", ["id", "params", "macs", "memory", "arch"],
                       [_fmt(row)])
        return 0
    sp: SearchSpace = load_space(args.target)
    costs = [count(a) for a in sp.sample_many(args.n, args.seed)]
    rows = []
    for key, fmt in (("params", fmt_params), ("macs", fmt_macs), ("memory", fmt_bytes)):
        vals = sorted(getattr(c, key) for c in costs)
        lo, hi = getattr(count(sp.min()), key), getattr(count(sp.max()), key)
        row = {"cost": key, "min": lo, "p10": vals[len(vals) // 10], "median": statistics.median(vals),
               "p90": vals[(9 * len(vals)) // 10], "max": hi}
        if not ui.json_mode():
            row = {k: (fmt(v) if k != "cost" else v) for k, v in row.items()}
        rows.append(row)
    ui.print_table(f"{sp.name}: costs of min/max and {args.n} random archs ({COUNTED})",
                   ["cost", "min", "p10", "median", "p90", "max"], rows)
    return 0
