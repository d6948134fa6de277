"""`nas profile`: measure a device profile on this machine, import published tables, list and show.

nas profile --space hybrid [--device NAME] [--backend torch-cpu] [--threads 1] [--batch 1]
            [--resolution 224 ...] [--calib 100] [--holdout 100] [--max-minutes M]
nas profile --refine ARCHS --device NAME        measure given archs, add them, refit predictors
nas profile import TABLE.csv [--space ofa-mbv3] [--column v100_1_ms[=NAME[:KIND]] ...] [--name NAME ...]
nas profile list
nas profile show NAME
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from nas.cli import ui
from nas.cli.flags import add_config_flags, config_from_args
from nas.errors import NASError, ProfileError
from nas.profile.settings import ProfileSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="measure a device profile (block table + end-to-end archs); import, list, show profiles",
        description="Measure every distinct block of a space and a set of end-to-end archs on this machine "
        "into hardware_profiles/<device>/ (resumable). Subcommands import, list and show profiles.",
    )
    add_config_flags(p, ProfileSettings, exclude=("recheck",))
    p.add_argument(
        "--quick", action="store_true", help="tiny protocol for smoke tests (not for real profiles)"
    )
    add_config_flags(p, ProfileSettings, only=("recheck",))
    p.add_argument(
        "--other-load-limit",
        default=None,
        metavar="CPUS|off",
        help="discard and re-measure what was timed while other processes used more than this many "
        "CPUs (default 0.25; off: measure regardless)",
    )
    p.add_argument(
        "--refine",
        type=Path,
        metavar="ARCHS",
        help="measure these archs (file or folder) into --device's profile and refit its predictors",
    )
    p.add_argument("--no-refit", action="store_true", help="with --refine: do not refit predictors")
    p.set_defaults(func=cmd_profile)
    s = p.add_subparsers(dest="profile_cmd", metavar="ACTION")

    q = s.add_parser("import", help="import an arch-level latency table (one profile per latency column)")
    q.add_argument(
        "table", type=Path, help="CSV: OFA encodings (resolution, depths, ...), an 'arch' column (arch JSON) or "
                                 "an 'arch_str' column (NAS-Bench-201 strings)"
    )
    q.add_argument("--space", help="space of the archs (default ofa-mbv3 for the OFA format)")
    q.add_argument("--format", default="auto", choices=["auto", "ofa", "archs", "nb201"])
    q.add_argument(
        "--column",
        action="append",
        metavar="COL[=NAME[:KIND]]",
        help="latency column to import, optionally its profile name and device kind "
        "(cpu, gpu, npu, mobile, other), e.g. gold_6226_ms=xeon-gold-6226:cpu (repeatable; "
        "default: every *_ms column, named and kinded from the column name)",
    )
    q.add_argument(
        "--name", action="append", help="profile name per column (default <kind>-<device>[-b<batch>])"
    )
    q.add_argument("--prefix", help="prefix of default profile names (default: the device kind)")
    q.add_argument("--holdout-share", type=float, default=0.2, help="share of archs held out (by id hash)")
    q.add_argument("--source", help="where the data comes from (recorded in profile.yaml)")
    q.add_argument("--url", help="URL of the source")
    q.add_argument("--licence", help="licence of the data")
    q.add_argument("--description")
    q.add_argument("--root", type=Path, help="profiles folder (default ./hardware_profiles)")
    q.add_argument("--force", action="store_true", help="replace existing profiles")
    q.set_defaults(func=cmd_import)

    q = s.add_parser("list", help="the device profiles found")
    q.set_defaults(func=cmd_list)
    q = s.add_parser("show", help="a profile's machine, protocol and contents")
    q.add_argument("name", help="profile name or folder")
    q.set_defaults(func=cmd_show)


def _positive(name: str, value, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise NASError(f"{name} {value}: must be {'>= 0' if allow_zero else '> 0'}")


def _load_limit(text: str | None, default: float | None) -> float | None:
    if text is None:
        return default
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise NASError(f"--other-load-limit {text}: must be a number of CPUs >= 0 or 'off'")
    return value


def cmd_profile(args: argparse.Namespace) -> int:
    if args.refine is not None:
        return _cmd_refine(args)
    from nas.profile.run import quick_settings, run_profile

    if not args.spaces:
        raise NASError(
            "nas profile: give --space SPACE (repeatable), --refine ARCHS, or an action: import, list, show"
        )
    _positive("--threads", args.threads)
    _positive("--batch", args.batch)
    _positive("--calib", args.n_calib, allow_zero=True)
    _positive("--holdout", args.n_holdout, allow_zero=True)
    _positive("--max-minutes", args.max_minutes)
    settings = config_from_args(ProfileSettings, args)
    if args.quick:  # the tiny protocol, with every setting given on the command line
        given = {f.name: getattr(settings, f.name) for f in dataclasses.fields(ProfileSettings)
                 if f.metadata.get("cli") is not False}
        settings = quick_settings(**given)
    settings.other_load_limit = _load_limit(args.other_load_limit, settings.other_load_limit)
    report = run_profile(settings, reporter=ui.reporter())
    rows = [s.to_dict() for s in report.spaces]
    if ui.json_mode():
        ui.print_json(report.to_dict())
    else:
        ui.print_table(
            f"profile {report.device} ({report.path}), {ui.fmt_duration(report.elapsed_s)}",
            [
                "space",
                "blocks_done",
                "blocks_total",
                "blocks_new",
                "archs_done",
                "archs_total",
                "archs_new",
                "unstable",
                "complete",
            ],
            rows,
        )
    if report.stopped:
        left_b = sum(s.blocks_total - s.blocks_done for s in report.spaces)
        left_a = sum(s.archs_total - s.archs_done for s in report.spaces)
        ui.info(
            f"stopped after --max-minutes {args.max_minutes:g}: {left_b} block keys and {left_a} archs left; "
            f"re-run the same command to continue"
        )
    elif not ui.json_mode():
        spaces = " ".join(f"--space {s.space}" for s in report.spaces)
        ui.info(f"next: nas predictor fit --device {report.device} {spaces}")
    return 0


def _cmd_refine(args: argparse.Namespace) -> int:
    from nas.profile.run import read_arch_file, refine_profile

    if not args.device:
        raise NASError("--refine needs --device NAME (the measured profile to add the archs to)")
    space = args.spaces[0] if args.spaces else None
    archs = read_arch_file(args.refine, space)
    from nas.profile.quiet import DEFAULT_LIMIT

    prof, n = refine_profile(
        args.device, archs, reporter=ui.reporter(), max_minutes=args.max_minutes,
        other_load_limit=_load_limit(args.other_load_limit, DEFAULT_LIMIT),
    )
    ui.info(f"{prof.name}: measured {n} new arch(s) of {len(archs)} into split 'refine'")
    out = {"device": prof.name, "measured": n, "given": len(archs), "refit": []}
    if not args.no_refit:
        from nas.latency.fit import refit_device

        spaces = {a.space.name: a.space for a in archs}
        for res in refit_device(prof.name, [spaces[k] for k in sorted(spaces)]):
            out["refit"].append(res)
            ui.info(f"refit {res['path']}: {res['summary']}")
    if ui.json_mode():
        ui.print_json(out)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from nas.profile.importer import import_table

    done = import_table(
        args.table,
        args.space,
        fmt=args.format,
        columns=args.column,
        names=args.name,
        root=args.root,
        prefix=args.prefix,
        holdout_share=args.holdout_share,
        source=args.source,
        url=args.url,
        licence=args.licence,
        description=args.description,
        force=args.force,
    )
    ui.print_table(
        f"imported {args.table} into {len(done)} profile(s)",
        ["device", "column", "rows", "calib", "holdout", "duplicates", "path"],
        [d.to_dict() for d in done],
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from nas.profile.store import Profile, list_profiles

    rows = []
    for path in list_profiles():
        try:
            d = Profile.load(path).describe()
        except ProfileError as e:
            ui.warn(str(e))
            continue
        spaces = ", ".join(
            f"{k}({v['calib']}+{v['holdout']}{'+' + str(v['refine']) if v['refine'] else ''}"
            f"{', +' + str(v['verify']) + ' verify' if v.get('verify') else ''})"
            for k, v in d["spaces"].items()
        )
        rows.append(
            {
                "name": d["name"],
                "kind": d["kind"],
                "machine": d["machine"],
                "backend": d["backend"],
                "threads": d["threads"],
                "batch": d["batch"],
                "blocks": d["blocks"],
                "spaces (calib+holdout)": spaces,
            }
        )
    ui.print_table(
        "device profiles",
        ["name", "kind", "machine", "backend", "threads", "batch", "blocks", "spaces (calib+holdout)"],
        rows,
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nas.profile.store import Profile

    prof = Profile.load(args.name)
    d = prof.describe()
    if ui.json_mode():
        ui.print_json({**d, "meta": prof.meta})
        return 0
    meta = prof.meta
    ui.info(f"{d['name']} ({d['kind']}) at {d['path']}")
    if d["description"]:
        ui.info(d["description"])
    m = prof.machine
    ui.info("machine: " + ", ".join(f"{k}={v}" for k, v in m.items() if v is not None))
    for key in ("protocol", "block_protocol"):
        if meta.get(key):
            ui.info(f"{key}: " + ", ".join(f"{k}={v}" for k, v in meta[key].items()))
    if meta.get("source"):
        src = meta["source"]
        ui.info(
            f"source: {src.get('origin', src.get('file'))} ({src.get('url', '')}); file {src.get('file')} "
            f"column {src.get('column')}; licence {meta.get('licence', 'unknown')}"
        )
    rows = [{"space": k, **v} for k, v in d["spaces"].items()]
    ui.print_table(
        f"{d['name']}: {d['blocks']} block keys ({d['blocks_unstable']} unstable)",
        ["space", "calib", "holdout", "refine", "blocks_total", "complete"],
        rows,
    )
    return 0
