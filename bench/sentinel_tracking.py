"""Does the quiet guard's speed sentinel track what slows real networks on this host?

Times, in turn and for ``--seconds``: the guard's sentinel (:func:`nas.profile.timer.cpu_sentinel`), a larger
candidate (depthwise and pointwise convs on 32x56x56 activations, ~2 ms, out of the small one's cache
footprint), and one arch of each of ``--spaces`` (median of 5 runs). Each series is divided by its own 5th
percentile (its full speed). Prints the correlation of the log ratios, and, for each sentinel and tolerance,
the share of samples it would keep and how many kept network timings are still over 1.1x full speed: what a
sentinel-filtered measurement can not remove. Run on a quiet machine, nothing else running:

    python bench/sentinel_tracking.py [--seconds 150] [--spaces ofa-mbv3,hybrid]
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import nas
from nas.profile.run import _input_shape
from nas.profile.sampling import sample_archs
from nas.profile.timer import _cpu_timed, _no_gc, cpu_sentinel, pinned_threads
from nas.space import load_space


def timed(module: torch.nn.Module, x: torch.Tensor, runs: int) -> Callable[[], float]:
    """One call: the median of ``runs`` timed runs of ``module(x)`` in ms (two warm-up runs first)."""
    module.eval()

    def call() -> object:
        with torch.inference_mode():
            return module(x)

    once = _cpu_timed(call)

    def median_ms() -> float:
        with pinned_threads(1), _no_gc():
            once()
            once()
            return float(np.median([once() for _ in range(runs)]))

    return median_ms


def large_sentinel() -> Callable[[], float]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), torch.nn.Conv2d(32, 96, 1),
                              torch.nn.ReLU(), torch.nn.Conv2d(96, 96, 3, padding=1, groups=96),
                              torch.nn.Conv2d(96, 32, 1))
    return timed(net, torch.randn(1, 32, 56, 56), runs=9)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--spaces", default="ofa-mbv3,hybrid")
    args = ap.parse_args()
    torch.set_num_threads(1)
    series: dict[str, Callable[[], float]] = {"sentinel": cpu_sentinel(1), "large sentinel": large_sentinel()}
    nets = args.spaces.split(",")
    for name in nets:
        arch = sample_archs(load_space(name), 1, 3)[0]
        series[name] = timed(nas.build(arch, drop_path=0.0).fuse(), torch.randn(1, *_input_shape(arch)), runs=5)
    rows = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        rows.append([f() for f in series.values()])
    ratio = np.array(rows) / np.percentile(np.array(rows), 5, axis=0)
    names = list(series)
    print(f"{len(rows)} rounds in {args.seconds:.0f} s; full speed (5th percentile, ms): "
          + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, np.percentile(np.array(rows), 5, axis=0))))
    corr = np.corrcoef(np.log(ratio).T)
    print("correlation of log(time / full speed):")
    for i, n in enumerate(names):
        print(f"  {n:>15}: " + " ".join(f"{corr[i, j]:5.2f}" for j in range(len(names))))
    print("  unfiltered: " + ", ".join(f"{n} {np.mean(ratio[:, 2 + k] > 1.1):.0%} over 1.1x" for k, n in enumerate(nets)))
    for j, sent in enumerate(names[:2]):
        for tol in (1.2, 1.4):
            keep = ratio[:, j] <= tol
            print(f"  {sent} within {tol}x: keeps {keep.mean():.0%}; kept network timings over 1.1x: "
                  + ", ".join(f"{n} {np.mean(ratio[keep, 2 + k] > 1.1):.0%}" for k, n in enumerate(nets)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
