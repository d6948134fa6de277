"""Latency predictors of profiles: fit / predict / save / load round trip, metrics, the CLI commands."""

from __future__ import annotations

import json
import math
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


def test_vectorised_predict_matches_one_at_a_time(home):
    # the batch path (what a search calls on thousands of archs) gives each arch its own prediction;
    # its speed is printed by bench/latency_predictor.py (>= 100k archs/s on a quiet core), not timed here
    pred = fit_latency_model("tiny-cpu", home["space"], "calibrated", save=False)
    archs = home["space"].sample_many(2000, seed=1)
    batch = pred.predict(archs)
    one = [float(pred.predict([a])[0]) for a in archs[:50]]
    by_features = pred.predict_features(pred.featurise(archs[:50]))  # the generic path, without the code table
    assert len(batch) == len(archs)
    assert [float(x) for x in batch[:50]] == pytest.approx(one, rel=1e-9)
    assert [float(x) for x in batch[:50]] == pytest.approx([float(x) for x in by_features], rel=1e-6)
    assert len({round(float(x), 9) for x in batch}) > 100  # the archs differ, so do their predictions


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


# ------------------------------------------------------------------------- error per mixer / kernel


def test_cli_eval_by_mixer_and_kernel(home, capsys):
    from nas.latency.evaluate import arch_groups

    sf = str(home["space_file"])
    pred = fit_latency_model("tiny-cpu", home["space"], "calibrated")
    archs, y = Profile.load("tiny-cpu").archs_of(home["space"], "holdout")
    rel = pred.predict(archs) / y - 1
    groups = {}
    for by in ("mixer", "kernel", "stage-mixer"):
        code, out, err = run(capsys, "--json", "predictor", "eval", "--device", "tiny-cpu", "--space", sf,
                             "--by", by)
        assert code == 0, err
        rows = {r["group"]: r for r in json.loads(out)}
        assert rows["all"]["n"] == len(archs) == 8
        assert rows["all"]["median_abs_err"] == pytest.approx(np.median(np.abs(rel)))
        seen = {g for a in archs for g in arch_groups(a, by)}
        assert set(rows) == seen | {"all"}
        for g in seen:  # an arch counts in every group it contains
            members = np.array([g in arch_groups(a, by) for a in archs])
            r = rows[g]
            assert r["n"] == members.sum()
            assert r["median_abs_err"] == pytest.approx(np.median(np.abs(rel[members])))
            assert r["mape"] == pytest.approx(np.mean(np.abs(rel[members])))
            assert r["within_10"] == pytest.approx(np.mean(np.abs(rel[members]) <= 0.1))
        groups[by] = seen
    assert groups["kernel"] == {"k3", "k5"}
    assert groups["mixer"] <= {"dwconv", "pool", "mbconv"}
    assert {g.split(":")[0] for g in groups["stage-mixer"]} == {"s1", "s2"} and "s2:pool" not in groups["stage-mixer"]
    code, out, err = run(capsys, "predictor", "eval", "--device", "tiny-cpu", "--space", sf, "--by", "mixer")
    assert code == 0 and "error per mixer" in out and "median_abs_err" in out and "dwconv" in out
    code, out, err = run(capsys, "predictor", "eval", "--device", "tiny-cpu", "--space", sf, "--by", "stage")
    assert code == 2 and "--by" in err


# ------------------------------------------------------------------------------------ nb201, user spaces


def test_nb201_import_fit_eval_predict(home, capsys, tmp_path):
    from nas.nb201.space import OPS, format_arch, sample_archs

    cost = dict(zip(OPS, (0.0, 0.05, 0.4, 1.1, 0.3)))
    cells = sample_archs(60, seed=3)
    rng = np.random.default_rng(0)
    ms = [2.0 + sum(cost[o] * (1 + 0.2 * e) for e, o in enumerate(c)) for c in cells]
    table = tmp_path / "nb201_lat.csv"
    pd.DataFrame({"arch_str": [format_arch(c) for c in cells],
                  "pixel7_ms": np.array(ms) * np.exp(0.01 * rng.standard_normal(60))}).to_csv(table, index=False)
    code, out, err = run(capsys, "profile", "import", str(table), "--force")
    assert code == 0, err
    assert "mobile-pixel7" in out  # a phone, not a GPU
    code, out, err = run(capsys, "--json", "predictor", "fit", "--device", "mobile-pixel7", "--space", "nb201")
    assert code == 0, err
    fitted = json.loads(out)[0]
    assert fitted["kind"] == "arch" and fitted["mape"] < 0.05
    pred = LatencyModel.load(fitted["path"])
    assert pred.metadata["features"]["type"] == "nb201"
    code, out, err = run(capsys, "--json", "predictor", "eval", "--device", "mobile-pixel7", "--space", "nb201")
    assert code == 0 and json.loads(out)[0]["n"] == fitted["n"]
    code, out, err = run(capsys, "--json", "predictor", "eval", "--device", "mobile-pixel7", "--space", "nb201",
                         "--by", "mixer")
    assert code == 0 and {"nor_conv_3x3", "all"} <= {r["group"] for r in json.loads(out)}
    f = tmp_path / "cells.yaml"
    f.write_text("- {space: nb201, ops: [nor_conv_3x3, nor_conv_3x3, nor_conv_3x3, nor_conv_3x3, "
                 "nor_conv_3x3, nor_conv_3x3]}\n- {space: nb201, ops: [none, none, none, none, none, none]}\n")
    code, out, err = run(capsys, "--json", "predictor", "predict", str(f), "--device", "mobile-pixel7")
    assert code == 0, err
    got = json.loads(out)
    big = 2.0 + sum(1.1 * (1 + 0.2 * e) for e in range(6))
    assert got[0]["latency_ms"] == pytest.approx(big, rel=0.05) and got[1]["latency_ms"] == pytest.approx(2.0, rel=0.05)


USER_SPACE = TINY.replace("name: tinyp", "name: labspace").replace("[16]}", "[16, 24]}", 1)


def test_predict_with_a_user_space_found_from_the_predictor(home, capsys, tmp_path):
    sf = tmp_path / "spaces" / "labspace.yaml"
    sf.parent.mkdir()
    sf.write_text(USER_SPACE)
    space = load_space(sf)
    archs = space.sample_many(40, seed=5)
    from nas.cost import count

    ms = np.array([0.5 + 2e-6 * count(a).macs for a in archs])
    table = tmp_path / "lab.csv"
    pd.DataFrame({"arch": [a.key for a in archs], "gold_6226_ms": ms}).to_csv(table, index=False)
    code, out, err = run(capsys, "profile", "import", str(table), "--space", str(sf),
                         "--column", "gold_6226_ms=labbox:cpu", "--force")
    assert code == 0, err
    assert Profile.load("labbox").machine["device_kind"] == "cpu"
    code, out, err = run(capsys, "--json", "predictor", "fit", "--device", "labbox", "--space", str(sf))
    assert code == 0, err
    path = json.loads(out)[0]["path"]
    assert LatencyModel.load(path).metadata["space_file"] == str(sf.resolve())
    # the arch file names only the space's name, which no built-in space has: the predictor finds it
    f = tmp_path / "mine.yaml"
    import yaml

    new = space.sample_many(3, seed=99)
    f.write_text(yaml.safe_dump([a.to_dict() for a in new]))
    assert all(a.to_dict()["space"] == "labspace" for a in new)
    code, out, err = run(capsys, "--json", "predictor", "predict", str(f), "--device", path)
    assert code == 0, err
    got = json.loads(out)
    assert [r["id"] for r in got] == [a.id for a in new]
    want = np.array([0.5 + 2e-6 * count(a).macs for a in new])
    np.testing.assert_allclose([r["latency_ms"] for r in got], want, rtol=0.1)
    code, out, err = run(capsys, "--json", "predictor", "predict", str(f), "--device", "labbox")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == [a.id for a in new]


def test_cli_fit_reports_leave_one_out_error_and_the_few_shot_model_choice(home, capsys):
    if home["ofa"] is None:
        pytest.skip("shared OFA dataset not available")
    code, out, err = run(capsys, "--json", "predictor", "fit", "--device", "gpu-titan-rtx-b64", "--space", "ofa-mbv3")
    assert code == 0, err
    src = json.loads(out)[0]
    assert 0 < src["loo_mape"] < 0.2 and 0 <= src["loo_within_10"] <= 1 and src["model"] == "arch_level"
    code, out, err = run(capsys, "predictor", "fit", "--device", "gpu-v100-b1", "--space", "ofa-mbv3",
                         "--few-shot", "gpu-titan-rtx-b64", "--shots", "20")
    assert code == 0, err
    assert "few-shot model choice by leave-one-out error on the 20 measured archs" in out
    for m in ("transfer", "arch", "stacked"):
        assert m in out
    fs = LatencyModel.load(home["root"] / "predictors" / "gpu-v100-b1-ofa-mbv3.json")
    loo = fs.metadata["loo"]
    assert loo["n"] == 20 and math.isfinite(loo["mape"])
    assert fs.metadata["model"] in ("transfer", "arch", "stacked")
    assert fs.metadata["model_choice"][fs.metadata["model"]]["loo_mape"] == pytest.approx(loo["mape"])
    row = [ln for ln in out.splitlines() if ln.startswith("gpu-v100-b1-ofa-mbv3")][-1]
    assert f"{100 * loo['mape']:.1f}%" in row  # the table's LOO cells are filled, not "-"


def test_units_position_features_count_each_stage_mixer_kernel(home):
    from nas.latency.features import make_features

    space = home["space"]
    pred = fit_latency_model("tiny-cpu", space, "arch", features="units+position", save=False)
    spec = pred.metadata["features"]
    assert spec["type"] == "units" and spec["position"] is True
    archs = space.sample_many(30, seed=4)
    f = make_features(space, spec)
    X = f(archs)
    pos = X[:, len(make_features(space, "units").names):]
    names = spec["names"][-pos.shape[1]:]
    for a, row in zip(archs, pos):
        want = {}
        for si, st in enumerate(a.stages):
            for lc in st.layers:
                if lc.mixer != "skip":
                    key = f"s{si + 1}:{lc.mixer}:k{lc.kernel}:n" if lc.kernel is not None else f"s{si + 1}:{lc.mixer}:n"
                    want[key] = want.get(key, 0) + 1
        assert {n: v for n, v in zip(names, row) if v} == want
    y = pred.predict(archs)
    assert np.isfinite(y).all() and (y > 0).all()
    np.testing.assert_allclose(LatencyModel(pred.estimator, space).predict(archs), y)
