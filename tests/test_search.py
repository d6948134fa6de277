"""nas search: constraints, Pareto extraction, dedupe, resume after kill -9, Ray worker failure."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

import nas
from nas.errors import BudgetError, NASError, ParamError
from nas.search.engine import SearchConfig, arch_to_params, distributions, params_to_arch, run_search
from nas.search.pareto import hypervolume, pareto_mask

TINY = {
    "name": "tiny-search",
    "input": {"channels": 3, "resolution": [32, 48]},
    "stem": {"width": [8, 16], "kernel": 3, "stride": 2},
    "stages": [
        {"depth": [1, 2], "width": [16, 24], "stride": 2, "mixer": ["dwconv", "pool", "skip"], "kernel": [3, 5],
         "ratio": [2, 4], "per_layer": ["mixer", "kernel"]},
        {"depth": [1, 2, 3], "width": [32, 48], "stride": 2, "mixer": ["dwconv", "mbconv"], "ratio": [2, 4],
         "kernel": [3, 5], "per_layer": ["mixer", "kernel", "ratio"]},
    ],
    "head": {"classes": 10},
}


@pytest.fixture()
def tiny_space(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def cfg(tmp_path, space, **kw) -> SearchConfig:
    base = dict(budget="params:60K", space=str(space), objectives=("accuracy", "macs"), accuracy="proxy:params",
                trials=30, seed=0, runs_dir=tmp_path / "runs")
    base.update(kw)
    return SearchConfig(**base)


def test_params_roundtrip_through_optuna_distributions(tiny_space):
    import random

    sp = nas.load_space(tiny_space)
    dists = distributions(sp)
    rng = random.Random(0)
    for arch in sp.sample_many(30, seed=1):
        assert params_to_arch(sp, arch_to_params(sp, arch, dists, rng)) == arch


def test_constraints_pareto_and_outputs(tmp_path, tiny_space):
    res = run_search(cfg(tmp_path, tiny_space))
    t = res.trials
    assert len(t) == 30 and t["number"].is_unique
    # feasibility is the budget, set as Optuna constraints
    assert (t["feasible"] == (t["params"] < 60_000)).all()
    assert t.loc[~t["feasible"], "evaluated"].eq(False).all()  # infeasible archs are never scored
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{res.run_dir / 'study.db'}")
    for tr in study.trials:
        assert set(tr.constraints) == {"params"}
        assert (tr.constraints["params"] <= 0) == tr.user_attrs["row"]["feasible"]
    # Pareto set: feasible, non-dominated (max accuracy, min MACs), nothing feasible dominates it
    feas = t[t["feasible"] & t["evaluated"]]
    front = {r["id"] for r in res.summary["pareto"]}
    # a training-free score is never called an accuracy: the column and the metric say "score"
    assert "accuracy" not in t.columns and res.summary["estimator"]["measures"] == "score"
    for e in res.summary["pareto"]:
        m = e["metrics"]
        assert m["params"] < 60_000 and "accuracy" not in m
        dominated = feas[(feas["score"] >= m["score"]) & (feas["macs"] <= m["macs"])
                         & ((feas["score"] > m["score"]) | (feas["macs"] < m["macs"]))]
        assert dominated.empty
    vals = feas[["score", "macs"]].to_numpy(float)
    mask = pareto_mask(vals, ["max", "min"])
    assert set(feas.loc[mask, "arch_id"]) == front
    # run folder
    for f in ("trials.csv", "trials.parquet", "summary.json", "pareto.png"):
        assert (res.run_dir / f).is_file()
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["estimator"]["provenance"] and summary["pareto"]
    arch = nas.load_arch(res.run_dir / summary["pareto"][0]["arch_file"], space=nas.load_space(tiny_space))
    assert arch.id == summary["pareto"][0]["id"]
    assert np.all(np.diff(t["hypervolume"].to_numpy()) >= -1e-9)  # hypervolume never decreases


def test_identical_archs_are_evaluated_once(tmp_path):
    small = {**TINY, "stages": [{"depth": [1, 2], "width": [16], "stride": 2, "mixer": ["dwconv", "pool"],
                                 "kernel": [3, 5], "per_layer": ["mixer"]}]}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small))
    res = run_search(cfg(tmp_path, path, trials=60, strategy="random", budget="params:1G", init="random"))
    t = res.trials
    scored = t[t["evaluated"] & t["duplicate_of"].isna()]
    assert scored["arch_id"].is_unique
    dups = t[t["duplicate_of"].notna()]
    assert len(dups) > 0  # the tiny space repeats itself within 60 trials
    first = t.set_index("number")
    for _, r in dups.iterrows():
        assert first.loc[int(r["duplicate_of"]), "arch_id"] == r["arch_id"]


@pytest.mark.parametrize("strategy", ["nsga2", "tpe", "evolution", "random"])
def test_strategies_are_deterministic(tmp_path, tiny_space, strategy):
    a = run_search(cfg(tmp_path / "a", tiny_space, strategy=strategy, trials=24, population=8))
    b = run_search(cfg(tmp_path / "b", tiny_space, strategy=strategy, trials=24, population=8))
    assert list(a.trials["arch_id"]) == list(b.trials["arch_id"])


def test_impossible_budget_is_reported_before_searching(tmp_path, tiny_space):
    with pytest.raises(BudgetError, match="smallest achievable params is"):
        run_search(cfg(tmp_path, tiny_space, budget="params:100"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_existing_study_needs_resume(tmp_path, tiny_space):
    run_search(cfg(tmp_path, tiny_space, trials=5))
    with pytest.raises(NASError, match="already exists.*resume it"):
        run_search(cfg(tmp_path, tiny_space, trials=5))
    res = run_search(cfg(tmp_path, tiny_space, trials=9, resume=True))
    assert list(res.trials["number"]) == list(range(9))


def test_resume_refuses_settings_that_define_the_study_and_leaves_it_untouched(tmp_path, tiny_space, capsys):
    """A resumed study keeps its space, budget, score, objectives, strategy, seed...: its stored trials were chosen
    and scored under them. A changed one is one line naming the flag, exit 2, and the study as it was."""
    from nas.cli import main as cli

    def told() -> list:
        st = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}")
        return [(t.number, t.state, t.params, t.values) for t in st.get_trials()]

    run_search(cfg(tmp_path, tiny_space, trials=6, study="s"))
    before = told()
    for change, says in [({"budget": "params:50K"}, "budget params:50K: study 's' was made with params:60K"),
                         ({"seed": 3}, "seed 3: .* was made with 0;"),
                         ({"accuracy": "proxy:nwot"}, "accuracy proxy:nwot: .* with proxy:params"),
                         ({"objectives": ("accuracy", "params")}, "objectives accuracy,params: .* accuracy,macs"),
                         ({"strategy": "random"}, "strategy random: .* with nsga2")]:
        with pytest.raises(ParamError, match=says):
            run_search(cfg(tmp_path, tiny_space, trials=9, resume=True, study="s", **change))
    assert told() == before
    capsys.readouterr()
    code = cli.main(["search", "--space", str(tiny_space), "--budget", "params:70K", "--objectives", "accuracy,macs",
                     "--accuracy", "proxy:params", "--trials", "9", "--study", "s", "--runs", str(tmp_path / "runs"),
                     "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].endswith("--budget params:70K: study 's' was made with params:60K; resume it with the same setting, "
                           "or name a new study")
    assert told() == before
    # an equal budget written another way, more trials and a re-rank are a resume, not a new study
    res = run_search(cfg(tmp_path, tiny_space, trials=9, resume=True, study="s", budget="params:60000",
                         rerank="proxy:nwot", rerank_top=2))
    assert list(res.trials["number"]) == list(range(9)) and told()[:6] == before


def _complete_trials(db: Path) -> int:
    """Completed trials in a study file, read without Optuna: opening it with Optuna while the search is creating
    the schema would race the search on the schema's first rows."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # the schema is not there yet
        return 0


def test_resume_after_kill_loses_and_repeats_nothing(tmp_path, tiny_space):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "nas.cli.main", "search", "--space", str(tiny_space), "--budget", "params:1G",
           "--objectives", "accuracy,macs", "--accuracy", "debug:sleep:0.15", "--trials", "24", "--runs", str(runs),
           "--study", "killed"]
    log = tmp_path / "search.err"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    db = runs / "killed" / "study.db"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _complete_trials(db) < 6:
        time.sleep(0.3)
    assert proc.poll() is None, f"the search ended before it was killed: {log.read_text()[-2000:]}"
    assert _complete_trials(db) >= 6, f"6 trials not done in 120 s: {log.read_text()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    st = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    complete = {t.number: t.user_attrs["row"]["arch_id"] for t in st.get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))}
    assert 6 <= len(complete) < 24
    res = run_search(SearchConfig(budget="params:1G", space=str(tiny_space), objectives=("accuracy", "macs"),
                                  accuracy="debug:sleep:0.15", trials=24, runs_dir=runs, study="killed",
                                  resume=True))  # the same score: a study keeps its settings
    t = res.trials
    assert len(t) == 24 and t["number"].is_unique
    # every trial completed before the kill is still there, unchanged, and was not evaluated again
    kept = t.set_index("number")
    for number, arch_id in complete.items():
        assert kept.loc[number, "arch_id"] == arch_id
    st = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    assert len(st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 24


def test_ray_worker_death_costs_one_retry(tmp_path, tiny_space):
    marker = tmp_path / "crashed.marker"
    res = run_search(cfg(tmp_path, tiny_space, trials=12, workers=2, accuracy=f"debug:crash-once:{marker}",
                         budget="params:1G"))
    assert marker.exists()  # a worker really died
    assert res.summary["retried_after_worker_failure"] == 1
    assert len(res.trials) == 12 and res.trials["evaluated"].sum() + res.trials["duplicate_of"].notna().sum() == 12


def test_json_output_stays_json_when_a_ray_worker_dies(tmp_path, tiny_space, capsys):
    """Ray's driver prints a worker's death to stdout from its own thread; `nas search --json` keeps stdout for the
    JSON alone (the line goes to stderr during the search, and the Ray session it started ends before the JSON)."""
    import ray

    from nas.cli.main import main

    ray.shutdown()  # an earlier test's embedded Ray is left up for reuse; this search starts its own
    marker = tmp_path / "crashed.marker"
    code = main(["search", "--space", str(tiny_space), "--budget", "params:1G", "--objectives", "accuracy,macs",
                 "--accuracy", f"debug:crash-once:{marker}", "--trials", "12", "--workers", "2",
                 "--runs", str(tmp_path / "runs"), "--json"])
    out = capsys.readouterr().out
    assert code == 0 and marker.exists()
    summary = json.loads(out)  # nothing but the JSON
    assert summary["retried_after_worker_failure"] == 1 and not ray.is_initialized()


def test_hypervolume_2d():
    vals = np.array([[0.9, 3.0], [0.8, 1.0], [0.5, 2.0]])
    # reference (accuracy 0, latency 5): union of boxes (0.9 x 2) and (0.8 x 4) = 1.8 + 0.8*2 = 3.4
    assert hypervolume(vals, ["max", "min"], [0.0, 5.0]) == pytest.approx(0.9 * 2 + 0.8 * 2)
    assert list(pareto_mask(vals, ["max", "min"])) == [True, True, False]


# ---- OFA-style pre-screening by an accuracy predictor ---------------------------------------------------

@pytest.mark.parametrize("strategy", ["nsga2", "evolution", "tpe", "random"])
def test_prescreen_picks_feasible_unseen_archs_with_predictions(tmp_path, tiny_space, strategy):
    res = run_search(cfg(tmp_path, tiny_space, strategy=strategy, trials=32, population=8, prescreen=8))
    t = res.trials
    assert len(t) == 32 and t["number"].is_unique
    pre = t[t["source"] == "prescreen"]
    assert len(pre) >= 5
    assert set(t["source"]) <= {"sampler", "evolution", "prescreen", "recovered", "feasible-init", "feasible-random"}
    assert pre["feasible"].all() and (pre["params"] < 60_000).all() and pre["evaluated"].all()
    assert pre["predicted_accuracy"].notna().all() and t.loc[t["source"] != "prescreen", "predicted_accuracy"].isna().all()
    for _, r in pre.iterrows():  # never an arch the run had already seen
        assert r["arch_id"] not in set(t.loc[t["number"] < r["number"], "arch_id"])
        assert pd_isna(r["duplicate_of"])
    # no pre-screening during the warm-up (10 feasible scored archs)
    first = int(pre["number"].min())
    assert t[(t["number"] < first) & t["feasible"]]["arch_id"].nunique() >= 10
    s = json.loads((res.run_dir / "summary.json").read_text())["prescreen"]
    assert s["candidates_per_trial"] == 8 and s["share"] == 0.5 and "ridge" in s["predictor"]
    assert s["trials"] == len(pre) and s["error_on_screened"]["n"] == len(pre)
    assert s["error_on_screened"]["mae"] is not None and s["error_on_screened"]["spearman"] is not None


def pd_isna(v) -> bool:
    """True for None/NaN (pandas' missing values)."""
    import pandas as pd

    return bool(pd.isna(v))


def test_prescreen_is_deterministic_and_off_at_zero(tmp_path, tiny_space):
    a = run_search(cfg(tmp_path / "a", tiny_space, trials=28, prescreen=6, prescreen_share=0.75))
    b = run_search(cfg(tmp_path / "b", tiny_space, trials=28, prescreen=6, prescreen_share=0.75))
    cols = [c for c in a.trials.columns if c not in ("eval_s", "worker")]
    assert (a.trials["source"] == "prescreen").sum() >= 5
    assert a.trials[cols].equals(b.trials[cols])
    off = run_search(cfg(tmp_path / "c", tiny_space, trials=12, prescreen=0))
    assert "prescreen" not in set(off.trials["source"]) and off.summary["prescreen"] is None


def test_prescreen_resume_keeps_sources_and_repeats_nothing(tmp_path, tiny_space):
    first = run_search(cfg(tmp_path, tiny_space, trials=20, prescreen=8))
    # a pre-screened trial left RUNNING, as a kill -9 leaves it: resume asks it again as "recovered"
    study = optuna.load_study(study_name=first.study_name, storage=f"sqlite:///{first.run_dir / 'study.db'}")
    sp = nas.load_space(tiny_space)
    lost = sp.sample(seed=123)
    import random

    study.enqueue_trial(arch_to_params(sp, lost, distributions(sp), random.Random(0)),
                        user_attrs={"source": "prescreen", "predicted_accuracy": 1234.5})
    assert study.ask(distributions(sp)).number == 20
    res = run_search(cfg(tmp_path, tiny_space, trials=32, prescreen=8, resume=True))
    t = res.trials
    assert list(t["number"]) == list(range(20)) + list(range(21, 33))  # 20 failed, asked again as 21
    rec = t[t["source"] == "recovered"]
    assert list(rec["number"]) == [21] and rec["arch_id"].iloc[0] == lost.id
    assert rec["predicted_accuracy"].iloc[0] == 1234.5
    kept = t.set_index("number")
    for _, r in first.trials.iterrows():
        assert kept.loc[r["number"], "arch_id"] == r["arch_id"] and kept.loc[r["number"], "source"] == r["source"]
    pre = t[t["source"] == "prescreen"]
    assert (pre["number"] > 21).any()
    for _, r in pre.iterrows():
        assert r["arch_id"] not in set(t.loc[t["number"] < r["number"], "arch_id"])


@pytest.mark.parametrize("argv", [["--prescreen", "1"], ["--prescreen", "-2"], ["--prescreen", "many"],
                                  ["--prescreen", "8", "--prescreen-share", "0"],
                                  ["--prescreen", "8", "--prescreen-share", "1.5"],
                                  ["--prescreen", "8", "--prescreen-share", "half"]])
def test_prescreen_flags_are_checked(tmp_path, tiny_space, capsys, argv):
    from nas.cli import main as cli

    runs = tmp_path / "runs"
    code = cli.main(["search", "--space", str(tiny_space), "--budget", "params:60K", "--objectives", "accuracy,macs",
                     "--accuracy", "proxy:params", "--trials", "5", "--runs", str(runs), *argv])
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    flag = "--prescreen-share" if "--prescreen-share" in argv else "--prescreen "
    assert len(lines) == 1 and flag in lines[0] and "must be" in lines[0]
    assert not runs.exists()


@pytest.mark.parametrize("proxy", ["entropy", "macs"])
def test_prescreen_predictor_ranks_held_out_archs(tiny_space, proxy):
    from scipy import stats

    from nas.cost.budget import Budget
    from nas.search.estimators import make_estimator
    from nas.search.prescreen import Prescreener

    sp = nas.load_space(tiny_space)
    est = make_estimator(f"proxy:{proxy}", sp)
    archs = list({a.id: a for a in sp.sample_many(120, seed=5)}.values())[:90]
    y = np.array([est.evaluate(a) for a in archs])
    pre = Prescreener(sp, Budget.parse(""), ["accuracy", "macs"], ["max", "min"]).fit(archs[:40], y[:40])
    rho = stats.spearmanr(pre.predict(archs[40:]), y[40:])[0]
    assert rho > 0.8, (proxy, rho, pre.fit_info)
    # predictions are in the score's own units (what the run's MAE reports): well inside its spread
    mae = float(np.mean(np.abs(pre.predict(archs[40:]) - y[40:])))
    assert mae < 0.5 * float(np.std(y[40:])), (proxy, mae, pre.fit_info)


def test_prescreen_screens_predicted_latency_against_the_budget(tiny_space):
    from nas.cost.budget import Budget
    from nas.cost.count import count
    from nas.search.prescreen import Prescreener

    class StubLatency:  # latency 1 ms per 100K MACs, predicted for a whole list at once
        def predict(self, archs):
            return np.array([count(a).macs / 1e5 for a in archs])

    sp = nas.load_space(tiny_space)
    archs = list({a.id: a for a in sp.sample_many(40, seed=2)}.values())
    lat = StubLatency().predict(archs)
    limit = float(np.median(lat))
    from nas.search.rows import TrialRow

    rows = []
    for i, (a, ms) in enumerate(zip(archs, lat)):
        c = count(a)
        rows.append(TrialRow(i, a, float(ms), c.params, c.macs, c.memory, violations={"latency": (ms - limit) / limit},
                             accuracy=float(c.params) if ms <= limit else None))
    pre = Prescreener(sp, Budget.parse(f"latency:{limit}ms"), ["accuracy", "latency_ms"], ["max", "min"],
                      latency_model=StubLatency(), candidates=8, seed=0, warmup=10)
    picks = [(p.arch, p.predicted_accuracy) for p in pre.propose(rows, 4)]
    assert 1 <= len(picks) <= 4 and len({a.id for a, _ in picks}) == len(picks)
    assert all(count(a).macs / 1e5 <= limit for a, _ in picks)
    assert not {a.id for a, _ in picks} & {r.arch_id for r in rows}
    assert pre.propose(rows[:5], 4) == []  # warm-up: too few scored archs


# ---- starting inside the budget ------------------------------------------------------------------------


def _tight_params_budget(space, share: float = 0.1) -> str:
    """A params limit that about ``share`` of uniformly random archs meet."""
    params = sorted(nas.count(a).params for a in space.sample_many(2000, seed=99))
    return f"params:{params[int(share * len(params))]}"


def test_sample_feasible_is_within_budget_distinct_and_excludes():
    import random

    from nas.cost.budget import Budget
    from nas.search.feasible import batch_costs, feasible_mask, sample_feasible

    space = nas.load_space("tiny")
    budget = Budget.parse(_tight_params_budget(space))
    got = sample_feasible(space, budget, 40, random.Random(0))
    assert len(got) == 40 and len({a.id for a in got}) == 40
    assert feasible_mask(budget, batch_costs(got)).all()
    again = sample_feasible(space, budget, 40, random.Random(0), exclude={a.id for a in got[:10]})
    assert not {a.id for a in again} & {a.id for a in got[:10]}
    assert sample_feasible(space, Budget.parse("params:1"), 5, random.Random(0), max_draws=4000) == []


@pytest.mark.parametrize("strategy", ["nsga2", "tpe", "evolution"])
def test_first_generation_starts_inside_a_tight_budget(tmp_path, tiny_space, strategy):
    space = nas.load_space(tiny_space)
    budget = _tight_params_budget(space)
    on = run_search(cfg(tmp_path / "on", tiny_space, strategy=strategy, budget=budget, trials=24, population=8))
    t = on.trials.sort_values("number")
    n0 = {"nsga2": 8, "evolution": 8, "tpe": 10}[strategy]
    first = t.head(n0)
    assert (first["source"] == "feasible-init").all() and first["feasible"].all()
    off = run_search(cfg(tmp_path / "off", tiny_space, strategy=strategy, budget=budget, trials=24, population=8,
                         init="random"))
    assert "feasible-init" not in set(off.trials["source"])
    assert (~off.trials.sort_values("number").head(n0)["feasible"]).any()  # uniform draws mostly break it
    assert on.trials["feasible"].sum() > off.trials["feasible"].sum()


def test_a_corner_uniform_draws_almost_never_meet_is_reached_by_walks_toward_the_smallest_arch(
        tmp_path, tiny_space, monkeypatch):
    """Under 1.45M params `hybrid` keeps about 1 uniform draw in 10,000; walks from uniform draws toward the smallest
    arch find 20 distinct archs inside at once. A first generation that uniform draws cannot fill is topped up so."""
    import random

    from nas.cost.budget import Budget
    from nas.search import engine
    from nas.search.feasible import sample_corner, sample_feasible

    space, budget = nas.load_space("hybrid"), Budget.parse("params:1.45M")
    assert len(sample_feasible(space, budget, 5, random.Random(0), max_draws=20_000)) < 5
    got = sample_corner(space, budget, 20, random.Random(0))
    assert len(got) == 20 and len(set(got)) == 20 and all(nas.count(a).params <= 1_450_000 for a in got)
    assert [a.id for a in sample_corner(space, budget, 20, random.Random(0))] == [a.id for a in got]  # seeded
    assert not {a.id for a in got[:5]} & {a.id for a in sample_corner(space, budget, 20, random.Random(0),
                                                                      exclude={a.id for a in got[:5]})}
    assert len({str(a) for a in got}) == 20 and len({a.stages[0] for a in got}) > 1  # not one arch over and over

    monkeypatch.setattr(engine, "sample_feasible", lambda *a, **k: [])  # as if uniform draws found nothing
    res = run_search(cfg(tmp_path, tiny_space, budget=_tight_params_budget(nas.load_space(tiny_space)), trials=16,
                         population=8))
    first = res.trials.sort_values("number").head(8)
    assert (first["source"] == "feasible-init").all() and first["feasible"].all()


def test_random_search_draws_uniformly_from_the_feasible_set(tmp_path, tiny_space):
    space = nas.load_space(tiny_space)
    budget = _tight_params_budget(space)
    res = run_search(cfg(tmp_path / "a", tiny_space, strategy="random", budget=budget, trials=20, prescreen=0))
    t = res.trials
    assert (t["source"] == "feasible-random").all() and t["feasible"].all() and t["arch_id"].is_unique
    # with pre-screening (the default) the rest of each batch is still drawn from the feasible set
    res = run_search(cfg(tmp_path / "b", tiny_space, strategy="random", budget=budget, trials=24))
    t = res.trials
    assert set(t["source"]) == {"feasible-random", "prescreen"} and t["feasible"].all() and t["arch_id"].is_unique


def test_bad_init_is_one_clear_error(tmp_path, tiny_space):
    with pytest.raises(NASError, match="init bogus: choose from feasible, random"):
        run_search(cfg(tmp_path, tiny_space, init="bogus"))


def test_library_errors_name_the_parameter_and_the_cli_names_the_flag(tmp_path, tiny_space, capsys):
    from nas.cli import main as cli

    with pytest.raises(NASError, match=r"^trials 0: must be 1 to 1000000$"):
        run_search(cfg(tmp_path, tiny_space, trials=0))
    code = cli.main(["search", "--space", str(tiny_space), "--budget", "params:1G", "--trials", "0",
                     "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "nas: error: --trials 0: must be 1 to 1000000" in err


def test_resume_does_not_score_again_what_a_killed_batch_had_scored(tmp_path, tiny_space):
    runs, marker = tmp_path / "runs", tmp_path / "died"
    spec = f"debug:die-after:6:{marker}"  # batches of 4: the run dies after scoring 2 archs of its 2nd batch
    cmd = [sys.executable, "-m", "nas.cli.main", "search", "--space", str(tiny_space), "--budget", "params:1G",
           "--objectives", "accuracy,macs", "--accuracy", spec, "--trials", "16", "--runs", str(runs),
           "--study", "mid", "--prescreen", "0"]
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 17 and marker.exists()
    st = optuna.load_study(study_name="mid", storage=f"sqlite:///{runs / 'mid' / 'study.db'}")
    running = st.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    scored_mid_batch = {t.number: t.user_attrs["score"] for t in running if "score" in t.user_attrs}
    assert len(running) == 4 and len(scored_mid_batch) == 2  # stored as they arrived, before the kill
    res = run_search(SearchConfig(budget="params:1G", space=str(tiny_space), objectives=("accuracy", "macs"),
                                  accuracy=spec, trials=16, runs_dir=runs, study="mid", resume=True, prescreen=0))
    t = res.trials
    assert len(t) == 16 and t["number"].is_unique
    recovered = t[t["source"] == "recovered"]
    assert len(recovered) == 4
    # the two archs scored before the kill come back with their stored score and worker, not scored again
    here = f"local:{os.getpid()}"
    assert (recovered["worker"] != here).sum() >= 2
    kept = {s["worker"] for s in scored_mid_batch.values()}
    assert set(recovered["worker"]) <= kept | {here, None}


def test_search_with_supernet_accuracy_end_to_end(tmp_path, capsys):
    """nas supernet train, then nas search --accuracy supernet:CKPT: inherited-weight accuracy, named accuracy."""
    from nas.cli import main as cli

    out = tmp_path / "sn"
    assert cli.main(["supernet", "train", "--space", "tiny", "--data", "digits", "--out", str(out), "--epochs", "1",
                     "--batch-size", "64", "--eval-every", "0", "--threads", "1"]) == 0
    capsys.readouterr()
    code = cli.main(["--json", "search", "--space", "tiny", "--accuracy", f"supernet:{out}", "--budget",
                     "params:1G", "--objectives", "accuracy,params", "--trials", "8", "--prescreen", "0",
                     "--runs", str(tmp_path / "runs")])
    s = json.loads(capsys.readouterr().out)
    assert code == 0 and s["estimator"]["measures"] == "accuracy"
    assert "supernet-inherited accuracy" in s["estimator"]["provenance"] and "validation split" in s["estimator"][
        "provenance"]
    accs = [e["metrics"]["accuracy"] for e in s["pareto"]]
    assert accs and all(0.0 <= a <= 1.0 for a in accs) and max(accs) > 0.1  # better than chance on 10 classes
    # export with the inherited weights: the entry's accuracy is measured on the exported model itself
    from nas.zoo import export

    best = s["pareto"][0]
    (rec,) = export(tmp_path / "runs" / s["study"], pick=[best["id"]], weights=f"supernet:{out}", zoo=tmp_path / "zoo",
                    name="from-supernet")
    assert rec["provenance"]["accuracy"].startswith("measured: top-1 on the digits validation split")
    assert 0.1 < rec["metrics"]["accuracy"] <= 1.0
    assert rec["metrics"]["estimated_accuracy"] == best["metrics"]["accuracy"]
    card = (tmp_path / "zoo" / "from-supernet" / "card.md").read_text()
    assert "measured: top-1 on the digits validation split" in card


def test_every_search_says_how_good_its_estimator_is(tmp_path):
    from nas.io import read_json
    from nas.search.quality import benchmark_files, estimator_quality

    files = benchmark_files()
    assert files, "bench/results/estimators_*.json (the estimator-fidelity benchmark) ships with the project"
    truth = read_json(files[0])["results"]
    q = estimator_quality("proxy:nwot")
    assert q["kendall_tau"] == truth["nwot"]["kendall_tau"] and "Kendall tau" in q["line"]
    sq = estimator_quality("supernet:any")
    assert sq["kendall_tau"] == truth["supernet"]["kendall_tau"]
    rec = read_json(files[0])["supernet"]["recipe"]
    assert f"that supernet: {rec['epochs']} epochs" in sq["line"]
    assert estimator_quality("debug:sleep:0") is None
    res = run_search(cfg(tmp_path, Path(__file__).resolve().parents[1] / "search_spaces" / "tiny.yaml", trials=4,
                         accuracy="proxy:entropy", objectives=("accuracy", "params")))
    assert res.summary["estimator"]["quality"]["kendall_tau"] == truth["entropy"]["kendall_tau"]


def test_short_training_scores_by_validation_loss_and_drives_a_search(tmp_path, capsys):
    """train:EPOCHS:DATA trains each arch alone from scratch (seeded, so a re-score agrees) and ranks by minus
    its validation loss: more epochs lower that loss. A search with it names its column a score and says how
    it was made; a malformed spec is one line and exit 2."""
    import math

    from nas.cli import main as cli
    from nas.search.estimators import make_estimator

    space = Path(__file__).resolve().parents[1] / "search_spaces" / "tiny.yaml"
    sp = nas.load_space(space)
    arch = sp.sample(3)
    short, longer = make_estimator("train:2:digits", sp), make_estimator("train:8:digits", sp)
    s = short.evaluate(arch)
    assert s == short.evaluate(arch)
    assert -math.log(10) < s.score < longer.evaluate(arch).score < 0
    assert 0.0 <= s.accuracy <= 1.0  # the validation top-1 it counted on the way, reported beside the score
    assert "short training from scratch: 2 epoch(s)" in short.provenance and "ranks archs" in short.provenance

    res = run_search(cfg(tmp_path, space, trials=3, accuracy="train:1:digits", objectives=("accuracy", "params")))
    est = res.summary["estimator"]
    assert est["measures"] == "score" and est["provenance"].startswith("short training from scratch")
    assert "accuracy" not in res.trials.columns and (res.trials["score"] < 0).all()
    assert all(math.isfinite(p.accuracy) for p in res.pareto)
    assert res.trials["trained_accuracy"].between(0, 1).all()  # each scored arch's validation accuracy too

    capsys.readouterr()
    for spec, says in [("train:0:digits", "train:EPOCHS:DATA"), (f"train:1:fashion-mnist:{tmp_path / 'none'}", "none")]:
        code = cli.main(["search", "--space", str(space), "--budget", "params:60K", "--objectives", "accuracy,params",
                         "--accuracy", spec, "--trials", "2", "--runs", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and says in err[0], err
        assert not (tmp_path / "bad").exists()  # refused before the run folder or the study was written


def test_nondominated_order_takes_fronts_in_turn_and_a_fronts_extremes_first():
    from nas.search.pareto import nondominated_order

    v = np.array([[0.9, 5], [0.8, 3], [0.85, 4], [0.7, 1], [0.6, 2], [0.84, 4.5], [0.5, 0.5]])
    order = nondominated_order(v, ["max", "min"])
    assert sorted(order) == list(range(7))
    assert set(order[:5]) == {0, 1, 2, 3, 6} and set(order[5:]) == {4, 5}  # the first front, then the rest
    assert set(order[:2]) == {0, 6}  # the front's extremes (most accurate, cheapest) before its middle


def test_rerank_scores_the_best_archs_again_and_chooses_the_front_by_that_score(tmp_path, tiny_space, capsys):
    """--rerank: the search's best archs (non-dominated sorting, distinct, feasible) are scored by a second
    estimator, the front is the Pareto set of those archs by that score, the table has the column, and a
    resumed run reuses the stored scores instead of paying again."""
    from nas.cli import main as cli
    from nas.search.pareto import pareto_mask

    run = cfg(tmp_path, tiny_space, trials=30, accuracy="proxy:params", rerank="proxy:nwot", rerank_top=6)
    res = run_search(run)
    rr = res.summary["rerank"]
    assert rr["name"] == "proxy:nwot" and rr["measures"] == "score" and rr["scored"] == 6 and rr["reused"] == 0
    cand = rr["candidates"]
    assert len(cand) == len(set(cand)) == 6
    t = res.trials.drop_duplicates("arch_id")
    got = t[t["rerank_score"].notna()]
    assert set(got["arch_id"]) == set(cand) and got["feasible"].all()
    # the candidates are the search's own first front (as far as it goes): no non-candidate dominates one
    feas = t[t["feasible"]]
    front0 = feas[pareto_mask(feas[["score", "macs"]].to_numpy(float), ["max", "min"])]
    assert set(front0["arch_id"]) <= set(cand) or set(cand) <= set(front0["arch_id"])
    # the reported front: exactly the Pareto set of the candidates by (re-rank score, MACs), best score first
    keep = got[pareto_mask(got[["rerank_score", "macs"]].to_numpy(float), ["max", "min"])]
    ids = [e["id"] for e in res.summary["pareto"]]
    assert set(ids) == set(keep["arch_id"])
    second = [e["metrics"]["rerank_score"] for e in res.summary["pareto"]]
    assert second == sorted(second, reverse=True)
    assert res.summary["pareto"][0]["provenance"]["rerank_score"].startswith("training-free score 'nwot'")
    assert "re-ranked: the 6 best archs" in rr["line"]

    from nas.zoo.export import export

    rec = export(res.run_dir, pick=[ids[0]], zoo=tmp_path / "zoo")[0]  # its card says how the front was chosen
    card = (tmp_path / "zoo" / rec["name"] / "card.md").read_text()
    assert "chosen by a re-rank of the search's best archs: `proxy:nwot`" in card

    again = run_search(cfg(tmp_path, tiny_space, trials=30, accuracy="proxy:params", rerank="proxy:nwot",
                           rerank_top=6, resume=True))
    assert again.summary["rerank"]["scored"] == 0 and again.summary["rerank"]["reused"] == 6
    assert [e["id"] for e in again.summary["pareto"]] == ids

    capsys.readouterr()
    code = cli.main(["search", "--space", str(tiny_space), "--budget", "params:60K", "--objectives", "accuracy,macs",
                     "--accuracy", "proxy:params", "--rerank", "proxy:nwot", "--rerank-top", "4", "--trials", "12",
                     "--runs", str(tmp_path / "cli")])
    out = capsys.readouterr()
    assert code == 0 and "re-rank score" in out.out and "re-ranked: the 4 best archs" in out.out
    for flags, says in [(["--rerank", "proxy:nope"], "--rerank proxy:nope"), (["--rerank", "proxy:nwot",
                                                                                 "--rerank-top", "0"], "--rerank-top 0")]:
        code = cli.main(["search", "--space", str(tiny_space), "--budget", "params:60K", "--trials", "2",
                         "--objectives", "accuracy,macs", "--runs", str(tmp_path / "bad"), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and says in err[0], err
        assert not (tmp_path / "bad").exists()


class _BreaksAfter:
    """An evaluator (parameter count as the score) that raises ``error`` once it has scored ``n`` archs."""

    workers, retried, provenance = 1, 0, "test estimator (parameter count)"

    def __init__(self, n: int, error: BaseException):
        self.n, self.error, self.scored = n, error, 0

    def run(self, batch):
        for key, arch in batch:
            if self.scored >= self.n:
                raise self.error
            self.scored += 1
            yield key, float(nas.count(arch).params), 0.0, "local"

    def close(self) -> None:
        pass


@pytest.mark.parametrize("error, why", [(RuntimeError("disk full"), "failed: RuntimeError: disk full"),
                                        (KeyboardInterrupt(), "interrupted")])
def test_a_broken_or_interrupted_search_keeps_what_it_told(tmp_path, tiny_space, error, why):
    with pytest.raises(type(error)):
        run_search(cfg(tmp_path, tiny_space, trials=40, budget="params:1G", prescreen=0),
                   evaluator=_BreaksAfter(10, error))
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["partial"] is True and summary["stopped"] == why
    told = len((run / "trials.csv").read_text().splitlines()) - 1
    assert 4 <= told < 40 and summary["trials"] == told and summary["pareto"]  # the batches told before it
    # the study holds the same told trials, and resuming it finishes the search
    res = run_search(cfg(tmp_path, tiny_space, trials=40, budget="params:1G", prescreen=0, resume=True))
    assert len(res.trials) == 40 and "partial" not in res.summary
