"""`nas zoo list | show NAME | verify [NAME]`: browse a model zoo and re-check its entries."""

from __future__ import annotations

import argparse

from nas.cli import ui
from nas.errors import ZooError
from nas.units import fmt_macs, fmt_ms, fmt_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list, show and verify exported models")
    s = p.add_subparsers(dest="zoo_cmd", metavar="ACTION")
    q = s.add_parser("list", help="the zoo's models")
    q.add_argument("--zoo", help="the zoo folder (default $NAS_ZOO or ./zoo)")
    q.set_defaults(func=cmd_list)
    q = s.add_parser("show", help="a model's card and files (checksums checked)")
    q.add_argument("name")
    q.add_argument("--zoo", help="the zoo folder (default $NAS_ZOO or ./zoo)")
    q.set_defaults(func=cmd_show)
    q = s.add_parser("verify", help="re-check checksums and ONNX parity (one model, or all)")
    q.add_argument("name", nargs="?")
    q.add_argument("--zoo", help="the zoo folder (default $NAS_ZOO or ./zoo)")
    q.set_defaults(func=cmd_verify)


def cmd_list(args: argparse.Namespace) -> int:
    from nas.zoo.index import read_index, zoo_path

    zoo = zoo_path(args.zoo)
    models = read_index(zoo, must_exist=True)["models"]
    if ui.json_mode():
        ui.print_json([{"name": n, **r} for n, r in sorted(models.items())])
        return 0
    rows = []
    for n, r in sorted(models.items()):
        m = r.get("metrics", {})
        lat = m.get("latency_ms")
        rows.append(
            {
                "name": n,
                "id": r.get("id"),
                "space": r.get("space"),
                "params": fmt_params(m.get("params", 0)),
                "macs": fmt_macs(m.get("macs", 0)),
                "latency": fmt_ms(lat) if lat is not None else "-",
                "accuracy": m.get("accuracy"),
                "score": m.get("score"),
                "weights": (r.get("weights") or {}).get("source"),
            }
        )
    score = ["score"] if any(r.get("score") is not None for r in rows) else []  # a search's proxy score, not accuracy
    ui.print_table(
        f"Models in {zoo}", ["name", "id", "space", "params", "macs", "latency", "accuracy", *score, "weights"], rows
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nas.zoo.index import CARD_FILE, check_files, get_record, zoo_path

    zoo = zoo_path(args.zoo)
    record = get_record(zoo, args.name)
    folder = check_files(zoo, args.name, record, (CARD_FILE,))
    if ui.json_mode():
        ui.print_json({"name": args.name, "path": str(folder), **record})
        return 0
    print(f"{folder}/")
    for f, sha in record["files"].items():
        print(f"  {f}  sha256:{sha}")
    print()
    print((folder / CARD_FILE).read_text(encoding="utf-8"), end="")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from nas.zoo.index import zoo_path
    from nas.zoo.load import verify

    zoo = zoo_path(args.zoo)
    results = verify(args.name, zoo)
    if ui.json_mode():
        ui.print_json(results)
    else:
        ui.print_table(f"Verify {zoo}", ["name", "ok", "checksums", "onnx_max_abs_diff", "problem"], results)
    bad = [r for r in results if not r["ok"]]
    if bad:
        raise ZooError(
            f"{len(bad)} of {len(results)} zoo models failed verification: "
            + "; ".join(f"{r['name']}: {r['problem']}" for r in bad)
        )
    return 0
