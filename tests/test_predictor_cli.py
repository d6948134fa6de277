"""Latency predictors of profiles: fit / predict / save / load round trip, metrics, the CLI commands."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nas.cli import main as cli
from nas.errors import PredictorError
from nas.latency import LatencyModel, load_latency_model
from nas.latency.fit import evaluate_latency_model, fit_latency_model
from nas.predictors.metrics import latency_metrics
from nas.profile.run import quick_settings, run_profile
from nas.profile.store import Profile
from nas.space import load_space

TINY = """
name: tinyp
dims: 2
input: {channels: 3, resolution: [32]}
defaults: {per_layer: [mixer, kernel], ratio: 2, downsample: {type: conv, kernel: 3, norm: bn}}
stem: {width: [8, 16], kernel: 3, stride: 2}
stages:
  - {depth: [1, 2], width: [16], stride: 2, mixer: [dwconv, pool], kernel: [3, 5]}
  - {depth: [1, 2], width: [24], stride: 2, mixer: [dwconv, mbconv], kernel: [3]}
head: {classes: 10}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A NAS_HOME with a quickly measured tiny profile (``tiny-cpu``) and a small OFA GPU import."""
    root = tmp_path_factory.mktemp("nashome")
    mp = pytest.MonkeyPatch()
    mp.setenv("NAS_HOME", str(root))
    space_file = root / "tinyp.yaml"
    space_file.write_text(TINY)
    space = load_space(space_file)
    run_profile(quick_settings(spaces=[space], device="tiny-cpu", n_calib=12, n_holdout=8))
    src = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ofa_mbv3_gpu_latency.csv"
    ofa = None
    if src.is_file():
        ofa = root / "ofa_small.csv"
        df = pd.read_csv(src, nrows=400)
        df[
            [
                "resolution",
                "depths",
                "kernel_sizes",
                "expand_ratios",
                "v100_1_ms",
                "v100_64_ms",
                "titan_rtx_64_ms",
            ]
        ].to_csv(ofa, index=False)
        from nas.profile.importer import import_table

        import_table(ofa)
    yield {"root": root, "space": space, "space_file": space_file, "ofa": ofa}
    mp.undo()


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", ["table", "calibrated", "arch"])
def test_fit_predict_save_load_round_trip(home, kind):
    space = home["space"]
    pred = fit_latency_model("tiny-cpu", space, kind)
    assert pred.path == home["root"] / "predictors" / "tiny-cpu-tinyp.json"
    meta = json.loads(pred.path.read_text())
    assert meta["format"] == "nas-predictor" and meta["metadata"]["kind_label"] == kind
    assert meta["metadata"]["profile"] == "tiny-cpu" and meta["metadata"]["space"] == "tinyp"
    assert meta["metadata"]["held_out"]["n"] == 8
    assert meta["metadata"]["fitted_on"]
    archs = space.sample_many(50, seed=11)
    y = pred.predict(archs)
    assert y.shape == (50,) and np.isfinite(y).all() and (y > 0).all()
    back = load_latency_model("tiny-cpu", "tinyp")
    assert isinstance(back, LatencyModel) and back.kind == kind
    np.testing.assert_allclose(back.predict(archs), y, rtol=1e-12)
    ms, lo, hi = back.predict_interval(archs, 0.9)
    # conformal intervals bracket the measured value, not the point estimate: a biased predictor's
    # interval may exclude its own prediction, so only order and sign are guaranteed here
    assert np.allclose(ms, y) and (lo > 0).all() and (lo <= hi).all()
    assert back.provenance.startswith(f"predicted by {kind} predictor tiny-cpu-tinyp, held-out MAPE ")
    assert "within ±10% (n=8)" in back.provenance
    assert back.predict(archs[0]).shape == (1,)


def test_metrics_recomputed_match_stored_and_hand_computation(home):
    pred = fit_latency_model("tiny-cpu", home["space"], "calibrated")
    again = evaluate_latency_model(pred)
    for k, v in pred.held_out.items():
        assert again[k] == pytest.approx(v, nan_ok=True)
    archs, y = Profile.load("tiny-cpu").archs_of(home["space"], "holdout")
    p = pred.predict(archs)
    rel = np.abs(p / y - 1)
    assert again["mape"] == pytest.approx(rel.mean())
    assert again["within_10"] == pytest.approx(np.mean(rel <= 0.1))
    assert again["rmse_ms"] == pytest.approx(math.sqrt(np.mean((p - y) ** 2)))


def test_latency_metrics_by_hand():
    m = latency_metrics([1.0, 2.0, 4.0, 8.0], [1.04, 2.2, 3.0, 8.0])
    assert m["n"] == 4
    assert m["mape"] == pytest.approx((0.04 + 0.1 + 0.25 + 0) / 4)
    assert m["within_5"] == pytest.approx(0.5) and m["within_10"] == pytest.approx(0.75)
    assert m["rmse_ms"] == pytest.approx(math.sqrt((0.04**2 + 0.2**2 + 1.0) / 4))
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)


def test_max_train_caps_the_end_to_end_archs(home):
    pred = fit_latency_model("tiny-cpu", home["space"], "calibrated", max_train=5, save=False)
    assert pred.metadata["fitted_on"]["end_to_end"] == 5


def test_vectorised_predict_is_fast(home):
    pred = fit_latency_model("tiny-cpu", home["space"], "calibrated", save=False)
    archs = home["space"].sample_many(20000, seed=1)
    pred.predict(archs[:100])
    t = time.perf_counter()
    pred.predict(archs)
    rate = len(archs) / (time.perf_counter() - t)
    assert rate > 20_000, rate  # bench/latency_predictor.py reports the figure (>= 100k/s on a quiet core)


def test_missing_predictor_and_profile_are_one_line_errors(home, capsys):
    with pytest.raises(PredictorError, match="nas predictor fit --device nope --space tinyp"):
        load_latency_model("nope", "tinyp")
    code, out, err = run(capsys, "predictor", "show", "--device", "nope", "--space", "hybrid")
    assert code == 2 and err.count("\n") == 1 and "no latency predictor" in err
    code, out, err = run(capsys, "predictor", "fit", "--device", "nope", "--space", "hybrid")
    assert code == 2 and "device profile 'nope': not found" in err


# --------------------------------------------------------------------------------------- imports


def test_imported_profile_arch_predictor_and_few_shot(home):
    if home["ofa"] is None:
        pytest.skip("shared OFA dataset not available")
    src = fit_latency_model("gpu-titan-rtx-b64", "ofa-mbv3", "auto")
    assert src.kind == "arch" and src.metadata["features"]["type"] == "ofa"
    assert src.metadata["data_licence"] == "MIT" and "HELP" in src.metadata["data_source"]["origin"]
    assert src.held_out["within_10"] > 0.8
    fs = fit_latency_model("gpu-v100-b64", "ofa-mbv3", few_shot_from=["gpu-titan-rtx-b64"], shots=20)
    assert fs.kind == "few-shot" and fs.metadata["fitted_on"]["target"] == 20
    assert fs.held_out["mape"] < 0.15
    back = LatencyModel.load(fs.path)
    archs = load_space("ofa-mbv3").sample_many(10, seed=0)
    np.testing.assert_allclose(back.predict(archs), fs.predict(archs))


# ------------------------------------------------------------------------------------------- CLI


def test_cli_fit_eval_show_list_predict(home, capsys, tmp_path):
    sf = str(home["space_file"])
    code, out, err = run(
        capsys, "predictor", "fit", "--device", "tiny-cpu", "--space", sf, "--kind", "calibrated"
    )
    assert code == 0, err
    assert "tiny-cpu-tinyp" in out and "predicted by calibrated predictor" in err
    code, out, err = run(capsys, "--json", "predictor", "eval", "--device", "tiny-cpu", "--space", sf)
    assert code == 0, err
    rows = json.loads(out)
    assert rows[0]["n"] == 8 and set(rows[0]) >= {
        "rmse_ms",
        "mape",
        "within_5",
        "within_10",
        "spearman",
        "kendall",
    }
    code, out, err = run(capsys, "predictor", "show", "--device", "tiny-cpu", "--space", "tinyp")
    assert code == 0 and "held-out metrics" in out
    code, out, err = run(capsys, "predictor", "list")
    assert code == 0 and "tiny-cpu-tinyp.json" in out
    archs = home["space"].sample_many(3, seed=2)
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(a.to_json() for a in archs))
    code, out, err = run(
        capsys, "--json", "predictor", "predict", str(f), "--device", "tiny-cpu", "--space", sf
    )
    assert code == 0, err
    got = json.loads(out)
    assert [r["id"] for r in got] == [a.id for a in archs]
    assert all(r["low_ms"] <= r["latency_ms"] <= r["high_ms"] for r in got)


def test_cli_profile_measure_refine_refit(home, capsys, tmp_path):
    sf = str(home["space_file"])
    code, out, err = run(
        capsys, "profile", "--space", sf, "--device", "cli-cpu", "--quick", "--calib", "4", "--holdout", "3"
    )
    assert code == 0, err
    assert "cli-cpu" in out and "next: nas predictor fit --device cli-cpu" in err
    code, out, err = run(capsys, "profile", "show", "cli-cpu")
    assert code == 0 and "block_protocol" in err
    code, out, err = run(capsys, "predictor", "fit", "--device", "cli-cpu", "--space", sf, "--kind", "table")
    assert code == 0, err
    archs = home["space"].sample_many(2, seed=77)
    f = tmp_path / "refine.yaml"
    import yaml

    f.write_text(yaml.safe_dump([a.to_dict() for a in archs]))
    code, out, err = run(
        capsys, "--json", "profile", "--refine", str(f), "--device", "cli-cpu", "--space", sf
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["measured"] == 2 and res["refit"][0]["kind"] == "table"
    assert len(Profile.load("cli-cpu").arch_rows("tinyp", "refine")) == 2
    code, out, err = run(capsys, "profile", "list")
    assert code == 0 and "cli-cpu" in out and "tiny-cpu" in out


def test_cli_profile_errors(home, capsys):
    code, out, err = run(capsys, "profile", "--space", "hybrid", "--device", "bad name")
    assert code == 2 and "device name" in err
    code, out, err = run(
        capsys, "profile", "--space", "hybrid", "--resolution", "17", "--device", "x", "--quick"
    )
    assert code == 2 and "resolution" in err
    code, out, err = run(capsys, "profile", "--refine", "nofile.yaml", "--device", "tiny-cpu")
    assert code == 2 and "no such file" in err


def test_default_device_is_a_profile_of_this_cpu(home):
    from nas import load_latency_model as top_level
    from nas.profile import default_device

    name = default_device()
    assert name in {"tiny-cpu", "cli-cpu"}  # measured here (imported GPU profiles never match)
    assert Profile.load(name).machine["threads"] == 1
    assert default_device(threads=8) == name  # no exact match: a profile of the same CPU
    assert top_level is load_latency_model


@pytest.mark.parametrize("kind,variant", [("table", "auto"), ("calibrated", "names+traffic"),
                                          ("calibrated", "name-times")])
def test_fast_prediction_path_equals_the_key_path(home, kind, variant):
    pred = fit_latency_model("tiny-cpu", home["space"], kind, variant=variant, save=False)
    archs = home["space"].sample_many(300, seed=11)
    fast = pred.predict(archs)
    assert pred.features._fast is not None  # the integer-code walk was used
    slow = pred.predict_features(pred.featurise(archs))
    assert np.array_equal(fast, slow)
    assert pred.predict(archs[3]) == pytest.approx(slow[3])  # a single arch as well
