"""Host-correction terms compared on saved timings: block-type terms alone vs type + kernel-size terms.

Reads the timings `bench/latency_calibration.py` saved (arch id -> ms), rebuilds each space's calibration set
(the probe's archs + k = 20 spread over predicted latency) and its 60 held-out archs (seed 424242), fits
`HostCalibrated` with each `terms` choice and prints held-out and leave-one-out figures. No timing:

    python bench/host_terms.py bench/results/latency_calibration_xeon_times.json [--device D] [--spaces ...]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from nas.latency import load_latency_model
from nas.latency.calibrate import K_DEFAULT, latency_spread
from nas.predictors.host import HostCalibrated
from nas.profile.probe import probe_archs, probe_pool
from nas.profile.sampling import sample_archs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("times")
    ap.add_argument("--device", default="cpu-amd-epyc-1t-b1", help="the profile that was calibrated")
    ap.add_argument("--spaces", default="hybrid,ofa-mbv3,seq1d,tiny")
    args = ap.parse_args()
    first = json.loads(open(args.times).read())["first"]
    for name in args.spaces.split(","):
        base = load_latency_model(args.device, name)
        sp = base.space
        cal = list({a.id: a for a in probe_archs(sp) + latency_spread(base, probe_pool(sp), K_DEFAULT)}.values())
        cal = [a for a in cal if a.id in first]
        held = [a for a in sample_archs(sp, 60, 424242) if a.id in first]
        if len(cal) < 3 or not held:
            print(f"{name}: not in these timings")
            continue
        y, yh = np.array([first[a.id] for a in cal]), np.array([first[a.id] for a in held])
        X, Xh = base.featurise(cal), base.featurise(held)
        has_extra = hasattr(base.features, "extra_matrix")
        print(f"{name}: {len(cal)} calibration archs, {len(held)} held out")
        for terms in HostCalibrated.TERMS:
            est = HostCalibrated(terms=terms).fit(X, y, base=base.estimator,
                                                  extra=base.features.extra_matrix(X) if has_extra else None)
            r = np.abs(est.predict(Xh, extra=base.features.extra_matrix(Xh) if has_extra else None) / yh - 1)
            loo = est.metadata["loo"]
            print(f"  {terms:12s} held out {100 * np.mean(r <= 0.1):3.0f}% within ±10%, median {100 * np.median(r):4.1f}%"
                  f" | leave-one-out {100 * loo['within_10']:3.0f}%, MAPE {100 * loo['mape']:4.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
