"""Latency that holds on the machine in front of the user: the host probe and the self-calibration.

A shipped profile fits the host that measured it; another VM with the same CPU label runs 7-45% faster
or slower. Before a search or design predicts latency for this machine's own device:

1. **Probe** (:func:`run_probe`): a fixed set of reference archs of the space (one dominated by each
   block type, plus a few spread over the cost range) is timed on this host under the profile's protocol
   and compared with the profile (its stored probe timings where it has them, else its predictions).
2. **Calibrate** (:func:`calibrate`) when they disagree (median ratio off by more than 5%, or one
   reference arch off by more than its tolerance): ``k`` archs spread over the space's latency range are
   measured and a :class:`~nas.predictors.host.HostCalibrated` correction of the shipped predictor is
   fitted on them (and the probe's archs).
3. **Cache** the result as a local profile ``<device>-host-<id>`` in the user's profile folder (never in
   the package): its measured archs, the probe timings, and the fitted predictor. The cache is reused
   until the host reboots after it was made, or until a short re-probe drifts by more than 5%.

``mode`` (``--calibrate``): ``auto`` (the above), ``always`` (calibrate now), ``never`` (probe and say how
far this host is from the profile, predict with the shipped profile), ``off`` (measure nothing here).
Measurements run only while other processes leave the CPU alone (:mod:`nas.profile.quiet`).
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import NASError, ParamError, PredictorError, ProfileError
from nas.latency.files import space_name
from nas.latency.model import LatencyModel, load_profile_model
from nas.latency.modes import MODES, default_mode
from nas.paths import user_dir
from nas.profile.machine import boot_time, host_id
from nas.profile.probe import probe_archs, probe_pool, spread_part
from nas.reporting import Reporter, or_silent
from nas.space import Arch, SearchSpace

K_DEFAULT = 20  # archs measured to calibrate (besides the probe's)
DRIFT = 0.05  # a re-probe this far from the cached probe (median ratio) recalibrates
LOO_HINT = 0.9  # a calibration with fewer of its archs within ±10% (leave-one-out) grows, then points to `nas profile`
GROW = 1  # times a calibration that holds on too few archs measures k more
RETIME_OVER = 0.15  # an arch measured this much slower than its leave-one-out prediction is timed again
SCALE_TOL = 0.05  # the probe's median ratio this far from 1 means the profile is another host's
ARCH_TOL_MEASURED = 0.10  # one reference arch this far from the profile's own probe timing
ARCH_TOL_PREDICTED = 0.15  # ... from the profile's prediction (which has its own error)
BUSY_WAIT_S = 120.0  # how long calibration waits for a quiet machine before it gives up
KEEP_BUILT = 64  # deploy models a verification keeps for timing again (its front archs, under the budget: small)

Measure = Callable[[Sequence[Arch]], Sequence[float]]
"""Times archs on this host: archs -> ms (the default is the profile's protocol, quiet-guarded)."""


# ----------------------------------------------------------------------------------------- the host


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _epoch(iso: str | None) -> float:
    try:
        return _dt.datetime.fromisoformat(str(iso)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def is_this_machine(device: str) -> bool:
    """Whether ``device`` is a measured CPU profile of this machine's CPU model (so it can be measured here)."""
    from nas.profile.machine import cpu_model
    from nas.profile.store import Profile

    try:
        prof = Profile.load(device)
    except NASError:
        return False
    m = prof.machine
    return prof.kind == "measured" and m.get("backend") == "torch-cpu" and m.get("cpu_model") == cpu_model()


# ----------------------------------------------------------------------------------------- the probe


@dataclass
class Probe:
    """The probe's timings on this host beside the profile's (``reference``: ``profile`` timings or
    ``predicted`` ones)."""

    space: str
    arch_ids: list[str]
    measured_ms: np.ndarray
    reference_ms: np.ndarray
    reference: str
    seconds: float
    when: str = field(default_factory=_now)

    @property
    def ratios(self) -> np.ndarray:
        return self.measured_ms / self.reference_ms

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.ratios))

    @property
    def worst(self) -> tuple[str, float]:
        """The reference arch farthest from the profile and its ratio."""
        i = int(np.argmax(np.abs(np.log(self.ratios))))
        return self.arch_ids[i], float(self.ratios[i])

    def disagrees(self) -> bool:
        """Whether this host is not the profile's: median off by > 5%, or one arch off by more than its tolerance."""
        tol = ARCH_TOL_MEASURED if self.reference == "profile" else ARCH_TOL_PREDICTED
        return (abs(self.median_ratio - 1) > SCALE_TOL
                or bool(np.any(np.abs(np.log(self.ratios)) > math.log1p(tol))))

    def describe(self, device: str) -> str:
        wid, wr = self.worst
        return (f"probe ({len(self.arch_ids)} archs, {self.seconds:.0f} s): this host measures {self.median_ratio:.2f}x "
                f"{device}'s {'timings' if self.reference == 'profile' else 'predictions'} (median; farthest arch "
                f"{wid} {wr:.2f}x)")


def run_probe(space: SearchSpace, model: LatencyModel, measure: Measure,
              reference: dict[str, float] | None = None, archs: Sequence[Arch] | None = None) -> Probe:
    """Time the probe archs here; compare with ``reference`` (arch id -> ms measured by the profile's host)
    where it covers them, else with ``model``'s predictions."""
    archs = list(archs) if archs is not None else probe_archs(space)
    t0 = time.perf_counter()
    ms = np.asarray(list(measure(archs)), dtype=float)
    secs = time.perf_counter() - t0
    ids = [a.id for a in archs]
    if reference and all(i in reference for i in ids):
        ref, kind = np.array([reference[i] for i in ids], dtype=float), "profile"
    else:
        ref, kind = np.asarray(model.predict(archs), dtype=float), "predicted"
    return Probe(space.name, ids, ms, ref, kind, secs)


# ----------------------------------------------------------------------------------------- measuring


def quiet_measure(device: str, reporter: Reporter | None = None, wait_s: float = BUSY_WAIT_S) -> Measure:
    """Archs -> ms on this host under ``device``'s end-to-end protocol, measured only while the machine is
    quiet (waits up to ``wait_s`` for other processes to calm down, saying so). The function also carries
    ``full`` (archs -> :class:`~nas.profile.timer.Measurement`) and ``speed`` (the command's speed sentinel)."""
    from collections import OrderedDict

    from nas.profile.quiet import QuietGuard, measure_quietly
    from nas.profile.run import deploy_model, measure_arch
    from nas.profile.store import Profile
    from nas.profile.timer import Protocol, Timer, speed_check

    rep = or_silent(reporter)
    timer = Timer(Protocol.from_dict(Profile.load(device).meta.get("protocol") or {}))
    speed = speed_check(timer.protocol)  # one reference for every measurement of this command

    built: OrderedDict[str, Any] = OrderedDict()  # deploy models of the archs timed last (timed again: not rebuilt)

    def model_of(arch: Arch, keep: bool) -> Any:
        if not keep:
            return built[arch.id] if arch.id in built else deploy_model(arch)
        if arch.id not in built:
            built[arch.id] = deploy_model(arch)
            while len(built) > KEEP_BUILT:
                built.popitem(last=False)
        built.move_to_end(arch.id)
        return built[arch.id]

    def full(archs: Sequence[Arch], slow_windows: bool = False, keep: bool = False) -> list[Any]:
        # slow_windows: keep what was timed while the host itself ran slow (not other processes); keep: keep the
        # built models to time them again (the verification times each front arch 3-7 times)
        archs = list(archs)
        guard = QuietGuard(max_wait_s=wait_s, speed=speed, judge_speed=not slow_windows)
        got: dict[int, Any] = {}
        with rep.progress(len(archs), f"measuring {len(archs)} archs on this host") as bar:
            for i, m in measure_quietly(range(len(archs)), lambda i: measure_arch(archs[i], timer, model_of(archs[i], keep)),
                                        guard, log=rep.log):
                got[i] = m
                bar.advance()
        return [got[i] for i in range(len(archs))]

    def measure(archs: Sequence[Arch]) -> list[float]:
        return [m.median_ms for m in full(archs)]

    measure.full = full  # type: ignore[attr-defined]  # the whole Measurement (p90 too), for the verification
    measure.speed = speed  # type: ignore[attr-defined]  # the host's speed over this command (SpeedCheck.spread)
    return measure


# ----------------------------------------------------------------------------------------- the cache


def local_name(device: str) -> str:
    """The local profile that holds ``device``'s calibration on this host: ``<device>-host-<id>``, or, where
    ``device`` is another CPU model's profile, named after this CPU (``cpu-<this cpu>-<t>t-b<b>-host-<id>``)."""
    from nas.profile.machine import cpu_model
    from nas.profile.store import Profile, default_device_name

    try:
        m = Profile.load(device).machine
    except NASError:
        return f"{device}-host-{host_id()}"
    if m.get("cpu_model") in (None, cpu_model()) or m.get("backend") != "torch-cpu":
        return f"{device}-host-{host_id()}"
    return f"{default_device_name(cpu_model(), int(m.get('threads') or 1), int(m.get('batch') or 1))}-host-{host_id()}"


def _local_path(device: str) -> Path:
    return user_dir("hardware_profiles") / local_name(device)


def _open_local(device: str):
    from nas.profile.machine import machine_info
    from nas.profile.store import Profile
    from nas.profile.timer import Protocol

    path = _local_path(device)
    if Profile.exists(path):
        prof = Profile.load(path)
        if prof.meta.get("base_device") == device:
            return prof
    base = Profile.load(device)
    machine = machine_info(Protocol.from_dict(base.meta.get("protocol") or {}))
    return Profile.create(path, local_name(device), kind="calibrated", machine=machine,
                          protocol=base.meta.get("protocol"), base_device=device, host=host_id(),
                          description=f"{device} calibrated on host {host_id()} (made by nas; safe to delete)")


def _cached(device: str, space: SearchSpace) -> tuple[dict[str, Any], LatencyModel] | None:
    """The cached calibration of ``device`` for ``space`` on this host, if it was made since the last boot."""
    from nas.latency.files import predictor_name
    from nas.profile.store import Profile

    path = _local_path(device)
    if not Profile.exists(path):
        return None
    try:
        prof = Profile.load(path)
        entry = (prof.meta.get("calibration") or {}).get(space.name)
        if not entry or prof.meta.get("base_device") != device:
            return None
        boot = boot_time()
        if boot is not None and _epoch(entry.get("when")) < boot:
            return None
        pred = user_dir("predictors") / predictor_name(local_name(device), space.name)
        model = LatencyModel.load(pred) if entry.get("calibrated") else None
    except NASError:
        return None
    return entry, model


def cached_model(device: str, space: SearchSpace) -> LatencyModel | None:
    """This host's cached calibration of ``device`` for ``space`` (made since the last boot), or None (none cached,
    or the probe found this host matches the profile, so the profile itself is the model). Measures nothing."""
    got = _cached(device, space)
    return got[1] if got is not None else None


# ----------------------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """What :func:`host_latency` did: the model to predict with and one line saying how it was obtained."""

    model: LatencyModel
    line: str
    mode: str
    calibrated: bool = False
    probe: Probe | None = None
    measured: dict[str, float] = field(default_factory=dict)  # arch id -> ms measured here (probe + calibration)
    measure: Measure | None = None  # times archs on this host (None: this device is not this machine)
    seconds: float = 0.0
    local: str | None = None  # the local profile's name

    def to_dict(self) -> dict[str, Any]:
        p = self.probe
        return {"mode": self.mode, "calibrated": self.calibrated, "line": self.line, "seconds": round(self.seconds, 1),
                "local_profile": self.local,
                "probe": None if p is None else {"archs": len(p.arch_ids), "median_ratio": p.median_ratio,
                                                 "reference": p.reference, "seconds": round(p.seconds, 1)}}


def latency_spread(model: LatencyModel, pool: Sequence[Arch], k: int) -> list[Arch]:
    """``k`` archs of ``pool`` evenly spaced in log predicted latency (the space's latency range)."""
    pred = np.log(np.maximum(model.predict(list(pool)), 1e-9))
    order = np.argsort(pred, kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(pool) - 1, min(k, len(pool)))).astype(int))
    return [pool[order[i]] for i in picks]


def _fit_inputs(model: LatencyModel, archs: Sequence[Arch]) -> tuple[list, Any]:
    """What a host correction is fitted on: the archs' keys under ``model``'s features, and the extra features
    its table predictor takes (None where it takes none)."""
    X = model.featurise(list(archs))
    return X, (model.features.extra_matrix(X) if hasattr(model.features, "extra_matrix") else None)


def fit_host(base: LatencyModel, archs: Sequence[Arch], ms: Sequence[float], device: str) -> LatencyModel:
    """The shipped ``base`` corrected to this host from ``archs`` measured here (``ms``)."""
    from nas.predictors.host import HostCalibrated

    X, extra = _fit_inputs(base, archs)
    # per-block-type terms, or also per kernel size (another CPU model runs large depthwise kernels at another
    # relative speed): the one with the smaller leave-one-out error on these archs
    fits = [HostCalibrated(terms=t).fit(X, np.asarray(ms, dtype=float), base=base.estimator, extra=extra)
            for t in HostCalibrated.TERMS]
    est = min(fits, key=lambda e: e.metadata["loo"]["mape"])
    loo = est.metadata["loo"]
    est.metadata.update({
        "device": local_name(device), "kind_label": base.kind, "created": _now(),  # not the base's date
        "calibration": {"base_device": device, "host": host_id(), "archs": len(archs), "when": _now(),
                        "loo_mape": loo["mape"], "loo_within_10": loo["within_10"], "terms": est.terms,
                        "base_mape_here": est.metadata["base_on_host"]["mape"]},
        "held_out": None,
    })
    return LatencyModel(est, base.space)


def host_loo_predictions(model: LatencyModel, archs: Sequence[Arch], ms: Sequence[float]) -> np.ndarray:
    """Leave-one-out predictions (ms) of ``model``'s host correction on ``archs`` measured here: refitted on them
    with the same terms and base, each arch predicted by the fit without it (closed form, one fit)."""
    from nas.predictors.host import HostCalibrated

    est = model.estimator
    if not isinstance(est, HostCalibrated) or est.base_ is None:
        raise ParamError("split", ": loo (leave-one-out) is for a host-calibrated predictor (one that `nas search` "
                                  "cached for this host); use holdout for a measured profile's")
    X, extra = _fit_inputs(model, archs)
    y = np.asarray(ms, dtype=float)
    refit = HostCalibrated(terms=est.terms).fit(X, y, base=est.base_, extra=extra)
    return y / np.exp(refit.loo_log_ratio_)  # per arch, in the order given (residuals_ are sorted)


def time_again(measure: Measure, archs: Sequence[Arch], first: Sequence[float]) -> list[float]:
    """The faster of ``first`` and a second timing of ``archs``: a shared host slows a single timing by up to 2x for
    a moment and never speeds one up, so the faster of two is the better one."""
    return [min(float(a), float(b)) for a, b in zip(first, measure(archs))]


def calibrate(base: LatencyModel, device: str, measure: Measure, probe: Probe | None = None,
              k: int = K_DEFAULT, extra: dict[str, float] | None = None,
              reporter: Reporter | None = None) -> tuple[LatencyModel, dict[str, float]]:
    """Measure ``k`` archs spread over the space's latency range (besides the probe's and ``extra``'s, which
    count too), fit the host correction and cache it; returns (model, arch id -> measured ms). A correction
    that holds on under :data:`LOO_HINT` of its archs (leave-one-out) gets ``k`` more, up to :data:`GROW` times:
    from another CPU model's profile, more archs is what helps (bench/README.md), not more terms. An arch measured
    more than :data:`RETIME_OVER` slower than the others predict it is timed once more and keeps the faster timing:
    a shared host slows single timings by up to 2x for a moment, and one such timing bends the whole correction."""
    space = base.space
    pool = probe_pool(space)
    measured: dict[str, float] = dict(extra or {})
    if probe is not None:
        measured.update(zip(probe.arch_ids, probe.measured_ms.tolist()))
    retimed = 0
    # more archs help a correction of another CPU model's table; on this CPU's own profile a loose fit is the host's
    # noise, which more archs do not remove (they only cost time: bench/README.md)
    grow = 0 if is_this_machine(device) else GROW
    for round_ in range(grow + 1):
        # first k spread over the whole pool (the set bench/host_terms.py rebuilds), then k over what is left
        spread = latency_spread(base, pool if round_ == 0 else [a for a in pool if a.id not in measured], k)
        todo = [a for a in spread if a.id not in measured]
        more = f" ({len(measured)} so far did not hold well enough)" if round_ else ""
        or_silent(reporter).log(f"calibrating {space.name} on this host: {len(todo)} archs spread over its latency "
                                f"range{more}")
        measured.update((a.id, float(ms)) for a, ms in zip(todo, measure(todo)))  # one quiet-guarded run, one bar
        archs = _archs_of(space, measured, pool)
        model = fit_host(base, archs, [measured[a.id] for a in archs], device)
        slow = [a for a, r in zip(archs, model.estimator.loo_log_ratio_) if r > math.log1p(RETIME_OVER)]
        if slow:  # far slower than the others predict: a shared host's slow moment, perhaps
            measured.update(zip([a.id for a in slow], time_again(measure, slow, [measured[a.id] for a in slow])))
            model = fit_host(base, archs, [measured[a.id] for a in archs], device)
        retimed += len(slow)
        if model.metadata["calibration"]["loo_within_10"] >= LOO_HINT:
            break
    model.metadata["calibration"]["retimed"] = retimed
    _store(device, space, archs, measured, probe, model, fresh=True)
    return model, measured


def _archs_of(space: SearchSpace, measured: dict[str, float], known: Sequence[Arch] = ()) -> list[Arch]:
    """The archs of ``measured`` (ids), from ``known`` or else read back from this host's local profiles."""
    by_id = {a.id: a for a in known}
    if any(i not in by_id for i in measured):
        from nas.profile.store import Profile

        for path in user_dir("hardware_profiles").glob(f"*-host-{host_id()}"):
            if Profile.exists(path):
                for a in Profile.load(path).archs_of(space)[0]:
                    by_id.setdefault(a.id, a)
    return [by_id[i] for i in measured if i in by_id]


def _measured_here(device: str, space: SearchSpace) -> dict[str, float]:
    """Arch id -> ms of every arch of ``space`` in the local profile (this host, since its last calibration)."""
    from nas.profile.store import Profile

    rows = Profile.load(_local_path(device)).arch_rows(space.name)
    return dict(zip(rows["arch_id"], rows["median_ms"].astype(float)))


def _store(device: str, space: SearchSpace, archs: Sequence[Arch], measured: dict[str, float],
           probe: Probe | None, model: LatencyModel | None, split: str = "calib", fresh: bool = False) -> None:
    """Write the measured archs, the probe and the fitted predictor into the local profile (atomic files).
    ``fresh``: a new calibration (after a reboot or a drift) replaces every arch row of the space, so what a later
    refit or verification reads from the profile is this host as it runs now."""
    from nas.latency.files import predictor_name

    prof = _open_local(device)
    if fresh:
        prof.remove_archs(space.name)
    done = set(prof.arch_rows(space.name)["arch_id"]) if len(prof.archs) else set()
    prof.add_archs([{"space": space.name, "arch_id": a.id, "arch": a.key, "split": split,
                     "median_ms": measured[a.id], "p25_ms": measured[a.id], "p75_ms": measured[a.id], "stable": True}
                    for a in archs if a.id not in done])
    cal = prof.meta.setdefault("calibration", {})
    entry = cal.get(space.name) or {}
    if probe is not None:
        entry["probe"] = {i: float(v) for i, v in zip(probe.arch_ids, probe.measured_ms)}
        entry["probe_vs_profile"] = {"median_ratio": probe.median_ratio, "reference": probe.reference}
    entry["when"] = _now()
    if model is not None:
        entry["calibrated"] = True
        entry.update({k: v for k, v in model.metadata["calibration"].items() if k != "when"})
        model.save(user_dir("predictors") / predictor_name(local_name(device), space.name))
    cal[space.name] = entry
    prof.touch()
    prof.flush()


# ----------------------------------------------------------------------------------------- the entry point


def host_latency(device: str, space: SearchSpace, mode: str | None = None, measure: Measure | None = None,
                 reporter: Reporter | None = None, k: int = K_DEFAULT, this_host: bool = False,
                 wait_s: float = BUSY_WAIT_S) -> Calibration:
    """The latency model to use for ``device`` on this host (see the module docstring for ``mode``).

    ``measure`` times archs here (default: :func:`quiet_measure`; tests pass a fake). ``this_host``: the
    latency wanted is this machine's even though ``device`` is another CPU's profile (the tool chose it as
    the starting point because none of this CPU exists); a device the user names for another CPU is left
    alone. A machine that stays busy (``wait_s`` at a time) is not measured: the shipped model is used and a
    warning says so."""
    mode = mode or default_mode()
    if mode not in MODES:
        raise ParamError("calibrate", f"'{mode}' unknown; choose from {', '.join(MODES)}")
    rep = or_silent(reporter)
    base = load_latency_model(device, space)
    if mode == "off":
        return Calibration(base, f"latency: {base.provenance} (not checked on this host: --calibrate off)", mode)
    if measure is None and not (this_host or is_this_machine(device)):
        return Calibration(base, f"latency: {base.provenance} (device {device} is not this machine: nothing "
                                 "measured here)", mode)
    measure = measure or quiet_measure(device, rep, wait_s)
    t0 = time.perf_counter()
    try:
        cal = _host_latency(base, device, space, mode, measure, rep, k)
    except ProfileError as e:  # the machine stayed busy: no figures from a loaded machine
        rep.warn(f"latency not checked on this host: {e}")
        return Calibration(base, f"latency: {base.provenance} (not calibrated: the machine stayed busy)", mode,
                           measure=measure)
    cal.seconds = time.perf_counter() - t0
    cal.measure = measure
    cal.local = local_name(device)
    rep.log(cal.line)
    return cal


def _host_latency(base: LatencyModel, device: str, space: SearchSpace, mode: str, measure: Measure, rep: Reporter,
                  k: int) -> Calibration:
    cached = _cached(device, space) if mode == "auto" else None
    if cached is not None:
        entry, model = cached
        stored = entry.get("probe") or {}
        spread = [a for a in spread_part(space) if a.id in stored]
        if spread:
            re = run_probe(space, base, measure, reference=stored, archs=spread)
            if abs(re.median_ratio - 1) <= DRIFT:
                use = model or base
                how = (f"{use.provenance} (cached {entry.get('when')}; re-probe within "
                       f"{100 * abs(re.median_ratio - 1):.1f}%)")
                # what this host measured since (calibration, verified winners) still holds: a search reuses it
                return Calibration(use, f"latency: {how}", mode, calibrated=model is not None, probe=re,
                                   measured=_measured_here(device, space))
            rep.log(f"re-probe drifted {100 * (re.median_ratio - 1):+.1f}% from the cached probe: calibrating again")
            mode = "always"
    probe = run_probe(space, base, measure, reference=_profile_probe(device, space))
    if mode == "never":
        verdict = "this host differs from the profile" if probe.disagrees() else "this host matches the profile"
        return Calibration(base, f"latency: {base.provenance}; {probe.describe(device)}: {verdict}; --calibrate "
                                 "never: predictions are not corrected", mode, probe=probe)
    if mode == "auto" and not probe.disagrees():
        _store(device, space, [], {}, probe, None)
        return Calibration(base, f"latency: {base.provenance}; {probe.describe(device)}: this host matches it",
                           mode, probe=probe)
    rep.log(f"{probe.describe(device)}: calibrating the profile to this host")
    model, measured = calibrate(base, device, measure, probe, k, reporter=rep)
    c = model.metadata["calibration"]
    again = f", {c['retimed']} of them timed twice for running far slower than predicted" if c.get("retimed") else ""
    line = (f"latency: {probe.describe(device)}; calibrated on {c['archs']} archs measured here{again} "
            f"(leave-one-out MAPE {100 * c['loo_mape']:.1f}%, {100 * c['loo_within_10']:.0f}% within ±10%), cached as "
            f"{local_name(device)}")
    if c["loo_within_10"] < LOO_HINT:  # e.g. another CPU model's profile: a few terms cannot carry it all
        line += (f"; for predictions that hold on more archs, measure this machine's own profile "
                 f"(nas profile --space {space.name})")
    return Calibration(model, line, mode, calibrated=True, probe=probe, measured=measured)


def _profile_probe(device: str, space: SearchSpace) -> dict[str, float] | None:
    """The probe timings the profile's own host stored (``probe`` in its space entry), if any."""
    from nas.profile.store import Profile

    try:
        entry = Profile.load(device).space_meta(space.name)
    except NASError:
        return None
    probe = entry.get("probe") if isinstance(entry, dict) else None
    return {str(k): float(v) for k, v in probe.items()} if isinstance(probe, dict) else None


def record_measurements(device: str, space: SearchSpace, archs: Sequence[Arch], ms: Sequence[float],
                        split: str = "verify") -> None:
    """Add archs measured on this host (e.g. a search's verified winners) to the local profile."""
    _store(device, space, list(archs), {a.id: float(m) for a, m in zip(archs, ms)}, None, None, split=split)


def refit(device: str, base_device: LatencyModel, space: SearchSpace, known: Sequence[Arch] = ()) -> LatencyModel:
    """Refit the host correction on every arch measured here for ``space`` (calibration, probe, verification)."""
    measured = _measured_here(device, space)
    archs = _archs_of(space, measured, known)
    model = fit_host(base_device, archs, [measured[a.id] for a in archs], device)
    _store(device, space, [], {}, None, model)
    return model


def load_latency_model(device: str | None = None, space: str | SearchSpace = "hybrid") -> LatencyModel:
    """The fitted predictor ``predictors/<device>-<space>.json``. ``device=None``: this machine's, i.e. its
    profile's calibration to this host where ``nas search`` (or :func:`calibrate_latency`) cached one since
    the last boot, else the shipped profile of this CPU (or the other CPU's profile a calibration would start from),
    uncorrected. Nothing is measured here. ``device`` may also be a JSON path."""
    if device is not None:
        return load_profile_model(device, space)
    from nas.space import load_space

    sp = load_space(space) if isinstance(space, str) else space
    found = host_device(sp)
    if found is None:
        raise PredictorError(
            "no shipped device profile matches this machine's CPU; name a device (nas profile list) "
            "or measure one: nas profile --space " + space_name(space)
        )
    here = cached_model(found, sp)
    return here if here is not None else load_profile_model(found, sp)


def latency_model_here(device: str | None, space: SearchSpace, mode: str | None = None,
                       reporter: Reporter | None = None) -> LatencyModel:
    """The latency model a command predicts with: a predictor file as given, else ``device``'s profile (default:
    this machine's shipped one) checked against this host by :func:`host_latency`."""
    if device is not None and Path(device).suffix == ".json":
        return load_latency_model(device, space)
    this_host = device is None
    device = device or host_device(space, mode, reporter)
    if device is None:
        return load_latency_model(None, space)  # says there is no profile of this machine and what to do
    return host_latency(device, space, mode, reporter=reporter, this_host=this_host).model


def calibrate_latency(space: str | SearchSpace = "hybrid", device: str | None = None, mode: str | None = None,
                      reporter: Reporter | None = None) -> LatencyModel:
    """The latency model that holds on this host, calibrating it now when needed: what ``nas search`` predicts with
    (probe, calibration when this host differs, cache; ``mode`` as ``--calibrate``). Takes ~10 s with a fresh cache,
    about a minute when it calibrates; measure on a quiet machine."""
    from nas.space import load_space

    return latency_model_here(device, load_space(space) if isinstance(space, str) else space, mode, reporter)


def host_device(space: SearchSpace, mode: str | None = None, reporter: Reporter | None = None) -> str | None:
    """The profile this machine's latency starts from: this CPU's own measured profile of ``space``; else (saying so) another
    CPU's torch-cpu profile of ``space``, which :func:`host_latency` calibrates to this host unless ``mode`` is
    never/off; else None."""
    from nas.profile.machine import cpu_model
    from nas.profile.store import Profile, default_device, other_cpu_profile

    dev = default_device(space=space.name)
    if dev is not None:
        return dev
    dev = other_cpu_profile(space.name)
    if dev is None:
        return None
    rep, other = or_silent(reporter), Profile.load(dev).machine.get("cpu_model")
    own = default_device()  # this CPU's profile of other spaces, if any
    none = (f"this CPU's profile {own} has no {space.name} measurements" if own
            else f"no profile of this CPU ({cpu_model()})")
    if (mode or default_mode()) in ("never", "off"):
        rep.warn(f"{none}; latencies are predicted for {dev} ({other}) and not "
                 f"corrected (--calibrate {mode or default_mode()}). Measure this machine with `nas profile --space "
                 f"{space.name}` for figures that hold here.")
    else:
        rep.log(f"{none}: the {dev} profile ({other}) is the starting point, calibrated to this host")
    return dev
