"""How reproducible is a measured latency on this machine? The ceiling for any latency predictor.

Re-measures the first N held-out archs of a measured profile under the profile's own end-to-end
protocol, twice, in this process (a fresh model per measurement, as the profile does), and prints for
each space the share of archs whose second measurement is within ±5% / ±10% of the first
("back-to-back") and of the value stored in the profile ("vs profile", taken earlier in another
process). A predictor can be no closer to a measurement than a second measurement of the same arch
is, so these shares bound the "within ±10%" figures of ``nas predictor eval``.

    python bench/latency_retest.py                              # this machine's profile, 3 spaces, 60 archs
    python bench/latency_retest.py --spaces hybrid --archs 100

Run it on a quiet machine (the same other-load guard as ``nas profile`` discards disturbed windows).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nas.profile.quiet import QuietGuard, measure_quietly
from nas.profile.run import ProfileSettings, device_name, measure_arch
from nas.profile.store import Profile
from nas.profile.timer import Protocol, Timer, speed_check


def _shares(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    rel = np.abs(b / a - 1.0)
    return {
        "within_5": float(np.mean(rel <= 0.05)),
        "within_10": float(np.mean(rel <= 0.10)),
        "median_abs_diff": float(np.median(rel)),
        "max_abs_diff": float(rel.max()),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="measured profile (default: this machine's 1-thread one)")
    ap.add_argument("--spaces", nargs="+", default=["hybrid", "ofa-mbv3", "seq1d"])
    ap.add_argument("--archs", type=int, default=60, help="held-out archs re-measured per space")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    device = args.device or device_name(ProfileSettings(spaces=[]))
    prof = Profile.load(device)
    protocol = Protocol.from_dict(prof.meta["protocol"])
    torch.set_num_threads(protocol.threads)
    timer = Timer(protocol)
    out = []
    for name in args.spaces:
        space = prof.load_space(name)
        archs, stored = prof.archs_of(space, "holdout")
        archs, stored = archs[: args.archs], stored[: args.archs]
        guard = QuietGuard(speed=speed_check(protocol))
        first = [m.median_ms for _, m in measure_quietly(archs, lambda a: measure_arch(a, timer), guard)]
        second = [m.median_ms for _, m in measure_quietly(archs, lambda a: measure_arch(a, timer), guard)]
        a, b = np.asarray(first), np.asarray(second)
        row = {
            "device": device,
            "space": name,
            "archs": len(archs),
            "back_to_back": _shares(a, b),
            "vs_profile": _shares(np.asarray(stored), a),
            "discarded_busy": guard.discarded,
        }
        out.append(row)
        if not args.json:
            bb, vp = row["back_to_back"], row["vs_profile"]
            print(
                f"{name:9s} {len(archs):4d} archs | back-to-back: ±5% {100 * bb['within_5']:5.1f}%  "
                f"±10% {100 * bb['within_10']:5.1f}%  max {100 * bb['max_abs_diff']:5.1f}% | vs profile: "
                f"±5% {100 * vp['within_5']:5.1f}%  ±10% {100 * vp['within_10']:5.1f}%  "
                f"max {100 * vp['max_abs_diff']:5.1f}%",
                flush=True,
            )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"profile {device}, protocol: median of >= {protocol.repeats} runs after {protocol.warmup} "
              f"warm-up, {protocol.threads} thread(s); measured archs re-built for each measurement")
    return out


if __name__ == "__main__":
    main()
