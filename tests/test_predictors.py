"""Latency predictors: metrics, JSON round-trips, table interpolation, calibration, intervals,
vectorised prediction, few-shot transfer, malformed files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nas.blocks.keys import format_key, parse_key
from nas.errors import NASError, PredictorError
from nas.latency.ofa_features import make_divisible, ofa_costs, ofa_features
from nas.predictors import (
    ArchLevelRegressor,
    BlockTablePredictor,
    CalibratedTablePredictor,
    FewShotTransfer,
    LogLinearRegressor,
    RidgeRegressor,
    latency_metrics,
    load_predictor,
    registered_kinds,
)
from nas.profile.ofa import default_csv_path, load_ofa_gpu_latency

# ----------------------------------------------------------------------------------------------------
# synthetic data


def linear_data(n: int, seed: int, noise: float = 0.03, p: int = 6):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.5, 2.0, size=(n, p))
    w = np.linspace(0.5, 2.0, p)
    clean = 1.0 + X @ w
    y = clean * np.exp(noise * rng.standard_normal(n))
    return X, y, clean


def conv_key(c: int, k: int, hw: int = 28, act: str = "relu") -> str:
    return format_key("conv", dict(cin=c, cout=c, k=k, hw=hw, act=act).items())


def true_block_ms(c: float, k: float, hw: float) -> float:
    return 1e-4 * c**0.9 * k**1.3 * hw**1.6


def synthetic_table():
    table = {
        conv_key(c, k, hw): true_block_ms(c, k, hw)
        for c in (16, 32, 64, 128)
        for k in (3, 5, 7)
        for hw in (14, 28)
    }
    table[format_key("pool", [("c", 128)])] = 0.05
    return table


def synthetic_archs(n: int, seed: int):
    """Key lists drawn from the measured shapes; y = 0.9 * sum + 1.5 ms overhead - 0.02 ms/conv + 1% noise."""
    rng = np.random.default_rng(seed)
    table = synthetic_table()
    convs = [k for k in table if k.startswith("conv")]
    X, y = [], []
    for _ in range(n):
        nb = int(rng.integers(4, 16))
        keys = [convs[i] for i in rng.integers(0, len(convs), nb)] + ["pool|c=128"]
        s = sum(table[k] for k in keys)
        X.append(keys)
        y.append((0.9 * s + 1.5 - 0.02 * nb) * math.exp(0.01 * rng.standard_normal()))
    return X, np.asarray(y)


# ----------------------------------------------------------------------------------------------------
# metrics


def test_metrics_known_values():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.04, 2.2, 2.7, 4.0])  # relative errors 4%, 10%, 10%, 0%
    m = latency_metrics(t, p)
    assert m["n"] == 4
    assert m["mape"] == pytest.approx(0.06)
    assert m["rmse_ms"] == pytest.approx(math.sqrt((0.04**2 + 0.2**2 + 0.3**2) / 4))
    assert m["within_5"] == pytest.approx(0.5)
    assert m["within_10"] == pytest.approx(1.0)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["kendall"] == pytest.approx(1.0)
    r = latency_metrics(t, t[::-1])
    assert r["spearman"] == pytest.approx(-1.0) and r["kendall"] == pytest.approx(-1.0)
    one_swap = latency_metrics(t, [1.0, 3.0, 2.0, 4.0])
    assert one_swap["kendall"] == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert one_swap["spearman"] == pytest.approx(0.8)
    assert math.isnan(latency_metrics(t, np.ones(4))["spearman"])


def test_metrics_reject_bad_input():
    with pytest.raises(PredictorError):
        latency_metrics([1.0, 2.0], [1.0])
    with pytest.raises(PredictorError):
        latency_metrics([0.0, 2.0], [1.0, 2.0])
    with pytest.raises(PredictorError):
        latency_metrics([1.0, 2.0], [np.nan, 2.0])


# ----------------------------------------------------------------------------------------------------
# linear models


def test_ridge_recovers_linear_model_and_sklearn_style_params():
    X, _, clean = linear_data(300, 0, noise=0.0)
    m = RidgeRegressor(alpha=1e-10).fit(X, clean)
    np.testing.assert_allclose(m.coef_, np.linspace(0.5, 2.0, 6), rtol=1e-6)
    assert m.intercept_ == pytest.approx(1.0, rel=1e-6)
    assert m.get_params()["alpha"] == 1e-10
    c = m.clone().set_params(robust=True)
    assert c.robust and not c.fitted_
    with pytest.raises(PredictorError, match="unknown parameter"):
        m.set_params(bogus=1)
    # log-linear with log features recovers a power law
    Xp = np.random.default_rng(1).uniform(1, 10, size=(200, 2))
    yp = 3.0 * Xp[:, 0] ** 0.7 * Xp[:, 1] ** 1.2
    ll = LogLinearRegressor(alpha=1e-10, log_features=True).fit(Xp, yp)
    np.testing.assert_allclose(ll.coef_, [0.7, 1.2], rtol=1e-6)
    np.testing.assert_allclose(ll.predict(Xp), yp, rtol=1e-8)


def test_robust_fit_ignores_outliers():
    X, y, clean = linear_data(400, 2, noise=0.01)
    y = y.copy()
    y[:40] *= 1.3  # 10% of the measurements hit a slow clock state
    plain = RidgeRegressor().fit(X, y)
    robust = RidgeRegressor(robust=True).fit(X, y)
    err_plain = np.median(np.abs(plain.predict(X[40:]) / clean[40:] - 1))
    err_robust = np.median(np.abs(robust.predict(X[40:]) / clean[40:] - 1))
    assert err_robust < 0.5 * err_plain


def test_wrong_feature_count_is_a_predictor_error():
    X, y, _ = linear_data(50, 3)
    m = ArchLevelRegressor().fit(X, y)
    with pytest.raises(PredictorError, match="fitted on 6"):
        m.predict(X[:, :5])
    with pytest.raises(PredictorError, match="positive"):
        ArchLevelRegressor().fit(X, -y)


# ----------------------------------------------------------------------------------------------------
# intervals


def test_intervals_reach_nominal_coverage_on_synthetic_data():
    X, y, _ = linear_data(400, 4, noise=0.05)
    Xt, yt, _ = linear_data(5000, 5, noise=0.05)
    for model in (RidgeRegressor(), ArchLevelRegressor(), LogLinearRegressor()):
        model.fit(X, y)
        for cov in (0.8, 0.9):
            pred, lo, hi = model.predict_interval(Xt, coverage=cov)
            inside = np.mean((yt >= lo) & (yt <= hi))
            assert cov - 0.05 <= inside <= cov + 0.05, (model.kind, cov, inside)
            assert (lo <= pred).all() and (pred <= hi).all()


def test_calibrated_interval_coverage():
    X, y = synthetic_archs(300, 0)
    Xt, yt = synthetic_archs(2000, 1)
    m = CalibratedTablePredictor().fit(X, y, table=synthetic_table())
    _, lo, hi = m.predict_interval(Xt, coverage=0.9)
    assert 0.85 <= np.mean((yt >= lo) & (yt <= hi)) <= 0.95


# ----------------------------------------------------------------------------------------------------
# block table


def test_parse_and_format_key():
    name, fields = parse_key("mbconv|cin=24|k=5|e=4.5|act=relu")
    assert name == "mbconv" and fields == {"cin": 24, "k": 5, "e": 4.5, "act": "relu"}
    assert format_key(name, fields.items()) == "mbconv|cin=24|k=5|e=4.5|act=relu"
    for bad in ("", "|cin=3", "conv|cin", "conv|cin=3|cin=4"):
        with pytest.raises(PredictorError):
            parse_key(bad)


def test_table_exact_on_measured_keys_and_monotone_interpolation():
    table = synthetic_table()
    tp = BlockTablePredictor().fit(table=table)
    for key, ms in table.items():
        assert tp.lookup(key) == ms
        assert tp.explain(key)["method"] == "measured"
    # unseen channel counts between and beyond measured ones: monotone, close to the power law
    chans = [16, 24, 32, 48, 64, 96, 128]
    vals = [tp.lookup(conv_key(c, 5)) for c in chans]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    for c, v in zip(chans, vals):
        assert v == pytest.approx(true_block_ms(c, 5, 28), rel=1e-6)  # exact power law -> exact
    info = tp.explain(conv_key(48, 5))
    assert info["method"] == "interpolated" and len(info["neighbours"]) >= 6
    assert info["slopes"]["k"] == pytest.approx(1.3, rel=1e-6)
    assert tp.explain(conv_key(256, 5))["method"] == "extrapolated"
    # a field the group never varies in: ignored, and said so
    tp2 = BlockTablePredictor().fit(table={conv_key(c, 3): true_block_ms(c, 3, 28) for c in (16, 32)})
    info = tp2.explain(conv_key(16, 5))
    assert info["method"] == "nearest-in-field" and info["ignored_fields"] == ["k"]
    # a block type never measured cannot be interpolated
    with pytest.raises(PredictorError, match="no held-out residuals"):
        tp.predict_interval([[conv_key(16, 3)]])  # a bare table has no end-to-end data to size it
    with pytest.raises(PredictorError, match="cannot interpolate"):
        tp.lookup(conv_key(32, 3, act="hswish"))
    # sums are sums of lookups
    X = [[conv_key(16, 3), conv_key(24, 3), "pool|c=128"], []]
    np.testing.assert_allclose(
        tp.predict(X), [tp.lookup(conv_key(16, 3)) + tp.lookup(conv_key(24, 3)) + 0.05, 0.0]
    )


def test_table_rejects_bad_tables():
    with pytest.raises(PredictorError):
        BlockTablePredictor().fit(table={})
    with pytest.raises(PredictorError, match="positive"):
        BlockTablePredictor().fit(table={"conv|c=3": -1.0})
    with pytest.raises(PredictorError):
        BlockTablePredictor().fit(table={"conv|c": 1.0})


def test_calibrated_reduces_error_with_known_overhead():
    X, y = synthetic_archs(200, 0)
    Xt, yt = synthetic_archs(1000, 1)
    table = synthetic_table()
    plain = latency_metrics(yt, BlockTablePredictor().fit(table=table).predict(Xt))
    cal = CalibratedTablePredictor().fit(X, y, table=table)
    m = cal.evaluate(Xt, yt)
    assert m["mape"] < 0.02 < plain["mape"]
    assert m["mape"] < 0.25 * plain["mape"]
    assert m["within_5"] > 0.95
    # the known structure is recovered: 0.9 x sum, 1.5 ms overhead, -0.02 ms per conv block
    names = cal.names_
    assert cal.coef_[0] == pytest.approx(0.9, abs=0.02)
    assert cal.coef_[1 + names.index("conv")] == pytest.approx(-0.02, abs=0.01)
    # every arch has one pool block: its count is constant, so it folds into the intercept
    assert cal.intercept_ + cal.coef_[1 + names.index("pool")] == pytest.approx(1.5, abs=0.1)
    # extra per-arch features are carried along
    extra = np.array([[len(k)] for k in X], dtype=float)
    cal2 = CalibratedTablePredictor(per_name_terms=False).fit(X, y, table=table, extra=extra)
    assert cal2.predict(Xt, extra=np.array([[len(k)] for k in Xt], dtype=float)).shape == (len(Xt),)
    with pytest.raises(PredictorError, match="extra"):
        cal2.predict(Xt)


# ----------------------------------------------------------------------------------------------------
# few-shot transfer


def device_data(n: int, seed: int):
    """Three 'devices' sharing arch features; the target is a power law of device b, plus outliers."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.5, 2.0, size=(n, 6))
    a = 1.0 + X @ np.array([2.0, 0.1, 0.1, 1.0, 0.1, 0.1])
    b = 0.5 + X @ np.array([0.1, 1.5, 0.2, 0.1, 2.0, 0.3])
    c = 2.0 + X @ np.array([0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    target = 1.3 * b**0.9 * np.exp(0.02 * rng.standard_normal(n))
    return X, {"a": a, "b": b, "c": c}, target


def test_few_shot_transfer_picks_the_right_source_and_beats_no_transfer():
    X, devs, target = device_data(3000, 0)
    sources = {name: ArchLevelRegressor().fit(X, y) for name, y in devs.items()}
    idx = np.random.default_rng(1).permutation(len(target))
    tr, te = idx[:20], idx[20:]
    y_tr = target[tr].copy()
    y_tr[:2] *= 1.4  # two outliers among the twenty
    m = FewShotTransfer().fit(X[tr], y_tr, sources=sources)
    assert list(m.sources_) == ["b"]
    assert m.coef_[1] == pytest.approx(0.9, abs=0.05)
    got = latency_metrics(target[te], m.predict(X[te]))
    alone = latency_metrics(target[te], ArchLevelRegressor().fit(X[tr], y_tr).predict(X[te]))
    assert got["spearman"] > 0.99 and got["within_5"] > 0.95
    assert got["mape"] < alone["mape"]
    assert m.metadata["fitted_on"] == {"target": 20, "sources": 3}
    # with 3 samples only the scale is fitted
    m3 = FewShotTransfer().fit(X[tr[2:5]], target[tr[2:5]], sources=sources)
    assert m3.coef_[1] == 1.0


def test_few_shot_model_choice_by_leave_one_out():
    X, devs, target = device_data(2000, 4)
    idx = np.random.default_rng(5).permutation(len(target))
    tr, te = idx[:20], idx[20:]
    # sources that know the target's structure: the transfer is kept
    good = {name: ArchLevelRegressor().fit(X, y) for name, y in devs.items()}
    m = FewShotTransfer(arch_columns=[0, 1, 4]).fit(X[tr], target[tr], sources=good)
    assert m.mode_ == "transfer" and m.metadata["model"] == "transfer"
    assert set(m.metadata["model_choice"]) == {"transfer", "arch", "stacked"}
    # a device unlike every source (latency driven by columns the sources ignore): a model of the
    # 20 samples alone (or stacked on the source) wins by leave-one-out, and on held-out archs too
    other = (0.3 + X[:, 2] * 2.0 + X[:, 3] ** 1.0) * np.exp(0.01 * np.random.default_rng(6).standard_normal(len(X)))
    bad = {"a": good["a"], "c": good["c"]}
    plain = FewShotTransfer().fit(X[tr], other[tr], sources=bad)
    chosen = FewShotTransfer(arch_columns=[2, 3]).fit(X[tr], other[tr], sources=bad)
    assert chosen.mode_ in ("arch", "stacked")
    choice = chosen.metadata["model_choice"]
    assert choice[chosen.mode_]["loo_huber"] < 0.5 * choice["transfer"]["loo_huber"]
    assert choice["transfer"]["n"] == 20 and 0 <= choice["arch"]["loo_within_10"] <= 1
    assert chosen.n_residuals_ == 20
    got = latency_metrics(other[te], chosen.predict(X[te]))
    assert got["mape"] < 0.5 * latency_metrics(other[te], plain.predict(X[te]))["mape"]
    # the chosen model travels in the JSON file
    back = load_predictor_from_dict(chosen.to_dict())
    assert back.mode_ == chosen.mode_
    np.testing.assert_allclose(back.predict(X[te]), chosen.predict(X[te]), rtol=1e-12)


def load_predictor_from_dict(doc):
    from nas.predictors.base import Predictor

    return Predictor.from_dict(json.loads(json.dumps(doc)))


# ----------------------------------------------------------------------------------------------------
# vectorised prediction


class _NoIter(np.ndarray):
    """An array that refuses per-row Python access (a vectorised predict never needs it)."""

    def __iter__(self):
        raise AssertionError("predict iterated over rows")

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            raise AssertionError("predict indexed a single row")
        return super().__getitem__(item)


def test_predict_on_10k_rows_is_one_vectorised_call():
    X, devs, target = device_data(200, 2)
    sources = {name: ArchLevelRegressor().fit(X, y) for name, y in devs.items()}
    transfer = FewShotTransfer().fit(X[:20], target[:20], sources=sources)
    big = np.random.default_rng(3).uniform(0.5, 2.0, size=(10_000, 6))
    guarded = big.view(_NoIter)
    for model in (sources["a"], transfer):
        out = model.predict(guarded)
        assert out.shape == (10_000,)
        # same as row-by-row prediction (spot check)
        rows = [model.predict(big[i : i + 1])[0] for i in (0, 5000, 9999)]
        np.testing.assert_allclose(out[[0, 5000, 9999]], rows)
    # the transfer asks each selected source once for the whole batch
    calls = {"n": 0}
    src = next(iter(transfer.sources_.values()))
    original = src.predict

    def counting(Xa):
        calls["n"] += 1
        return original(Xa)

    src.predict = counting
    transfer.predict(guarded)
    assert calls["n"] == 1

    # block table: one interpolation per unique unseen key, never per arch or occurrence
    tp = BlockTablePredictor().fit(table=synthetic_table())
    n_interp = {"n": 0}
    orig_interp = tp._interpolate

    def counting_interp(key):
        n_interp["n"] += 1
        return orig_interp(key)

    tp._interpolate = counting_interp
    Xk = [[conv_key(16, 3), conv_key(24, 3), conv_key(48, 7)]] * 10_000
    out = tp.predict(Xk)
    assert out.shape == (10_000,) and n_interp["n"] == 2
    assert np.all(out == out[0])


# ----------------------------------------------------------------------------------------------------
# persistence


def _fitted_predictors():
    X, devs, target = device_data(300, 4)
    sources = {name: ArchLevelRegressor().fit(X, y) for name, y in devs.items()}
    Xk, yk = synthetic_archs(150, 5)
    table = synthetic_table()
    Xkt, _ = synthetic_archs(50, 6)
    Xkt = Xkt + [[conv_key(24, 5), conv_key(96, 3, hw=14)]]  # unseen shapes too
    fitted = [
        (RidgeRegressor(robust=True).fit(X, devs["a"], feature_names=[f"f{i}" for i in range(6)]), X),
        (LogLinearRegressor().fit(X, devs["b"]), X),
        (sources["c"], X),
        (FewShotTransfer().fit(X[:20], target[:20], sources=sources), X),
        (BlockTablePredictor().fit(Xk, yk, table=table), Xkt),
        (CalibratedTablePredictor().fit(Xk, yk, table=table), Xkt),
    ]
    return fitted


def test_json_round_trip_gives_identical_predictions(tmp_path):
    fitted = _fitted_predictors()
    assert {m.kind for m, _ in fitted} <= set(registered_kinds())
    for model, X in fitted:
        model.set_provenance(device="gpu0", space="toy", protocol="synthetic")
        model.metadata["held_out"] = {"mape": 0.01, "spearman": float("nan")}
        path = tmp_path / f"{model.kind}.json"
        model.save(path)
        text = path.read_text()
        doc = json.loads(text)  # plain JSON, no NaN tokens
        assert "NaN" not in text and doc["kind"] == model.kind and doc["version"] == 1
        loaded = load_predictor(path)
        assert type(loaded) is type(model)
        assert np.array_equal(loaded.predict(X), model.predict(X))
        for a, b in zip(loaded.predict_interval(X, 0.9), model.predict_interval(X, 0.9)):
            assert np.array_equal(a, b)
        assert loaded.metadata["device"] == "gpu0" and loaded.metadata["space"] == "toy"
        assert loaded.metadata["held_out"]["spearman"] is None
        assert loaded.metadata["fitted_on"] == model.metadata["fitted_on"]
        assert loaded.get_params() == json.loads(json.dumps(model.get_params()))
        # a subclass loader accepts its own kind only
        assert type(model).load(path).kind == model.kind
    with pytest.raises(PredictorError, match="expected 'ridge'"):
        RidgeRegressor.load(tmp_path / "block_table.json")


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(kind="gradient_magic"), "kind"),
        (lambda d: d.pop("kind"), "kind"),
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d["state"].pop("coef"), "state.coef"),
        (lambda d: d["state"].update(coef="not a list"), "state.coef"),
        (lambda d: d["state"].update(coef=[[1.0, 2.0]]), "state.coef"),
        (lambda d: d["state"].update(intercept=None), "state.intercept"),
        (lambda d: d["state"].update(feature_names=["a"]), "state.feature_names"),
        (lambda d: d.update(state=[1, 2]), "state"),
        (lambda d: d["params"].update(bogus=1), "params.bogus"),
        (lambda d: d.update(metadata=3), "metadata"),
    ],
)
def test_malformed_json_raises_one_line_error_naming_file_and_field(tmp_path, mutate, field):
    X, y, _ = linear_data(60, 7)
    doc = RidgeRegressor().fit(X, y, feature_names=[f"f{i}" for i in range(6)]).to_dict()
    mutate(doc)
    path = _write(tmp_path, "bad.json", doc)
    with pytest.raises(PredictorError) as ei:
        load_predictor(path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(path) in msg and f"'{field}'" in msg, msg


def test_malformed_nested_and_non_json_files(tmp_path):
    p = _write(tmp_path, "notjson.json", "{ this is not json")
    with pytest.raises(PredictorError, match="notjson.json"):
        load_predictor(p)
    with pytest.raises(PredictorError, match="no such file"):
        load_predictor(tmp_path / "missing.json")
    # table with a bad entry; transfer with a broken nested source
    Xk, yk = synthetic_archs(60, 8)
    doc = CalibratedTablePredictor().fit(Xk, yk, table=synthetic_table()).to_dict()
    doc["state"]["table"]["conv|cin=1"] = "fast"
    with pytest.raises(PredictorError, match=r"bad_table.json: field 'state.table'"):
        load_predictor(_write(tmp_path, "bad_table.json", doc))
    X, devs, target = device_data(100, 9)
    sources = {n: ArchLevelRegressor().fit(X, y) for n, y in devs.items()}
    doc = FewShotTransfer().fit(X[:20], target[:20], sources=sources).to_dict()
    name = next(iter(doc["state"]["sources"]))
    doc["state"]["sources"][name]["kind"] = "nope"
    with pytest.raises(PredictorError) as ei:
        load_predictor(_write(tmp_path, "bad_src.json", doc))
    assert "bad_src.json" in str(ei.value) and "'kind'" in str(ei.value) and "\n" not in str(ei.value)
    assert issubclass(PredictorError, NASError)


# ----------------------------------------------------------------------------------------------------
# OFA data helpers


def test_ofa_costs_and_features():
    assert make_divisible(24 * 3) == 72 and make_divisible(40 * 4 / 4) == 40 and make_divisible(3.9) == 8
    # the largest OFA MobileNetV3 (w1.0): ~7.7M parameters
    big = ofa_costs([224], [[4] * 5], [[7] * 20], [[6] * 20])
    small = ofa_costs([128], [[2] * 5], [[3] * 20], [[3] * 20])
    assert 7.4e6 < big["total_params"][0] < 7.9e6
    assert big["total_macs"][0] > 5 * small["total_macs"][0]
    # inactive slots do not count: changing an unused slot's kernel changes nothing
    k = np.full((1, 20), 3)
    k2 = k.copy()
    k2[0, 3] = 7  # stage 1, slot 4, unused with depth 2
    X1, names = ofa_features([160], [[2] * 5], k, [[4] * 20], kind="all")
    X2, _ = ofa_features([160], [[2] * 5], k2, [[4] * 20], kind="all")
    assert np.array_equal(X1, X2) and X1.shape[1] == len(names) and np.isfinite(X1).all()
    with pytest.raises(NASError):
        ofa_features([160], [[2] * 5], k, [[4] * 20], kind="nonsense")


def test_load_ofa_csv_validates(tmp_path):
    cols = "resolution,depths,kernel_sizes,expand_ratios," + ",".join(
        f"{d}_{b}_ms" for d in ("2080ti", "titan_rtx", "titan_xp", "v100") for b in (1, 32, 64)
    )
    row = "160,2 3 4 2 3," + " ".join(["5"] * 20) + "," + " ".join(["4"] * 20) + "," + ",".join(["1.5"] * 12)
    good = tmp_path / "ok.csv"
    good.write_text(cols + "\n" + row + "\n")
    data = load_ofa_gpu_latency(good)
    assert len(data) == 1 and data.column("v100_64")[0] == 1.5
    with pytest.raises(NASError, match="setting"):
        data.column("tpu_1")
    bad = tmp_path / "bad.csv"
    bad.write_text(cols + "\n" + row.replace("160,2 3 4 2 3", "160,2 3 9 2 3") + "\n")
    with pytest.raises(NASError, match="depths"):
        load_ofa_gpu_latency(bad)


@pytest.mark.skipif(not default_csv_path().is_file(), reason="shared OFA data not available")
def test_shared_ofa_data_few_shot_smoke():
    data = load_ofa_gpu_latency()
    assert len(data) == 5000 and data.latency_ms.shape == (5000, 12)
    X, names = ofa_features(data.resolution, data.depths, data.kernel_sizes, data.expand_ratios, kind="analytic")
    sub = np.random.default_rng(0).permutation(len(data))[:1500]
    sources = {s: ArchLevelRegressor().fit(X[sub], data.column(s)[sub]) for s in ("titan_rtx_64", "v100_1")}
    y = data.column("v100_64")
    idx = np.random.default_rng(1).permutation(len(data))
    m = FewShotTransfer().fit(X[idx[:20]], y[idx[:20]], sources=sources)
    got = latency_metrics(y[idx[20:]], m.predict(X[idx[20:]]))
    assert list(m.sources_) == ["titan_rtx_64"]
    assert got["spearman"] > 0.97 and got["within_10"] > 0.9
