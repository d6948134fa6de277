"""The profiling job: measure a space's block table and end-to-end archs on this machine.

For each space, :func:`run_profile`

1. enumerates every distinct unit the space can produce (:func:`nas.profile.units.space_units`) at
   the chosen resolutions and times each one's deploy-form module under the *block* protocol (cheap:
   a few repeats; there are thousands of units);
2. draws a calibration set and a disjoint held-out set of random archs (seeded) and times each whole
   network under the full *end-to-end* protocol;
3. re-measures entries that stayed unstable (interquartile spread above the protocol's limit) once
   more at the end of each phase, keeping the tighter measurement.

Results are appended to ``hardware_profiles/<NAME>/`` and flushed atomically every few seconds, so a
killed or ``max_minutes``-limited run loses at most the chunk in flight; a re-run with the same
settings skips every key and arch already measured. The machine (``machine_info``) and both
protocols are stored in profile.yaml; a re-run under a different protocol or on another machine is
refused (profile another device name instead).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from nas.errors import ParamError, ProfileError
from nas.profile.machine import machine_info
from nas.profile.quiet import DEFAULT_LIMIT, QuietGuard, measure_quietly
from nas.profile.sampling import CALIB_SPREADS, calib_holdout, sample_archs, spread_by_macs  # noqa: F401
from nas.profile.settings import ARCH_PROTOCOL, BLOCK_PROTOCOL, ProfileSettings  # noqa: F401  (run's API)
from nas.profile.store import Profile, check_name, default_device_name, space_file_ref
from nas.profile.timer import Measurement, Protocol, Timer, speed_check
from nas.profile.units import Unit, space_units
from nas.reporting import Reporter, or_silent
from nas.space import Arch, SearchSpace, load_space

DEPLOY = "fused"  # modules are measured in deploy form (BN folded, re-parameterised branches merged)
MACHINE_MATCH = ("cpu_model", "threads", "backend", "batch", "dtype", "gpu_name")

@dataclass
class SpaceReport:
    """What one run did for one space."""

    space: str
    blocks_total: int = 0
    blocks_done: int = 0
    blocks_new: int = 0
    archs_total: int = 0
    archs_done: int = 0
    archs_new: int = 0
    rechecked: int = 0
    unstable: int = 0

    @property
    def complete(self) -> bool:
        return self.blocks_done >= self.blocks_total and self.archs_done >= self.archs_total

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "complete": self.complete}


@dataclass
class RunReport:
    """What a profiling run did: per space counts, elapsed time, whether it stopped early."""

    device: str
    path: Path
    spaces: list[SpaceReport]
    elapsed_s: float
    stopped: bool
    discarded: int = 0  # measurements thrown away because other processes loaded the CPU

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.spaces)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "path": str(self.path),
            "elapsed_s": self.elapsed_s,
            "stopped_early": self.stopped,
            "discarded_busy": self.discarded,
            "complete": self.complete,
            "spaces": [s.to_dict() for s in self.spaces],
        }


class _Deadline:
    def __init__(self, max_minutes: float | None):
        self.t0 = time.monotonic()
        self.end = None if max_minutes is None else self.t0 + 60.0 * float(max_minutes)

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


class _Flusher:
    """Flush the profile every ``every`` rows or ``seconds`` seconds, whichever comes first."""

    def __init__(self, profile: Profile, seconds: float, every: int):
        self.profile, self.seconds, self.every = profile, seconds, every
        self.n = 0
        self.last = time.monotonic()

    def tick(self) -> None:
        self.n += 1
        if self.n >= self.every or time.monotonic() - self.last >= self.seconds:
            self.now()

    def now(self) -> None:
        self.profile.flush()
        self.n = 0
        self.last = time.monotonic()


# ------------------------------------------------------------------------------------- measuring


def _input_shape(arch: Arch) -> tuple[int, ...]:
    return (arch.space.spec.in_channels, *((arch.resolution,) * arch.space.dims))


def deploy_model(arch: Arch) -> Any:
    """The deploy form of ``arch`` that is timed: built without drop-path, its norms fused into the convs."""
    from nas.models.build import build

    return build(arch, drop_path=0.0).fuse()


def measure_arch(arch: Arch, timer: Timer, model: Any = None) -> Measurement:
    """Time the deploy form of ``arch`` end to end (``model``: that deploy form built already, to time it again)."""
    return timer.measure(model if model is not None else deploy_model(arch), _input_shape(arch))


def measure_unit(unit: Unit, timer: Timer) -> Measurement:
    """Time one unit's deploy-form module at its input shape."""
    return timer.measure(unit.build(), unit.input_shape)


def _block_row(key: str, m: Measurement, attempts_before: int = 0) -> dict[str, Any]:
    return {
        "key": key,
        "median_ms": m.median_ms,
        "p25_ms": m.p25_ms,
        "p75_ms": m.p75_ms,
        "n": m.n,
        "stable": m.stable,
        "attempts": attempts_before + m.attempts,
    }


def _arch_row(arch: Arch, split: str, m: Measurement) -> dict[str, Any]:
    return {
        "space": arch.space.name,
        "arch_id": arch.id,
        "arch": arch.key,
        "split": split,
        "median_ms": m.median_ms,
        "p25_ms": m.p25_ms,
        "p75_ms": m.p75_ms,
        "stable": m.stable,
    }


# ----------------------------------------------------------------------------------- open/check


def _compare(meta: dict[str, Any], machine: dict[str, Any], protocols: dict[str, dict]) -> list[str]:
    diffs = []
    old = meta.get("machine") or {}
    for k in MACHINE_MATCH:
        if old.get(k) != machine.get(k):
            diffs.append(f"machine.{k}: {old.get(k)!r} in the profile, {machine.get(k)!r} now")
    for name, now in protocols.items():
        before = meta.get(name)
        if before != now:
            keys = sorted(set(before or {}) | set(now))
            changed = [k for k in keys if (before or {}).get(k) != now.get(k)]
            diffs.append(f"{name}: {', '.join(changed)} differ")
    return diffs


def open_profile(
    path: Path, name: str, protocol: Protocol, block_protocol: Protocol, description: str = ""
) -> Profile:
    """Load the profile at ``path`` for resuming (checking machine and protocols), or create it."""
    machine = machine_info(protocol)
    protos = {"protocol": protocol.to_dict(), "block_protocol": block_protocol.to_dict()}
    if Profile.exists(path):
        prof = Profile.load(path)
        if prof.kind != "measured":
            raise ProfileError(
                f"{path}: an imported profile cannot be measured into; pick another device name"
            )
        diffs = _compare(prof.meta, machine, protos)
        if diffs:
            raise ProfileError(
                f"{path}: measured with other settings ({'; '.join(diffs)}); "
                f"resume with the same settings or pick another device name"
            )
        prof.meta.setdefault("runs", []).append({"started": machine["timestamp_utc"]})
        prof.touch()
        return prof
    return Profile.create(
        path,
        name,
        kind="measured",
        description=description
        or f"measured with nas profile on {machine.get('gpu_name') or machine['cpu_model']}",
        machine=machine,
        protocol=protos["protocol"],
        block_protocol=protos["block_protocol"],
        deploy=DEPLOY,
        runs=[{"started": machine["timestamp_utc"]}],
    )


def device_name(settings: ProfileSettings) -> str:
    """The profile name: ``settings.device`` or the default slug of this machine and settings."""
    if settings.device:
        return check_name(settings.device)
    arch_p, _ = settings.protocols()
    info = machine_info(arch_p)
    model = info.get("gpu_name") if settings.backend == "torch-cuda" else info["cpu_model"]
    return default_device_name(str(model), settings.threads, settings.batch, settings.backend)


def profiles_root(root: Path | None = None) -> Path:
    from nas.paths import user_dir

    return Path(root) if root is not None else user_dir("hardware_profiles")


# ---------------------------------------------------------------------------------------- the job


def _guard(other_load_limit: float | None, protocol: Protocol) -> QuietGuard:
    """The quiet guard of a profiling job: the load meter and the speed sentinel, both off with the limit off."""
    return QuietGuard(other_load_limit, speed=speed_check(protocol) if other_load_limit is not None else None)


def run_profile(settings: ProfileSettings, reporter: Reporter | None = None) -> RunReport:
    """Profile every space of ``settings`` (resuming what exists); see the module docstring.

    Progress bars and log lines go to ``reporter`` (silent by default)."""
    out = or_silent(reporter)
    progress, log = out.progress, out.log
    arch_p, block_p = settings.protocols()
    name = device_name(settings)
    path = profiles_root(settings.root) / name
    deadline = _Deadline(settings.max_minutes)
    prof = open_profile(path, name, arch_p, block_p, settings.description)
    flusher = _Flusher(prof, settings.flush_s, settings.flush_every)
    block_timer, arch_timer = Timer(block_p), Timer(arch_p)
    guard = _guard(settings.other_load_limit, arch_p)
    prof.meta["quiet_guard"] = guard.to_dict()
    reports: list[SpaceReport] = []
    stopped = False
    with contextlib.ExitStack() as stack:
        stack.callback(flusher.now)
        for sp_name in settings.spaces:
            space = load_space(sp_name)
            rep = SpaceReport(space.name)
            reports.append(rep)
            if stopped:
                _plan_counts(prof, space, settings, rep)
                continue
            stopped = _profile_space(
                prof, space, settings, block_timer, arch_timer, deadline, flusher, rep, progress, log,
                guard,
            )
        if guard.discarded:
            log(f"{guard.discarded} measurement(s) were taken while other processes loaded the CPU; "
                f"discarded and measured again (waited {guard.waited_s:.0f} s for quiet)")
    return RunReport(name, path, reports, deadline.elapsed(), stopped, guard.discarded)


def _resolutions(space: SearchSpace, settings: ProfileSettings) -> list[int]:
    if not settings.resolutions:
        return list(space.spec.resolutions)
    res = [r for r in settings.resolutions if r in space.spec.resolutions]
    if not res:
        raise ParamError(
            "resolutions", f"{list(settings.resolutions)}: none is a resolution of space {space.name} "
            f"({list(space.spec.resolutions)})"
        )
    return res


def _plan(prof: Profile, space: SearchSpace, settings: ProfileSettings):
    res = _resolutions(space, settings)
    units = space_units(space, res)
    calib, holdout = calib_holdout(space, settings.n_calib, settings.n_holdout, settings.seed, res,
                                   settings.calib_spread)
    entry = prof.space_meta(space.name)
    old_res = entry.get("resolutions")
    if old_res is not None and list(old_res) != res:
        raise ProfileError(
            f"{prof.path}: space {space.name} was profiled at resolutions {list(old_res)}, now {res}; "
            f"resume with the same resolutions or pick another device name"
        )
    for key, now in (
        ("seed", settings.seed),
        ("n_calib", settings.n_calib),
        ("n_holdout", settings.n_holdout),
        ("calib_spread", settings.calib_spread),
    ):
        if key == "calib_spread" and entry.get("n_calib") is not None and entry.get(key) is None:
            entry[key] = "uniform"  # profiles made before the setting existed drew uniform calibration archs
        if entry.get(key) is not None and entry[key] != now:
            raise ProfileError(
                f"{prof.path}: space {space.name} was profiled with {key} {entry[key]}, now {now}; "
                f"resume with the same settings or pick another device name"
            )
    from nas.io import sha256_file

    entry.update(
        {
            "space_file": space_file_ref(space),
            "space_sha256": sha256_file(space.source_path)[:16] if space.source_path else None,
            "resolutions": res,
            "seed": settings.seed,
            "n_calib": settings.n_calib,
            "n_holdout": settings.n_holdout,
            "calib_spread": settings.calib_spread,
            "blocks_total": len(units),
        }
    )
    prof.touch()
    return units, calib, holdout


def _plan_counts(prof: Profile, space: SearchSpace, settings: ProfileSettings, rep: SpaceReport) -> None:
    units, calib, holdout = _plan(prof, space, settings)
    have = prof.measured_keys()
    done = prof.measured_archs(space.name)
    rep.blocks_total, rep.blocks_done = len(units), sum(k in have for k in units)
    rep.archs_total = len(calib) + len(holdout)
    rep.archs_done = sum((a.id, "calib") in done for a in calib) + sum(
        (a.id, "holdout") in done for a in holdout
    )
    _mark(prof, space.name, rep)


def _mark(prof: Profile, space: str, rep: SpaceReport) -> None:
    entry = prof.space_meta(space)
    entry["blocks_measured"] = rep.blocks_done
    entry["complete"] = rep.complete
    prof.touch()


def _profile_space(
    prof, space, settings, block_timer, arch_timer, deadline, flusher, rep, progress, log, guard
) -> bool:
    """Measure what is missing of one space; True when the deadline stopped it."""
    units, calib, holdout = _plan(prof, space, settings)
    have = prof.measured_keys()
    todo = [u for k, u in units.items() if k not in have]
    random.Random(settings.seed).shuffle(todo)  # disturbances must not line up with unit features
    rep.blocks_total = len(units)
    rep.blocks_done = len(units) - len(todo)
    stopped = False
    if todo:
        log(f"{space.name}: {len(todo)} of {len(units)} block keys to measure")
        with progress(len(units), f"{space.name} blocks", completed=rep.blocks_done) as bar:
            done_now = 0
            for u, m in measure_quietly(
                todo, lambda u: measure_unit(u, block_timer), guard, deadline.passed, log
            ):
                prof.add_blocks([_block_row(u.key, m)])
                done_now += 1
                rep.blocks_done += 1
                rep.blocks_new += 1
                bar.advance()
                flusher.tick()
            stopped = done_now < len(todo)
        flusher.now()
    if not stopped and settings.recheck:
        stopped = _recheck_blocks(
            prof, units, block_timer, deadline, flusher, rep, progress, space.name, guard
        )
    done = prof.measured_archs(space.name)
    plan = [(a, "calib") for a in calib] + [(a, "holdout") for a in holdout]
    rep.archs_total = len(plan)
    todo_archs = [(a, s) for a, s in plan if (a.id, s) not in done]
    rep.archs_done = len(plan) - len(todo_archs)
    random.Random(settings.seed + 1).shuffle(todo_archs)  # calib and holdout interleaved
    fresh: set[tuple[str, str]] = set()
    if todo_archs and not stopped:
        log(f"{space.name}: {len(todo_archs)} of {len(plan)} end-to-end archs to measure")
        with progress(len(plan), f"{space.name} archs", completed=rep.archs_done) as bar:
            for (a, split), m in measure_quietly(
                todo_archs, lambda it: measure_arch(it[0], arch_timer), guard, deadline.passed, log
            ):
                prof.add_archs([_arch_row(a, split, m)])
                fresh.add((a.id, split))
                rep.archs_done += 1
                rep.archs_new += 1
                bar.advance()
                flusher.tick()
            stopped = len(fresh) < len(todo_archs)
        flusher.now()
    if not stopped and settings.recheck:
        stopped = _recheck_archs(prof, space, arch_timer, deadline, flusher, rep, fresh, guard)
    if not stopped:
        stopped = _probe(prof, space, arch_timer, deadline, guard, log)
    rows = prof.arch_rows(space.name)
    blocks = prof.blocks[prof.blocks["key"].isin(list(units))]
    rep.unstable = int((~blocks["stable"]).sum() + (~rows["stable"]).sum())
    _mark(prof, space.name, rep)
    flusher.now()
    return stopped


def _probe(prof, space, timer, deadline, guard, log) -> bool:
    """Time the host probe's reference archs (nas.profile.probe) and store them in the space's entry, so a
    later user of this profile can tell whether their host is this one; True when the deadline stopped it."""
    from nas.profile.probe import probe_archs

    entry = prof.meta.setdefault("spaces", {}).setdefault(space.name, {})
    archs = [a for a in probe_archs(space) if a.id not in (entry.get("probe") or {})]
    if not archs:
        return False
    log(f"{space.name}: timing the {len(archs)} archs of the host probe")
    got = dict(measure_quietly(archs, lambda a: measure_arch(a, timer).median_ms, guard, deadline.passed, log))
    entry["probe"] = {**(entry.get("probe") or {}), **{a.id: float(ms) for a, ms in got.items()}}
    prof.touch()
    return len(got) < len(archs)


def _recheck_blocks(prof, units, timer, deadline, flusher, rep, progress, space_name, guard) -> bool:
    """Re-measure unstable block entries once (attempts <= 1 + protocol.remeasure: not yet rechecked)."""
    b = prof.blocks
    limit = timer.protocol.remeasure + 1
    sel = b[(~b["stable"]) & (b["attempts"] <= limit) & b["key"].isin(list(units))]
    if sel.empty:
        return False
    with progress(len(sel), f"{space_name} re-measure unstable blocks") as bar:
        items = list(zip(
            sel["key"],
            (sel["p75_ms"] - sel["p25_ms"]) / sel["median_ms"],
            sel["attempts"],
            sel.to_dict("records"),
        ))
        done = 0
        for (key, spread_before, attempts, old), m in measure_quietly(
            items, lambda it: measure_unit(units[it[0]], timer), guard, deadline.passed
        ):
            done += 1
            if m.rel_spread < spread_before:
                prof.add_blocks([_block_row(key, m, int(attempts))])
            else:
                prof.add_blocks([{**old, "attempts": int(attempts) + m.attempts}])
            rep.rechecked += 1
            bar.advance()
            flusher.tick()
    flusher.now()
    return done < len(items)


def _recheck_archs(prof, space, timer, deadline, flusher, rep, fresh: set[tuple[str, str]], guard) -> bool:
    """Re-measure once the archs measured in this run that stayed unstable; keep the tighter result."""
    rows = prof.arch_rows(space.name)
    keys = pd.Series(list(zip(rows["arch_id"], rows["split"])), index=rows.index, dtype=object)
    sel = rows[(~rows["stable"]) & keys.isin(fresh)]
    if sel.empty:
        return False
    archs, _ = prof.archs_of(space, None)
    by_id = {a.id: a for a in archs}
    recs = sel.to_dict("records")
    done = 0
    for rec, m in measure_quietly(recs, lambda r: measure_arch(by_id[r["arch_id"]], timer), guard,
                                  deadline.passed):
        done += 1
        a = by_id[rec["arch_id"]]
        spread_before = (rec["p75_ms"] - rec["p25_ms"]) / rec["median_ms"]
        if m.rel_spread < spread_before:
            prof.add_archs([_arch_row(a, rec["split"], m)])
        rep.rechecked += 1
        flusher.tick()
    flusher.now()
    return done < len(recs)


# ------------------------------------------------------------------------------------------ refine


def refine_profile(
    device: str,
    archs: Sequence[Arch],
    reporter: Reporter | None = None,
    max_minutes: float | None = None,
    other_load_limit: float | None = DEFAULT_LIMIT,
) -> tuple[Profile, int]:
    """Measure ``archs`` end to end on this machine under the profile's own protocol and add them as
    ``refine`` rows. Returns (profile, number newly measured). Refuses a profile of another machine."""
    progress = or_silent(reporter).progress
    prof = Profile.load(device)
    if prof.kind != "measured":
        raise ProfileError(
            f"profile {prof.name} is imported; refining measures on this machine, use a measured one"
        )
    protocol = Protocol.from_dict(prof.meta.get("protocol") or {})
    machine = machine_info(protocol)
    old = prof.machine
    diffs = [k for k in MACHINE_MATCH if old.get(k) != machine.get(k)]
    if diffs:
        k = diffs[0]
        raise ProfileError(
            f"profile {prof.name} was measured with {k} {old.get(k)!r}, this machine has {machine.get(k)!r}; "
            f"refine it on its own machine"
        )
    refined = prof.arch_rows(split="refine")
    done = set(zip(refined["space"], refined["arch_id"]))
    todo = [a for a in dict.fromkeys(archs) if (a.space.name, a.id) not in done]
    timer = Timer(protocol)
    deadline = _Deadline(max_minutes)
    flusher = _Flusher(prof, 10.0, 20)
    n = 0
    guard = _guard(other_load_limit, protocol)
    try:
        with progress(len(todo), f"{prof.name} refine") as bar:
            for a, m in measure_quietly(todo, lambda a: measure_arch(a, timer), guard, deadline.passed):
                prof.add_archs([_arch_row(a, "refine", m)])
                n += 1
                bar.advance()
                flusher.tick()
    finally:
        prof.meta.setdefault("runs", []).append({"refine": n, "started": machine["timestamp_utc"]})
        prof.touch()
        flusher.now()
    return prof, n


def quick_settings(**overrides: Any) -> ProfileSettings:
    """Settings for tests and smoke runs: tiny protocols (not for shipped profiles)."""
    fast = {
        "warmup": 1,
        "warmup_min_s": 0.0,
        "repeats": 3,
        "min_time_s": 0.0,
        "max_rel_spread": 0.5,
        "remeasure": 1,
    }
    base = ProfileSettings(
        spaces=[], block_protocol=dict(fast), arch_protocol=dict(fast), n_calib=4, n_holdout=4,
        other_load_limit=None,
    )
    return replace(base, **overrides)


# ---------------------------------------------------------------------------------------- arch files


def read_arch_file(path: str | Path, space: str | SearchSpace | None = None) -> list[Arch]:
    """Archs from a file or folder: a folder of arch YAML/JSON files; a ``.jsonl`` file (one arch per
    line); a YAML/JSON file holding one arch, a list of archs or ``{archs: [...]}``; a CSV with an
    ``arch`` column of arch JSON. Each arch names its space, or ``space`` is used."""
    import json

    from nas.io import read_json, read_yaml
    from nas.space import load_arch

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        if not files:
            raise ProfileError(f"{path}: no arch files (.yaml/.json) in this folder")
        return [load_arch(p, space) for p in files]
    if not path.is_file():
        raise ProfileError(f"{path}: no such file or folder")
    items: list[Any]
    if path.suffix == ".jsonl":
        items = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ProfileError(f"{path}: line {i + 1}: not JSON ({e.msg})") from None
    elif path.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path, dtype={"arch": str})
        if "arch" not in df.columns:
            raise ProfileError(f"{path}: a CSV of archs needs an 'arch' column (arch JSON)")
        items = []
        for i, text in enumerate(df["arch"]):
            try:
                items.append(json.loads(text))
            except (TypeError, json.JSONDecodeError):
                raise ProfileError(f"{path}: row {i + 2}: arch is not JSON") from None
    else:
        data = read_json(path) if path.suffix == ".json" else read_yaml(path)
        if isinstance(data, dict) and "archs" in data:
            data = data["archs"]
        items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        where = f"{path}: arch {i}"
        if not isinstance(item, dict):
            raise ProfileError(f"{where}: expected a mapping with space, resolution, stem, stages")
        sp = space if space is not None else item.get("space")
        if sp is None:
            raise ParamError("space", f": missing; {where} does not name its space")
        out.append(load_space(sp).arch_from_dict(item, where))
    if not out:
        raise ProfileError(f"{path}: no archs in the file")
    return out


__all__ = [
    "ARCH_PROTOCOL",
    "BLOCK_PROTOCOL",
    "ProfileSettings",
    "RunReport",
    "SpaceReport",
    "calib_holdout",
    "device_name",
    "measure_arch",
    "measure_unit",
    "open_profile",
    "quick_settings",
    "read_arch_file",
    "refine_profile",
    "run_profile",
    "sample_archs",
]
