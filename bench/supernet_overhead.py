"""Overhead of weight sharing: a supernet training step with the largest arch active vs the same standalone model.

For each case (space, input size, batch) it times one SGD training step (forward, cross-entropy, backward,
optimizer step) of ``Supernet`` running ``space.max()`` and of ``nas.build(space.max())``, alternating the two
so that drifts of the machine hit both alike, and prints the medians and their ratio (target <= 1.3x).

    python bench/supernet_overhead.py                  # tiny@8 b128, ofa-mbv3@128 b16, hybrid@96 b8 (~2-4 min)
    python bench/supernet_overhead.py --smoke          # tiny only, few repeats
    python bench/supernet_overhead.py --ray 2          # also a 2-worker Ray Train run of the tiny supernet

Pin the thread count (``--threads``, default 1) and run nothing else meanwhile: on a shared CPU, timings of
both sides wander, the ratio less so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import nas
from nas.space import load_space
from nas.supernet import Supernet

CASES = [("tiny", 8, 128), ("ofa-mbv3", 128, 16), ("hybrid", 96, 8)]


def _step(model, opt, x, y, run) -> float:
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(run(model, x), y)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def measure(space_name: str, size: int, batch: int, repeats: int, warmup: int) -> dict:
    space = load_space(space_name)
    arch = space.max()
    torch.manual_seed(0)
    sn = Supernet(space).train()
    sn.set_active(arch)
    ref = nas.build(arch).train()
    opt_s = torch.optim.SGD(sn.parameters(), lr=1e-3, momentum=0.9)
    opt_r = torch.optim.SGD(ref.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, space.spec.in_channels, *([size] * space.dims))
    y = torch.randint(0, space.spec.head.classes, (batch,))
    ts, tr = [], []
    for i in range(warmup + repeats):
        a = _step(sn, opt_s, x, y, lambda m, z: m(z))
        b = _step(ref, opt_r, x, y, lambda m, z: m(z))
        if i >= warmup:
            ts.append(a)
            tr.append(b)
    ms, mr = statistics.median(ts), statistics.median(tr)
    return {
        "space": space_name,
        "input": size,
        "batch": batch,
        "arch": str(arch),
        "params": nas.count(arch).params,
        "bank_params": sn.describe()["bank_params"],
        "supernet_ms": round(ms * 1e3, 2),
        "standalone_ms": round(mr * 1e3, 2),
        "ratio": round(ms / mr, 3),
        "supernet_iqr_ms": round(
            (statistics.quantiles(ts, n=4)[2] - statistics.quantiles(ts, n=4)[0]) * 1e3, 2
        ),
        "standalone_iqr_ms": round(
            (statistics.quantiles(tr, n=4)[2] - statistics.quantiles(tr, n=4)[0]) * 1e3, 2
        ),
    }


def ray_run(workers: int) -> dict:
    """A short real Ray Train run (TorchTrainer, gloo) of the tiny supernet on digits."""
    from nas.supernet.checkpoint import load_checkpoint
    from nas.supernet.ray_train import train_with_ray
    from nas.supernet.train import TrainConfig

    out = tempfile.mkdtemp(prefix="nas-ray-")
    try:
        cfg = TrainConfig(
            epochs=1, batch_size=128, n_random=1, eval_every=1, calib_batches=2, checkpoint_every=4
        )
        t = time.perf_counter()
        summary = train_with_ray(cfg, out, workers=workers)
        wall = time.perf_counter() - t
        ck = load_checkpoint(out)
        return {
            "workers": ck.state["workers"],
            "steps": summary["steps"],
            "finished": summary["finished"],
            "wall_s": round(wall, 1),
            "eval": summary["eval"],
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny only, 5 repeats")
    ap.add_argument("--case", action="append", help="SPACE:SIZE:BATCH (repeatable) instead of the defaults")
    ap.add_argument("--ray", type=int, default=0, help="also run Ray Train with this many workers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = CASES[:1] if args.smoke else CASES
    if args.case:
        cases = [(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2])) for c in args.case]
    repeats = 5 if args.smoke else args.repeats
    rows = [measure(s, size, b, repeats, args.warmup) for s, size, b in cases]
    out = {"threads": args.threads, "repeats": repeats, "cases": rows}
    if args.ray:
        out["ray"] = ray_run(args.ray)
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    print(
        f"training step, largest arch, median of {repeats} (torch CPU, {args.threads} thread(s)); target ratio <= 1.3"
    )
    print(
        f"{'space':10} {'input':>5} {'batch':>5} {'params':>9} {'supernet':>10} {'standalone':>10} {'ratio':>6}"
    )
    for r in rows:
        print(
            f"{r['space']:10} {r['input']:>5} {r['batch']:>5} {r['params']:>9,} {r['supernet_ms']:>8.1f}ms "
            f"{r['standalone_ms']:>8.1f}ms {r['ratio']:>6.3f}"
        )
    if args.ray:
        r = out["ray"]
        acc = ", ".join(f"{e['which']} {e['accuracy']:.3f}" for e in r["eval"] or [])
        print(
            f"Ray Train: {r['workers']} workers, {r['steps']} steps, finished={r['finished']}, "
            f"{r['wall_s']} s wall (incl. Ray start); val accuracy {acc}"
        )
    return out


if __name__ == "__main__":
    main()
