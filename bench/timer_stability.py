"""Stability of the latency protocol: the same small model measured several times per backend.

Prints, for torch-cpu and onnxruntime at the default protocol (1 thread): the median of each run,
its interquartile spread, the run-to-run variation (max/min of the run medians) and the ratio of
onnxruntime to torch medians; plus the time the two ONNX exporters take. Runs of the two backends
are interleaved so that slow drifts of the machine hit both alike.

    python bench/timer_stability.py            # 5 runs each (about 10-20 s)
    python bench/timer_stability.py --runs 2 --smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from nas.profile import Protocol, export_onnx, machine_info, measure
from nas.units import fmt_ms


def small_model(width: int = 16) -> nn.Module:
    """A small MobileNet-like net: stem, three inverted-residual blocks, pooled head."""

    def block(c_in: int, c_out: int, stride: int, expand: int = 4) -> nn.Module:
        hidden = c_in * expand
        return nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 2, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(),
        block(width, width * 2, 2),
        block(width * 2, width * 2, 1),
        block(width * 2, width * 4, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width * 4, 100),
    ).eval()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--smoke", action="store_true", help="tiny protocol, for CI")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)

    model = small_model()
    shape = (3, args.resolution, args.resolution)
    extra = dict(warmup=2, warmup_min_s=0.0, repeats=5, min_time_s=0.0) if args.smoke else {}
    backends = ("torch-cpu", "onnxruntime")
    protocols = {b: Protocol(backend=b, threads=args.threads, **extra) for b in backends}

    info = machine_info(protocols["torch-cpu"])
    print(
        f"machine: {info['cpu_model']}, {info['cpus_available']} cpus, torch {info['torch_version']}, "
        f"onnxruntime {info['onnxruntime_version']}"
    )
    print(f"model: small MobileNet-like, input {(1, *shape)}, threads {args.threads}, runs {args.runs}")
    print(f"protocol: {protocols['torch-cpu'].to_dict()}")

    export_s = {}
    for exporter in ("legacy", "dynamo"):
        t0 = time.perf_counter()
        export_onnx(model, shape, Protocol(backend="onnxruntime", onnx_exporter=exporter))
        export_s[exporter] = time.perf_counter() - t0
    print(f"onnx export time: legacy {export_s['legacy']:.2f} s, dynamo {export_s['dynamo']:.2f} s")

    runs: dict[str, list] = {b: [] for b in backends}
    for i in range(args.runs):
        for b in backends:
            t0 = time.perf_counter()
            m = measure(model, shape, protocols[b])
            runs[b].append(m)
            print(
                f"  run {i + 1} {b:<12} median {fmt_ms(m.median_ms):>9}  spread {m.rel_spread * 100:5.2f}%  "
                f"n {m.n:5d}  dropped {m.dropped:4d}  attempts {m.attempts}  stable {m.stable}  "
                f"({time.perf_counter() - t0:.2f} s)"
            )

    summary = {}
    print()
    print(f"{'backend':<12} {'median':>9} {'spread(med)':>11} {'run-to-run max/min':>19} {'unstable':>9}")
    for b in backends:
        medians = [m.median_ms for m in runs[b]]
        spreads = [m.rel_spread for m in runs[b]]
        s = {
            "median_ms": statistics.median(medians),
            "medians_ms": medians,
            "rel_spread_median": statistics.median(spreads),
            "run_to_run": max(medians) / min(medians),
            "unstable_runs": sum(not m.stable for m in runs[b]),
        }
        summary[b] = s
        print(
            f"{b:<12} {fmt_ms(s['median_ms']):>9} {s['rel_spread_median'] * 100:10.2f}% "
            f"{s['run_to_run']:19.3f} {s['unstable_runs']:>9}"
        )
    ratio = summary["onnxruntime"]["median_ms"] / summary["torch-cpu"]["median_ms"]
    summary["ratio_ort_over_torch"] = ratio
    summary["export_s"] = export_s
    print(f"ratio onnxruntime / torch-cpu (medians): {ratio:.3f}")
    if args.json:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
