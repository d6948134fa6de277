"""`nas search --accuracy supernet:CKPT --workers 2`: Ray actors keep the supernet and its data resident.

One tiny supernet (digits, one epoch) scores a search on two Ray workers and the same search in one process:
the inherited accuracies agree arch by arch, and each worker built its estimator (checkpoint and data) once.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from nas.cli import main as cli
from nas.search import engine
from nas.search.estimators import SupernetEstimator
from nas.space import load_arch, load_space
from nas.supernet.train import SupernetTrainer, TrainConfig


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory) -> Path:
    """The tiny space trained one epoch on digits (11 steps; seconds on one core)."""
    out = tmp_path_factory.mktemp("ck") / "sn"
    cfg = TrainConfig(space="tiny", data="digits", epochs=1, batch_size=128, n_random=1, eval_every=0,
                      calib_batches=3, log_every=5, device="cpu")
    SupernetTrainer(cfg, out, quiet=True).fit()
    return out


@pytest.fixture()
def local_ray(monkeypatch):
    """Embedded Ray with two CPUs, no dashboard, its files under a short temp folder; shut down after."""
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    tmp = tempfile.mkdtemp(prefix="nasray")  # short: Ray's socket paths must stay under 107 bytes
    ray.shutdown()  # an earlier test's embedded Ray (searches leave theirs up for reuse) would refuse a second init
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _search(args: list[str], capsys) -> dict:
    code = cli.main(["--json", "search", "--space", "tiny", "--budget", "params:1G", "--objectives",
                     "accuracy,params", "--trials", "12", "--prescreen", "0", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_ray_workers_keep_the_supernet_resident_and_score_as_one_process(supernet_dir, tmp_path, monkeypatch,
                                                                          capsys, local_ray):
    monkeypatch.chdir(supernet_dir.parent)
    spec = f"supernet:{supernet_dir.name}"  # relative, as typed: the workers must still find it
    stats: dict[int, list[dict]] = {}  # by the number of workers
    real = engine._evaluator

    def keep_stats(cfg, space):  # the search's own evaluator; read its workers' counters before it closes
        ev = real(cfg, space)
        close = ev.close

        def close_after_stats() -> None:
            stats[cfg.workers] = ev.worker_stats()
            close()

        ev.close = close_after_stats
        return ev

    monkeypatch.setattr(engine, "_evaluator", keep_stats)
    s_ray = _search(["--accuracy", spec, "--workers", "2", "--runs", str(tmp_path / "ray")], capsys)
    s_one = _search(["--accuracy", spec, "--runs", str(tmp_path / "one")], capsys)
    assert s_ray["estimator"]["measures"] == "accuracy" and s_ray["estimator"]["provenance"].startswith(
        "supernet-inherited accuracy")
    t_ray = pd.read_csv(tmp_path / "ray" / s_ray["study"] / "trials.csv")
    t_one = pd.read_csv(tmp_path / "one" / s_one["study"] / "trials.csv")
    scored = [t[t["evaluated"] & t["duplicate_of"].isna()] for t in (t_ray, t_one)]  # by the estimator itself
    t_ray, t_one = scored
    # the two workers did the scoring, each built its estimator (checkpoint + data) once, not per trial
    built = stats[2]
    assert len(built) == 2 and {b["worker"] for b in built} == set(t_ray["worker"])
    assert [b["estimators_built"] for b in built] == [1, 1]
    assert sum(b["scored"] for b in built) == len(t_ray) and all(b["scored"] >= 2 for b in built)
    assert all(b["bn_calibrations"] == b["scored"] for b in built)  # one recalibration per distinct arch
    assert all(w.startswith("local:") for w in t_one["worker"])
    # the same archs get the same inherited accuracy (same checkpoint, same BN recalibration batches)
    both = t_ray.merge(t_one, on="arch_id", suffixes=("_ray", "_one"))
    assert len(both) >= 4
    assert (both["accuracy_ray"] == both["accuracy_one"]).all(), both[["arch_id", "accuracy_ray", "accuracy_one"]]
    # and the front's archs score the same with this process's own estimator
    est, space = SupernetEstimator(str(supernet_dir)), load_space("tiny")
    for e in s_ray["pareto"]:
        arch = load_arch(tmp_path / "ray" / s_ray["study"] / e["arch_file"], space)
        assert est.evaluate(arch) == e["metrics"]["accuracy"]
    assert 0.1 < t_ray["accuracy"].max() <= 1.0  # better than chance on 10 classes
