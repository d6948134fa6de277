"""How good a search's estimator is: its rank agreement with trained accuracy on the ground-truth benchmark.

``bench/estimator_fidelity.py`` measures every estimator against standalone-trained archs
(``bench/results/estimators_<space>_<data>.json``); a search prints the line for its own estimator, so a
score is never shown without what it is worth.
"""
from __future__ import annotations

from pathlib import Path

from nas.io import read_json
from nas.paths import builtin_dir


def _key(estimator: str) -> str | None:
    kind, _, arg = estimator.partition(":")
    if kind == "proxy":
        return arg
    if kind == "supernet":
        return "supernet"
    if kind == "predictor":
        return "prescreen (LOO)"
    if kind == "train":  # the figure holds for the epochs measured, on any data spec of the benchmark's
        return f"train:{arg.partition(':')[0]}"
    return None


def benchmark_files() -> list[Path]:
    """The estimator-fidelity results found (built-in bench/results)."""
    d = builtin_dir("bench") / "results"
    return sorted(d.glob("estimators_*.json")) if d.is_dir() else []


def estimator_quality(estimator: str) -> dict | None:
    """The measured agreement of ``estimator`` (e.g. ``proxy:nwot``) with trained accuracy, or None when no
    benchmark measured it: ``{"kendall_tau", "spearman", "n", "ceiling", "benchmark", "line"}``."""
    key = _key(estimator)
    if key is None:
        return None
    for f in benchmark_files():
        try:
            doc = read_json(f)
        except Exception:  # noqa: BLE001 - a damaged results file is no evidence
            continue
        r = (doc.get("results") or {}).get(key)
        if not isinstance(r, dict) or r.get("kendall_tau") is None:
            continue
        bench = f.stem.removeprefix("estimators_").replace("_", " / ", 1)
        ceiling = (doc.get("ceiling_seed_to_seed") or {}).get("kendall_tau")
        line = (f"Kendall tau {r['kendall_tau']:.2f} vs trained accuracy on the {bench} benchmark "
                f"({r.get('n')} archs; seed-to-seed ceiling {ceiling:.2f})" if ceiling is not None else
                f"Kendall tau {r['kendall_tau']:.2f} vs trained accuracy on the {bench} benchmark ({r.get('n')} archs)")
        rec = (doc.get("supernet") or {}).get("recipe") if key == "supernet" else None
        if isinstance(rec, dict):  # a supernet's figure holds for its recipe: say which one was measured
            line += (f"; that supernet: {rec.get('epochs')} epochs, sharing {rec.get('sharing', 'mlp')}, "
                     f"sandwich mixers {rec.get('sandwich_mixers', 'fixed')}")
        return {"kendall_tau": r["kendall_tau"], "spearman": r.get("spearman"), "n": r.get("n"), "ceiling": ceiling,
                "benchmark": f.name, "line": line}
    return None
