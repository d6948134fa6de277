"""nas search --data: the training-free search, then its best archs trained briefly on the data, the front chosen by
that and reported with each arch's trained accuracy (with the recipe as provenance); without --data the output
says nothing was trained. Runs on a small real Fashion-MNIST subset (600 training, 200 test images)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_data import write_idx

from nas.cli.main import main
from nas.data import read_fashion_mnist

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"


@pytest.fixture(scope="module")
def fashion_subset(tmp_path_factory) -> Path:
    """The first 600 training and 200 test images of the real Fashion-MNIST, as IDX files."""
    arrays, _ = read_fashion_mnist(str(SHARED))
    d = tmp_path_factory.mktemp("fmnist")
    for split, key, n in (("train", "train", 600), ("t10k", "test", 200)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", np.ascontiguousarray(arrays[f"{key}_images"][:n]))
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", np.ascontiguousarray(arrays[f"{key}_labels"][:n]))
    return d


ARGS = ["search", "--space", "hybrid-s", "--budget", "params:150K", "--objectives", "accuracy,params",
        "--trials", "10", "--prescreen", "0"]


def test_data_trains_the_best_archs_and_reports_their_accuracy(tmp_path, fashion_subset, capsys):
    code = main([*ARGS, "--data", f"fashion-mnist:{fashion_subset}", "--rerank-top", "2", "--refine", "0",
                 "--confirm", "0", "--runs", str(tmp_path / "runs"), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert code == 0
    assert s["rerank"]["name"] == f"train:2:fashion-mnist:{fashion_subset}" and s["rerank"]["scored"] == 2
    assert s["pareto"] and all("rerank_score" in e["metrics"] for e in s["pareto"])
    for e in s["pareto"]:
        acc = e["metrics"]["trained_accuracy"]
        assert 0.2 < acc <= 1.0  # ten classes: chance is 0.1; real training on real images beats it
        assert "2 epoch(s)" in e["provenance"]["trained_accuracy"]
        assert "validation samples" in e["provenance"]["trained_accuracy"]
    table = (tmp_path / "runs" / s["study"] / "trials.csv").read_text().splitlines()
    assert "trained_accuracy" in table[0].split(",")


def test_table_shows_trained_accuracy_and_no_data_says_training_free(tmp_path, fashion_subset, capsys):
    assert main([*ARGS, "--data", f"fashion-mnist:{fashion_subset}", "--rerank-top", "1", "--refine", "0",
                 "--runs", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    assert "trained accuracy" in out.out and "%" in out.out and "training-free: no network" not in out.out
    assert "confirm score" in out.out and "confirmed: the 1 best arch by the re-rank" in out.out  # --data confirms by default
    assert main([*ARGS, "--runs", str(tmp_path / "b")]) == 0
    assert "training-free: no network was trained" in capsys.readouterr().out


def test_unknown_data_is_one_line_naming_the_flag(tmp_path, capsys):
    assert main([*ARGS, "--data", "imagenet", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0] and "fashion-mnist" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_refine_sweeps_the_mixers_then_searches_near_the_budget_edge(tmp_path, fashion_subset, capsys):
    import csv

    runs = tmp_path / "runs"
    args = [*ARGS, "--data", f"fashion-mnist:{fashion_subset}", "--rerank-top", "2", "--refine", "8",
            "--confirm", "0", "--runs", str(runs), "--json"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)
    ref = s["rerank"]["refine"]
    assert ref["asked"] == 8 and ref["scored"] + ref["reused"] == len(ref["sweep"]) + len(ref["local"]) == 8
    assert len(ref["sweep"]) >= 3 and len(ref["local"]) >= 1
    assert all("+" not in m for m in ref["sweep"].values())  # every layer of a sweep arch has the same mixer
    assert len(set(ref["sweep"].values())) == len(ref["sweep"])  # one arch per mixer
    assert "refined: a mixer sweep of" in s["rerank"]["line"]
    with open(runs / s["study"] / "trials.csv") as f:
        rows = {r["arch_id"]: r for r in csv.DictReader(f)}
    for arch_id in [*ref["sweep"], *ref["local"]]:
        r = rows[arch_id]
        assert r["source"] in ("sweep", "refine") and r["feasible"] == "True" and int(r["params"]) <= 150_000
        assert r["rerank_score"] not in ("", None) and 0.0 < float(r["trained_accuracy"]) <= 1.0
    # the refined archs compete for the front like the re-ranked ones: the front is the best by the second score
    scored = [float(r["rerank_score"]) for r in rows.values() if r["rerank_score"] not in ("", None)]
    assert s["pareto"][0]["metrics"]["rerank_score"] == max(scored)
    # resumed, it pays for nothing again: every second score is read back from the study
    assert main([*args[:-1], "--resume", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["rerank"]["scored"] == 0 and again["rerank"]["refine"]["scored"] == 0
    assert [e["id"] for e in again["pareto"]] == [e["id"] for e in s["pareto"]]


def test_confirm_trains_the_best_again_for_longer_and_picks_by_that(tmp_path, fashion_subset, capsys):
    import csv

    runs = tmp_path / "runs"
    data = f"fashion-mnist:{fashion_subset}"
    args = [*ARGS, "--data", data, "--rerank-top", "4", "--refine", "0", "--confirm", "2", "--runs", str(runs),
            "--json"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)
    cf = s["rerank"]["confirm"]
    assert cf["name"] == f"train:6:{data}" and cf["scored"] == 2 and len(cf["candidates"]) == 2
    with open(runs / s["study"] / "trials.csv") as f:
        rows = {r["arch_id"]: r for r in csv.DictReader(f)}
    by_rerank = sorted({i: float(r["rerank_score"]) for i, r in rows.items() if r["rerank_score"]}.items(),
                       key=lambda kv: -kv[1])
    assert cf["candidates"] == [i for i, _ in by_rerank[:2]]  # the re-rank's two best (all inside a params budget)
    # the front is chosen among the confirmed archs, by the longer training's score, and reports its accuracy
    assert {e["id"] for e in s["pareto"]} <= set(cf["candidates"])
    best = max(cf["candidates"], key=lambda i: float(rows[i]["confirm_score"]))
    assert s["pareto"][0]["id"] == best == cf["best_after"]
    for e in s["pareto"]:
        assert e["metrics"]["confirm_score"] == float(rows[e["id"]]["confirm_score"])
        assert e["metrics"]["trained_accuracy"] == float(rows[e["id"]]["confirm_accuracy"])
        assert "6 epoch(s)" in e["provenance"]["trained_accuracy"] and "6 epoch(s)" in e["provenance"]["confirm_score"]
    assert "confirmed: the 2 best archs by the re-rank trained again by train:6" in s["rerank"]["line"]
    # resumed, it trains nothing again
    assert main([*args[:-1], "--resume", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["rerank"]["confirm"]["scored"] == 0 and again["rerank"]["confirm"]["reused"] == 2
    assert [e["id"] for e in again["pareto"]] == [e["id"] for e in s["pareto"]]


def test_confirm_needs_a_rerank_by_training_in_one_line(tmp_path, capsys):
    for extra in ([], ["--rerank", "proxy:params"]):
        assert main([*ARGS, *extra, "--confirm", "2", "--runs", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--confirm" in err[0] and "--data" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_refine_without_a_second_estimator_is_one_line(tmp_path, capsys):
    assert main([*ARGS, "--refine", "4", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refine" in err[0] and "--data" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_mutants_stay_inside_the_budget_using_the_most_of_it_first():
    import random
    import types

    import nas
    from nas.cost.budget import Budget
    from nas.search.refine import EDGE, mutants, with_mixer

    space = nas.load_space("hybrid-s")
    search = types.SimpleNamespace(space=space, budget=Budget.parse("params:300K"), latency=None, latency_factor=1.0,
                                   tested_latency=lambda: None)
    rng = random.Random(1)
    parent = next(a for a in (space.sample(rng=rng) for _ in range(500)) if 250_000 < nas.count(a).params <= 300_000)
    seen = {parent.id}
    got = mutants(search, [parent], 10, rng, seen)
    params = [nas.count(p.arch).params for p in got]
    assert len(got) == 10 and len({p.arch.id for p in got}) == 10 and parent.id not in {p.arch.id for p in got}
    assert all(p <= 300_000 for p in params) and all(p.source == "refine" for p in got)
    assert params == sorted(params, reverse=True)  # those using the most of the budget come first
    assert params[0] >= EDGE * 300_000
    assert {p.arch.id for p in got} <= seen  # remembered, so the next batch does not repeat them
    one = with_mixer(space, parent, "mbconv")
    assert {layer.mixer for st in one.stages for layer in st.layers} == {"mbconv"}


def test_confirm_times_its_candidates_first_and_one_over_the_budget_gives_its_place():
    """Only archs measured inside the budget are trained again: one timed over is replaced by the next best."""
    import random
    from types import SimpleNamespace

    from nas.reporting import SILENT
    from nas.search.confirm import confirm
    from nas.search.rows import TrialRow
    from nas.space import load_space

    space = load_space("hybrid-s")
    rng = random.Random(0)
    archs = list({a.id: a for a in (space.sample(rng=rng) for _ in range(8))}.values())[:5]
    rows = [TrialRow(number=i, arch=a, latency_ms=1.0, params=1, macs=1, memory=1, violations={"latency": -0.1},
                     rerank_score=-float(i)) for i, a in enumerate(archs)]  # re-rank order: archs[0] best
    attrs: dict = {}
    search = SimpleNamespace(cfg=SimpleNamespace(rerank="train:2:fashion-mnist"), rows=rows,
                             columns=["rerank_score", "latency_ms"],
                             study=SimpleNamespace(user_attrs=attrs, set_user_attr=attrs.__setitem__))
    timed: list[list[str]] = []

    def measure(batch: list) -> bool:  # archs[1] is over the budget when timed here
        timed.append([r.arch_id for r in batch])
        for r in batch:
            r.measured_latency_ms = 1.2 if r.arch is archs[1] else 0.9
            r.violations = {"latency": 0.2 if r.arch is archs[1] else -0.1}
        return True

    class Longer:  # the confirming score reverses the re-rank's order
        provenance = "fake: 6 epoch(s)"

        def run(self, todo):
            for arch_id, arch in todo:
                yield arch_id, float(archs.index(arch)), 1.0, "local"

    rep = confirm(search, Longer(), SILENT, 3, measure)
    ids = [a.id for a in archs]
    assert timed == [ids[:3], [ids[3]]]  # the next best timed only once one was over
    assert rep.candidates == [ids[0], ids[2], ids[3]] and rep.measured == 4 and rep.scored == 3
    assert rep.best_before == ids[0] and rep.best_after == ids[3]
    assert rows[1].confirm_score is None and rows[4].confirm_score is None
    assert search.columns == ["confirm_score", "latency_ms"]
    assert set(attrs) == {f"confirm:{i}" for i in rep.candidates}
