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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas.cost.budget import Budget
from nas.cost.count import count
from nas.errors import BudgetError, NASError, ParamError
from nas.reporting import Reporter, or_silent
from nas.search.config import COLUMN, INITS, METRICS, SENSES, STRATEGIES, SearchConfig, SearchResult  # noqa: F401
from nas.search.feasible import sample_feasible
from nas.search.pareto import hypervolume, pareto_mask
from nas.search.prescreen import Prescreener, prescreen_slots, screening_error, validate_prescreen
from nas.space import Arch, SearchSpace, load_space
from nas.space.language import LAYER_KEYS
from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params

FORMAT = {"latency": fmt_ms, "params": fmt_params, "macs": fmt_macs, "memory": fmt_bytes}


# ---- parameters <-> archs ----------------------------------------------------------------------------

def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """One categorical parameter per choice of the space (layer slots up to the maximum depth)."""
    d: dict[str, CategoricalDistribution] = {}
    if len(space.spec.resolutions) > 1:
        d["resolution"] = CategoricalDistribution(list(space.spec.resolutions))
    if len(space.spec.stem_widths) > 1:
        d["stem"] = CategoricalDistribution(list(space.spec.stem_widths))
    for si, st in enumerate(space.stages):
        if len(st.depths) > 1:
            d[f"s{si}.depth"] = CategoricalDistribution(list(st.depths))
        if len(st.widths) > 1:
            d[f"s{si}.width"] = CategoricalDistribution(list(st.widths))
        for key in LAYER_KEYS:
            if key in st.per_layer:
                for li in range(st.max_depth):
                    ch = st.mixer_choices(li) if key == "mixer" else st.layer_choices(key)
                    if len(ch) > 1:
                        d[f"s{si}.l{li}.{key}"] = CategoricalDistribution(list(ch))
            else:
                ch = st.mixer_choices(0) if key == "mixer" else st.layer_choices(key)
                if len(ch) > 1:
                    d[f"s{si}.{key}"] = CategoricalDistribution(list(ch))
    return d


def params_to_arch(space: SearchSpace, params: dict[str, Any]) -> Arch:
    """The canonical arch of a trial's parameters (unused slots and fields are ignored)."""
    data: dict[str, Any] = {"resolution": params.get("resolution", space.spec.resolutions[0]),
                            "stem": params.get("stem", space.spec.stem_widths[0]), "stages": []}
    for si, st in enumerate(space.stages):
        depth = params.get(f"s{si}.depth", st.depths[0])
        layers = []
        for li in range(depth):
            layer = {}
            for key in LAYER_KEYS:
                ch = st.mixer_choices(li) if key == "mixer" else st.layer_choices(key)
                name = f"s{si}.l{li}.{key}" if key in st.per_layer else f"s{si}.{key}"
                layer[key] = params.get(name, ch[0])
            layers.append(layer)
        data["stages"].append({"depth": depth, "width": params.get(f"s{si}.width", st.widths[0]), "layers": layers})
    return space.make_arch(data)


def arch_to_params(space: SearchSpace, arch: Arch, dists: dict[str, CategoricalDistribution],
                   rng: random.Random) -> dict[str, Any]:
    """Parameters that give ``arch`` (free slots beyond the depth are drawn from ``rng``)."""
    p: dict[str, Any] = {}
    for name, dist in dists.items():
        parts = name.split(".")
        if name == "resolution":
            v = arch.resolution
        elif name == "stem":
            v = arch.stem
        else:
            si = int(parts[0][1:])
            ch = arch.stages[si]
            if parts[1] == "depth":
                v = ch.depth
            elif parts[1] == "width":
                v = ch.width
            else:
                key = parts[-1]
                if len(parts) == 3:
                    li = int(parts[1][1:])
                    v = getattr(ch.layers[li], key) if li < ch.depth else None
                else:  # a per-stage choice: the value its layers share (skip layers carry none)
                    v = next((getattr(lc, key) for lc in ch.layers if getattr(lc, key) is not None), None)
        p[name] = v if v in dist.choices else rng.choice(dist.choices)
    return p


# ---- the run ---------------------------------------------------------------------------------------

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


class _Evolution:
    """Multi-objective evolution on archs: binary tournaments on (feasible, Pareto rank), crossover + mutation."""

    def __init__(self, space: SearchSpace, seed: int, population: int, senses: list[str]):
        self.space, self.pop, self.senses = space, population, senses
        self.rng = random.Random(seed + 7919)

    def child(self, done: list[dict]) -> Arch | None:
        if len(done) < self.pop:
            return None
        recent = done[-4 * self.pop:]
        vals = np.array([[r[c] for c in r["_objective_cols"]] for r in recent], dtype=float)
        feas = np.array([r["feasible"] for r in recent])
        rank = np.full(len(recent), 2)
        if feas.any():
            idx = np.flatnonzero(feas)
            rank[idx] = 1
            rank[idx[pareto_mask(vals[idx], self.senses)]] = 0

        def pick() -> Arch:
            i, j = self.rng.randrange(len(recent)), self.rng.randrange(len(recent))
            best = i if (rank[i], recent[i]["violation"]) <= (rank[j], recent[j]["violation"]) else j
            return recent[best]["_arch"]

        return self.space.mutate(self.space.crossover(pick(), pick(), rng=self.rng), prob=0.15, rng=self.rng)


def check_budget_feasible(space: SearchSpace, budget: Budget, latency: Callable[[Arch], float] | None) -> dict:
    """Costs of the space's smallest arch; raises BudgetError when it already breaks the budget."""
    smallest = space.min()
    c = count(smallest)
    values = {"params": c.params, "macs": c.macs, "memory": c.memory}
    if latency is not None and "latency" in budget.keys:
        values["latency"] = latency(smallest)
    for con in budget:
        v = values.get(con.key)
        if v is not None and v > con.limit:
            fmt = FORMAT[con.key]
            how = "predicted" if con.key == "latency" else "counted"
            raise BudgetError(f"budget '{con.text}' cannot be met in space {space.name}: the smallest achievable "
                              f"{con.key} is {fmt(v)} ({how}, for the space's smallest arch)")
    return values


def run_search(cfg: SearchConfig, reporter: Reporter | None = None, evaluator: Any = None) -> SearchResult:
    """Run (or resume) a search and write its run folder; returns the trials table and the Pareto set.

    Progress (trials told, hypervolume so far) and warnings go to ``reporter`` (silent by default)."""
    import pandas as pd

    rep = or_silent(reporter)

    if cfg.strategy not in STRATEGIES:
        raise ParamError("strategy", f"{cfg.strategy}: choose from {', '.join(STRATEGIES)}")
    bad = [o for o in cfg.objectives if o not in METRICS]
    if bad or "accuracy" not in cfg.objectives or len(set(cfg.objectives)) != len(cfg.objectives):
        raise ParamError("objectives", f"{','.join(cfg.objectives)}: list accuracy plus any of latency, params, macs, "
                       f"memory, each once")
    if cfg.trials < 1:
        raise ParamError("trials", f"{cfg.trials}: must be at least 1")
    validate_prescreen(cfg.prescreen, cfg.prescreen_share)
    if cfg.init not in INITS:
        raise ParamError("init", f"{cfg.init}: choose from {', '.join(INITS)}")
    space = load_space(cfg.space)
    budget = Budget.parse(cfg.budget)
    needs_latency = "latency" in cfg.objectives or "latency" in budget.keys
    latency_model = None
    if needs_latency:
        from nas.latency import load_latency_model

        device = cfg.device or _default_device(space, rep)
        cfg.device = device
        latency_model = load_latency_model(device, space)
    check_budget_feasible(space, budget, latency_model)

    name = _study_name(cfg, space)
    run_dir = Path(cfg.runs_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(cfg.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}")
    directions = ["maximize" if SENSES[o] == "max" else "minimize" for o in cfg.objectives]
    exists = name in {s.study_name for s in _safe_summaries(storage)}
    if exists and not cfg.resume:
        raise ParamError("study", f"'{name}' already exists in {run_dir}; resume it to continue, or name a new study")
    if cfg.resume and not exists:
        raise ParamError("resume", f": no study '{name}' in {cfg.storage or run_dir}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions,
                                sampler=_sampler(cfg), load_if_exists=cfg.resume)
    if not exists:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([COLUMN[o] for o in cfg.objectives])
        study.set_user_attr("config", _config_dict(cfg, space))
    dists = distributions(space)
    rng = random.Random(cfg.seed)

    # Recover: trials a killed run left RUNNING are failed and their parameters asked again, in order.
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
            keep = {k: t.user_attrs[k] for k in ("predicted_accuracy", "score") if k in t.user_attrs}
            study.enqueue_trial(t.params, user_attrs={"recovered_from": t.number, **keep})

    rows: list[dict] = []
    cache: dict[str, dict] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row = dict(t.user_attrs.get("row", {}))
        if row:
            row.setdefault("source", "sampler")  # rows of studies made before sources were recorded
            row.setdefault("predicted_accuracy", None)
            row["_arch"] = params_to_arch(space, t.params)
            row["_objective_cols"] = [COLUMN[o] for o in cfg.objectives]
            rows.append(row)
            cache.setdefault(row["arch_id"], row)

    own_evaluator = evaluator is None
    if evaluator is None:
        from nas.search.evaluators import LocalEvaluator, RayEvaluator

        if cfg.workers > 1 or cfg.ray_address:
            evaluator = RayEvaluator(cfg.accuracy, space, cfg.workers, cfg.ray_address, cfg.threads)
        else:
            evaluator = LocalEvaluator(cfg.accuracy, space, cfg.threads)
    acc_provenance = evaluator.provenance
    senses = [SENSES[o] for o in cfg.objectives]
    evo = _Evolution(space, cfg.seed, cfg.population or max(8, min(50, cfg.trials // 5)), senses) \
        if cfg.strategy == "evolution" else None
    batch_size = cfg.batch or max(4, 4 * getattr(evaluator, "workers", 1))
    lat_ref = budget.get("latency").limit if budget.get("latency") else None
    pre = Prescreener(space, budget, [COLUMN[o] for o in cfg.objectives], senses, latency_model,
                      candidates=cfg.prescreen, seed=cfg.seed, warmup=max(10, batch_size)) if cfg.prescreen else None
    # Start inside the budget: the first generation (for random search, every trial) is drawn uniformly
    # from the archs whose counted costs and predicted latency meet it (nas.search.feasible)
    feasible_draws = cfg.init == "feasible" and len(budget) > 0
    init_rng = random.Random(cfg.seed + 15485863)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if feasible_draws and cfg.strategy != "random" and not rows and not waiting:
        n0 = {"nsga2": getattr(study.sampler, "population_size", 0) or 0, "evolution": evo.pop if evo else 0,
              "tpe": getattr(study.sampler, "_n_startup_trials", 0)}.get(cfg.strategy, 0)
        for a in sample_feasible(space, budget, min(n0, cfg.trials), init_rng, latency_model):
            study.enqueue_trial(arch_to_params(space, a, dists, rng), user_attrs={"source": "feasible-init"})
    t_start = time.perf_counter()
    done = len(rows)
    bar_ctx = rep.progress(cfg.trials, f"search {space.name}", completed=done)
    bar = bar_ctx.__enter__()
    try:
        while done < cfg.trials:
            n = min(batch_size, cfg.trials - done)
            picks = pre.propose(rows, prescreen_slots(n, cfg.prescreen_share)) if pre is not None else []
            draws: list[Arch] = []
            if feasible_draws and cfg.strategy == "random" and n > len(picks):
                seen = set(cache) | {a.id for a, _ in picks}
                draws = sample_feasible(space, budget, n - len(picks), init_rng, latency_model, exclude=seen)
            asked = []
            for i in range(n):
                if i < len(picks):  # pre-screened archs first; the source travels with the enqueued trial
                    study.enqueue_trial(arch_to_params(space, picks[i][0], dists, rng),
                                        user_attrs={"source": "prescreen", "predicted_accuracy": picks[i][1]})
                elif i - len(picks) < len(draws):
                    study.enqueue_trial(arch_to_params(space, draws[i - len(picks)], dists, rng),
                                        user_attrs={"source": "feasible-random"})
                elif evo is not None:
                    child = evo.child(rows)
                    if child is not None:
                        study.enqueue_trial(arch_to_params(space, child, dists, rng),
                                            user_attrs={"source": "evolution"})
                trial = study.ask(dists)
                arch = params_to_arch(space, trial.params)
                asked.append((trial, arch, trial.user_attrs))
            # cheap metrics here, vectorised latency for the batch
            lat = latency_model.predict([a for _, a, _ in asked]) if latency_model else [None] * len(asked)
            pending: dict[int, dict] = {}
            to_eval = []
            for (trial, arch, attrs), lat_ms in zip(asked, lat):
                c = count(arch)
                values = {"latency": None if lat_ms is None else float(lat_ms), "params": c.params, "macs": c.macs,
                          "memory": c.memory}
                viol = budget.violations(values)
                feasible = all(v <= 0 for v in viol.values())
                row = {"number": trial.number, "arch_id": arch.id, "arch": str(arch), "accuracy": None,
                       "latency_ms": values["latency"], "params": c.params, "macs": c.macs, "memory": c.memory,
                       "feasible": feasible, "violation": budget.total_violation(values),
                       "evaluated": False, "duplicate_of": None, "eval_s": 0.0, "worker": None,
                       "source": "recovered" if "recovered_from" in attrs else attrs.get("source", "sampler"),
                       "predicted_accuracy": attrs.get("predicted_accuracy")}
                for k, v in viol.items():
                    row[f"violation_{k}"] = v
                pending[trial.number] = {"trial": trial, "arch": arch, "row": row}
                prior = cache.get(arch.id)
                saved = attrs.get("score")  # scored before a kill: the score was stored as it arrived
                if prior is not None:
                    row.update(accuracy=prior["accuracy"], evaluated=prior["evaluated"],
                               duplicate_of=prior["number"])
                elif saved is not None and feasible:
                    row.update(accuracy=saved["accuracy"], evaluated=True, eval_s=saved["eval_s"],
                               worker=saved["worker"])
                    cache[arch.id] = row
                elif feasible:
                    to_eval.append((trial.number, arch))
                    cache[arch.id] = row  # later duplicates in this batch wait for this one
            for number, score, secs, worker in evaluator.run(to_eval):
                pending[number]["row"].update(accuracy=score, evaluated=True, eval_s=secs, worker=worker)
                # stored at once, so a run killed before this batch is told does not score it again
                pending[number]["trial"].set_user_attr("score", {"accuracy": score, "eval_s": secs, "worker": worker})
            floor = min((r["accuracy"] for r in rows if r["accuracy"] is not None), default=0.0)
            for number in sorted(pending):
                p = pending[number]
                row = p["row"]
                if row["duplicate_of"] is not None and row["accuracy"] is None:
                    src = cache.get(row["arch_id"])
                    row["accuracy"], row["evaluated"] = src["accuracy"], src["evaluated"]
                acc_value = row["accuracy"] if row["accuracy"] is not None else floor
                objective = []
                for o in cfg.objectives:
                    objective.append(acc_value if o == "accuracy" else float(row[COLUMN[o]]))
                for k in budget.keys:
                    p["trial"].set_constraint(k, row[f"violation_{k}"])
                row["_objective_cols"] = [COLUMN[o] for o in cfg.objectives]
                row["_arch"] = p["arch"]
                rows.append(row)
                row["hypervolume"] = _hv(rows, cfg.objectives, lat_ref)
                stored = {k: v for k, v in row.items() if not k.startswith("_")}
                p["trial"].set_user_attr("row", stored)
                study.tell(p["trial"], objective)
                done += 1
                bar.advance()
                bar.set_description(f"search {space.name} hv={row['hypervolume']:.3g}")
    finally:
        bar_ctx.__exit__(None, None, None)
        if own_evaluator:
            evaluator.close()

    elapsed = time.perf_counter() - t_start
    from nas.search.report import write_run

    table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    pareto = _pareto_rows(study, rows)
    summary = write_run(run_dir, cfg, space, table, pareto, budget, acc_provenance,
                        latency_model.provenance if latency_model else None, elapsed,
                        getattr(evaluator, "retried", 0), extra={"prescreen": _prescreen_summary(cfg, pre, rows)})
    return SearchResult(run_dir, name, table, pareto, summary)


def _prescreen_summary(cfg: SearchConfig, pre: Prescreener | None, rows: list[dict]) -> dict | None:
    """Settings, predictor and measured error of the pre-screening (None when it was off), for summary.json."""
    if pre is None:
        return None
    return {"candidates_per_trial": cfg.prescreen, "share": cfg.prescreen_share, "warmup": pre.warmup,
            "predictor": pre.provenance, "fits": pre.fits, "last_fit": pre.fit_info or None,
            "trials": sum(1 for r in rows if r.get("source") == "prescreen"),
            "error_on_screened": screening_error(rows)}


def _pareto_rows(study: optuna.Study, rows: list[dict]) -> list[dict]:
    by_number = {r["number"]: r for r in rows}
    seen, out = set(), []
    for t in sorted(study.best_trials, key=lambda t: t.values[0], reverse=True):
        r = by_number.get(t.number)
        if r is None or r["arch_id"] in seen or not r["evaluated"] and r["duplicate_of"] is None:
            continue
        seen.add(r["arch_id"])
        out.append(r)
    return out


def _hv(rows: list[dict], objectives: tuple[str, ...], lat_ref: float | None) -> float:
    """Hypervolume of the feasible evaluated trials so far (reference: worst seen, or the budget)."""
    feas = [r for r in rows if r["feasible"] and r["accuracy"] is not None]
    if not feas:
        return 0.0
    cols = [COLUMN[o] for o in objectives]
    vals = np.array([[r[c] for c in cols] for r in feas], dtype=float)
    allv = np.array([[r[c] if r[c] is not None else np.nan for c in cols] for r in rows
                     if r["accuracy"] is not None], dtype=float)
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
            "prescreen_share": cfg.prescreen_share}


def _default_device(space: SearchSpace, reporter: Reporter) -> str:
    """This machine's measured CPU profile; else another CPU's (with a warning); else an error."""
    from nas.io import read_yaml
    from nas.profile import default_device
    from nas.profile.machine import cpu_model
    from nas.profile.store import PROFILE_FILE, list_profiles

    dev = default_device()
    if dev is not None:
        return dev
    for path in list_profiles():
        meta = read_yaml(path / PROFILE_FILE)
        if (isinstance(meta, dict) and meta.get("kind") == "measured" and space.name in (meta.get("spaces") or {})
                and (meta.get("machine") or {}).get("backend") == "torch-cpu"):
            reporter.warn(f"no profile of this CPU ({cpu_model()}); latencies are predicted for {path.name} "
                    f"({(meta.get('machine') or {}).get('cpu_model')}). Measure this machine with "
                    f"`nas profile --space {space.name}` for figures that hold here.")
            return path.name
    raise ParamError("device", f": no device profile matches this machine; measure one (nas profile --space {space.name}) "
                     "or name a device (nas profile list)")
