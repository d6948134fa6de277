"""Device profiles: units and keys, the profiling job (protocol, resume, time cap), the store, import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nas.blocks.keys import parse_key
from nas.errors import ParamError, ProfileError
from nas.latency.features import KeyIndex
from nas.profile import run as prun
from nas.profile.importer import holdout_of, import_table
from nas.profile.run import ProfileSettings, quick_settings, read_arch_file, refine_profile, run_profile
from nas.profile.store import Profile, cpu_slug, default_device_name, find_profile
from nas.profile.units import arch_keys, arch_units, space_units
from nas.space import load_space

TINY = """
name: tprof
dims: 2
input: {channels: 3, resolution: [32, 40]}
defaults: {per_layer: [mixer, kernel], ratio: 2, downsample: {type: conv, kernel: 3, norm: bn}}
stem: {width: [8, 16], kernel: 3, stride: 2}
stages:
  - {depth: [1, 2], width: [16], stride: 2, mixer: [dwconv, pool, skip], kernel: [3, 5]}
  - {depth: [1, 2], width: [24, 32], stride: 2, mixer: [dwconv, attention], kernel: [3]}
head: {classes: 10}
"""

TINY_MB = """
name: tprofmb
dims: 2
input: {channels: 3, resolution: [32]}
defaults: {mixer: mbconv, downsample: in_block, per_layer: [kernel, ratio], kernel: [3, 5], ratio: [3, 6]}
stem: {width: 8, kernel: 3, stride: 2, act: hswish}
stages:
  - {depth: 1, width: 8, kernel: 3, ratio: 1, act: relu}
  - {depth: [1, 2], width: 16, stride: 2, act: relu, se: 0.25}
  - {depth: [1, 2], width: 24, stride: 1, act: hswish}
head: {classes: 10, pre: {width: 48, norm: bn, act: hswish}, post: {width: 64, act: hswish, bias: false}}
"""

SEQ = """
name: tprofseq
dims: 1
input: {channels: 1, length: [64]}
defaults: {per_layer: [mixer, kernel], ratio: 2, downsample: {type: conv, kernel: 3, norm: bn}}
stem: {width: 8, kernel: 7, stride: 4}
stages:
  - {depth: [1, 2], width: [16], stride: 2, mixer: [dwconv, identity], kernel: [3, 7]}
head: {classes: 4}
"""


def _space(tmp_path: Path, text: str, name: str):
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return load_space(p)


@pytest.fixture
def tiny(tmp_path):
    return _space(tmp_path, TINY, "tprof")


@pytest.fixture
def tinymb(tmp_path):
    return _space(tmp_path, TINY_MB, "tprofmb")


# ------------------------------------------------------------------------------------------ units


@pytest.mark.parametrize("text,name", [(TINY, "tprof"), (TINY_MB, "tprofmb"), (SEQ, "tprofseq")])
def test_space_units_cover_every_arch_and_fast_keys_agree(tmp_path, text, name):
    sp = _space(tmp_path, text, name)
    units = space_units(sp)
    seen = set()
    index = KeyIndex(sp)
    for a in sp.sample_many(300, seed=3):
        keys = arch_keys(a)
        assert keys == index.keys(a)
        assert set(keys) <= set(units), set(keys) - set(units)
        seen |= set(keys)
    # random archs of a tiny space reach (almost) every enumerated unit: enumeration is not padded
    assert len(seen) >= 0.9 * len(units)
    kinds = {u.kind for u in units.values()}
    assert kinds == {"conv", "layer", "head"}


def test_builtin_spaces_enumerate_without_sampling():
    for name, lo, hi in (("hybrid", 1000, 10000), ("ofa-mbv3", 500, 3000), ("seq1d", 300, 3000)):
        sp = load_space(name)
        units = space_units(sp)
        assert lo <= len(units) <= hi, (name, len(units))
        index = KeyIndex(sp)
        for a in sp.sample_many(40, seed=1):
            assert set(index.keys(a)) <= set(units)


def test_unit_modules_run_at_their_input_shape(tiny, tinymb):
    for sp in (tiny, tinymb):
        arch = sp.sample(seed=5)
        units = arch_units(arch)
        x = torch.randn(1, sp.spec.in_channels, *(arch.resolution,) * sp.dims)
        model = __import__("nas").build(arch, drop_path=0.0).fuse()
        with torch.inference_mode():
            for u in units:
                assert tuple(x.shape[1:]) == u.input_shape, u.key
                x = u.build()(x)
            ref = model(torch.ones(1, sp.spec.in_channels, *(arch.resolution,) * sp.dims))
        assert x.shape == ref.shape  # chaining the units is the network


def test_key_format(tiny, tinymb):
    keys = arch_keys(tinymb.sample(seed=0))
    kind, fields = parse_key(keys[0], typed=False)
    assert kind == "conv" and fields["cin"] == "3" and fields["hw"] == "32x32" and fields["s"] == "2"
    kind, fields = parse_key(keys[-1], typed=False)
    assert kind == "head" and fields["pre"] == "48,bn,hswish" and fields["post"] == "64,hswish,0"
    assert all("|" in k and "=" in k for k in keys)
    assert keys[1].startswith("layer:mbconv|")


def test_count_matrix(tiny):
    units = space_units(tiny)
    vocab = {k: i for i, k in enumerate(units)}
    index = KeyIndex(tiny, vocab)
    archs = tiny.sample_many(50, seed=2)
    m = index.count_matrix(archs)
    w = np.random.default_rng(0).random(len(vocab))
    y = m @ w
    for i, a in enumerate(archs):
        assert y[i] == pytest.approx(sum(w[vocab[k]] for k in arch_keys(a)))
    half = {k: i for i, k in enumerate(list(units)[: len(units) // 2])}
    m2, left = KeyIndex(tiny, half).count_matrix(archs, missing="collect")
    assert m2.sum() + len(left) == m.sum()
    with pytest.raises(KeyError):
        KeyIndex(tiny, half).count_matrix(archs)


def test_default_names():
    assert cpu_slug("AMD EPYC 7B13 64-Core Processor") == "amd-epyc-7b13"
    assert cpu_slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-xeon"
    assert default_device_name("AMD EPYC", 1, 1) == "cpu-amd-epyc-1t-b1"
    assert default_device_name("AMD EPYC", 4, 8, "onnxruntime") == "cpu-amd-epyc-4t-b8-ort"


# ------------------------------------------------------------------------------------ the job


def _settings(space, root, **kw) -> ProfileSettings:
    # the quiet guard (load meter and speed sentinel) is off unless a test is about it: what these tests check
    # does not depend on timings taken at full speed, and a loaded CI machine would only make them wait
    base = dict(spaces=[space], device="test-cpu", root=root, n_calib=3, n_holdout=3, resolutions=[32],
                other_load_limit=None)
    base.update(kw)
    return quick_settings(**base)


def test_profile_run_writes_a_complete_profile(tiny, tmp_path):
    root = tmp_path / "hp"
    report = run_profile(_settings(tiny, root))
    assert report.complete and not report.stopped
    prof = Profile.load(root / "test-cpu")
    meta = yaml.safe_load((root / "test-cpu" / "profile.yaml").read_text())
    for key in ("name", "description", "machine", "protocol", "block_protocol", "spaces", "created", "files"):
        assert key in meta, key
    assert meta["machine"]["threads"] == 1 and meta["machine"]["batch"] == 1 and meta["machine"]["cpu_model"]
    assert meta["protocol"]["repeats"] == 3 and meta["deploy"] == "fused"
    entry = meta["spaces"]["tprof"]
    assert entry["complete"] and entry["resolutions"] == [32]
    units = space_units(tiny, [32])
    assert entry["blocks_total"] == len(units)
    assert set(prof.block_table()) == set(units)
    blocks = pd.read_csv(root / "test-cpu" / "blocks.csv")
    assert list(blocks.columns) == ["key", "median_ms", "p25_ms", "p75_ms", "n", "stable", "attempts"]
    assert (blocks["median_ms"] > 0).all() and (blocks["p25_ms"] <= blocks["p75_ms"]).all()
    archs = pd.read_csv(root / "test-cpu" / "archs.csv")
    assert list(archs.columns) == [
        "space",
        "arch_id",
        "arch",
        "split",
        "median_ms",
        "p25_ms",
        "p75_ms",
        "stable",
    ]
    assert sorted(archs["split"].value_counts().items()) == [("calib", 3), ("holdout", 3)]
    assert not set(archs[archs.split == "calib"].arch_id) & set(archs[archs.split == "holdout"].arch_id)
    got, y = prof.archs_of(tiny, "holdout")
    assert len(got) == 3 and all(a.resolution == 32 for a in got) and (y > 0).all()
    assert json.loads(archs["arch"][0])["space"] == "tprof"
    assert not [p for p in (root / "test-cpu").iterdir() if p.name.startswith(".")]  # no temp files left


def test_resume_after_kill_measures_only_the_rest(tiny, tmp_path, monkeypatch):
    root = tmp_path / "hp"
    real = prun.measure_unit
    calls = {"n": 0}

    def dying(unit, timer):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt  # a kill in the middle of the block table
        return real(unit, timer)

    monkeypatch.setattr(prun, "measure_unit", dying)
    with pytest.raises(KeyboardInterrupt):
        run_profile(_settings(tiny, root, flush_every=3))
    saved = Profile.load(root / "test-cpu").measured_keys()
    assert 6 <= len(saved) <= 7  # at most the chunk in flight is lost
    monkeypatch.setattr(prun, "measure_unit", real)
    counted = {"n": 0}

    def counting(unit, timer):
        counted["n"] += 1
        assert unit.key not in saved
        return real(unit, timer)

    monkeypatch.setattr(prun, "measure_unit", counting)
    # recheck off: on a loaded machine a saved block can come out unstable and be re-measured on purpose,
    # which is not what this test is about (the recheck has its own tests)
    report = run_profile(_settings(tiny, root, recheck=False))
    total = len(space_units(tiny, [32]))
    assert report.complete and counted["n"] >= total - len(saved)
    assert report.spaces[0].blocks_new == total - len(saved)
    again = run_profile(_settings(tiny, root, recheck=False))  # nothing left: skips everything
    assert again.spaces[0].blocks_new == 0 and again.spaces[0].archs_new == 0


def test_max_minutes_stops_cleanly_and_rerun_continues(tiny, tmp_path, monkeypatch):
    root = tmp_path / "hp"
    ticks = {"n": 0}

    def passed(self):
        ticks["n"] += 1
        return ticks["n"] > 5

    monkeypatch.setattr(prun._Deadline, "passed", passed)
    report = run_profile(_settings(tiny, root, max_minutes=1))
    assert report.stopped and not report.complete
    assert report.spaces[0].blocks_done == 5
    monkeypatch.undo()
    report = run_profile(_settings(tiny, root, max_minutes=10))
    assert report.complete and report.spaces[0].blocks_new == report.spaces[0].blocks_total - 5


def test_resume_refuses_other_settings(tiny, tmp_path):
    root = tmp_path / "hp"
    run_profile(_settings(tiny, root, n_calib=1, n_holdout=1))
    with pytest.raises(ProfileError, match="threads"):
        run_profile(_settings(tiny, root, threads=2, n_calib=1, n_holdout=1))
    with pytest.raises(ProfileError, match="resolutions"):
        run_profile(_settings(tiny, root, resolutions=[40], n_calib=1, n_holdout=1))
    with pytest.raises(ProfileError, match="n_calib"):
        run_profile(_settings(tiny, root, n_calib=2, n_holdout=1))


def test_real_protocol_orders_blocks_by_size(tmp_path):
    """The default block protocol (not the quick one) on a 1D space: bigger units take longer."""
    sp = _space(tmp_path, SEQ, "tprofseq")
    root = tmp_path / "hp"
    settings = ProfileSettings(spaces=[sp], device="seq", root=root, n_calib=2, n_holdout=1)
    settings.arch_protocol = dict(prun.BLOCK_PROTOCOL)
    run_profile(settings)
    table = Profile.load(root / "seq").block_table()
    k3 = [v for k, v in table.items() if k.startswith("layer:dwconv") and "|k=3|" in k]
    head = [v for k, v in table.items() if k.startswith("head|")]
    assert k3 and head and min(k3) > 0 and min(head) > 0
    prof = Profile.load(root / "seq")
    assert prof.meta["block_protocol"]["repeats"] == prun.BLOCK_PROTOCOL["repeats"]


def test_refine_adds_rows(tiny, tmp_path):
    root = tmp_path / "hp"
    run_profile(_settings(tiny, root, n_calib=1, n_holdout=1))
    archs = tiny.sample_many(3, seed=99)
    f = tmp_path / "archs.jsonl"
    f.write_text("\n".join(a.to_json() for a in archs) + "\n")
    got = read_arch_file(f, tiny)
    assert got == archs
    prof, n = refine_profile(str(root / "test-cpu"), got)
    assert n == 3 and len(prof.arch_rows("tprof", "refine")) == 3
    _, n = refine_profile(str(root / "test-cpu"), got)
    assert n == 0  # already measured


def test_read_arch_file_forms(tiny, tmp_path):
    archs = tiny.sample_many(2, seed=4)
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([a.to_dict() for a in archs]))
    assert read_arch_file(tmp_path / "list.yaml", tiny) == archs
    d = tmp_path / "dir"
    for a in archs:
        a.save(d / f"{a.id}.yaml")
    assert sorted(read_arch_file(d), key=lambda a: a.id) == sorted(archs, key=lambda a: a.id)
    pd.DataFrame({"arch": [a.key for a in archs]}).to_csv(tmp_path / "a.csv", index=False)
    assert read_arch_file(tmp_path / "a.csv", tiny) == archs
    with pytest.raises(ProfileError, match="no such file"):
        read_arch_file(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------------ store


def test_store_round_trip_and_replace(tmp_path):
    prof = Profile.create(tmp_path / "p", "p", machine={"cpu_model": "x"}, protocol={"repeats": 3})
    prof.add_blocks(
        [
            {
                "key": "a|x=1",
                "median_ms": 1.5,
                "p25_ms": 1.4,
                "p75_ms": 1.6,
                "n": 10,
                "stable": True,
                "attempts": 1,
            }
        ]
    )
    prof.flush()
    prof.add_blocks(
        [
            {
                "key": "a|x=1",
                "median_ms": 1.25,
                "p25_ms": 1.2,
                "p75_ms": 1.3,
                "n": 10,
                "stable": True,
                "attempts": 2,
            }
        ]
    )
    prof.add_archs(
        [
            {
                "space": "s",
                "arch_id": "00ab",
                "arch": "{}",
                "split": "calib",
                "median_ms": 3.0,
                "p25_ms": 2.9,
                "p75_ms": 3.1,
                "stable": False,
            }
        ]
    )
    prof.flush()
    back = Profile.load(tmp_path / "p")
    assert back.block_table() == {"a|x=1": 1.25}
    assert back.blocks["attempts"].tolist() == [2]
    assert back.arch_rows("s")["arch_id"].tolist() == ["00ab"]  # ids stay strings
    assert not back.arch_rows("s")["stable"].iloc[0]
    with pytest.raises(ProfileError, match="split 'train' unknown"):
        back.add_archs(
            [
                {
                    "space": "s",
                    "arch_id": "1",
                    "arch": "{}",
                    "split": "train",
                    "median_ms": 1.0,
                    "p25_ms": 1.0,
                    "p75_ms": 1.0,
                    "stable": True,
                }
            ]
        )
    with pytest.raises(ProfileError, match="not found"):
        find_profile(tmp_path / "nope")
    with pytest.raises(ProfileError, match="device name"):
        Profile.create(tmp_path / "q", "bad name/")


# ----------------------------------------------------------------------------------------- import


@pytest.fixture
def ofa_csv(tmp_path, shared_datasets) -> Path:
    src = shared_datasets / "ofa_mbv3_gpu_latency.csv"
    if not src.is_file():
        pytest.skip("shared OFA dataset not available")
    df = pd.read_csv(src, nrows=60)
    p = tmp_path / "ofa_small.csv"
    df.to_csv(p, index=False)
    return p


def test_import_ofa_table(ofa_csv, tmp_path):
    from nas.space.ofa import from_ofa

    root = tmp_path / "hp"
    done = import_table(ofa_csv, root=root)
    assert len(done) == 12
    names = sorted(d.device for d in done)
    assert "gpu-v100-b1" in names and "gpu-titan-rtx-b64" in names and "gpu-2080ti-b32" in names
    prof = Profile.load(root / "gpu-v100-b32")
    assert prof.kind == "imported" and prof.meta["licence"] == "MIT"
    assert prof.meta["source"]["column"] == "v100_32_ms" and len(prof.meta["source"]["sha256"]) == 64
    assert "HELP" in prof.meta["source"]["origin"]
    assert prof.machine["batch"] == 32 and "V100" in prof.machine["gpu_name"]
    df = pd.read_csv(ofa_csv)
    archs, y = prof.archs_of("ofa-mbv3")
    assert len(archs) == 60
    first = df.iloc[0]
    a0 = from_ofa(
        *(list(map(int, first[c].split())) for c in ("kernel_sizes", "expand_ratios", "depths")),
        int(first["resolution"]),
    )
    row = prof.arch_rows("ofa-mbv3")
    assert row[row.arch_id == a0.id]["median_ms"].iloc[0] == pytest.approx(first["v100_32_ms"])
    # the split is a hash of the arch id: the same on every device
    other = Profile.load(root / "gpu-2080ti-b1").arch_rows("ofa-mbv3")
    assert dict(zip(row.arch_id, row.split)) == dict(zip(other.arch_id, other.split))
    assert all((s == "holdout") == holdout_of(i, 0.2) for i, s in zip(row.arch_id, row.split))
    with pytest.raises(ProfileError, match="exists"):
        import_table(ofa_csv, root=root, columns=["v100_1_ms"])
    import_table(ofa_csv, root=root, columns=["v100_1_ms"], force=True)


def test_import_archs_table(tiny, tmp_path):
    archs = tiny.sample_many(10, seed=1)
    p = tmp_path / "t.csv"
    pd.DataFrame({"arch": [a.key for a in archs], "phone_ms": np.arange(1, 11) * 1.5}).to_csv(p, index=False)
    done = import_table(p, tiny, root=tmp_path / "hp", names=["phone"], licence="CC-BY-4.0", source="lab")
    assert done[0].rows == 10
    prof = Profile.load(tmp_path / "hp" / "phone")
    got, y = prof.archs_of(tiny)
    assert sorted(y.tolist()) == [1.5 * i for i in range(1, 11)]
    assert prof.meta["licence"] == "CC-BY-4.0" and prof.meta["source"]["origin"] == "lab"
    with pytest.raises(ParamError, match="^space: missing;.*does not name the space"):  # the CLI says --space
        import_table(p, None, root=tmp_path / "hp2")
    with pytest.raises(ProfileError, match="not a latency column"):
        import_table(p, tiny, root=tmp_path / "hp3", columns=["arch"])


def test_import_names_devices_by_column_kind_and_user_mapping(tiny, tmp_path, capsys):
    from nas.cli import main as cli
    from nas.profile.importer import default_profile_name, infer_column

    assert default_profile_name("v100_32_ms") == "gpu-v100-b32"
    assert default_profile_name("gold_6226_ms") == "cpu-gold-6226"  # a CPU model number, not batch 6226
    assert infer_column("gold_6226_ms").batch is None and infer_column("epyc_b8_ms").batch == 8
    assert default_profile_name("pixel7_ms") == "mobile-pixel7"
    assert default_profile_name("lab_box_ms") == "device-lab-box"  # unknown kind: not called a GPU
    archs = tiny.sample_many(6, seed=2)
    p = tmp_path / "t.csv"
    pd.DataFrame({"arch": [a.key for a in archs], "gold_6226_ms": np.arange(1, 7) * 2.0,
                  "v100_1_ms": np.arange(1, 7) * 0.5}).to_csv(p, index=False)
    done = import_table(p, tiny, root=tmp_path / "hp")
    assert sorted(d.device for d in done) == ["cpu-gold-6226", "gpu-v100-b1"]
    cpu = Profile.load(tmp_path / "hp" / "cpu-gold-6226")
    assert cpu.machine["device_kind"] == "cpu" and cpu.machine["gpu_name"] is None
    assert cpu.machine["batch"] is None and "(cpu)" in cpu.meta["description"]
    gpu = Profile.load(tmp_path / "hp" / "gpu-v100-b1")
    assert gpu.machine["device_kind"] == "gpu" and "V100" in gpu.machine["gpu_name"] and gpu.machine["batch"] == 1
    # the user's own names and kinds
    done = import_table(p, tiny, root=tmp_path / "hp2",
                        columns=["gold_6226_ms=xeon-gold-6226:cpu", "v100_1_ms=:npu"])
    assert [d.device for d in done] == ["xeon-gold-6226", "npu-v100-b1"]
    mine = Profile.load(tmp_path / "hp2" / "xeon-gold-6226")
    assert mine.machine["device_kind"] == "cpu" and mine.machine["cpu_model"] == "xeon-gold-6226"
    assert mine.meta["source"]["column"] == "gold_6226_ms"
    with pytest.raises(ParamError, match="kind 'tpu9' unknown; allowed: cpu, gpu"):
        import_table(p, tiny, root=tmp_path / "hp3", columns=["gold_6226_ms=x:tpu9"])
    code = cli.main(["profile", "import", str(p), "--space", str(tiny.source_path), "--root", str(tmp_path / "hp4"),
                     "--column", "gold_6226_ms=bad name:cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "bad name" in err, err


def test_unstable_entries_are_remeasured_once_and_the_tighter_kept(tiny, tmp_path, monkeypatch):
    from nas.profile.timer import Measurement

    seen: set[str] = set()

    def fake(kind):
        def measure(obj, timer):
            key = obj.key if kind == "unit" else obj.id
            first = key not in seen  # the first measurement of everything is unstable, the second tight
            seen.add(key)
            spread = 0.5 if first else 0.01
            return Measurement(
                1.0, 1.0, 1.0 - spread / 2, 1.0 + spread / 2, 0.9, 0.1, 5, spread, not first, 2
            )

        return measure

    monkeypatch.setattr(prun, "measure_unit", fake("unit"))
    monkeypatch.setattr(prun, "measure_arch", fake("arch"))
    settings = _settings(tiny, tmp_path / "hp", n_calib=1, n_holdout=1)
    settings.block_protocol = {**settings.block_protocol, "max_rel_spread": 0.1, "remeasure": 1}
    report = run_profile(settings)
    n = report.spaces[0].blocks_total
    assert report.spaces[0].rechecked == n + 2 and report.spaces[0].unstable == 0
    prof = Profile.load(tmp_path / "hp" / "test-cpu")
    assert prof.blocks["stable"].all() and (prof.blocks["attempts"] == 4).all()
    assert prof.archs["stable"].all()
    again = run_profile(settings)  # nothing new, nothing unstable: nothing re-measured
    assert again.spaces[0].rechecked == 0


# ----------------------------------------------------------------------------- other processes' load


class _FakeMeter:
    """A LoadMeter whose windows report the loads of a script (then 0), a fixed time apart."""

    def __init__(self, loads: list[float], window: float = 1.0):
        self.loads, self.window, self.available = loads, window, True

    def start(self) -> None:
        pass

    def elapsed(self) -> float:
        return self.window

    def others(self) -> float:
        return self.loads.pop(0) if self.loads else 0.0


def test_load_meter_counts_only_other_processes(tmp_path, monkeypatch):
    from nas.profile import quiet

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 1000 0 0 0 10 0 0\ncpu0 1 2 3\n")
    monkeypatch.setattr(quiet, "PROC_STAT", stat)
    hz = __import__("os").sysconf("SC_CLK_TCK")
    assert quiet.read_busy_seconds() == pytest.approx(160 / hz)  # user+system+steal, not idle
    monkeypatch.setattr(quiet, "PROC_STAT", tmp_path / "missing")
    assert quiet.read_busy_seconds() is None and not quiet.LoadMeter().available
    # 2 s of wall time, the machine busy for 3 CPU-seconds of which 1 were ours: others used 1 CPU
    t = {"wall": 0.0, "busy": 10.0, "own": 5.0}
    m = quiet.LoadMeter(reader=lambda: t["busy"], own=lambda: t["own"], clock=lambda: t["wall"])
    t.update(wall=2.0, busy=13.0, own=6.0)
    assert m.others() == pytest.approx(1.0)


def test_measure_quietly_discards_busy_windows_and_measures_them_again():
    from nas.profile.quiet import QuietGuard, measure_quietly

    slept = []
    meter = _FakeMeter([0.0, 1.2, 0.9, 0.05])  # window 1 quiet, window 2 busy, wait 1 busy, then quiet
    guard = QuietGuard(limit=0.25, sleep=slept.append, meter_factory=lambda: meter)
    calls = []

    def measure(i: int) -> int:
        calls.append(i)
        return 10 * i

    got = list(measure_quietly(range(4), measure, guard))
    assert got == [(0, 0), (1, 10), (2, 20), (3, 30)]  # every item once, in order
    assert calls == [0, 1, 1, 2, 3]  # item 1's window was busy: measured again after the wait
    assert guard.discarded == 1 and len(slept) == 2
    # off: no meter consulted, nothing discarded
    off = QuietGuard(limit=None, meter_factory=lambda: _FakeMeter([5.0] * 10))
    assert list(measure_quietly(range(3), measure, off)) == [(0, 0), (1, 10), (2, 20)]
    assert off.discarded == 0


class _Sentinel:
    """A reference workload whose times (ms) follow a script (then the last value), on a fake clock."""

    def __init__(self, times: list[float]):
        self.times, self.now = list(times), 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]

    def clock(self) -> float:
        return self.now


def test_measure_quietly_throws_away_windows_in_which_the_machine_ran_slow():
    """No other process is busy, but the machine itself runs 2x slower for a while (a shared host): the
    reference workload notices, the window is measured again at full speed, and the wait is counted."""
    from nas.profile.quiet import STREAK, QuietGuard, SpeedCheck, measure_quietly

    # settle: full speed 1.0; window 0 starts and ends fast; window 1 ends slow (2.0); the wait sees slow, then fast
    sent = _Sentinel([1.0, 1.0, 1.0, 1.05, 2.0, 2.1] + [1.0] * 10)
    speed = SpeedCheck(sent, settle_s=0.02, clock=sent.clock)
    assert speed.reference == 1.0
    guard = QuietGuard(limit=None, speed=speed, meter_factory=lambda: _FakeMeter([]))
    calls = []

    def measure(i: int) -> int:
        calls.append(i)
        return 10 * i

    got = list(measure_quietly(range(3), measure, guard))
    assert got == [(0, 0), (1, 10), (2, 20)]
    assert calls == [0, 1, 1, 2]  # item 1 was measured while the machine ran slow: measured again
    assert guard.discarded == 1 and guard.slowed == 1 and speed.checks >= 4 + STREAK

    stuck = _Sentinel([1.0, 1.0, 1.0, 1.0, 3.0])  # slow for good: one clear error
    guard = QuietGuard(limit=None, max_wait_s=0.05, speed=SpeedCheck(stuck, settle_s=0.02, clock=stuck.clock),
                       meter_factory=lambda: _FakeMeter([]))
    with pytest.raises(ProfileError, match=r"stayed 3.00x slower than its full speed"):
        list(measure_quietly(range(3), measure, guard))


def test_a_slow_stretch_inside_a_window_is_caught_by_the_check_after_each_item():
    """The window is long (10 s) and the machine is fast at both of its ends, but slow right after item 1: the
    window is thrown away and measured again (a check only at the window's ends would have kept item 1)."""
    from nas.profile.quiet import STREAK, QuietGuard, SpeedCheck, measure_quietly

    # settle (2 runs on this clock), before item 0, after item 0, after item 1 (slow), then fast for good
    sent = _Sentinel([1.0, 1.0, 1.0, 1.0, 2.0] + [1.0] * (STREAK + 10))
    speed = SpeedCheck(sent, settle_s=0.02, clock=sent.clock)
    guard = QuietGuard(limit=None, window_s=10.0, speed=speed, meter_factory=lambda: _FakeMeter([]))
    calls = []
    got = list(measure_quietly(range(3), lambda i: calls.append(i) or i, guard))
    assert got == [(0, 0), (1, 1), (2, 2)] and calls == [0, 1, 0, 1, 2]
    assert guard.slowed == 1 and guard.discarded == 2


def test_a_command_that_starts_slow_waits_for_the_hosts_remembered_full_speed(tmp_path):
    """The first command finds full speed 1.0 and remembers it; the next starts inside a slow stretch (2.0 from its
    first run): without the memory it would take 2.0 for full speed, with it the window waits for 1.0."""
    from nas.profile.quiet import QuietGuard, SpeedCheck, SpeedMemory, measure_quietly

    key = {"host": "h1", "boot": 1.0, "threads": 1}
    memory = SpeedMemory(tmp_path / "speed.json", key)
    first = _Sentinel([1.0])
    SpeedCheck(first, settle_s=0.02, clock=first.clock, memory=memory)
    assert memory.load()[0] == 1.0

    slow_start = _Sentinel([2.0] * 8 + [1.0])
    other = _Sentinel([2.0] * 8 + [1.0])
    alone = SpeedCheck(other, settle_s=0.02, clock=other.clock)
    assert alone.reference == 2.0  # what a command without the memory believes
    speed = SpeedCheck(slow_start, settle_s=0.02, clock=slow_start.clock, memory=memory)
    assert speed.reference == 1.0 and "remembered for this host" in speed.source()
    guard = QuietGuard(limit=None, speed=speed, meter_factory=lambda: _FakeMeter([]))
    calls, logs = [], []
    got = list(measure_quietly(range(2), lambda i: calls.append(i) or i, guard, log=logs.append))
    assert got == [(0, 0), (1, 1)] and guard.slowed >= 1 and calls[0] == calls[1] == 0  # item 0 measured again
    assert any("remembered for this host since" in line for line in logs)

    # another key (a reboot, other threads, another torch): the file says nothing
    assert SpeedMemory(tmp_path / "speed.json", {**key, "boot": 2.0}).load() is None
    (tmp_path / "speed.json").write_text("{not json")
    assert memory.load() is None  # a damaged file is measured afresh, not an error


def test_a_host_that_stays_slower_than_its_remembered_speed_drops_it(tmp_path, monkeypatch):
    """A VM moved to a slower host never gets back to the remembered speed: after REMEMBERED_WAIT_S the wait takes
    the speed now as full speed, says so, and remembers it (the next command does not wait again)."""
    from nas.profile import quiet

    monkeypatch.setattr(quiet, "REMEMBERED_WAIT_S", 0.1)
    memory = quiet.SpeedMemory(tmp_path / "speed.json", {"host": "h1"})
    memory.save(1.0)
    moved = _Sentinel([1.8])
    speed = quiet.SpeedCheck(moved, settle_s=0.02, clock=moved.clock, memory=memory)
    guard = quiet.QuietGuard(limit=None, max_wait_s=10.0, speed=speed, meter_factory=lambda: _FakeMeter([]))
    logs = []
    assert list(quiet.measure_quietly(range(2), lambda i: i, guard, log=logs.append)) == [(0, 0), (1, 1)]
    assert any("taking its speed now as full speed" in line for line in logs)
    assert speed.reference == pytest.approx(1.8) and memory.load()[0] == pytest.approx(1.8)
    # and a faster full speed found later replaces it again
    fast = _Sentinel([1.2])
    again = quiet.SpeedCheck(fast, settle_s=0.02, clock=fast.clock, memory=memory)
    assert again.reference == pytest.approx(1.2) and memory.load()[0] == pytest.approx(1.2)


def test_the_hosts_full_speed_is_remembered_in_the_users_cache(tmp_path, monkeypatch):
    from nas.profile.machine import host_id
    from nas.profile.timer import Protocol, speed_check

    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    first = speed_check(Protocol())
    path = tmp_path / "home" / "cache" / "host-speed" / f"{host_id()}-1t.json"
    assert path.is_file() and first.memory.load()[0] == pytest.approx(first.reference)
    second = speed_check(Protocol())
    assert second.reference <= first.reference  # the faster of its own runs and the remembered full speed


def test_the_sentinel_times_a_fixed_workload_on_the_protocols_threads():
    from nas.profile.timer import Protocol, cpu_sentinel, speed_check

    t = cpu_sentinel(1, runs=3)
    assert 0 < t() < 1000
    assert speed_check(Protocol(backend="torch-cuda")) is None  # the CPU's speed does not set a GPU's times


def test_measure_quietly_gives_up_when_the_machine_stays_busy():
    from nas.profile.quiet import QuietGuard, measure_quietly

    guard = QuietGuard(limit=0.25, max_wait_s=-1.0, sleep=lambda s: None,
                       meter_factory=lambda: _FakeMeter([2.0] * 10))
    with pytest.raises(ProfileError, match="guard off"):
        list(measure_quietly(range(3), lambda i: i, guard))


def test_profile_stores_nothing_measured_while_the_machine_was_busy(tiny, tmp_path, monkeypatch):
    from nas.profile import quiet

    root = tmp_path / "hp"
    loads = [3.0]  # the first window is busy, every later one quiet
    monkeypatch.setattr(
        prun, "QuietGuard",
        lambda limit, speed=None: quiet.QuietGuard(limit, sleep=lambda s: None, meter_factory=lambda: _FakeMeter(loads)),
    )
    real = prun.measure_unit
    n = {"calls": 0}

    def marked(unit, timer):  # the first measurement is "slow" (taken under load)
        n["calls"] += 1
        m = real(unit, timer)
        if n["calls"] == 1:
            m.median_ms = 1e6
        return m

    monkeypatch.setattr(prun, "measure_unit", marked)
    report = run_profile(_settings(tiny, root, other_load_limit=0.25))
    assert report.complete and report.discarded == 1
    stored = Profile.load(root / "test-cpu").blocks["median_ms"].tolist()
    assert max(stored) < 1e6 and len(stored) == len(space_units(tiny, [32]))
    meta = yaml.safe_load((root / "test-cpu" / "profile.yaml").read_text())
    assert meta["quiet_guard"]["other_load_limit_cpus"] == 0.25


def test_sampling_more_archs_than_a_small_space_has_returns_the_space_and_stops(tiny):
    """Asking a small space for more distinct archs than it has gives (nearly) all of them, seeded, without
    drawing 50x the request: the draw stops once a long run of draws finds nothing new."""
    from nas.profile.sampling import sample_archs

    a, b = sample_archs(tiny, 5000, 0), sample_archs(tiny, 5000, 1)
    assert len(a) == len({x.id for x in a}) < 10 ** tiny.log10_size() + 1
    assert [x.id for x in sample_archs(tiny, 5000, 0)] == [x.id for x in a]
    union = {x.id for x in a} | {x.id for x in b}
    assert min(len(a), len(b)) >= 0.98 * len(union)  # each draw found (nearly) every arch the other did


def test_calibration_archs_spread_over_log_macs(tiny):
    import math

    from nas.cost.count import count
    from nas.profile.run import calib_holdout, sample_archs, spread_by_macs

    pool = sample_archs(tiny, 400, seed=1, resolutions=[32])
    picked = spread_by_macs(pool, 20)
    assert len({a.id for a in picked}) == 20 and {a.id for a in picked} <= {a.id for a in pool}
    logm = sorted(math.log(count(a).macs) for a in pool)
    got = sorted(math.log(count(a).macs) for a in picked)
    assert got[0] == logm[0] and got[-1] == logm[-1]  # spans the pool's whole range
    low = logm[0] + (logm[-1] - logm[0]) / 4  # bottom quarter of the range holds ~1/4 of the picks
    assert sum(v <= low for v in got) >= 4 and sum(v <= low for v in got) / 20 > sum(v <= low for v in logm) / 400
    calib, holdout = calib_holdout(tiny, 10, 10, 0, [32], spread="log_macs")
    assert calib == calib_holdout(tiny, 10, 10, 0, [32], spread="log_macs")[0]  # deterministic
    assert not {a.id for a in calib} & {a.id for a in holdout}
    with pytest.raises(ProfileError, match="calib spread"):
        calib_holdout(tiny, 10, 10, 0, [32], spread="bogus")


def test_resume_refuses_another_calib_spread(tiny, tmp_path):
    root = tmp_path / "hp"
    run_profile(_settings(tiny, root, n_calib=2, n_holdout=1, calib_spread="uniform"))
    with pytest.raises(ProfileError, match="calib_spread"):
        run_profile(_settings(tiny, root, n_calib=2, n_holdout=1))


@pytest.mark.parametrize("value", ["bogus", "-1", "nan"])
def test_bad_other_load_limit_is_one_line_and_creates_nothing(tmp_path, capsys, value):
    from nas.cli import main as cli

    root = tmp_path / "hp"
    code = cli.main(["profile", "--space", "tiny", "--device", "x", "--root", str(root),
                     "--other-load-limit", value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--other-load-limit" in err and "'off'" in err
    assert not (root / "x").exists()
