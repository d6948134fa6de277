"""`nas export (RUN --pick pareto|ID... | ARCH.yaml) [--weights supernet:CKPT|FILE [--finetune EPOCHS]] --zoo DIR
[--name N]`."""

from __future__ import annotations

import argparse

from nas.cli import ui
from nas.units import fmt_macs, fmt_ms, fmt_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export archs to a model zoo (weights, ONNX, model card, index)",
        description="Export a search run's picks or an arch file to a model zoo: arch.yaml, model.safetensors, "
        "model.onnx (fused, dynamic batch, checked against onnxruntime), card.md, and the zoo's index.yaml.",
    )
    p.add_argument("source", help="a search run folder (runs/<study>/) or an arch YAML/JSON file")
    p.add_argument(
        "--pick",
        nargs="+",
        metavar="pareto|ID",
        help="for a run: 'pareto' (the whole front) or arch ids from the front or trials",
    )
    p.add_argument(
        "--weights",
        metavar="supernet:CKPT|FILE",
        help="weights from a supernet checkpoint or a safetensors state dict; none: architecture-only",
    )
    p.add_argument(
        "--finetune",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="with --weights supernet:CKPT: fine-tune each model from its inherited weights for EPOCHS on the "
        "checkpoint's training data and recipe before saving (the card keeps both accuracies); default 0",
    )
    p.add_argument(
        "--finetune-lr",
        type=float,
        metavar="LR",
        help="the fine-tune's learning rate (default: a tenth of the supernet's)",
    )
    p.add_argument("--zoo", help="the zoo folder (default $NAS_ZOO or ./zoo)")
    p.add_argument(
        "--name",
        help="entry name (a prefix NAME-a, NAME-b, ... when several models are exported); "
        "default <space>-<device>-<budget>-<letter> for a run, <space>-<id> for an arch file",
    )
    p.add_argument("--space", help="the space, when the run or arch file does not name a findable one")
    p.add_argument("--force", action="store_true", help="replace an existing entry of the same --name")
    p.add_argument(
        "--exporter",
        choices=("auto", "legacy", "dynamo"),
        default="auto",
        help="ONNX exporter (auto: legacy TorchScript, then dynamo; the first that passes the check)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from nas.zoo.export import export
    from nas.zoo.index import zoo_path

    zoo = zoo_path(args.zoo)
    # a fine-tune draws its own bar with ETA; one live bar at a time, so the export's count is then plain lines
    outer = ui.progress(None, f"export to {zoo}", json_mode=True if args.finetune else None)
    with outer as bar:

        def step(name: str) -> None:
            bar.advance()
            ui.info(f"exported {name}")

        records = export(
            args.source,
            pick=args.pick,
            weights=args.weights,
            zoo=zoo,
            name=args.name,
            space=args.space,
            force=args.force,
            exporter=args.exporter,
            opset=args.opset,
            on_step=step,
            finetune=args.finetune,
            finetune_lr=args.finetune_lr,
            reporter=ui.reporter(),
        )
    if ui.json_mode():
        ui.print_json(records)
        return 0
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append(
            {
                "name": r["name"],
                "id": r["id"],
                "params": fmt_params(m["params"]),
                "macs": fmt_macs(m["macs"]),
                "latency": fmt_ms(m["latency_ms"]) if m.get("latency_ms") is not None else "not known",
                "accuracy": m.get("accuracy"),
                "inherited": m.get("inherited_accuracy"),
                "score": m.get("score"),
                "weights": r["weights"]["source"] + (" + fine-tune" if r["weights"].get("finetune") else ""),
                "onnx_max_diff": max(r["onnx"]["max_abs_diff"].values()),
            }
        )
    ui.print_table(
        f"Exported to {zoo}",
        ["name", "id", "params", "macs", "latency", "accuracy"]
        + (["inherited"] if any(r["metrics"].get("inherited_accuracy") is not None for r in records) else [])
        + (["score"] if any(r["metrics"].get("score") is not None for r in records) else [])  # a proxy, not accuracy
        + ["weights", "onnx_max_diff"],
        rows,
    )
    return 0
