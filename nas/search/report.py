"""The run folder of a search: trials table, Pareto archs, Pareto plot and summary (atomic writes).

runs/<study>/
  study.db            the Optuna study (SQLite, unless --storage points elsewhere)
  trials.csv/.parquet every trial: arch, metrics, feasibility, duplicates, hypervolume so far, source
                      (sampler/evolution/prescreen/recovered) and the pre-screen's predicted accuracy
  pareto/<id>.yaml    the Pareto archs (load with nas.load_arch)
  pareto.png          accuracy vs latency, budget line, feasible/infeasible/Pareto
  summary.json        the machine summary (what `nas export RUN` reads)
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from nas.cost.budget import Budget
from nas.io import atomic_path, atomic_write_bytes, write_json
from nas.search.config import measures, rerank_column
from nas.search.quality import estimator_quality
from nas.search.rows import TrialRow
from nas.search.verify import measured_provenance


def write_run(run_dir: Path, cfg: Any, space: Any, table: Any, pareto: list[TrialRow], budget: Budget,
              acc_provenance: str, lat_provenance: str | None, elapsed_s: float, retried: int,
              extra: dict | None = None) -> dict:
    """Write every file of the run folder and return the summary dict (``extra`` adds summary entries)."""
    measure = measures(cfg.accuracy)
    rerank = getattr(cfg, "rerank", None)  # the second estimator's value, named like the first's (nas.search.rerank)
    second = rerank_column(rerank) if rerank else None
    rerank_provenance = ((extra or {}).get("rerank") or {}).get("provenance")
    trained_provenance = (rerank_provenance if str(rerank).startswith("train:")
                          else acc_provenance if str(cfg.accuracy).startswith("train:") else None)
    confirmed = ((extra or {}).get("rerank") or {}).get("confirm") or {}  # its longer training (nas.search.confirm)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "trials.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(run_dir / "trials.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    (run_dir / "pareto").mkdir(exist_ok=True)
    entries = []
    for r in pareto:
        arch = r.arch
        rel = f"pareto/{arch.id}.yaml"
        arch.save(run_dir / rel)
        measured = r.measured_latency_ms is not None
        longer = r.confirm_score is not None
        trained, trained_how = ((r.confirm_accuracy, confirmed.get("provenance")) if longer
                                else (r.trained_accuracy, trained_provenance))
        entries.append({
            "id": arch.id, "arch_file": rel, "arch": str(arch), "trial": r.number,
            "metrics": {**({second: r.rerank_score} if second else {}),
                        **({"confirm_score": r.confirm_score} if longer else {}),
                        **({"trained_accuracy": trained} if trained is not None else {}),
                        measure: r.accuracy,
                        "latency_ms": r.value("latency_ms"), "params": r.params,
                        "macs": r.macs, "memory": r.memory, "latency_predicted_ms": r.latency_ms,
                        **({"latency_min_ms": r.measured_spread_ms[0], "latency_max_ms": r.measured_spread_ms[1],
                            "latency_timings": r.measured_timings, "latency_bound_ms": r.latency_bound_ms}
                           if measured and r.measured_spread_ms else {})},
            "provenance": {**({second: rerank_provenance} if second else {}),
                           **({"confirm_score": confirmed.get("provenance")} if longer else {}),
                           **({"trained_accuracy": trained_how} if trained is not None else {}),
                           measure: acc_provenance,
                           "latency": (measured_provenance((extra or {}).get("verify"), cfg.device)
                                       if measured else lat_provenance),
                           "latency_predicted": lat_provenance,
                           "params": "counted analytically", "macs": "counted analytically",
                           "memory": "counted analytically (weights + peak activations, batch 1, fp32)"},
        })
    plot = _plot(run_dir, table, pareto, budget, cfg)
    hv = float(table["hypervolume"].iloc[-1]) if len(table) else 0.0
    summary = {
        "study": run_dir.name, "space": space.name,
        "space_file": str(space.source_path) if space.source_path else None,
        "device": cfg.device, "budget": str(budget) if len(budget) else "",
        "budget_text": cfg.budget if isinstance(cfg.budget, str) else ",".join(cfg.budget),
        "strategy": cfg.strategy, "seed": cfg.seed, "objectives": list(cfg.objectives),
        "estimator": {"name": cfg.accuracy, "measures": measure, "provenance": acc_provenance,
                      "quality": estimator_quality(cfg.accuracy)},
        "latency": {"device": cfg.device, "provenance": lat_provenance},
        "trials": int(len(table)), "evaluated": int(table["evaluated"].sum()) if len(table) else 0,
        "feasible": int(table["feasible"].sum()) if len(table) else 0,
        "duplicates": int(table["duplicate_of"].notna().sum()) if len(table) else 0,
        "retried_after_worker_failure": int(retried), "hypervolume": hv, "elapsed_s": round(elapsed_s, 2),
        "pareto": entries, "plot": plot,
    }
    if "source" in table:
        summary["sources"] = {str(k): int(v) for k, v in table["source"].value_counts().sort_index().items()}
    summary.update(extra or {})
    write_json(run_dir / "summary.json", summary)
    return summary


def _plot(run_dir: Path, table: Any, pareto: list[TrialRow], budget: Budget, cfg: Any) -> str | None:
    """Accuracy vs latency (or MACs when latency is not an objective): feasible, infeasible, Pareto, budget."""
    if not len(table):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xcol = "latency_ms" if table["latency_ms"].notna().any() else "macs"
    xlabel = "latency (ms, predicted)" if xcol == "latency_ms" else "MACs (counted)"
    col, spec = measures(cfg.accuracy), cfg.accuracy
    rerank = getattr(cfg, "rerank", None)
    reranked = bool(rerank) and rerank_column(rerank) in table
    if reranked:  # the front was chosen by the re-rank's score: show that
        col, spec = rerank_column(rerank), rerank
    ev = table[table[col].notna()]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    infeas = table[~table["feasible"]]
    feas = ev[ev["feasible"]]
    ax.scatter(infeas[xcol], [feas[col].min() if len(feas) else 0] * len(infeas), marker="x", s=10,
               color="0.7", label=f"infeasible ({len(infeas)}, not scored)")
    what = "re-ranked" if reranked else "feasible"
    ax.scatter(feas[xcol], feas[col], s=12, color="tab:blue", alpha=0.6, label=f"{what} ({len(feas)})")
    if pareto:
        px = sorted((r.value(xcol), r.rerank_score if reranked else r.accuracy) for r in pareto)
        ax.plot([p[0] for p in px], [p[1] for p in px], "-o", color="tab:red", ms=4, label=f"Pareto ({len(px)})")
    lim = budget.get("latency") if xcol == "latency_ms" else budget.get("macs")
    if lim is not None:
        ax.axvline(lim.limit, ls="--", color="k", lw=1, label=f"budget {lim}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{col} ({spec})")
    ax.set_title(f"{run_dir.name}: {len(table)} trials")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(run_dir / "pareto.png", buf.getvalue())
    return "pareto.png"
