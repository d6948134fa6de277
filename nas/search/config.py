"""What a search is asked to do (:class:`SearchConfig`) and what it returns (:class:`SearchResult`).

Plain data with no heavy imports, so the CLI, the service and the engine share one definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SCORES = {"yaml": "proxy:entropy", "nb201": "proxy:nwot"}
"""The score a search ranks by when none is given: analytic entropy for YAML spaces; NWOT on NB201, the
best single training-free score there (Spearman 0.79-0.81 on the NASLib data, bench/README.md)."""

STRATEGIES = ("nsga2", "tpe", "evolution", "random")
INITS = ("feasible", "random")
METRICS = ("accuracy", "latency", "params", "macs", "memory")
SENSES = {"accuracy": "max", "latency": "min", "params": "min", "macs": "min", "memory": "min"}
COLUMN = {"accuracy": "accuracy", "latency": "latency_ms", "params": "params", "macs": "macs", "memory": "memory"}


@dataclass
class SearchConfig:
    """Everything a search run needs (the CLI flags)."""

    budget: str | list[str] = ""
    space: str = "hybrid"
    device: str | None = None
    accuracy: str | None = None  # None: the space family's default training-free score (see engine.resolve_defaults)
    objectives: tuple[str, ...] | None = None  # None: accuracy + latency where it can be predicted, else + budget keys
    strategy: str = "nsga2"
    trials: int = 200
    seed: int = 0
    study: str | None = None
    storage: str | None = None
    resume: bool = False
    workers: int = 1
    ray_address: str | None = None
    runs_dir: Path = Path("runs")
    population: int | None = None
    batch: int | None = None
    threads: int = 1
    init: str = "feasible"  # feasible: first generation (random: every trial) drawn within the budget
    prescreen: int = 8  # candidates screened by the accuracy predictor per pre-screened trial; 0 = off
    prescreen_share: float = 0.5  # share of each batch filled with pre-screened archs (the rest: the strategy)
    calibrate: str | None = None  # auto | always | never | off (None: $NAS_CALIBRATE, else auto); nas.latency.calibrate
    verify: bool = True  # measure the Pareto archs here afterwards (when the device is this machine)
    rerank: str | None = None  # a second estimator for the best archs afterwards (nas.search.rerank); None: off
    rerank_top: int = 20  # how many archs the re-rank scores


@dataclass
class SearchResult:
    """What a finished search returns (the run folder holds the same, on disk)."""

    run_dir: Path
    study_name: str
    trials: Any  # pandas.DataFrame
    pareto: list[dict]
    summary: dict = field(default_factory=dict)


def measures(estimator: str) -> str:
    """What an estimator's figures are: ``accuracy`` (a supernet's inherited-weight accuracy, an accuracy
    predictor's) or ``score`` (a training-free score that only ranks archs). Tables and summaries name the
    column after it, so a score is never reported as an accuracy."""
    return "accuracy" if estimator.startswith(("supernet:", "predictor:")) else "score"


def rerank_column(estimator: str) -> str:
    """The table/summary name of a re-rank's value (``nas search --rerank``): ``rerank_accuracy`` or
    ``rerank_score``, named as :func:`measures` names the estimator's own."""
    return f"rerank_{measures(estimator)}"
