"""`nas supernet train | eval | extract`: train a weight-sharing supernet, score and extract its subnets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.cli import ui
from nas.errors import NASError

PROVENANCE = "supernet-inherited weights, BN recalibrated on {n} training batches"


def register(sub: argparse._SubParsersAction) -> None:
    from nas.cli.flags import add_config_flags
    from nas.supernet.config import TrainConfig

    p = sub.add_parser("supernet", help="train a weight-sharing supernet; evaluate or extract its subnets")
    s = p.add_subparsers(dest="supernet_cmd", metavar="ACTION")

    t = s.add_parser("train", help="train a supernet (sandwich rule + in-place distillation); resumable")
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, metrics.csv, eval.csv)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_config_flags(t, TrainConfig)  # one flag per TrainConfig field, help and default from the field
    t.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads per process (0 = torch's default)"
    )
    t.add_argument(
        "--workers", type=int, default=1, help="data-parallel workers on Ray Train (1 = in process)"
    )
    t.add_argument("--ray-address", help="join this Ray cluster (default: a local Ray)")
    t.set_defaults(func=cmd_train)

    for name, helptext in (
        ("eval", "accuracy of subnets with inherited weights (BN recalibrated)"),
        ("extract", "write a subnet as a standard model: arch.yaml + model.safetensors"),
    ):
        e = s.add_parser(name, help=helptext)
        e.add_argument("--checkpoint", required=True, type=Path, help="a run folder or its checkpoint file")
        e.add_argument(
            "--arch",
            action="append",
            default=[],
            type=Path,
            help="an arch YAML/JSON" + (" (repeatable)" if name == "eval" else ""),
        )
        e.add_argument("--data", help="data spec (default: the data the supernet was trained on)")
        e.add_argument("--calib-batches", type=int, default=None, help="BN recalibration batches")
        e.add_argument("--batch-size", type=int, default=256)
        e.add_argument("--device", default="auto")
        e.add_argument("--threads", type=int, default=0)
        if name == "eval":
            e.add_argument(
                "--archs", type=Path, help="a file of archs: a YAML/JSON list, JSON lines, or a folder"
            )
            e.add_argument("--sample", type=int, default=0, help="also N random archs of the space")
            e.add_argument("--extremes", action="store_true", help="also the largest and smallest archs")
            e.add_argument("--seed", type=int, default=0, help="seed of --sample")
            e.set_defaults(func=cmd_eval)
        else:
            e.add_argument("--out", type=Path, required=True, help="folder to write the model into")
            e.set_defaults(func=cmd_extract)


# ---- train ----------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from nas.cli.flags import config_from_args
    from nas.supernet.config import TrainConfig
    from nas.supernet.train import SupernetTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(TrainConfig, args)
    if args.workers > 1 or args.ray_address:
        from nas.supernet.ray_train import train_with_ray

        ui.info(f"training on Ray Train with {args.workers} workers (run folder {args.out})")
        summary = train_with_ray(
            cfg, args.out, args.workers, args.resume, args.ray_address, threads=args.threads or 1
        )
    else:
        trainer = SupernetTrainer(cfg, args.out, resume=args.resume)
        c = trainer.cfg
        ui.info(
            f"supernet over {trainer.space.name} ({trainer.supernet.describe()['bank_params']:,} shared "
            f"parameters) on {trainer.data.spec}: {len(trainer.data.train)} train / {len(trainer.data.val)} val, "
            f"{c.epochs} epochs x {trainer.steps_per_epoch} steps, {trainer.device}"
            + (f", resuming at step {trainer.step}" if args.resume else "")
        )
        summary = trainer.fit(reporter=ui.reporter())
    if ui.json_mode():
        ui.print_json(summary)
        return 0
    rows = [
        {"which": r["which"], "accuracy": r["accuracy"], "loss": r["loss"], "arch": r["arch"]}
        for r in summary.get("eval") or []
    ]
    if rows:
        ui.print_table(
            f"step {summary['steps']}/{summary['total_steps']}: " + PROVENANCE.format(n=cfg.calib_batches),
            ["which", "accuracy", "loss", "arch"],
            rows,
        )
    state = "finished" if summary["finished"] else "stopped (resume with --resume)"
    print(f"{state} at step {summary['steps']}/{summary['total_steps']}; checkpoint {summary['checkpoint']}")
    return 0


# ---- eval / extract ---------------------------------------------------------------------------------------
def _arch_items(path: Path) -> list[tuple[str, dict]]:
    """Plain arch dicts from a file of archs (YAML/JSON list, {archs: [...]}, JSON lines) or a folder."""
    import json

    from nas.io import read_json, read_yaml

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        out = []
        for f in files:
            out += _arch_items(f)
        return out
    if not path.is_file():
        raise NASError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        items = []
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise NASError(f"{path}: line {i + 1}: not valid JSON ({e.msg})") from None
    else:
        data = read_json(path) if path.suffix == ".json" else read_yaml(path)
        items = data.get("archs", [data]) if isinstance(data, dict) and "stages" not in data else data
        if isinstance(items, dict):
            items = [items]
    if not isinstance(items, list):
        raise NASError(f"{path}: expected an arch, a list of archs or {{archs: [...]}}")
    return [(f"{path}[{i}]", d) for i, d in enumerate(items)]


def _archs(args: argparse.Namespace, space) -> list:
    archs = []
    for p in args.arch:
        for src, d in _arch_items(p):
            if not isinstance(d, dict):
                raise NASError(f"{src}: an arch is a mapping with resolution, stem and stages")
            archs.append(space.arch_from_dict(d, src))
    if getattr(args, "archs", None):
        for src, d in _arch_items(args.archs):
            if not isinstance(d, dict):
                raise NASError(f"{src}: an arch is a mapping with resolution, stem and stages")
            archs.append(space.arch_from_dict(d, src))
    if getattr(args, "extremes", False):
        archs += [space.max(), space.min()]
    if getattr(args, "sample", 0):
        archs += space.sample_many(args.sample, args.seed)
    return archs


def _setup(args: argparse.Namespace) -> tuple[Any, dict, Any, Any]:
    import torch

    from nas.data import load_data
    from nas.supernet.bn import SubnetEvaluator
    from nas.supernet.checkpoint import load_supernet
    from nas.supernet.train import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    sn, state = load_supernet(args.checkpoint, device)
    cfg = state.get("config", {})
    spec = args.data or state.get("data", {}).get("spec") or cfg.get("data")
    data = load_data(spec, sn.space, int(cfg.get("seed", 0)))
    from nas.data import space_io

    head = space_io(sn.space).classes
    if data.classes > head:
        raise NASError(f"--data {spec}: {data.classes} classes, the supernet's head has {head}")
    n_calib = args.calib_batches if args.calib_batches is not None else int(cfg.get("calib_batches", 10))
    ev = SubnetEvaluator(sn, data.train, data.val, n_calib, args.batch_size, int(cfg.get("seed", 0)), device)
    return sn, state, data, ev


def cmd_eval(args: argparse.Namespace) -> int:
    import nas

    sn, state, data, ev = _setup(args)
    archs = _archs(args, sn.space)
    if not archs:
        raise NASError("nothing to evaluate: give --arch FILE, --archs FILE, --sample N or --extremes")
    rows = []
    with ui.progress(len(archs), "evaluating subnets") as bar:
        for a in archs:
            r = ev.evaluate(a)
            c = nas.count(a)
            rows.append(
                {
                    "id": a.id,
                    "accuracy": r["accuracy"],
                    "loss": r["loss"],
                    "params": c.params,
                    "macs": c.macs,
                    "arch": str(a),
                }
            )
            bar.advance()
    title = (
        f"{sn.space.name} subnets on {data.spec} val ({len(data.val)} samples), supernet step "
        f"{state.get('step')}: " + PROVENANCE.format(n=ev.calib_batches)
    )
    if ui.json_mode():
        ui.print_json({"provenance": title, "checkpoint": str(args.checkpoint), "results": rows})
        return 0
    from nas.units import fmt_macs, fmt_params

    ui.print_table(
        title,
        ["id", "accuracy", "loss", "params", "macs", "arch"],
        [{**r, "params": fmt_params(r["params"]), "macs": fmt_macs(r["macs"])} for r in rows],
    )
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from nas.io import atomic_path, write_json

    if len(args.arch) != 1:
        raise NASError("extract takes exactly one --arch")
    sn, state, data, ev = _setup(args)
    (arch,) = _archs(args, sn.space)
    r = ev.evaluate(arch)
    model = ev.model(arch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(arch, "save"):
        arch.save(out / "arch.yaml")
    else:
        from nas.io import write_yaml

        write_yaml(out / "arch.yaml", {"space": sn.space.name, "id": arch.id, **arch.to_dict()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / "model.safetensors", suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"arch_id": arch.id, "space": sn.space.name})
    info = {
        "arch_id": arch.id,
        "arch": str(arch),
        "checkpoint": str(args.checkpoint),
        "supernet_step": state.get("step"),
        "data": data.spec,
        "val_accuracy": r["accuracy"],
        "val_loss": r["loss"],
        "provenance": PROVENANCE.format(n=ev.calib_batches),
        "space_raw": getattr(getattr(sn.space, "spec", None), "raw", sn.space.name),
    }
    write_json(out / "info.json", info)
    if ui.json_mode():
        ui.print_json({k: v for k, v in info.items() if k != "space_raw"})
    else:
        print(
            f"wrote {out}/arch.yaml, model.safetensors (val accuracy {r['accuracy']:.4f}, "
            f"{PROVENANCE.format(n=ev.calib_batches)})"
        )
    return 0
