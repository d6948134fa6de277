"""Accuracy ground truth on the searched space: archs of ``hybrid-s`` trained alone on Fashion-MNIST.

What it measures. ``--archs`` archs (default 40) spread evenly in log-MACs over the space's cost range
(``spread_by_macs`` on a seeded uniform pool), each trained from scratch with ONE fixed recipe
(``nas.supernet.train.train_standalone``: SGD with Nesterov momentum, linear warm-up then cosine decay,
label smoothing 0.1, random translations, labels only), then evaluated on the whole Fashion-MNIST test
split (10,000 t10k images: top-1 accuracy) and on a stratified subset of the validation split (held out
of the 60k training images). ``--second-seed`` of the archs (default 12, spread over the same range) are
trained again with another seed (initialisation, data order and augmentation change; the data do not):
the Kendall tau between the two seeds is the ceiling any accuracy estimator can reach on this table.

The recipe (training subset, epochs, batch, learning rate, ...) is written beside the table in
``<table>_recipe.json`` and every row carries its short hash; a table never mixes recipes.

    python bench/accuracy_groundtruth.py                           # the full run (52 trainings)
    nohup nice -n 5 python bench/accuracy_groundtruth.py > bench/results/groundtruth.log 2>&1 &
    python bench/accuracy_groundtruth.py --smoke --out /tmp/gt     # 3 tiny trainings: the pipeline only
    python bench/accuracy_groundtruth.py --summary                 # the figures of the table as it is

Resumable: one CSV row is appended (atomically) per finished training; a re-run with the same recipe
skips the (arch, seed) pairs already in the table. Data: ``--data fashion-mnist[:DIR]`` (the IDX files in
DIR, ``$NAS_DATA/fashion-mnist`` or the Debian package ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
COLUMNS = [
    "arch_id", "arch", "arch_str", "seed", "test_accuracy", "val_accuracy", "test_loss", "val_loss",
    "params", "macs", "resolution", "wall_s", "cpu_s", "recipe", "machine", "date",
]

# The recipe: sized so that the 52 trainings take about an hour on 2 shared cores (2 workers, 1 thread
# each; see bench/README.md for the measurement that chose it). Everything that changes a result is here.
RECIPE = {
    "space": "hybrid-s",
    "data": "fashion-mnist",
    "train_subset": 12000,  # stratified subset of the 54,000 training images (after the val split)
    "val_subset": 3000,  # stratified subset of the 6,000 validation images
    "subset_seed": 0,
    "test": "the whole t10k split (10,000 images)",
    "epochs": 6,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-5,
    "warmup_epochs": 0.5,
    "label_smoothing": 0.1,
    "grad_clip": 5.0,
    "shift": 2,  # random translations of up to 2 px
    "flip": False,
    "resolution": "the arch's own (24, 28 or 32 px; the 28 px images are resized bilinearly)",
    "threads": 1,
}
SELECTION = {"archs": 40, "second_seed": 12, "pool": 2000, "pool_seed": 0, "seeds": [0, 1]}


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cpus)"


def table_paths(out: Path, recipe: dict) -> tuple[Path, Path]:
    stem = f"groundtruth_{recipe['space']}_{recipe['data']}"
    return out / f"{stem}.csv", out / f"{stem}_recipe.json"


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: Path, row: dict) -> None:
    """Append one row by rewriting the file atomically (a crash never leaves half a row)."""
    from nas.io import atomic_write_text

    text = path.read_text() if path.is_file() else ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    if not text:
        w.writeheader()
    w.writerow({k: row.get(k) for k in COLUMNS})
    atomic_write_text(path, text + buf.getvalue())


def select(space, selection: dict) -> tuple[list, list]:
    """The archs (smallest to largest MACs) and the subset trained with a second seed."""
    from nas.profile.run import spread_by_macs

    pool, seen = [], set()
    for a in space.sample_many(selection["pool"], seed=selection["pool_seed"]):
        if a.id not in seen:
            seen.add(a.id)
            pool.append(a)
    archs = spread_by_macs(pool, selection["archs"])
    k = selection["second_seed"]
    idx = sorted({int(round(i)) for i in np.linspace(0, len(archs) - 1, k)}) if k else []
    return archs, [archs[i] for i in idx]


# ---- workers ------------------------------------------------------------------------------------------
_DATA = None


def _init(recipe: dict, data_spec: str) -> None:
    global _DATA
    import torch

    torch.set_num_threads(int(recipe["threads"]))
    from nas.data import load_data, subset
    from nas.space import load_space

    d = load_data(data_spec, load_space(recipe["space"]))
    _DATA = subset(d, recipe["train_subset"], recipe["val_subset"], recipe["subset_seed"])


def train_config(recipe: dict, seed: int):
    from nas.supernet.train import TrainConfig

    return TrainConfig(
        space=recipe["space"],
        data=recipe["data"],
        epochs=recipe["epochs"],
        batch_size=recipe["batch_size"],
        optimizer=recipe["optimizer"],
        lr=recipe["lr"],
        momentum=recipe["momentum"],
        weight_decay=recipe["weight_decay"],
        warmup_epochs=recipe["warmup_epochs"],
        label_smoothing=recipe["label_smoothing"],
        grad_clip=recipe["grad_clip"],
        shift=recipe["shift"],
        flip=recipe["flip"],
        seed=seed,
        eval_batch_size=500,
        device="cpu",
    )


def _train(job: tuple[dict, dict, int]) -> dict:
    recipe, arch_dict, seed = job
    from nas.space import load_space
    from nas.supernet.train import train_standalone

    arch = load_space(recipe["space"]).arch_from_dict(arch_dict)
    c0, t0 = time.process_time(), time.perf_counter()
    r = train_standalone(arch, _DATA, train_config(recipe, seed))
    return {**r, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "seed": seed,
            "arch_id": arch.id}


# ---- figures --------------------------------------------------------------------------------------------
def seed_tau(rows: list[dict]) -> dict:
    """Kendall tau / Spearman rho of test accuracy between seed 0 and seed 1 of the archs with both."""
    from scipy.stats import kendalltau, spearmanr

    by: dict[str, dict[int, float]] = {}
    for r in rows:
        by.setdefault(r["arch_id"], {})[int(r["seed"])] = float(r["test_accuracy"])
    pairs = [(v[0], v[1]) for v in by.values() if 0 in v and 1 in v]
    if len(pairs) < 3:
        return {"pairs": len(pairs)}
    a, b = np.array(pairs).T
    r = float(np.corrcoef(a, b)[0, 1])
    # What a perfect estimator (one that knows each arch's seed-averaged accuracy) would reach, if seed noise
    # is normal and independent of the arch: its correlation with one seed is sqrt(r), with the mean of two
    # seeds sqrt(2r / (1 + r)) (Spearman-Brown); Kendall tau = 2/pi * arcsin(correlation) for normal data.
    rel = max(r, 0.0)
    return {
        "pairs": len(pairs),
        "kendall_tau": float(kendalltau(a, b).statistic),
        "spearman": float(spearmanr(a, b).statistic),
        "pearson": r,
        "mean_abs_diff": float(np.mean(np.abs(a - b))),
        "perfect_estimator_tau_vs_one_seed": float(2 / np.pi * np.arcsin(np.sqrt(rel))),
        "perfect_estimator_tau_vs_two_seed_mean": float(2 / np.pi * np.arcsin(np.sqrt(2 * rel / (1 + rel)))),
    }


def summary(rows: list[dict]) -> dict:
    from scipy.stats import kendalltau

    if not rows:
        return {"rows": 0}
    acc: dict[str, list[float]] = {}
    macs: dict[str, float] = {}
    for r in rows:
        acc.setdefault(r["arch_id"], []).append(float(r["test_accuracy"]))
        macs[r["arch_id"]] = float(r["macs"])
    ids = sorted(acc)
    mean = np.array([np.mean(acc[i]) for i in ids])
    m = np.array([macs[i] for i in ids])
    return {
        "rows": len(rows),
        "archs": len(ids),
        "test_accuracy": {"min": float(mean.min()), "median": float(np.median(mean)), "max": float(mean.max())},
        "macs_M": {"min": float(m.min() / 1e6), "max": float(m.max() / 1e6)},
        "kendall_tau_acc_vs_macs": float(kendalltau(mean, m).statistic) if len(ids) > 2 else None,
        "cpu_s_total": float(sum(float(r["cpu_s"]) for r in rows)),
        "wall_s_mean": float(np.mean([float(r["wall_s"]) for r in rows])),
        "seed_to_seed": seed_tau(rows),
    }


# ---- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fashion-mnist", help="fashion-mnist or fashion-mnist:DIR")
    ap.add_argument("--out", default=str(RESULTS), help="folder of the table (default bench/results)")
    ap.add_argument("--workers", type=int, default=2, help="training processes (1 thread each)")
    ap.add_argument("--archs", type=int, default=SELECTION["archs"])
    ap.add_argument("--second-seed", type=int, default=SELECTION["second_seed"])
    ap.add_argument("--limit", type=int, default=0, help="stop after this many new trainings (0 = all)")
    ap.add_argument("--smoke", action="store_true", help="3 archs, 1 epoch on 600 images (pipeline check)")
    ap.add_argument("--summary", action="store_true", help="print the figures of the table and exit")
    args = ap.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    import nas
    from nas.cli import ui
    from nas.errors import NASError
    from nas.io import write_json
    from nas.space import load_space

    recipe, selection = dict(RECIPE), dict(SELECTION, archs=args.archs, second_seed=args.second_seed)
    if not args.data.partition(":")[0] == "fashion-mnist":
        raise NASError(f"--data {args.data}: this benchmark is defined on fashion-mnist[:DIR]")
    if args.smoke:
        recipe.update(train_subset=600, val_subset=300, epochs=1, batch_size=64)
        selection.update(archs=3, second_seed=1, pool=50)
    h = recipe_hash(recipe)
    out = Path(args.out)
    table, sidecar = table_paths(out, recipe)
    rows = read_rows(table)
    if args.summary:
        print(json.dumps({"table": str(table), "recipe": h, **summary(rows)}, indent=2))
        return 0
    other = {r["recipe"] for r in rows} - {h}
    if other:
        raise NASError(f"{table}: rows of another recipe ({', '.join(sorted(other))}); this run's recipe is {h}; "
                       f"use another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(sidecar, {"recipe_hash": h, "recipe": recipe, "selection": selection,
                         "trainer": "nas.supernet.train.train_standalone",
                         "command": "python bench/accuracy_groundtruth.py " + " ".join(argv or sys.argv[1:])})

    space = load_space(recipe["space"])
    archs, twice = select(space, selection)
    jobs = [(a, 0) for a in archs] + [(a, 1) for a in twice]
    order = np.random.default_rng(selection["pool_seed"]).permutation(len(jobs))  # partial runs stay spread
    jobs = [jobs[i] for i in order]
    done = {(r["arch_id"], int(r["seed"])) for r in rows}
    todo = [(a, s) for a, s in jobs if (a.id, s) not in done]
    n_done = len(jobs) - len(todo)
    if args.limit:
        todo = todo[: args.limit]
    ui.info(f"{table}: {n_done} of {len(jobs)} trainings done, {len(todo)} to run now "
            f"(recipe {h}, {args.workers} workers)")
    mach, by_id = machine(), {a.id: a for a in archs}
    if todo:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_init,
                                 initargs=(recipe, args.data)) as pool, \
                ui.progress(n_done + len(todo), "ground truth", completed=n_done, interval=0) as bar:
            pending = {pool.submit(_train, (recipe, a.to_dict(), s)) for a, s in todo}
            while pending:
                fin, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in fin:
                    r = f.result()
                    a = by_id[r["arch_id"]]
                    c = nas.count(a)
                    append_row(table, {
                        "arch_id": a.id, "arch": a.key, "arch_str": str(a), "seed": r["seed"],
                        "test_accuracy": round(r["test_accuracy"], 5), "val_accuracy": round(r["accuracy"], 5),
                        "test_loss": round(r["test_loss"], 5), "val_loss": round(r["loss"], 5),
                        "params": c.params, "macs": c.macs, "resolution": a.resolution,
                        "wall_s": round(r["wall_s"], 2), "cpu_s": round(r["cpu_s"], 2), "recipe": h,
                        "machine": mach, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    })
                    bar.advance()
                    ui.info(f"{a.id} seed {r['seed']}: test {r['test_accuracy']:.4f} val {r['accuracy']:.4f} "
                            f"({c.macs / 1e6:.2f} MMACs, {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s cpu)")
    print(json.dumps({"table": str(table), "recipe": h, **summary(read_rows(table))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from nas.errors import run_script

    run_script(main)
