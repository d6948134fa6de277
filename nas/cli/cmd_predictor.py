"""`nas predictor fit | eval | show | list | predict`: latency predictors of device profiles.

nas predictor fit --device D --space S [--kind auto|table|calibrated|arch] [--max-train N]
                  [--features units|units+position|ofa|nb201] [--few-shot SRC ... --shots 20]
                  (the table shows the leave-one-out error on the training archs beside the held-out one;
                  with --few-shot, which of transfer / arch-only / stacked won on the k samples)
nas predictor eval --device D --space S [--on OTHER_DEVICE] [--split holdout] [--save] [--by mixer|kernel|stage-mixer]
nas predictor eval --all
nas predictor show --device D --space S      (or a JSON path)
nas predictor list
nas predictor predict ARCHS --device D [--space S] [--coverage 0.9]
                  (--device may be a predictor JSON: its recorded space file gives a user space)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nas.cli import ui
from nas.cli.flags import add_calibrate_flag
from nas.errors import NASError

METRICS = ["n", "rmse_ms", "mape", "within_5", "within_10", "spearman", "kendall"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predictor", help="fit, evaluate and show latency predictors (predictors/*.json)")
    s = p.add_subparsers(dest="predictor_cmd", metavar="ACTION")

    q = s.add_parser("fit", help="fit on a profile's calib rows, evaluate on its holdout rows, save JSON")
    q.add_argument("--device", required=True, help="profile name (hardware_profiles/<device>)")
    q.add_argument("--space", action="append", required=True, help="space(s) (repeatable)")
    q.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "table", "calibrated", "arch"],
        help="auto: calibrated with a block table, arch without",
    )
    q.add_argument(
        "--features",
        choices=["units", "units+position", "ofa", "nb201"],
        help="arch kind: feature set (default by space); units+position adds per-stage (mixer, kernel) counts",
    )
    q.add_argument(
        "--variant",
        default="auto",
        choices=["auto", "names", "scale", "names+traffic", "scale+traffic"],
        help="calibrated kind: correction terms (auto: best leave-one-out error on the training archs)",
    )
    q.add_argument("--max-train", type=int, help="use at most this many end-to-end archs (seeded subset)")
    q.add_argument("--few-shot", nargs="+", metavar="SRC", help="adapt these devices' arch predictors")
    q.add_argument("--shots", type=int, default=20, help="target archs for --few-shot (default 20)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", type=Path, help="output file (default predictors/<device>-<space>.json)")
    q.set_defaults(func=cmd_fit)

    q = s.add_parser(
        "eval", help="recompute held-out metrics (RMSE, MAPE, within ±5/±10%%, Spearman, Kendall)"
    )
    q.add_argument("--device", help="predictor's device (or a predictor JSON path)")
    q.add_argument("--space", action="append", help="space(s)")
    q.add_argument("--all", action="store_true", help="every predictor file found")
    q.add_argument("--on", help="evaluate on another profile's rows (transfer check)")
    q.add_argument("--split", default="holdout", choices=["holdout", "calib", "refine", "verify", "loo"],
                   help="the profile rows to judge on (default holdout); loo: a host-calibrated predictor's "
                        "leave-one-out error on every arch it measured on this host")
    q.add_argument("--save", action="store_true", help="store the recomputed metrics in the file")
    q.add_argument(
        "--by",
        choices=["mixer", "kernel", "stage-mixer"],
        help="error per group: an arch counts in every mixer (kernel size; mixer in a stage) it contains",
    )
    q.set_defaults(func=cmd_eval)

    q = s.add_parser("show", help="a predictor's provenance, fit and held-out metrics")
    q.add_argument("target", nargs="?", help="predictor JSON path")
    q.add_argument("--device")
    q.add_argument("--space")
    q.set_defaults(func=cmd_show)

    q = s.add_parser("list", help="predictor files found")
    q.set_defaults(func=cmd_list)

    q = s.add_parser("predict", help="predict the latency of archs (file or folder)")
    q.add_argument("archs", type=Path)
    q.add_argument("--device", help="default: this machine's shipped profile")
    q.add_argument("--space", help="space of the archs when the files do not name it")
    q.add_argument("--coverage", type=float, default=0.9, help="interval coverage (default 0.9)")
    add_calibrate_flag(q)
    q.set_defaults(func=cmd_predict)


def _fmt_row(m: dict) -> dict:
    if ui.json_mode():
        return m
    out = dict(m)
    for k in ("mape", "within_5", "within_10", "median_abs_err", "bias", "loo_mape", "loo_within_10"):
        if isinstance(out.get(k), float) and math.isfinite(out[k]):
            out[k] = f"{100 * out[k]:.1f}%"
    return out


def cmd_fit(args: argparse.Namespace) -> int:
    from nas.latency.fit import fit_latency_model

    if args.max_train is not None and args.max_train < 2:
        raise NASError(f"--max-train {args.max_train}: must be at least 2")
    if args.out is not None and len(args.space) > 1:
        raise NASError("--out names one file: give one --space")
    rows = []
    for space in args.space:
        pred = fit_latency_model(
            args.device,
            space,
            args.kind,
            features=args.features,
            variant=args.variant,
            max_train=args.max_train,
            few_shot_from=args.few_shot,
            shots=args.shots,
            seed=args.seed,
            out=args.out,
        )
        fitted = pred.metadata.get("fitted_on", {})
        loo = pred.metadata.get("loo") or {}
        rows.append(
            {
                "predictor": pred.name,
                "kind": pred.kind,
                "model": pred.metadata.get("model") or pred.metadata.get("variant") or pred.estimator.kind,
                "fitted_on": fitted.get("end_to_end", fitted.get("target")),
                "loo_mape": loo.get("mape"),
                "loo_within_10": loo.get("within_10"),
                **(pred.held_out or {}),
                "path": str(pred.path),
            }
        )
        ui.info(pred.provenance)
        choice = pred.metadata.get("model_choice")
        if choice and not ui.json_mode():
            ui.print_table(
                f"{pred.name}: few-shot model choice by leave-one-out error on the {fitted.get('target')} "
                f"measured archs (chosen: {pred.metadata.get('model')})",
                ["model", "loo_mape", "loo_within_10", "loo_huber"],
                [_fmt_row({"model": m, **v}) for m, v in choice.items()],
            )
    ui.print_table(
        "fitted latency predictors (loo_*: leave-one-out on the training archs; the rest on held-out archs)",
        ["predictor", "kind", "model", "fitted_on", "loo_mape", "loo_within_10", *METRICS, "path"],
        [_fmt_row(r) for r in rows],
    )
    return 0


def _targets(args: argparse.Namespace):
    from nas.latency import LatencyModel, find_predictor, list_predictors

    if args.all:
        return [LatencyModel.load(p) for p in list_predictors()]
    if not args.device:
        raise NASError(
            "nas predictor eval: give --device D --space S, a predictor path as --device, or --all"
        )
    if args.device.endswith(".json"):
        return [LatencyModel.load(args.device)]
    if not args.space:
        raise NASError("nas predictor eval: give --space S (repeatable)")
    return [LatencyModel.load(find_predictor(args.device, s)) for s in args.space]


GROUP_METRICS = ["n", "median_abs_err", "mape", "within_10", "bias"]


def _eval_by(args: argparse.Namespace) -> int:
    from nas.latency.fit import evaluate_by_group

    if args.save:
        raise NASError("nas predictor eval: --save stores the overall metrics; give it without --by")
    out = []
    for pred in _targets(args):
        rows = evaluate_by_group(pred, args.by, args.on, args.split)
        base = {"predictor": pred.name, "on": args.on or pred.device, "split": args.split, "by": args.by}
        out += [{**base, **r} for r in rows]
        if not ui.json_mode():
            ui.print_table(
                f"{pred.name} on {base['on']} ({args.split} archs), error per {args.by} "
                "(an arch counts in every group it contains; bias = median signed error)",
                [args.by, *GROUP_METRICS],
                [_fmt_row({args.by: r["group"], **r}) for r in rows],
            )
    if ui.json_mode():
        ui.print_json(out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from nas.latency.fit import evaluate_latency_model

    if args.by:
        return _eval_by(args)
    rows = []
    for pred in _targets(args):
        m = evaluate_latency_model(pred, args.on, args.split)
        if args.save and not args.on and args.split == "holdout":
            pred.metadata["held_out"] = m
            pred.metadata["provenance"] = pred.provenance
            pred.save()
        rows.append(
            {
                "predictor": pred.name,
                "kind": pred.kind,
                "on": args.on or pred.device,
                "split": args.split,
                **m,
            }
        )
    ui.print_table(
        "latency predictor accuracy",
        ["predictor", "kind", "on", "split", *METRICS],
        [_fmt_row(r) for r in rows],
    )
    return 0


def _load_one(args: argparse.Namespace):
    from nas.latency import LatencyModel, find_predictor

    if args.target:
        return LatencyModel.load(args.target)
    if not (args.device and args.space):
        raise NASError("nas predictor show: give a predictor path, or --device D --space S")
    return LatencyModel.load(find_predictor(args.device, args.space))


def cmd_show(args: argparse.Namespace) -> int:
    pred = _load_one(args)
    meta = pred.metadata
    info = {
        "predictor": pred.name,
        "path": str(pred.path),
        "kind": pred.kind,
        "model": pred.estimator.kind,
        "params": pred.estimator.get_params(),
        "device": pred.device,
        "space": pred.space.name,
        "features": (meta.get("features") or {}).get("type"),
        "fitted_on": meta.get("fitted_on"),
        "held_out": meta.get("held_out"),
        "created": meta.get("created"),
        "data_source": meta.get("data_source"),
        "data_licence": meta.get("data_licence"),
        "few_shot_from": meta.get("few_shot_from"),
        "few_shot_model": meta.get("model"),
        "loo": meta.get("loo"),
        "provenance": pred.provenance,
    }
    if ui.json_mode():
        ui.print_json(info)
        return 0
    print(pred.provenance)
    rows = [
        {"field": k, "value": v}
        for k, v in info.items()
        if k not in ("held_out", "provenance") and v is not None
    ]
    ui.print_table(f"{pred.name}", ["field", "value"], rows)
    if info["held_out"]:
        ui.print_table("held-out metrics", METRICS, [_fmt_row(info["held_out"])])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from nas.latency import list_predictors
    from nas.predictors.base import Predictor

    rows = []
    for p in list_predictors():
        try:
            m = Predictor.load(p).metadata
        except NASError as e:
            ui.warn(str(e))
            continue
        h = m.get("held_out") or {}
        rows.append(
            {
                "file": p.name,
                "kind": m.get("kind_label"),
                "device": m.get("device"),
                "space": m.get("space"),
                "n": h.get("n"),
                "mape": h.get("mape"),
                "within_10": h.get("within_10"),
                "kendall": h.get("kendall"),
            }
        )
    ui.print_table(
        "latency predictors",
        ["file", "kind", "device", "space", "n", "mape", "within_10", "kendall"],
        [_fmt_row(r) for r in rows],
    )
    return 0


def _arch_space(arch) -> str:
    """The space name of an arch (a YAML-space Arch or a NAS-Bench-201 cell)."""
    return arch.space.name if hasattr(arch, "space") else str(arch.to_dict().get("space"))


def _read_for_predict(args: argparse.Namespace):
    """(archs, predictor or None): a predictor JSON given as --device reads the archs in its own space
    (a user space is found from the space file it recorded); with a device name whose archs name a
    space that is not built in, the device's predictors of user spaces are tried."""
    from nas.latency import LatencyModel, list_predictors
    from nas.profile.run import read_arch_file

    pred = None
    if args.device and args.device.endswith(".json"):
        pred = LatencyModel.load(args.device)
        return read_arch_file(args.archs, args.space or pred.space), pred
    try:
        return read_arch_file(args.archs, args.space), None
    except NASError as first:
        if args.space or not args.device:
            raise
        for p in list_predictors():
            if not p.name.startswith(f"{args.device}-"):
                continue
            try:
                cand = LatencyModel.load(p)
            except NASError:
                continue
            if cand.device != args.device or not cand.metadata.get("space_file"):
                continue
            try:
                return read_arch_file(args.archs, cand.space), cand
            except NASError:
                continue
        raise first


def cmd_predict(args: argparse.Namespace) -> int:
    from nas.latency import load_latency_model
    from nas.latency.calibrate import latency_model_here

    archs, pred = _read_for_predict(args)
    spaces = {_arch_space(a) for a in archs}
    if len(spaces) > 1:
        raise NASError(
            f"{args.archs}: archs of several spaces ({', '.join(sorted(spaces))}); predict one at a time"
        )
    if pred is None and hasattr(archs[0], "space"):  # a YAML-space arch: the profile checked against this host
        pred = latency_model_here(args.device, archs[0].space, args.calibrate, ui.reporter())
    elif pred is None:
        pred = load_latency_model(args.device, _arch_space(archs[0]))
    ms, lo, hi = pred.predict_interval(archs, args.coverage)
    rows = [
        {"id": a.id, "latency_ms": float(m), "low_ms": float(lo_), "high_ms": float(hi_), "arch": str(a)}
        for a, m, lo_, hi_ in zip(archs, ms, lo, hi)
    ]
    ui.print_table(
        f"{pred.provenance}; interval {100 * args.coverage:g}%",
        ["id", "latency_ms", "low_ms", "high_ms", "arch"],
        rows,
    )
    return 0
