"""What a search is asked to do (:class:`SearchConfig`) and what it returns (:class:`SearchResult`).

Plain data with no heavy imports, so the CLI, the service and the engine share one definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nas.latency.modes import MODES

DEFAULT_SCORES = {"yaml": "proxy:entropy", "nb201": "proxy:nwot"}
"""The score a search ranks by when none is given: analytic entropy for YAML spaces; NWOT on NB201, the
best single training-free score there (Spearman 0.79-0.81 on the NASLib data, bench/README.md)."""

STRATEGIES = ("nsga2", "tpe", "evolution", "random")
INITS = ("feasible", "random")
VERIFY_SPEEDS = ("as-is", "full")  # how the verification times the front: nas.search.verify
METRICS = ("accuracy", "latency", "params", "macs", "memory")
DATA_REFINE = 20  # --data's refinement (nas.search.refine): evaluations of the short training beyond the re-rank
DATA_CONFIRM = 3  # --data's confirmation (nas.search.confirm): the re-rank's best archs trained again for longer
DATA_EPOCHS = 2  # --data's short training: train:2 ranks trained accuracy at Kendall tau 0.67 (bench/README.md)
SENSES = {"accuracy": "max", "latency": "min", "params": "min", "macs": "min", "memory": "min"}
COLUMN = {"accuracy": "accuracy", "latency": "latency_ms", "params": "params", "macs": "macs", "memory": "memory"}


SEED_MAX = 2**32 - 1
"""The largest seed the samplers take (numpy's RandomState)."""


def setting(default: Any, help: str, *, kind: str, low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] | None = None, open_low: bool = False, service: bool = True,
            **cli: Any) -> Any:
    """A :class:`SearchConfig` field with what the CLI flag, the service's request check and :func:`check_values`
    need: ``kind`` (``int``, ``float``, ``str``, ``bool``, ``strs``: a string or a list of strings), the allowed
    range (``open_low``: the low end excluded) or choices, whether a service request may set it, and flag options for :mod:`nas.cli.flags`."""
    meta = {"help": help, "kind": kind, "low": low, "high": high, "open_low": open_low, "choices": choices,
            "service": service, **cli}
    if kind in ("int", "float"):
        meta.setdefault("type", int if kind == "int" else float)
    return field(default=default, metadata=meta)


@dataclass
class SearchConfig:
    """Everything a search run needs: each field is declared once here, with its range; ``nas search``'s flags,
    the service's request fields and the checks (:func:`check_values`) are made from these declarations."""

    budget: str | list[str] = setting("", "e.g. latency:5ms,params:5M or latency@p90:5ms (keys latency, params, "
                                          "macs, memory); repeatable", kind="strs", cli=False)
    space: str = setting("hybrid", "built-in space or YAML", kind="str")
    device: str | None = setting(None, "device profile for latency (default: this machine's shipped CPU profile)",
                                 kind="str", show_default=False)
    accuracy: str | None = setting(
        None, "supernet:CKPT | predictor:FILE | train:EPOCHS:DATA (each arch trained briefly from scratch, e.g. "
              "train:1:fashion-mnist) | proxy:NAME (default: proxy:entropy, training-free; proxy:nwot on nb201)",
        kind="str", show_default=False)
    objectives: tuple[str, ...] | None = setting(
        None, "comma list: accuracy plus any of latency, params, macs, memory (default: accuracy,latency; where no "
              "latency predictor exists for the space, accuracy plus the budget's keys)", kind="strs", cli=False)
    strategy: str = setting("nsga2", "search strategy", kind="str", choices=STRATEGIES)
    trials: int = setting(300, "trials (archs asked of the strategy)", kind="int", low=1, high=1_000_000)
    seed: int = setting(0, "random seed (same seed, same search)", kind="int", low=0, high=SEED_MAX)
    study: str | None = setting(None, "study name (default: <space>-<strategy>-s<seed>)", kind="str", service=False,
                                show_default=False)
    storage: str | None = setting(None, "Optuna storage URL (default: SQLite in runs/<study>/study.db)", kind="str",
                                  service=False, show_default=False)
    resume: bool = setting(False, "continue an existing study", kind="bool", service=False)
    workers: int = setting(1, "evaluator workers (Ray actors when > 1)", kind="int", low=1, high=4096)
    ray_address: str | None = setting(None, "join a Ray cluster (default: embedded local Ray)", kind="str",
                                      service=False, show_default=False)
    runs_dir: Path = setting(Path("runs"), "folder of run folders", kind="str", service=False, flag="--runs",
                             type=Path)
    population: int | None = setting(None, "NSGA-II/evolution population (default: trials/5, 8 to 50)", kind="int",
                                     low=2, high=100_000, show_default=False)
    batch: int | None = setting(None, "trials asked per step (default: 4 x workers)", kind="int", low=1,
                                high=100_000, show_default=False)
    threads: int = setting(1, "torch threads per evaluator", kind="int", low=1, high=256, service=False, cli=False)
    init: str = setting("feasible", "feasible: the first generation (for --strategy random every trial) is drawn "
                                    "uniformly from the archs within the budget (costs counted, latency predicted); "
                                    "random: uniformly from the whole space", kind="str", choices=INITS)
    prescreen: int = setting(8, "OFA-style pre-screening: an accuracy predictor fitted on the scores so far screens "
                                "K candidates per pre-screened trial and only the best are scored (0 = off, else >= 2)",
                             kind="int", low=0, high=10_000, metavar="K")
    prescreen_share: float = setting(0.5, "share of each batch filled with pre-screened archs, 0 < F <= 1 (the "
                                          "strategy fills the rest and keeps exploring)", kind="float", low=0, high=1,
                                     open_low=True, metavar="F")
    calibrate: str | None = setting(None, "auto | always | never | off (default: $NAS_CALIBRATE, else auto)",
                                    kind="str", choices=MODES, cli=False)
    busy_wait_s: float = setting(120.0, "seconds calibration and verification wait for other processes to calm "
                                        "down; a host still busy after that is not measured (latency stays "
                                        "predicted, and the results say so)", kind="float", low=0, high=86_400,
                                 flag="--busy-wait", metavar="S")
    verify: bool = setting(True, "measure the Pareto archs on this host afterwards; an arch over the budget when "
                                 "measured is dropped, the predictor refitted and the search continued",
                           kind="bool", cli=False)
    verify_speed: str = setting(
        "as-is", "as-is: the front timed with the host as it runs (its own slow stretches kept), inside the budget "
                 "with a margin for its timing noise and speed drift, so that your median of 3 timings at any later "
                 "moment stays inside; full: timed at the host's full speed (slow stretches waited out and timed "
                 "again, as nas profile measures), with a margin for the timing noise only: the latency a quiet "
                 "full-speed re-measurement finds, the one device profiles hold", kind="str",
        choices=VERIFY_SPEEDS)
    rerank: str | None = setting(None, "two-stage ranking: after the search, score its best archs again with this "
                                       "estimator (e.g. train:2:fashion-mnist, which ranks trained accuracy far "
                                       "better than a training-free score) and choose the front by that score",
                                 kind="str", service=False, metavar="SPEC", show_default=False)
    data: str | None = setting(None, "train the best archs on DATA (e.g. fashion-mnist, or fashion-mnist:DIR): after "
                                     "the training-free search, the --rerank-top best are trained briefly from "
                                     "scratch (--rerank train:2:DATA unless --rerank is given) and the front is "
                                     "chosen by that, with each front arch's trained accuracy; without it nothing "
                                     "is trained", kind="str", service=False, metavar="DATA", show_default=False)
    rerank_top: int = setting(20, "archs the re-rank scores: the N best by non-dominated sorting, spread over each "
                                  "front", kind="int", low=1, high=10_000, service=False, metavar="N")
    refine: int | None = setting(None, "after the re-rank, N more archs scored by its estimator: one per mixer type "
                                       "(each layer of that type, most of the budget used), then mutations of the "
                                       "best inside the budget near its edge (default: 20 with --data, else 0)",
                                 kind="int", low=0, high=10_000, service=False, metavar="N", show_default=False)
    confirm: int | None = setting(None, "after the re-rank (and --refine), its N best archs inside the budget trained "
                                        "again for 3x its epochs (train:2 -> train:6) and the front chosen among "
                                        "them by that: a short training favours nets that learn fast (default: 3 "
                                        "with --data, else 0)",
                                  kind="int", low=0, high=1_000, service=False, metavar="N", show_default=False)


def search_settings(service: bool | None = None) -> dict[str, Any]:
    """The :class:`SearchConfig` fields by name (``service=True``: only those a service request may set)."""
    return {f.name: f for f in fields(SearchConfig) if service is None or f.metadata["service"] == service}


def describe(value: Any, limit: int = 60) -> str:
    """``repr(value)`` clipped to ``limit`` characters, so an error never echoes a long input back."""
    text = value if isinstance(value, str) and value.isprintable() and value.strip() == value and value else repr(value)
    return clip(text, limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in '...' where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_value(name: str, value: Any) -> None:
    """ParamError naming ``name`` when ``value`` is not of the setting's kind or outside its range/choices
    (``None`` is allowed where the default is ``None``)."""
    from nas.errors import ParamError

    f = search_settings()[name]
    m = f.metadata
    if value is None and f.default is None:
        return
    kind, shown = m["kind"], describe(value)
    ok = {"int": isinstance(value, int), "float": isinstance(value, (int, float)), "bool": isinstance(value, bool),
          "str": isinstance(value, (str, Path)),
          "strs": isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value))
          }[kind]
    if kind != "bool" and isinstance(value, bool):
        ok = False
    if not ok:
        want = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "strs": "a string or a list of strings"}[kind]
        raise ParamError(name, f"{shown}: expected {want}")
    if m["choices"] is not None and value not in m["choices"]:
        raise ParamError(name, f"{shown}: choose from {', '.join(m['choices'])}")
    if kind == "float" and value != value:
        raise ParamError(name, f"{shown}: must be a number")
    low, high, open_low = m["low"], m["high"], m.get("open_low", False)
    if low is not None and (value <= low if open_low else value < low) or high is not None and value > high:
        raise ParamError(name, f"{shown}: must be {_range(low, high, open_low)}")


def _range(low: float | None, high: float | None, open_low: bool) -> str:
    if open_low:
        return f"in ({low:g}, {high:g}]"
    if low is not None and high is not None:
        return f"{low} to {high}" if isinstance(low, int) else f"in [{low:g}, {high:g}]"
    return f"at least {low}" if low is not None else f"at most {high}"


def check_values(cfg: SearchConfig) -> None:
    """Every setting of ``cfg`` of its kind and within its range (:func:`check_value`); ParamError names the first
    that is not."""
    for name in search_settings():
        check_value(name, getattr(cfg, name))


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
