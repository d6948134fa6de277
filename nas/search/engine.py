"""The search engine: an Optuna study driven by ask/tell over a space's choices, under budgets.

Per trial: the asked parameters become a canonical Arch; costs are counted, latency predicted (both
cheap, in this process); constraints are set with ``trial.set_constraint`` as relative violations
((value - limit) / limit, <= 0 feasible) so budgets of different units weigh alike; the accuracy
estimate (the expensive part) runs on the evaluator only for feasible archs, since constrained
NSGA-II/TPE rank infeasible trials by violation alone. Identical archs (same id) are evaluated once.
Trials are asked in batches and told in trial order, so the same seed gives the same search whatever
the number of workers.

With ``prescreen`` > 0, a share of every batch comes from an accuracy predictor fitted on the scores so far
(OFA-style, see nas.search.prescreen): it screens many candidate archs cheaply and the best are enqueued as
trials; the rest of the batch comes from the strategy, which keeps exploring. With ``init="feasible"``
(the default) a budgeted search starts inside the budget: its first generation is drawn uniformly from
the feasible archs (nas.search.feasible), and random search draws every trial that way. Every row
records its ``source`` (sampler, evolution, prescreen, feasible-init, feasible-random, recovered) and,
for pre-screened archs, ``predicted_accuracy``.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas.cost.budget import Budget
from nas.cost.count import count
from nas.errors import BudgetError, NASError, ParamError
from nas.reporting import Held, Reporter, or_silent
from nas.search.config import (  # noqa: F401
    COLUMN,
    DATA_CONFIRM,
    DATA_EPOCHS,
    DATA_REFINE,
    DEFAULT_SCORES,
    INITS,
    METRICS,
    SENSES,
    STRATEGIES,
    SearchConfig,
    SearchResult,
    check_values,
    measures,
    rerank_column,
)
from nas.search.estimators import split_score
from nas.search.feasible import ScaledLatency, sample_corner, sample_feasible
from nas.search.pareto import hypervolume
from nas.search.prescreen import Prescreener, prescreen_slots, screening_error, validate_prescreen
from nas.search.proposals import Evolution, Proposal, ProposalSampler
from nas.search.rows import TrialRow
from nas.space import Arch, SearchSpace, load_space
from nas.space.family import SpaceFamily
from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params

FORMAT = {"latency": fmt_ms, "params": fmt_params, "macs": fmt_macs, "memory": fmt_bytes}


# ---- parameters <-> archs (the space family defines them) --------------------------------------------

def distributions(space: SpaceFamily) -> dict[str, CategoricalDistribution]:
    """One categorical Optuna parameter per free choice of the space (see ``SpaceFamily.search_choices``)."""
    return {name: CategoricalDistribution(list(values)) for name, values in space.search_choices().items()}


def params_to_arch(space: SpaceFamily, params: dict[str, Any]) -> Any:
    """The canonical arch of a trial's parameters."""
    return space.arch_from_params(params)


def arch_to_params(space: SpaceFamily, arch: Any, dists: dict[str, CategoricalDistribution],
                   rng: random.Random) -> dict[str, Any]:
    """Parameters that give ``arch`` (free slots are drawn from ``rng``)."""
    return space.params_of(arch, rng)


def _sampler(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    if cfg.strategy == "nsga2":
        pop = cfg.population or max(8, min(50, cfg.trials // 5))
        return optuna.samplers.NSGAIISampler(population_size=pop, seed=cfg.seed)
    if cfg.strategy == "tpe":
        import warnings

        with warnings.catch_warnings():  # multivariate/group are marked experimental; they model joint choices
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, group=True,
                                              n_startup_trials=max(10, cfg.trials // 10))
    return optuna.samplers.RandomSampler(seed=cfg.seed)  # random; evolution enqueues its own children


def _study_name(cfg: SearchConfig, space: SearchSpace) -> str:
    return cfg.study or f"{space.name}-{cfg.strategy}-s{cfg.seed}"


HOST_SLACK = 2.0
"""Before a probe, a latency budget is refused only if the space's smallest arch would break it even on a host this
many times faster than the profile's (VMs of one CPU label differ by 7-45%)."""


def check_budget_feasible(space: SearchSpace, budget: Budget, latency: Callable[[Arch], float] | None,
                          slack: float = 1.0) -> dict:
    """Costs of the space's smallest arch; raises BudgetError when it already breaks the budget (its predicted
    latency divided by ``slack``: > 1 refuses only what no plausible host could meet, before this one is measured)."""
    smallest = space.min()
    c = count(smallest)
    values = {"params": c.params, "macs": c.macs, "memory": c.memory}
    if latency is not None and "latency" in budget.keys:
        values["latency"] = latency(smallest)
    for con in budget:
        v = values.get(con.key)
        bound = v / slack if v is not None and con.key == "latency" else v
        if bound is not None and bound > con.limit:
            fmt = FORMAT[con.key]
            how = "predicted" if con.key == "latency" else "counted"
            even = (f"; even a host {slack:g}x as fast as the profile's would need {fmt(bound)}; nothing was measured"
                    if con.key == "latency" and slack != 1.0 else "")
            raise BudgetError(f"budget '{con.text}' cannot be met in space {space.name}: the smallest achievable "
                              f"{con.key} is {fmt(v)} ({how}, for the space's smallest arch){even}")
    return values


def refuse_impossible(space: SearchSpace, budget: Budget, device: str) -> None:
    """BudgetError at once for a latency budget no plausible host meets (:data:`HOST_SLACK`), judged on ``device``'s
    shipped predictor before this host is probed or calibrated; counted limits are judged exactly."""
    from nas.latency.calibrate import load_latency_model

    model = load_latency_model(device, space) if "latency" in budget.keys else None
    check_budget_feasible(space, budget, model, slack=HOST_SLACK)


@dataclass
class Prepared:
    """A search's settings checked and completed by :func:`prepare_search`: what it searches, under what budget."""

    cfg: SearchConfig
    space: Any
    budget: Budget
    this_host: bool  # the tool chose the device: this machine's latency is wanted


@contextmanager
def _about(field: str) -> Iterator[None]:
    """A NASError raised inside (one that names no parameter) is marked as about ``field`` (a service's 422)."""
    try:
        yield
    except NASError as e:
        if not getattr(e, "param", None) and not getattr(e, "field", None):
            e.field = field  # type: ignore[attr-defined]
        raise


def prepare_search(cfg: SearchConfig, reporter: Reporter | None = None) -> Prepared:
    """The first steps of every search (CLI, service, Python), in one place: settings checked against their
    declared ranges, the space loaded, the budget parsed, defaults filled in (score, objectives, this machine's
    device), and a latency budget no plausible host meets refused. Nothing is measured or written; a bad setting
    raises a NASError naming its field (``.param`` or ``.field``). ``cfg`` is completed in place."""
    rep = or_silent(reporter)
    check_values(cfg)
    with _about("space"):
        space = load_space(cfg.space)
    with _about("budget"):
        budget = Budget.parse(cfg.budget)
    this_host = cfg.device is None
    with _about("device"):
        resolve_defaults(cfg, space, budget, rep)
    with _about("accuracy"):
        _check_config(cfg, space)
    if "latency" in cfg.objectives or "latency" in budget.keys:
        held = Held()  # what the device's choice says is said only if the budget stands: else the refusal is the line
        with _about("device"):
            cfg.device = cfg.device or _default_device(space, held, cfg.calibrate)
        with _about("budget"):
            refuse_impossible(space, budget, cfg.device)  # before any probe: an impossible budget costs no measuring
        held.replay(rep)
    if cfg.resume:
        check_resume(cfg, space, budget)  # before calibration: a refused resume costs nothing
    return Prepared(cfg, space, budget, this_host)


STUDY_SETTINGS = ("space", "device", "budget", "accuracy", "objectives", "strategy", "seed", "init", "prescreen",
                  "prescreen_share")
"""The settings that define a study: a resumed search must keep them (its stored trials were chosen, scored and
costed under them). ``trials`` may grow, and the stages after the search (re-rank, refine, confirm, verification)
may change: their scores are stored under their own spec."""


def study_storage(cfg: SearchConfig, space: SearchSpace) -> str:
    """The Optuna storage URL of a search: ``cfg.storage``, else SQLite in its run folder."""
    return cfg.storage or f"sqlite:///{(Path(cfg.runs_dir) / _study_name(cfg, space) / 'study.db').resolve()}"


def check_resume(cfg: SearchConfig, space: SearchSpace, budget: Budget) -> None:
    """ParamError naming the first of :data:`STUDY_SETTINGS` that differs from what the resumed study was made
    with (its stored ``config``); a study not there yet, or stored before a setting was recorded, passes."""
    url = study_storage(cfg, space)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return  # nothing to resume: _open_study says so (and opening would create the file)
    name, storage = _study_name(cfg, space), open_storage(url)
    try:
        stored = storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get("config") or {}
    except KeyError:  # no such study: _open_study says so
        return
    now = _config_dict(cfg, space)

    def show(v: Any) -> str:
        return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)

    for key in STUDY_SETTINGS:
        if key not in stored:
            continue
        was, given = stored[key], now[key]
        if not (Budget.parse(was) == budget if key == "budget" else was == given):
            raise ParamError(key, f"{show(given)}: study '{name}' was made with {show(was)}; resume it with "
                                  "the same setting, or name a new study")


def run_search(cfg: SearchConfig, reporter: Reporter | None = None, evaluator: Any = None,
               measure: Any = None) -> SearchResult:
    """Run (or resume) a search and write its run folder; returns the trials table and the Pareto set.

    Latency is predicted for this host (the shipped profile calibrated here, :mod:`nas.latency.calibrate`)
    and the front is measured here afterwards (:mod:`nas.search.verify`); ``measure`` (archs -> ms) replaces
    the timer (tests). Progress (trials told, hypervolume so far) and warnings go to ``reporter``. A search
    that fails or is interrupted after trials were told writes those to its run folder (``summary["partial"]``,
    ``summary["stopped"]``) before the error goes on, so a cancelled or broken run still shows what it found."""
    rep = or_silent(reporter)
    prep = prepare_search(cfg, rep)
    space, budget = prep.space, prep.budget
    latency_model, cal = None, None
    t_start = time.perf_counter()
    if "latency" in cfg.objectives or "latency" in budget.keys:
        from nas.latency.calibrate import host_latency

        cal = host_latency(cfg.device, space, cfg.calibrate, measure, rep, this_host=prep.this_host,
                           wait_s=cfg.busy_wait_s)
        latency_model = cal.model
    check_budget_feasible(space, budget, latency_model)
    own_evaluator = evaluator is None
    evaluator = evaluator or _evaluator(cfg, space)  # first: data or a checkpoint it cannot load writes nothing
    second = search = None
    verified = reranked = None
    try:
        if cfg.rerank:  # likewise the re-rank's (built again where it runs, after the search's workers are gone)
            from nas.search.estimators import make_estimator

            make_estimator(cfg.rerank, space)
        search = _Search(cfg, space, budget, latency_model)
        search.start(evaluator)
        with rep.progress(cfg.trials, f"search {space.name}", completed=len(search.rows)) as bar:
            while len(search.rows) < cfg.trials:
                for row in search.step(evaluator, min(search.batch_size, cfg.trials - len(search.rows))):
                    bar.advance()
                    bar.set_description(f"search {space.name} hv={row.hypervolume:.3g}")
        verified = _verify(search, cal, evaluator, rep)
        if cfg.rerank:
            if own_evaluator:  # its Ray actors hand their CPUs to the re-rank's
                evaluator.close()
            second = _evaluator(cfg, space, cfg.rerank)
            reranked = _rerank(search, cal, second, rep)
            if search.verify_report is not None:  # it measured the new front: the report counts that too
                verified = search.verify_report.summary()
    except BaseException as e:
        if search is not None and search.rows:
            _write_partial(search, evaluator, time.perf_counter() - t_start, cal, e)
        raise
    finally:
        if own_evaluator:
            evaluator.close()
        if second is not None:
            second.close()
    return search.finish(evaluator, time.perf_counter() - t_start, cal, verified, reranked)


def _write_partial(search: _Search, evaluator: Any, elapsed: float, cal: Any, error: BaseException) -> None:
    """The run folder of a search that failed or was interrupted: the trials told before it, marked partial.
    Best effort: the error that ended the search is the one reported, never a second one from here."""
    if isinstance(error, KeyboardInterrupt):
        why = f"interrupted: {error}" if str(error) else "interrupted"
    else:
        why = f"failed: {type(error).__name__}: {error}"
    try:
        search.finish(evaluator, elapsed, cal, partial=why[:300])
    except Exception:  # noqa: BLE001, S110 - the original error goes on
        pass


def _verify(search: _Search, cal: Any, evaluator: Any, rep: Reporter) -> dict | None:
    """Measure the front here (nas.search.verify) when asked and possible; a note says why not otherwise."""
    if cal is None:
        return None
    if not search.cfg.verify:
        return {"note": "not verified (--no-verify)"}
    if cal.measure is None or cal.mode == "off":
        why = "--calibrate off" if cal.mode == "off" else f"device {search.cfg.device} is not this machine"
        rep.log(f"verify: nothing measured ({why}); the front's latencies are predictions")
        return {"note": f"not verified: {why}"}
    from nas.search.verify import verify

    search.verify_report = verify(search, cal, evaluator, rep)  # its summary line is printed with the front
    return search.verify_report.summary()


def _rerank(search: _Search, cal: Any, second: Any, rep: Reporter) -> Any:
    """Score the best archs again with the second estimator (nas.search.rerank), refine with it where asked
    (nas.search.refine: new archs scored by both estimators); the front they make is measured here like the first
    one was, without more search by the first score (the scores would not compare)."""
    from nas.search.rerank import rerank
    from nas.search.verify import row_front, verify

    before = [r.arch_id for r in row_front(search.rows, search.columns, search.senses)]
    report = rerank(search, second, rep, before)
    if search.cfg.refine:
        from nas.search.evaluators import LocalEvaluator
        from nas.search.refine import refine

        first = LocalEvaluator(search.cfg.accuracy, search.space, search.cfg.threads)  # the new trials' own score
        try:
            report.refine = refine(search, first, second, rep, search.cfg.refine, _timer(search, cal, rep))
        finally:
            first.close()
    if search.cfg.confirm:
        from nas.search.confirm import confirm, confirm_spec

        second.close()  # its workers hand their CPUs to the longer trainings
        longer = _evaluator(search.cfg, search.space, confirm_spec(search.cfg.rerank))
        try:
            report.confirm = confirm(search, longer, rep, search.cfg.confirm, _timer(search, cal, rep))
        finally:
            longer.close()
    if search.verify_report is not None:
        search.verify_report = verify(search, cal, None, rep, rounds=0, report=search.verify_report)
    return report


def _timer(search: _Search, cal: Any, rep: Reporter) -> Any:
    """rows -> whether it could time them here (nas.search.verify.measure_rows), for the stages after the re-rank
    that time archs before they train them; None where the front was not verified on this host."""
    if search.verify_report is None or cal is None or cal.measure is None:
        return None
    from nas.search.verify import measure_rows

    return lambda rows: measure_rows(search, cal, rows, rep)


def resolve_defaults(cfg: SearchConfig, space: SpaceFamily, budget: Budget, reporter: Reporter) -> None:
    """Fill in what the user left to the tool: the score (the family's default, :data:`DEFAULT_SCORES`) and
    the objectives (accuracy and latency; where no latency predictor exists for the space and latency is
    not budgeted, accuracy plus the budget's keys, with a line saying so)."""
    from nas.space import SearchSpace

    if cfg.accuracy is None:
        cfg.accuracy = DEFAULT_SCORES["yaml" if isinstance(space, SearchSpace) else space.name]
    if cfg.data and not cfg.rerank:
        from nas.data import DATA_KINDS

        if cfg.data.partition(":")[0] not in DATA_KINDS:
            raise ParamError("data", f"'{cfg.data}' unknown; choose from {', '.join(DATA_KINDS)} (a kind may take "
                                     ":ARG, e.g. fashion-mnist:DIR)")
        cfg.rerank = f"train:{DATA_EPOCHS}:{cfg.data}"
    if cfg.refine is None:
        cfg.refine = DATA_REFINE if cfg.data else 0
    if cfg.confirm is None:
        cfg.confirm = DATA_CONFIRM if cfg.data else 0
    if cfg.objectives is None:
        cfg.objectives = ("accuracy", "latency")
        if "latency" not in budget.keys:
            from nas.errors import PredictorError
            from nas.latency import find_predictor
            from nas.reporting import SILENT

            try:  # run_search resolves (and speaks of) the device itself, after the config is checked
                find_predictor(cfg.device or _default_device(space, SILENT, cfg.calibrate), space)
            except (PredictorError, ParamError):
                keys = tuple(k for k in budget.keys if k != "latency") or ("params",)
                cfg.objectives = ("accuracy", *keys)
                reporter.log(f"no latency predictor for space {space.name} on this device: objectives "
                             f"{','.join(cfg.objectives)}")


def _check_config(cfg: SearchConfig, space: SearchSpace) -> None:
    """Refuse a bad setting before anything is written (no run folder, no study); ranges and choices of single
    settings are their declarations' (:func:`nas.search.config.check_values`), these are the checks across them."""
    from nas.search.estimators import check_spec

    check_spec(cfg.accuracy, space)
    if cfg.rerank is not None:
        check_spec(cfg.rerank, space, "rerank")
    elif cfg.refine:
        raise ParamError("refine", f"{cfg.refine}: refining scores archs with the re-rank's estimator; give --rerank "
                                   "SPEC or --data DATA too")
    if cfg.confirm:
        from nas.search.confirm import confirm_spec

        confirm_spec(cfg.rerank)  # a re-rank by short training, which it trains for longer
    bad = [o for o in cfg.objectives if o not in METRICS]
    if bad or "accuracy" not in cfg.objectives or len(set(cfg.objectives)) != len(cfg.objectives):
        raise ParamError("objectives", f"{','.join(cfg.objectives)}: list accuracy plus any of latency, params, macs, "
                       f"memory, each once")
    validate_prescreen(cfg.prescreen, cfg.prescreen_share)


def _evaluator(cfg: SearchConfig, space: SearchSpace, spec: str | None = None) -> Any:
    """Where ``spec`` (default: the search's estimator) runs: this process, or Ray actors with --workers."""
    from nas.search.evaluators import LocalEvaluator, RayEvaluator

    spec = spec or cfg.accuracy
    if cfg.workers > 1 or cfg.ray_address:
        return RayEvaluator(spec, space, cfg.workers, cfg.ray_address, cfg.threads)
    return LocalEvaluator(spec, space, cfg.threads)


class _Search:
    """One search run: its study, the rows told so far, the proposers, and the ask -> cost -> score -> tell step."""

    def __init__(self, cfg: SearchConfig, space: SearchSpace, budget: Budget, latency_model: Any):
        self.cfg, self.space, self.budget, self.latency = cfg, space, budget, latency_model
        self.columns = [COLUMN[o] for o in cfg.objectives]  # the front's (a re-rank puts its score for accuracy)
        self.study_columns = list(self.columns)  # what the study's trials are told: its objectives, always
        self.measure = measures(cfg.accuracy)  # accuracy or score: what the tables call the estimator's value
        self.senses = [SENSES[o] for o in cfg.objectives]
        self.name = _study_name(cfg, space)
        self.run_dir = Path(cfg.runs_dir) / self.name
        self.sampler = ProposalSampler(_sampler(cfg))
        self.study = self._open_study()
        self.dists = distributions(space)
        self.rng = random.Random(cfg.seed)  # free layer slots of proposed archs
        self.init_rng = random.Random(cfg.seed + 15485863)  # feasible draws
        self.rows: list[TrialRow] = []
        self.scored: dict[str, TrialRow] = {}  # arch id -> the row that holds its score
        self._recover()
        self.lat_ref = budget.get("latency").limit if budget.get("latency") else None
        population = cfg.population or max(8, min(50, cfg.trials // 5))
        self.evolution = (Evolution(space, cfg.seed, population, self.columns, self.senses)
                          if cfg.strategy == "evolution" else None)
        self.feasible_draws = cfg.init == "feasible" and len(budget) > 0
        self.prescreen: Prescreener | None = None
        self.batch_size = 0
        self.acc_provenance = ""
        self.verify_report: Any = None  # nas.search.verify's report, once the front was measured here
        self._latency_factor = 1.0  # an unmeasured arch's budget test: prediction x this (see latency_factor)

    @property
    def latency_factor(self) -> float:
        """What an unmeasured arch's predicted latency is multiplied by for its budget test, everywhere the search
        tests one (its trials, the pre-screen's and the random strategy's draws, the refinement): 1 until the
        verification has timed archs here (nas.search.verify.budget_factor)."""
        return self._latency_factor

    @latency_factor.setter
    def latency_factor(self, factor: float) -> None:
        self._latency_factor = float(factor)
        if self.prescreen is not None:
            self.prescreen.latency_factor = self._latency_factor

    def tested_latency(self) -> ScaledLatency | None:
        """The latency model the search tests unmeasured archs on (its predictions times :attr:`latency_factor`)."""
        return None if self.latency is None else ScaledLatency(self.latency, self.latency_factor)

    # ---- the study -----------------------------------------------------------------------------------
    def _open_study(self) -> optuna.Study:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        storage = open_storage(study_storage(cfg, self.space))
        exists = self.name in {s.study_name for s in _safe_summaries(storage)}
        if exists and not cfg.resume:
            raise ParamError("study", f"'{self.name}' already exists in {self.run_dir}; resume it to continue, or "
                                      f"name a new study")
        if cfg.resume and not exists:
            raise ParamError("resume", f": no study '{self.name}' in {cfg.storage or self.run_dir}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        directions = ["maximize" if SENSES[o] == "max" else "minimize" for o in cfg.objectives]
        study = optuna.create_study(study_name=self.name, storage=storage, directions=directions,
                                    sampler=self.sampler, load_if_exists=cfg.resume)
        if not exists:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([self.measure if c == "accuracy" else c for c in self.columns])
            study.set_user_attr("config", _config_dict(cfg, self.space))
        return study

    def _recover(self) -> None:
        """Trials a killed run left RUNNING are failed and asked again, first, with what they had stored
        (the pre-screen's prediction, a score that arrived before the kill); told trials become rows."""
        study = self.study
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            keep = {k: t.user_attrs[k] for k in ("predicted_accuracy", "score") if k in t.user_attrs}
            study.enqueue_trial(t.params, user_attrs={"recovered_from": t.number, **keep})
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            rec = t.user_attrs.get("row")
            if rec:
                row = TrialRow.from_record(rec, params_to_arch(self.space, t.params))
                self.rows.append(row)
                self.scored.setdefault(row.arch_id, row)

    def start(self, evaluator: Any) -> None:
        """Size the batches for the evaluator, set up pre-screening, and queue the feasible first generation."""
        cfg = self.cfg
        self.acc_provenance = evaluator.provenance
        self.batch_size = cfg.batch or max(4, 4 * getattr(evaluator, "workers", 1))
        if cfg.prescreen:
            self.prescreen = Prescreener(self.space, self.budget, self.columns, self.senses, self.latency,
                                         candidates=cfg.prescreen, seed=cfg.seed, warmup=max(10, self.batch_size))
            self.prescreen.latency_factor = self.latency_factor
        # Start inside the budget: the first generation is drawn uniformly from the archs whose counted
        # costs and predicted latency meet it (nas.search.feasible); it is enqueued, so it survives a kill
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if not self.rows and not waiting:
            self.enqueue_inside(cfg.trials, "feasible-init")

    def enqueue_inside(self, most: int, source: str, uniform_draws: int | None = None) -> int:
        """Queue a generation (at most ``most`` archs) drawn uniformly from the unscored archs the budget test admits
        now, for the strategy to go on from (the first generation; the verification's, once its margin has moved
        the test), topped up by walks toward the smallest arch (:func:`~nas.search.feasible.sample_corner`) where
        uniform draws find too few (after ``uniform_draws`` of them, default :func:`sample_feasible`'s); none for random
        search, which draws every trial uniformly, or without a budget or ``init=feasible``."""
        cfg = self.cfg
        if not self.feasible_draws or cfg.strategy == "random":
            return 0
        size = {"nsga2": self.sampler.population_size, "evolution": self.evolution.pop if self.evolution else 0,
                "tpe": getattr(self.sampler.base, "_n_startup_trials", 0)}.get(cfg.strategy, 0)
        want, lat = min(size, most), self.tested_latency()
        draws = {} if uniform_draws is None else {"max_draws": uniform_draws}
        archs = sample_feasible(self.space, self.budget, want, self.init_rng, lat, exclude=set(self.scored), **draws)
        if len(archs) < want and isinstance(self.space, SearchSpace):  # a corner uniform draws almost never meet
            archs += sample_corner(self.space, self.budget, want - len(archs), self.init_rng, lat,
                                   exclude=set(self.scored) | {a.id for a in archs})
        for a in archs:  # enqueued, so they survive a kill
            self.study.enqueue_trial(self._params(a), user_attrs={"source": source})
        return len(archs)

    def _params(self, arch: Arch) -> dict[str, Any]:
        return arch_to_params(self.space, arch, self.dists, self.rng)

    # ---- one batch -----------------------------------------------------------------------------------
    def _proposals(self, n: int) -> list[Proposal]:
        """This batch's proposals, in order: pre-screened archs, feasible draws (random search), children."""
        cfg = self.cfg
        out = self.prescreen.propose(self.rows, prescreen_slots(n, cfg.prescreen_share)) if self.prescreen else []
        if self.feasible_draws and cfg.strategy == "random" and n > len(out):
            seen = set(self.scored) | {p.arch.id for p in out}
            out += [Proposal(a, "feasible-random") for a in
                    sample_feasible(self.space, self.budget, n - len(out), self.init_rng, self.tested_latency(),
                                    exclude=seen)]
        if self.evolution is not None and n > len(out):
            out += self.evolution.propose(self.rows, n - len(out))
        return out

    def _ask(self, n: int, proposals: list[Proposal] | None = None) -> list[tuple[optuna.Trial, TrialRow]]:
        """Ask ``n`` trials and cost them: counted params/MACs/memory, predicted latency (one batch), budget.
        ``proposals`` (the refinement's) replace the batch's own."""
        props = self._proposals(n) if proposals is None else proposals
        self.sampler.queue([(p, self._params(p.arch)) for p in props])
        asked = []
        for _ in range(n):
            trial = self.study.ask(self.dists)
            taken = self.sampler.taken(trial.number)
            attrs = trial.user_attrs
            if taken is not None:  # stored on the trial, so a recovered trial keeps where it came from
                trial.set_user_attr("source", taken.source)
                if taken.predicted_accuracy is not None:
                    trial.set_user_attr("predicted_accuracy", taken.predicted_accuracy)
                attrs = trial.user_attrs
            asked.append((trial, attrs, params_to_arch(self.space, trial.params)))
        self.sampler.clear()
        lat = self.latency.predict([a for _, _, a in asked]) if self.latency else [None] * n
        out = []
        for (trial, attrs, arch), lat_ms in zip(asked, lat):
            c = count(arch)
            values = {"latency": None if lat_ms is None else float(lat_ms) * self.latency_factor,
                      "params": c.params, "macs": c.macs, "memory": c.memory}
            row = TrialRow(trial.number, arch, None if lat_ms is None else float(lat_ms), c.params, c.macs, c.memory,
                           violations=self.budget.violations(values),
                           latency_bound_ms=(values["latency"] if lat_ms is not None and self.latency_factor != 1.0
                                             else None),
                           source="recovered" if "recovered_from" in attrs else attrs.get("source", "sampler"),
                           predicted_accuracy=attrs.get("predicted_accuracy"))
            out.append((trial, row, attrs.get("score")))
        return out

    def step(self, evaluator: Any, n: int, proposals: list[Proposal] | None = None) -> list[TrialRow]:
        """Ask ``n`` trials (``proposals``: these archs, else the strategy's), cost them, score the feasible new
        archs, tell them in trial order."""
        asked = self._ask(n, proposals)
        to_score = []
        for trial, row, saved in asked:
            prior = self.scored.get(row.arch_id)
            if prior is not None:  # identical archs are scored once
                row.accuracy, row.evaluated, row.duplicate_of = prior.accuracy, prior.evaluated, prior.number
                row.trained_accuracy = prior.trained_accuracy
            elif saved is not None and row.feasible:  # scored before a kill; the score was stored as it arrived
                row.accuracy, row.evaluated, row.eval_s, row.worker = (saved["accuracy"], True, saved["eval_s"],
                                                                       saved["worker"])
                row.trained_accuracy = saved.get("trained_accuracy")
                self.scored[row.arch_id] = row
            elif row.feasible:
                to_score.append((trial.number, row.arch))
                self.scored[row.arch_id] = row  # later duplicates in this batch wait for this one
        by_number = {trial.number: (trial, row) for trial, row, _ in asked}
        for number, value, secs, worker in evaluator.run(to_score):
            trial, row = by_number[number]
            score, row.trained_accuracy = split_score(value)  # no signal (e.g. NWOT of a cut cell): None, ranks last
            row.accuracy, row.evaluated, row.eval_s, row.worker = score, True, secs, worker
            # stored at once, so a run killed before this batch is told does not score it again
            trial.set_user_attr("score", {"accuracy": score, "eval_s": secs, "worker": worker,
                                          **({"trained_accuracy": row.trained_accuracy}
                                             if row.trained_accuracy is not None else {})})
        floor = min((r.accuracy for r in self.rows if r.accuracy is not None), default=0.0)
        told = []
        for trial, row, _ in sorted(asked, key=lambda x: x[0].number):
            if row.duplicate_of is not None and row.accuracy is None:
                src = self.scored[row.arch_id]
                row.accuracy, row.evaluated, row.trained_accuracy = src.accuracy, src.evaluated, src.trained_accuracy
            for k, v in row.violations.items():
                trial.set_constraint(k, v)
            self.rows.append(row)
            row.hypervolume = _hv(self.rows, self.cfg.objectives, self.lat_ref)
            trial.set_user_attr("row", row.record(self.measure))
            acc = row.accuracy if row.accuracy is not None else floor  # infeasible: ranked by violation alone
            self.study.tell(trial, [acc if c == "accuracy" else float(row.value(c)) for c in self.study_columns])
            told.append(row)
        return told

    # ---- the end -------------------------------------------------------------------------------------
    def finish(self, evaluator: Any, elapsed: float, cal: Any = None, verified: dict | None = None,
               reranked: Any = None, partial: str | None = None) -> SearchResult:
        """Write the run folder (nas.search.report) and return the result; ``partial`` says why the search
        ended before its trials (summary ``partial`` and ``stopped``: the rows are those told so far)."""
        import pandas as pd

        from nas.search.report import write_run
        from nas.search.verify import row_front

        pareto = row_front(self.rows, self.columns, self.senses)
        rc = rerank_column(self.cfg.rerank) if self.cfg.rerank else "rerank_score"
        table = pd.DataFrame([r.record(self.measure, rc) for r in self.rows])
        extra = {"prescreen": self._prescreen_summary(), "calibration": cal.to_dict() if cal is not None else None,
                 "verify": verified,
                 "rerank": None if reranked is None else {**reranked.to_dict(),
                                                          "line": reranked.line([r.arch_id for r in pareto])}}
        if partial is not None:
            extra.update(partial=True, stopped=partial)
        summary = write_run(self.run_dir, self.cfg, self.space, table, pareto, self.budget, self.acc_provenance,
                            self.latency.provenance if self.latency else None, elapsed,
                            getattr(evaluator, "retried", 0), extra=extra)
        return SearchResult(self.run_dir, self.name, table, pareto, summary)

    def _prescreen_summary(self) -> dict | None:
        """Settings, predictor and measured error of the pre-screening (None when it was off), for summary.json."""
        pre, cfg = self.prescreen, self.cfg
        if pre is None:
            return None
        return {"candidates_per_trial": cfg.prescreen, "share": cfg.prescreen_share, "warmup": pre.warmup,
                "predictor": pre.provenance, "fits": pre.fits, "last_fit": pre.fit_info or None,
                "trials": sum(1 for r in self.rows if r.source == "prescreen"),
                "error_on_screened": screening_error(self.rows)}


def _hv(rows: list[TrialRow], objectives: tuple[str, ...], lat_ref: float | None) -> float:
    """Hypervolume of the feasible evaluated trials so far (reference: worst seen, or the budget)."""
    feas = [r for r in rows if r.feasible and r.accuracy is not None]
    if not feas:
        return 0.0
    cols = [COLUMN[o] for o in objectives]
    vals = np.array([[r.value(c) for c in cols] for r in feas], dtype=float)
    allv = np.array([[r.value(c) if r.value(c) is not None else np.nan for c in cols] for r in rows
                     if r.accuracy is not None], dtype=float)
    ref = []
    for j, o in enumerate(objectives):
        if o == "accuracy":
            ref.append(float(np.nanmin(allv[:, j])))
        elif o == "latency" and lat_ref is not None:
            ref.append(lat_ref)
        else:
            ref.append(float(np.nanmax(allv[:, j])) * 1.0001 + 1e-12)
    return hypervolume(vals, [SENSES[o] for o in objectives], ref)


_SQLITE_TUNED = False


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; SQLite files run in WAL mode with synchronous=NORMAL.

    WAL keeps the study consistent when the process is killed (committed trials survive kill -9), and
    without it every parameter of every trial would be an fsync'd transaction (~10 ms each here).
    """
    global _SQLITE_TUNED
    if url.startswith("sqlite") and not _SQLITE_TUNED:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        @event.listens_for(Engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - SQLAlchemy callback
            if type(dbapi_conn).__module__.startswith("sqlite3"):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        _SQLITE_TUNED = True
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}
                                          if url.startswith("sqlite") else {})
    except Exception as e:  # noqa: BLE001 - storage URLs come from users
        raise ParamError("storage", f"{url}: cannot open ({type(e).__name__}: {e})") from None


def _safe_summaries(storage) -> list:
    try:
        return optuna.study.get_all_study_summaries(storage)
    except Exception as e:  # noqa: BLE001 - storage URLs come from users
        raise NASError(f"storage: cannot list studies ({type(e).__name__}: {e})") from None


def _config_dict(cfg: SearchConfig, space: SearchSpace) -> dict:
    return {"space": space.name, "device": cfg.device, "budget": cfg.budget if isinstance(cfg.budget, str)
            else ",".join(cfg.budget), "accuracy": cfg.accuracy, "objectives": list(cfg.objectives),
            "strategy": cfg.strategy, "trials": cfg.trials, "seed": cfg.seed, "prescreen": cfg.prescreen, "init": cfg.init,
            "prescreen_share": cfg.prescreen_share,
            "rerank": cfg.rerank, "rerank_top": cfg.rerank_top if cfg.rerank else None,
            "refine": cfg.refine if cfg.rerank else None, "confirm": cfg.confirm if cfg.rerank else None}


def _default_device(space: SearchSpace, reporter: Reporter, calibrate: str | None = None) -> str:
    """This machine's measured CPU profile; else another CPU's, calibrated here (or, with ``calibrate``
    never/off, used as it is with a warning); else an error. See :func:`nas.latency.calibrate.host_device`."""
    from nas.latency.calibrate import host_device

    dev = host_device(space, calibrate, reporter)
    if dev is not None:
        return dev
    raise ParamError("device", f": no device profile matches this machine; measure one (nas profile --space {space.name}) "
                     "or name a device (nas profile list)")
