"""nas search --data: the training-free search, then its best archs trained briefly on the data, the front chosen by
that and reported with each arch's trained accuracy (with the recipe as provenance); without --data the output
says nothing was trained. Runs on a small real Fashion-MNIST subset (1,200 training, 200 test images)."""
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
    """The first 1,200 training and 200 test images of the real Fashion-MNIST, as IDX files."""
    arrays, _ = read_fashion_mnist(str(SHARED))
    d = tmp_path_factory.mktemp("fmnist")
    for split, key, n in (("train", "train", 1200), ("t10k", "test", 200)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", np.ascontiguousarray(arrays[f"{key}_images"][:n]))
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", np.ascontiguousarray(arrays[f"{key}_labels"][:n]))
    return d


ARGS = ["search", "--space", "hybrid-s", "--budget", "params:150K", "--objectives", "accuracy,params",
        "--trials", "10", "--prescreen", "0"]


def test_data_trains_the_best_archs_and_reports_their_accuracy(tmp_path, fashion_subset, capsys):
    code = main([*ARGS, "--data", f"fashion-mnist:{fashion_subset}", "--rerank-top", "2",
                 "--runs", str(tmp_path / "runs"), "--json"])
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
    assert main([*ARGS, "--data", f"fashion-mnist:{fashion_subset}", "--rerank-top", "1",
                 "--runs", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    assert "trained accuracy" in out.out and "%" in out.out and "training-free: no network" not in out.out
    assert main([*ARGS, "--runs", str(tmp_path / "b")]) == 0
    assert "training-free: no network was trained" in capsys.readouterr().out


def test_unknown_data_is_one_line_naming_the_flag(tmp_path, capsys):
    assert main([*ARGS, "--data", "imagenet", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0] and "fashion-mnist" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
