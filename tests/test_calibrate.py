"""Latency that holds on this host: the probe, the cached self-calibration, and verified winners.

Timings come from fake timers built on the shipped predictor (scaled, or with one block type slowed), so
the tests are exact and do not depend on the load of the machine running them.
"""
from __future__ import annotations

import numpy as np
import pytest

from nas.latency import calibrate as cal_mod
from nas.latency import load_latency_model
from nas.latency.calibrate import host_latency, local_name
from nas.predictors import HostCalibrated, load_predictor
from nas.profile.probe import probe_archs, probe_pool
from nas.profile.run import sample_archs
from nas.profile.store import Profile
from nas.search.config import SearchConfig
from nas.search.engine import run_search
from nas.space.space import load_arch

DEVICE = "cpu-amd-epyc-1t-b1"
CPU_WITHOUT_PROFILE = "Acme(R) Neutrino(R) Processor"  # a CPU model no shipped profile was measured on


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny():
    return load_latency_model(DEVICE, "tiny")


class FakeHost:
    """A host whose latencies are the shipped prediction x ``scale``, with blocks named ``slow`` x ``factor``."""

    def __init__(self, base, scale=1.0, slow: str | None = None, factor=1.0, noise=0.0, seed=0):
        self.base, self.scale, self.slow, self.factor, self.noise = base, scale, slow, factor, noise
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, archs):
        archs = list(archs)
        self.calls += len(archs)
        y = self.scale * self.base.predict(archs)
        if self.slow:
            tp = self.base.estimator.block_table()
            a = self.base.estimator.coef_[0]
            t = np.array([sum(tp.lookup(k) for k in ks if k.startswith(self.slow + "|"))
                          for ks in self.base.features(archs)])
            y = y + (self.factor - 1) * a * self.scale * t
        return list(y * np.exp(self.rng.normal(0, self.noise, len(y))))


def measured_here(entry: dict, summary: dict) -> bool:
    """A Pareto entry's latency was measured by this run's verification, on the host it names (a run folder or a
    zoo card read elsewhere still says which machine measured it)."""
    host = summary["verify"]["host"]
    return (entry["provenance"]["latency"].startswith(f"measured on host {host['id']} ({host['cpu_model']}")
            and host["id"] == cal_mod.host_id())


def test_probe_archs_cover_every_block_type_and_are_fixed(tiny):
    a, b = probe_archs(tiny.space), probe_archs(tiny.space)
    assert [x.id for x in a] == [x.id for x in b]
    names = {k.split("|")[0] for ks in tiny.features(a) for k in ks}
    pool_names = {k.split("|")[0] for ks in tiny.features(sample_archs(tiny.space, 300, 5)) for k in ks}
    assert pool_names <= names


@pytest.mark.parametrize("host", [dict(scale=0.6), dict(scale=1.5), dict(slow="layer:mbconv", factor=1.5)])
def test_the_probe_notices_another_host(home, tiny, host):
    fake = FakeHost(tiny, noise=0.01, **host)
    probe = cal_mod.run_probe(tiny.space, tiny, fake)
    assert probe.disagrees(), probe.describe(DEVICE)


def test_the_probe_accepts_the_profiles_own_host(home, tiny):
    probe = cal_mod.run_probe(tiny.space, tiny, FakeHost(tiny, noise=0.01))
    assert not probe.disagrees(), probe.describe(DEVICE)
    cal = host_latency(DEVICE, tiny.space, "auto", FakeHost(tiny, noise=0.01))
    assert not cal.calibrated and "matches" in cal.line


@pytest.mark.parametrize("host", [dict(scale=0.6), dict(scale=1.5), dict(slow="layer:mbconv", factor=1.5)])
def test_calibration_meets_the_target_on_fresh_archs(home, tiny, host):
    fake = FakeHost(tiny, noise=0.01, **host)
    cal = host_latency(DEVICE, tiny.space, "auto", fake)
    assert cal.calibrated
    fresh = sample_archs(tiny.space, 60, 991)
    err = cal.model.predict(fresh) / np.asarray(FakeHost(tiny, noise=0.0, **host)(fresh)) - 1
    assert np.mean(np.abs(err) <= 0.10) >= 0.95 and np.median(np.abs(err)) <= 0.03
    assert "calibrated on this host" in cal.model.provenance and "leave-one-out MAPE" in cal.model.provenance


@pytest.mark.parametrize("same_cpu", [False, True])
def test_a_calibration_that_holds_on_few_archs_points_to_measuring_a_profile(home, tiny, monkeypatch, same_cpu):
    """A host the correction cannot carry (here: +-25% per arch that no term explains) is measured on k more
    archs when the profile is another CPU model's (more archs is what helps there), not when it is this CPU's own
    (the loose fit is the host's noise); then its calibration line gives the way to figures that hold (`nas
    profile`); one it carries is not."""
    monkeypatch.setattr(cal_mod, "is_this_machine", lambda device: same_cpu)
    rough = host_latency(DEVICE, tiny.space, "always", FakeHost(tiny, scale=1.3, noise=0.25))
    assert rough.calibrated and "nas profile --space tiny" in rough.line, rough.line
    smooth = host_latency(DEVICE, tiny.space, "always", FakeHost(tiny, scale=1.3, noise=0.01))
    assert smooth.calibrated and "nas profile" not in smooth.line, smooth.line
    grown = 0 if same_cpu else cal_mod.K_DEFAULT * cal_mod.GROW
    assert len(rough.measured) == len(smooth.measured) + grown


@pytest.mark.parametrize("terms", HostCalibrated.TERMS)
def test_the_host_correction_predicts_by_its_documented_formula(home, tiny, terms):
    """y = global * p + overhead + sum_n factor_n * T_n (``scales()``; T_n: the base table's time of the arch's
    blocks in group n), however the fast path folds the terms."""
    fake = FakeHost(tiny, scale=1.3, slow="layer:mbconv", factor=1.6, noise=0.02)
    archs = sample_archs(tiny.space, 40, 5)
    keys = tiny.features(archs)
    est = HostCalibrated(terms=terms).fit(keys, np.asarray(fake(archs)), base=tiny.estimator,
                                          extra=tiny.features.extra_matrix(keys))
    sc, table = est.scales(), est.block_table()
    assert len(sc) > 3  # the host's slow mbconv got a term of its own
    fresh = sample_archs(tiny.space, 200, 17)
    fresh_keys = tiny.features(fresh)
    want = sc["global"] * tiny.predict(fresh) + sc["overhead_ms"]
    for i, ks in enumerate(fresh_keys):
        want[i] += sum(sc.get(f"time:{g}", 0.0) * table.lookup(k) for k in ks for g in est._groups(k))
    got = est.predict(fresh_keys, extra=tiny.features.extra_matrix(fresh_keys))
    np.testing.assert_allclose(got, want, rtol=1e-9)


class FirstTimingSlow(FakeHost):
    """A host whose first timing of every 6th arch it sees is 2x slow (a shared VM's slow moment)."""

    def __init__(self, base, scale=1.3):
        super().__init__(base, scale=scale)
        self.seen: list[str] = []
        self.spiked: set[str] = set()

    def __call__(self, archs):
        archs = list(archs)
        y = np.asarray(super().__call__(archs))
        for i, a in enumerate(archs):
            if a.id not in self.seen:
                self.seen.append(a.id)
                if len(self.seen) % 6 == 0:
                    self.spiked.add(a.id)
                    y[i] *= 2.0
        return list(y)


def test_a_calibration_times_again_what_ran_far_slower_than_predicted(home, tiny, capsys):
    """A timing caught in a slow moment would bend the whole correction: the calibration times such archs again
    and keeps the faster timing, so it fits the host's true speed."""
    from nas.cli.ui import reporter

    fake = FirstTimingSlow(tiny)
    cal = host_latency(DEVICE, tiny.space, "always", fake, reporter=reporter())
    assert fake.spiked and set(fake.spiked) <= set(cal.measured)
    for i in fake.spiked:  # every spiked arch now holds its true timing (1.3x the shipped prediction)
        arch = next(a for a in cal_mod.probe_pool(tiny.space) if a.id == i)
        assert cal.measured[i] == pytest.approx(1.3 * float(tiny.predict([arch])[0]))
    c = cal.model.metadata["calibration"]
    assert c["retimed"] >= len(fake.spiked) and c["loo_within_10"] == pytest.approx(1.0)
    assert "timed twice for running far slower than predicted" in cal.line


def test_a_host_calibration_is_judged_leave_one_out_overall_and_per_mixer(home, tiny):
    """A host calibration has no held-out archs (it is fitted on all it measured): `nas predictor eval --split loo`
    judges it by predicting each arch from a refit without it, overall and per mixer."""
    from nas.errors import ParamError, ProfileError
    from nas.latency.fit import evaluate_by_group, evaluate_latency_model

    fake = FakeHost(tiny, scale=1.3, slow="layer:mbconv", factor=1.5, noise=0.03)
    cal = host_latency(DEVICE, tiny.space, "always", fake)
    with pytest.raises(ProfileError, match="--split loo"):
        evaluate_latency_model(cal.model)
    loo = evaluate_latency_model(cal.model, split="loo")
    fitted = evaluate_latency_model(cal.model, split="calib")  # the same archs, predicted by the fit that saw them
    assert loo["n"] == fitted["n"] >= cal_mod.K_DEFAULT
    assert fitted["mape"] <= loo["mape"] < 0.06  # honest (no better than in-sample), and the 3% noise is all it has
    rows = {r["group"]: r for r in evaluate_by_group(cal.model, "mixer", split="loo")}
    assert rows["all"]["n"] == loo["n"] and "mbconv" in rows
    # each arch's leave-one-out prediction is its own: an arch timed 3x too slow is the one predicted far off
    archs = sample_archs(tiny.space, 25, 5)
    ms = np.asarray(fake(archs), dtype=float)
    ms[0] *= 3.0
    err = np.abs(cal_mod.host_loo_predictions(cal.model, archs, ms) / ms - 1)
    assert int(np.argmax(err)) == 0 and err[0] > 0.5 and np.median(err[1:]) < 0.1
    with pytest.raises(ParamError, match="host-calibrated"):
        evaluate_latency_model(tiny, split="loo")  # a measured profile's predictor has held-out archs instead


def test_calibration_is_cached_reused_and_redone_after_drift_or_reboot(home, tiny, monkeypatch):
    fake = FakeHost(tiny, scale=1.3)
    first = host_latency(DEVICE, tiny.space, "auto", fake)
    n_first = fake.calls
    assert first.calibrated and n_first >= cal_mod.K_DEFAULT
    local = home / "hardware_profiles" / local_name(DEVICE)
    prof = Profile.load(local)
    assert prof.kind == "calibrated" and len(prof.arch_rows("tiny")) == n_first
    saved = load_predictor(home / "predictors" / f"{local_name(DEVICE)}-tiny.json")
    assert isinstance(saved, HostCalibrated)

    again = host_latency(DEVICE, tiny.space, "auto", fake)  # cached: only the short re-probe runs
    assert again.calibrated and "cached" in again.line
    assert 0 < fake.calls - n_first <= 4
    np.testing.assert_allclose(again.model.predict(probe_archs(tiny.space)), first.model.predict(probe_archs(tiny.space)))
    # what was measured here since still holds: a search's verification reuses it (the profile keeps 6 decimals)
    assert set(again.measured) == set(first.measured)
    assert [again.measured[i] for i in first.measured] == pytest.approx(list(first.measured.values()), rel=1e-5)

    fake.scale = 1.3 * 1.2  # the host got slower: the re-probe drifts, calibration runs again
    n = fake.calls
    drifted = host_latency(DEVICE, tiny.space, "auto", fake)
    assert drifted.calibrated and fake.calls - n >= cal_mod.K_DEFAULT
    ratio = drifted.model.predict(probe_archs(tiny.space)) / first.model.predict(probe_archs(tiny.space))
    assert np.allclose(ratio, 1.2, rtol=0.03)
    # the local profile now holds this host as it runs now: the old timings of the same archs are gone, so a later
    # refit (after a verification) or a cached calibration's reuse never mixes the two states
    rows = Profile.load(local).arch_rows("tiny")
    stored = dict(zip(rows["arch_id"], rows["median_ms"]))
    assert len(rows) == len(drifted.measured) and set(stored) == set(drifted.measured)
    assert all(stored[i] == pytest.approx(first.measured[i] * 1.2, rel=1e-4) for i in first.measured if i in stored)

    monkeypatch.setattr(cal_mod, "boot_time", lambda: 4.0e9)  # rebooted after the cache was made
    n = fake.calls
    host_latency(DEVICE, tiny.space, "auto", fake)
    assert fake.calls - n > 4


def test_never_reports_the_disagreement_and_off_measures_nothing(home, tiny):
    fake = FakeHost(tiny, scale=1.5)
    never = host_latency(DEVICE, tiny.space, "never", fake)
    assert not never.calibrated and "1.50x" in never.line and "not corrected" in never.line
    assert never.model.predict(probe_archs(tiny.space)[:1])[0] == pytest.approx(
        tiny.predict(probe_archs(tiny.space)[:1])[0])
    n = fake.calls
    off = host_latency(DEVICE, tiny.space, "off", fake)
    assert fake.calls == n and "--calibrate off" in off.line
    assert not (home / "hardware_profiles").exists()  # neither wrote a calibration


def test_a_bad_mode_names_the_parameter(home, tiny, monkeypatch):
    from nas.errors import ParamError

    with pytest.raises(ParamError, match="calibrate.*choose from auto, always, never, off"):
        host_latency(DEVICE, tiny.space, "sometimes", FakeHost(tiny))
    monkeypatch.setenv("NAS_CALIBRATE", "maybe")
    with pytest.raises(ParamError, match=r"NAS_CALIBRATE"):
        cal_mod.default_mode()


class NearLimitSlower(FakeHost):
    """This host runs every arch predicted near the limit 30% slower than the calibration can learn."""

    def __init__(self, base, limit):
        super().__init__(base, scale=1.0)
        self.limit = limit

    def __call__(self, archs):
        archs = list(archs)
        y = np.asarray(super().__call__(archs))
        return list(np.where((y > 0.85 * self.limit) & (y <= self.limit), 1.3 * y, y))


def test_verify_drops_budget_violators_refits_and_reports_a_measured_front(home, tiny, tmp_path, capsys):
    limit = 0.5
    fake = NearLimitSlower(tiny, limit)
    res = run_search(SearchConfig(budget=f"latency:{limit}ms", space="tiny", trials=40, seed=0,
                                  accuracy="proxy:params", runs_dir=tmp_path / "runs", calibrate="auto"),
                     measure=fake)
    s = res.summary
    ver = s["verify"]
    assert ver["dropped"] and ver["refits"] >= 1 and ver["extra_trials"] > 0
    assert s["trials"] == 40 + ver["extra_trials"]
    assert s["pareto"]
    for e in s["pareto"]:  # every reported arch was measured here and meets the budget as measured
        assert measured_here(e, s)
        assert e["metrics"]["latency_ms"] <= limit
        assert e["metrics"]["latency_predicted_ms"] is not None
    dropped = {d["id"] for d in ver["dropped"]}
    assert not dropped & {e["id"] for e in s["pareto"]}
    for d in ver["dropped"]:  # timed at least 3 times, at separate moments; median (or median + margin) over
        assert len(d["timings_ms"]) >= 3 and d["bound_ms"] > limit
    rows = Profile.load(home / "hardware_profiles" / local_name(DEVICE)).arch_rows("tiny")
    assert dropped <= set(rows["arch_id"])  # the violators' measurements went into the local profile
    assert "verified on this host" in ver["line"] and f"{len(dropped)} dropped" in ver["line"]

    # exported, a front arch and a dropped one (picked by id from the trials) keep their measured latency, the
    # host and local profile it was measured on, and the search's score; the dropped one says it broke the budget
    from nas.zoo.export import export

    front, bad = s["pareto"][0], ver["dropped"][0]
    recs = export(res.run_dir, pick=[front["id"], bad["id"]], zoo=tmp_path / "zoo")
    by_id = {r["id"]: r for r in recs}
    assert by_id[bad["id"]]["metrics"]["latency_ms"] == pytest.approx(bad["measured_ms"])
    for rec in recs:
        (lat,) = rec["latency"]
        assert lat["device"] == ver["device"] and lat["provenance"].startswith(f"measured on host {cal_mod.host_id()}")
        assert rec["metrics"]["accuracy"] is None and rec["metrics"]["score"] is not None
    card = (tmp_path / "zoo" / by_id[bad["id"]]["name"] / "card.md").read_text()
    assert "**Outside the search's budget**" in card and "ranked it by a score" in card
    assert "Outside" not in (tmp_path / "zoo" / by_id[front["id"]]["name"] / "card.md").read_text()
    from nas.cli.main import main

    capsys.readouterr()
    assert main(["zoo", "list", "--zoo", str(tmp_path / "zoo")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("name"))
    assert header.split()[-3:] == ["accuracy", "score", "weights"]  # the search's score has its own column


class SlowMoments(FakeHost):
    """A host on which the first timing of every arch a search finds (not the probe's or the calibration's, which
    come from the probe pool) is 2x slow, a shared VM's slow moment; timed again, each runs at its true speed."""

    def __init__(self, base):
        super().__init__(base, scale=1.0)
        self.pool = {a.id for a in probe_pool(base.space)}
        self.seen: set[str] = set()

    def __call__(self, archs):
        archs = list(archs)
        y = np.asarray(super().__call__(archs))
        first = np.array([a.id not in self.seen and a.id not in self.pool for a in archs])
        self.seen.update(a.id for a in archs)
        return list(np.where(first, 2.0 * y, y))


def test_a_slow_moment_in_one_timing_does_not_decide(home, tiny, tmp_path):
    """Every reported arch is timed at least 3 times at separate moments and its latency is the median: an arch
    caught once in a slow moment stays in the front with its true timing, nothing is dropped or refitted for it,
    and its row shows the spread of its timings."""
    limit = 0.5
    fake = SlowMoments(tiny)
    res = run_search(SearchConfig(budget=f"latency:{limit}ms", space="tiny", trials=40, seed=0,
                                  accuracy="proxy:params", runs_dir=tmp_path / "runs", calibrate="auto"),
                     measure=fake)
    ver = res.summary["verify"]
    assert ver["dropped"] == [] and ver["refits"] == 0 and ver["min_timings"] == 3
    assert res.summary["pareto"]
    for e in res.summary["pareto"]:  # the median of the timings: the true one; the slow moment shows as the max
        true_ms = float(tiny.predict([load_arch(res.run_dir / e["arch_file"], tiny.space)])[0])
        m = e["metrics"]
        assert m["latency_ms"] == pytest.approx(true_ms) and m["latency_timings"] >= 3
        assert m["latency_min_ms"] == pytest.approx(true_ms) and m["latency_max_ms"] == pytest.approx(2 * true_ms)


class Wobbly(FakeHost):
    """A host whose every timing is the true latency x a factor drawn uniformly from [1 - w, 1 + w] (its median is
    the true latency), with its p90 ``tail`` x the timing's median."""

    def __init__(self, base, wobble=0.3, tail=1.0, seed=0):
        super().__init__(base, scale=1.0, seed=seed)
        self.wobble, self.tail = wobble, tail

    def true_ms(self, archs):
        return np.asarray(self.base.predict(list(archs)), dtype=float)

    def __call__(self, archs):
        return list(self.true_ms(archs) * self.rng.uniform(1 - self.wobble, 1 + self.wobble, len(archs)))

    def full(self, archs, slow_windows=False, keep=False):
        """Whole measurements (median and p90), as the quiet-guarded timer gives the verification."""
        from types import SimpleNamespace

        return [SimpleNamespace(median_ms=v, p90_ms=self.tail * v) for v in self(archs)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_reported_arch_has_a_true_median_over_the_budget_on_a_wobbly_host(home, tiny, tmp_path, seed):
    """Timings that wobble +-30%: the verification keeps no arch whose true median breaks the budget (a median of a
    few timings is not enough near the limit: the host's noise, measured here, sets a margin), and says how noisy
    the host was."""
    limit = 0.5
    fake = Wobbly(tiny, seed=seed)
    res = run_search(SearchConfig(budget=f"latency:{limit}ms", space="tiny", trials=40, seed=seed,
                                  accuracy="proxy:params", runs_dir=tmp_path / "runs", calibrate="never"),
                     measure=fake)
    s = res.summary
    ver = s["verify"]
    assert s["pareto"]
    true = fake.true_ms([load_arch(res.run_dir / e["arch_file"], tiny.space) for e in s["pareto"]])
    assert (true <= limit).all(), (true, [e["metrics"] for e in s["pareto"]])
    assert ver["host_noise"]["sigma_log"] > 0.1  # +-30% uniform: a log-sd of about 0.17
    assert all(e["metrics"]["latency_timings"] >= 3 for e in s["pareto"])
    assert "margin for this host's noise" in ver["line"]


def test_after_the_verification_sets_a_margin_the_search_proposes_archs_inside_it(home, tiny, tmp_path):
    """A noisy host's margin tightens the budget an unmeasured arch is tested on (prediction x the factor): the
    trials the search goes on with are proposed inside that tighter budget, by the pre-screen as by the first test,
    so the extra trials fill the front below it instead of being spent where nothing counts any more."""
    limit, trials = 0.5, 40
    res = run_search(SearchConfig(budget=f"latency:{limit}ms", space="tiny", trials=trials, seed=0, prescreen=8,
                                  accuracy="proxy:params", runs_dir=tmp_path / "runs", calibrate="never"),
                     measure=Wobbly(tiny, wobble=0.3))
    ver, t = res.summary["verify"], res.trials
    assert ver["extra_trials"] > 0 and ver["host_noise"]["sigma_log"] > 0.1
    extra = t[(t["number"] >= trials) & t["latency_bound_ms"].notna()]
    chosen = extra[extra["source"].isin(["prescreen", "feasible-verify"])]
    assert set(chosen["source"]) == {"prescreen", "feasible-verify"}, extra["source"].value_counts()
    assert (extra["source"] == "feasible-verify").sum() == ver["redrawn"] > 0
    assert (chosen["latency_bound_ms"] <= limit).all(), chosen[["source", "latency_ms", "latency_bound_ms"]]
    assert (chosen["latency_bound_ms"] > chosen["latency_ms"] * 1.05).all()  # tested on the factor, not the prediction
    assert f"({ver['redrawn']} of them drawn inside the budget the margin leaves)" in ver["line"]


def test_a_front_the_host_rules_out_says_why_and_what_to_try(home, tiny, tmp_path, capsys):
    """A host 50x slower than any prediction: every arch the search keeps is measured over the budget. The table is
    empty, and one line says why (the measured budget, the host's margin) and what to try."""
    from nas.cli.cmd_search import _print_front

    res = run_search(SearchConfig(budget="latency:0.5ms", space="tiny", trials=16, seed=0, accuracy="proxy:params",
                                  runs_dir=tmp_path / "runs", calibrate="never"),
                     measure=FakeHost(tiny, scale=50.0))
    s = res.summary
    assert not s["pareto"] and s["verify"]["dropped"]
    capsys.readouterr()
    _print_front(s, str(res.run_dir))
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("no arch is reported"))
    assert "measured over latency < 0.5 ms here" in line and "% margin for this host's noise and speed drift" in line
    assert "--verify-speed full" in line and "a larger budget" in line


class Drifting(Wobbly):
    """A host whose own speed wanders: each timing pass meets a moment 1.0-1.4x slow, which its speed sentinel
    records. Timed as it is, every timing carries that moment's slowness; timed at full speed (the quiet guard waits
    the slow moments out), only a +-2% wobble."""

    SLOW = (1.0, 1.3, 1.1, 1.4, 1.0, 1.25, 1.05, 1.35)

    def __init__(self, base, seed=0):
        super().__init__(base, wobble=0.02, seed=seed)
        self.speed = self.Sentinel()
        self.asked: list[bool] = []

    class Sentinel:
        def __init__(self):
            self.ratios: list[float] = []

        def spread(self, since=0):
            r = np.asarray(self.ratios[since:])
            return None if not r.size else {"p5": float(np.percentile(r, 5)), "p50": float(np.median(r)),
                                            "p95": float(np.percentile(r, 95)), "max": float(r.max()),
                                            "checks": int(r.size)}

    def full(self, archs, slow_windows=False, keep=False):
        from types import SimpleNamespace

        self.asked.append(slow_windows)
        ratio = self.SLOW[len(self.asked) % len(self.SLOW)]
        self.speed.ratios += [ratio] * 4
        slow = ratio if slow_windows else 1.0
        return [SimpleNamespace(median_ms=slow * v, p90_ms=slow * v) for v in self(archs)]


def test_verify_speed_full_times_at_full_speed_and_uses_the_budget_a_drifting_host_costs(home, tiny, tmp_path):
    """On a host whose speed wanders 1-1.4x, the default verification keeps the slow moments and sets a margin for
    the drift, so its front keeps well under the limit; ``verify_speed="full"`` times at full speed (the slow
    stretches waited out), its margin covers the timing noise only, its front goes nearer the limit and still no
    arch is over it, and the report and provenance say at what speed it was timed."""
    limit = 0.5
    fronts = {}
    for speed in ("as-is", "full"):
        fake = Drifting(tiny)
        res = run_search(SearchConfig(budget=f"latency:{limit}ms", space="tiny", trials=40, seed=0,
                                      accuracy="proxy:params", runs_dir=tmp_path / speed, calibrate="never",
                                      verify_speed=speed), measure=fake)
        s, ver = res.summary, res.summary["verify"]
        assert s["pareto"] and ver["speed"] == speed
        assert set(fake.asked) == {speed == "as-is"}  # slow windows kept only when timed as it is
        true = fake.true_ms([load_arch(res.run_dir / e["arch_file"], tiny.space) for e in s["pareto"]])
        assert (true <= limit).all()
        fronts[speed] = (true.max(), ver["host_noise"], s["pareto"][0]["provenance"]["latency"], ver["line"])
    (as_is_max, as_is_noise, as_is_prov, _), (full_max, full_noise, full_prov, full_line) = fronts["as-is"], fronts["full"]
    assert as_is_noise["drift_log"] > 0.05 and full_noise["drift_log"] == 0.0
    assert full_noise["margin_at_min_timings"] < 0.1 < as_is_noise["margin_at_min_timings"]
    assert full_max > as_is_max  # the full-speed front uses more of the budget
    assert "full speed" in full_prov and "full speed" not in as_is_prov and "speed drift" in as_is_prov
    assert "at the host's full speed" in full_line and "noise at full speed" in full_line


def test_a_p90_budget_holds_the_90th_percentile(home, tiny, tmp_path):
    """``latency@p90:...``: each reported arch's latency is the median of its timing runs' 90th percentiles, and
    that is what meets the budget (here the p90 runs 20% over the median)."""
    limit = 0.5
    fake = Wobbly(tiny, wobble=0.02, tail=1.2)
    res = run_search(SearchConfig(budget=f"latency@p90:{limit}ms", space="tiny", trials=40, seed=0,
                                  accuracy="proxy:params", runs_dir=tmp_path / "runs", calibrate="never"),
                     measure=fake)
    s = res.summary
    assert s["verify"]["statistic"] == "p90" and "90th percentile" in s["verify"]["line"]
    assert s["pareto"]
    archs = [load_arch(res.run_dir / e["arch_file"], tiny.space) for e in s["pareto"]]
    assert (1.2 * fake.true_ms(archs) <= limit).all()
    for e, t in zip(s["pareto"], fake.true_ms(archs)):
        assert e["metrics"]["latency_ms"] == pytest.approx(1.2 * t, rel=0.03)


def test_no_verify_and_a_device_that_is_not_this_machine_say_why_nothing_was_measured(home, tmp_path):
    base = dict(budget="latency:20ms", space="tiny", trials=8, accuracy="proxy:params", calibrate="auto")
    res = run_search(SearchConfig(**base, verify=False, runs_dir=tmp_path / "a"),
                     measure=lambda archs: [0.4] * len(list(archs)))
    assert res.summary["verify"] == {"note": "not verified (--no-verify)"}
    res = run_search(SearchConfig(budget="latency:20ms", space="ofa-mbv3", trials=8, accuracy="proxy:params",
                                  device="gpu-v100-b1", runs_dir=tmp_path / "b", calibrate="auto"))
    assert "not this machine" in res.summary["verify"]["note"]
    assert "not this machine" in res.summary["calibration"]["line"]


class Log:
    """A reporter that keeps what it was told."""

    def __init__(self):
        self.lines: list[str] = []

    def progress(self, total, description, *, completed=0):
        from nas.reporting import SILENT

        return SILENT.progress(total, description, completed=completed)

    def log(self, message):
        self.lines.append(message)

    warn = log

    def table(self, title, columns, rows):
        pass


def test_on_another_cpu_the_default_search_calibrates_the_nearest_cpu_profile_to_this_host(home, tiny, tmp_path,
                                                                                            monkeypatch):
    """No profile of this CPU ships: the tool starts from another CPU's profile, calibrates it here under a name
    of this CPU, and verifies the front; a device the user names for that other CPU is left alone."""
    import nas.profile.machine as machine

    monkeypatch.setattr(machine, "cpu_model", lambda: CPU_WITHOUT_PROFILE)
    assert cal_mod.is_this_machine(DEVICE) is False
    assert local_name(DEVICE).startswith("cpu-acme-neutrino-1t-b1-host-")
    log = Log()
    assert cal_mod.host_device(tiny.space, "auto", log) == DEVICE
    assert "no profile of this CPU" in log.lines[0] and "calibrated to this host" in log.lines[0]

    fake = FakeHost(tiny, scale=0.6, slow="layer:mbconv", factor=1.4)
    monkeypatch.setattr(cal_mod, "quiet_measure", lambda device, reporter=None, wait_s=None: fake)  # this host's timer
    res = run_search(SearchConfig(budget="latency:0.5ms", space="tiny", trials=30, seed=0, accuracy="proxy:params",
                                  runs_dir=tmp_path / "a", calibrate="auto"))
    s = res.summary
    assert s["calibration"]["calibrated"] and s["calibration"]["local_profile"] == local_name(DEVICE)
    prof = Profile.load(home / "hardware_profiles" / local_name(DEVICE))
    assert prof.meta["base_device"] == DEVICE and prof.machine["cpu_model"] == CPU_WITHOUT_PROFILE
    assert s["pareto"] and all(measured_here(e, s) for e in s["pareto"])
    assert f"{CPU_WITHOUT_PROFILE}; local profile {local_name(DEVICE)})" in s["pareto"][0]["provenance"]["latency"]
    assert all(e["metrics"]["latency_ms"] <= 0.5 for e in s["pareto"])

    n = fake.calls
    named = run_search(SearchConfig(budget="latency:0.5ms", space="tiny", trials=8, seed=0, accuracy="proxy:params",
                                    device=DEVICE, runs_dir=tmp_path / "b", calibrate="auto"))
    assert "not this machine" in named.summary["calibration"]["line"]
    assert "not this machine" in named.summary["verify"]["note"] and fake.calls == n


def test_this_cpus_profile_of_one_space_does_not_hide_the_others(home, tiny, monkeypatch):
    """A profile of this CPU that measured one space (say a user's `nas profile --space hybrid`) is the default
    device for that space only; for a space it lacks, another CPU's profile is the starting point, saying why."""
    import nas.profile.machine as machine
    from nas.profile.store import default_device

    monkeypatch.setattr(machine, "cpu_model", lambda: CPU_WITHOUT_PROFILE)
    own = home / "hardware_profiles" / "cpu-acme-neutrino-1t-b1"
    own.mkdir(parents=True)
    (own / "profile.yaml").write_text(
        f"kind: measured\nmachine: {{cpu_model: '{CPU_WITHOUT_PROFILE}', threads: 1, batch: 1, backend: torch-cpu}}\n"
        "spaces: {hybrid: {space_file: hybrid.yaml}}\n")
    assert default_device(space="hybrid") == default_device() == "cpu-acme-neutrino-1t-b1"
    assert default_device(space="tiny") is None
    log = Log()
    assert cal_mod.host_device(tiny.space, "auto", log) == DEVICE
    assert "this CPU's profile cpu-acme-neutrino-1t-b1 has no tiny measurements" in log.lines[0], log.lines


def test_a_reranked_front_is_measured_here_too(home, tiny, tmp_path):
    """After --rerank chooses a new front, its archs not yet measured are measured and held to the budget."""
    limit = 0.5
    fake = NearLimitSlower(tiny, limit)
    res = run_search(SearchConfig(budget=f"latency:{limit}ms", space="tiny", trials=40, seed=1,
                                  accuracy="proxy:params", runs_dir=tmp_path / "runs", calibrate="auto",
                                  rerank="proxy:nwot", rerank_top=40), measure=fake)
    s = res.summary
    rr, front = s["rerank"], {e["id"] for e in s["pareto"]}
    assert front and rr["scored"] == len(rr["candidates"]) > len(rr["front_before"])
    assert front - set(rr["front_before"])  # the re-rank brought in archs the first verification never measured
    for e in s["pareto"]:
        assert e["id"] in rr["candidates"]
        assert measured_here(e, s)
        assert e["metrics"]["latency_ms"] <= limit
    assert s["verify"]["measured"] >= len(front | set(rr["front_before"]))


def test_the_verification_rule_keeps_no_arch_over_the_budget_among_many_near_it():
    """The rule itself, on 400 archs whose true medians lie 0.6-1.3x the limit and whose timings wobble +-30%: three
    timings each, two more (up to 7) while the median is within the host's margin of the limit. No arch it keeps
    inside is over the limit in truth, while a bare median of 3 (the same draws) keeps dozens that are; it still keeps
    most of those clearly inside."""
    from nas.search.verify import MAX_TIMINGS, MIN_TIMINGS, ArchTimings, Noise, host_noise, verdict

    rng = np.random.default_rng(0)
    true = rng.uniform(0.6, 1.3, 400)
    timings = [ArchTimings() for _ in true]
    for _ in range(MIN_TIMINGS):
        for t, tr in zip(timings, true):
            t.add(tr * rng.uniform(0.7, 1.3))
    naive = np.array([t.value() <= 1.0 for t in timings])
    while True:
        noise = Noise(host_noise(timings))
        again = [i for i, t in enumerate(timings) if verdict(t, 1.0, noise) == "again"]
        if not again:
            break
        for _ in range(2):
            for i in again:
                timings[i].add(true[i] * rng.uniform(0.7, 1.3))
    assert max(t.n for t in timings) == MAX_TIMINGS
    kept = np.array([verdict(t, 1.0, Noise(host_noise(timings))) == "inside" for t in timings])
    assert (naive & (true > 1.0)).sum() > 20  # the winner's curse the rule is there for
    assert not (kept & (true > 1.0)).any()
    assert (kept & (true <= 0.8)).sum() >= 0.7 * (true <= 0.8).sum()


def test_the_python_api_predicts_with_this_hosts_cached_calibration(home, tiny):
    """``nas.load_latency_model(None, space)`` is this host's calibrated model once one is cached (what a search
    predicts with), the shipped one before; ``nas.calibrate_latency`` is the call that calibrates from Python."""
    import nas

    before = nas.load_latency_model(None, "tiny")
    assert "calibrated on this host" not in before.provenance
    host_latency(DEVICE, tiny.space, "always", FakeHost(tiny, scale=1.3, noise=0.01), this_host=True)
    after = nas.load_latency_model(None, "tiny")
    assert "calibrated on this host" in after.provenance
    arch = tiny.space.sample(seed=3)
    assert float(after.predict([arch])[0]) == pytest.approx(1.3 * float(before.predict([arch])[0]), rel=0.05)
    off = nas.calibrate_latency("tiny", mode="off")  # 'off' measures nothing: the shipped profile as it is
    assert "calibrated on this host" not in off.provenance


def test_an_impossible_latency_budget_exits_2_before_anything_is_measured(home, tmp_path, monkeypatch, capsys):
    """`nas search --budget latency:0.0001ms`: one line naming the budget, exit 2, no probe, no calibration, no run
    folder (the shipped profile, with room for a host twice as fast, already rules it out). On a CPU with no
    profile of its own, too: what the device's choice would have said is not said, the refusal is the line."""
    from nas.cli.main import main
    from nas.profile import machine

    def no_measuring(*a, **k):
        raise AssertionError("measured before refusing an impossible budget")

    host_latency = cal_mod.host_latency
    monkeypatch.setattr(cal_mod, "host_latency", no_measuring)
    monkeypatch.setattr(cal_mod, "quiet_measure", no_measuring)
    monkeypatch.chdir(tmp_path)
    for cpu in (None, "Unprofiled CPU 9000"):
        if cpu:
            monkeypatch.setattr(machine, "cpu_model", lambda cpu=cpu: cpu)
        assert main(["search", "--budget", "latency:0.0001ms", "--runs", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "latency:0.0001ms" in err[0] and "nothing was measured" in err[0], err
        assert not (tmp_path / "runs").exists()
    # the same device note is said when the budget stands (it is held, not lost; --calibrate off measures nothing)
    monkeypatch.setattr(cal_mod, "host_latency", host_latency)
    assert main(["search", "--budget", "latency:50ms", "--trials", "2", "--objectives", "accuracy,latency",
                 "--space", "tiny", "--no-verify", "--runs", str(tmp_path / "runs")]) == 0
    assert "no profile of this CPU (Unprofiled CPU 9000)" in capsys.readouterr().err


def _trial_mixers(run_dir) -> dict[str, str]:
    """arch id -> its mixers (most used first) for every trial of the run's study."""
    import optuna

    from nas.search.engine import params_to_arch
    from nas.search.refine import _mixers
    from nas.space import load_space

    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
    space = load_space("tiny")
    archs = [params_to_arch(space, t.params) for t in study.get_trials(deepcopy=False)]
    return {a.id: _mixers(a) for a in archs}


def test_refine_times_its_archs_here_before_scoring_them(home, tiny, tmp_path):
    """--refine asks new archs near the budget's edge: each is timed here first, and only those measured inside the
    budget (median plus the host's margin) get the second score, so no evaluation is spent on an arch the
    verification would drop. The mixer sweep times a ladder per mixer and scores the largest rung inside."""
    limit = 0.5
    fake = NearLimitSlower(tiny, limit)
    res = run_search(SearchConfig(budget=f"latency:{limit}ms", space="tiny", trials=40, seed=2,
                                  accuracy="proxy:params", runs_dir=tmp_path / "runs", calibrate="auto",
                                  rerank="proxy:nwot", rerank_top=4, refine=10), measure=fake)
    ref = res.summary["rerank"]["refine"]
    refined = set(ref["sweep"]) | set(ref["local"])
    assert ref["scored"] == len(refined) == 10 and ref["measured"] >= 10
    rows = res.trials.drop_duplicates("arch_id").set_index("arch_id")
    for arch_id in refined:
        r = rows.loc[arch_id]
        assert r["measured_timings"] >= 3 and r["latency_bound_ms"] <= limit and r["feasible"]
        assert r["rerank_score"] == r["rerank_score"]  # scored (not NaN)
    timed_over = rows[(rows["source"].isin(["sweep", "refine"])) & (rows["latency_bound_ms"] > limit)]
    assert len(timed_over) and timed_over["rerank_score"].isna().all()  # measured over the budget: never scored
    # the mixer sweep stepped down its ladder: per mixer, the rung scored is the largest measured inside
    sweep = rows[rows["source"] == "sweep"]
    mixers = _trial_mixers(res.run_dir)
    assert len(sweep) > len(ref["sweep"]) >= 1
    stepped = 0
    for arch_id, mixer in ref["sweep"].items():
        same = sweep[[mixers[i] == mixer for i in sweep.index]]
        above = same[same["latency_ms"] > same.loc[arch_id, "latency_ms"]]
        assert (above["latency_bound_ms"] > limit).all()  # every larger rung was timed over the budget
        stepped += len(above) > 0
    assert stepped  # at least one mixer's edge arch timed over and a smaller rung took its place
    inside = {mixers[i] for i in sweep.index if sweep.loc[i, "latency_bound_ms"] <= limit}
    assert inside == set(ref["sweep"].values())  # no mixer with a rung inside is left out
    assert res.summary["pareto"] and all(e["metrics"]["latency_ms"] <= limit for e in res.summary["pareto"])
