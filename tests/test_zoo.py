"""The model zoo: export -> load -> identical outputs, ONNX parity, tamper detection, concurrent exports,
create_model in a fresh process, the CLI, supernet weights and the optional timm registration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import nas
from nas.cli import main as cli
from nas.errors import ZooError
from nas.io import sha256_file
from nas.zoo import (
    create_model,
    export,
    export_onnx,
    list_models,
    load_arch,
    model_info,
    register_timm,
    verify,
)
from nas.zoo.export import budget_abbrev, choose_name, device_abbrev, item_from_arch
from nas.zoo.index import INDEX_FILE, STAGING_DIR, locked, read_index
from nas.zoo.onnx_export import ort_session

ROOT = Path(__file__).resolve().parents[1]

TINY_SPACE = """\
name: tiny
dims: 2
input: {channels: 3, resolution: [32, 48]}
defaults:
  layout: metaformer
  norm: bn
  act: gelu
  channel_mixer: mlp
  per_layer: [mixer, kernel, ratio]
  ratio: [2, 3]
  downsample: {type: conv, kernel: 3, norm: bn}
stem: {width: [8, 16], kernel: 3, stride: 2, norm: bn, act: gelu}
stages:
  - depth: [1, 2]
    width: [16, 24]
    stride: 2
    mixer: [dwconv, dilated_reparam, attention, mbconv, gnconv]
    kernel: [3, 5]
    mixer_options: {attention: {head_dim: 8, sr_ratio: 2}, gnconv: {order: 2}}
  - depth: [1, 2]
    width: [32]
    stride: 2
    mixer: [dwconv, inception_dw, attention, mbconv, lka]
    kernel: [3, 7]
    mixer_options: {attention: {head_dim: 8, sr_ratio: 1}}
head: {classes: 10}
"""

ARCH_A = {  # re-parameterised and attention mixers: fusing and exporting them is the interesting part
    "resolution": 32,
    "stem": 8,
    "stages": [
        {
            "depth": 2,
            "width": 16,
            "layers": [
                {"mixer": "dilated_reparam", "kernel": 5, "ratio": 2},
                {"mixer": "attention", "ratio": 3},
            ],
        },
        {
            "depth": 2,
            "width": 32,
            "layers": [
                {"mixer": "lka", "kernel": 7, "ratio": 2},
                {"mixer": "inception_dw", "kernel": 3, "ratio": 2},
            ],
        },
    ],
}


def _trained(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give a model non-trivial weights: perturbed norm statistics and affine parameters (outputs ~1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def _save_weights(model: torch.nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _input(arch, batch: int = 2, seed: int = 123) -> torch.Tensor:
    return torch.randn(
        batch, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(seed)
    )


def _write_run(run: Path, space_file: Path, space) -> dict:
    """A tiny fake search run folder: summary.json, pareto/<id>.yaml, trials.csv (one extra trial)."""
    archs = [space.make_arch(ARCH_A), space.sample(seed=1), space.sample(seed=2)]
    (run / "pareto").mkdir(parents=True)
    pareto = []
    for i, a in enumerate(archs):
        a.save(run / "pareto" / f"{a.id}.yaml")
        c = nas.count(a)
        pareto.append(
            {
                "id": a.id,
                "arch_file": f"pareto/{a.id}.yaml",
                "metrics": {
                    "accuracy": 0.61 + 0.04 * i,
                    "latency_ms": 1.5 + i,
                    "params": c.params,
                    "macs": c.macs,
                    "memory": c.memory,
                },
                "provenance": {
                    "accuracy": "supernet top-1, 500 val images (inherited weights)",
                    "latency": "predicted by predictors/cpu-1t-tiny.json (held-out MAPE 4.1%)",
                },
            }
        )
    summary = {
        "study": "demo",
        "space": "tiny",
        "space_file": str(space_file),
        "device": "cpu-1t",
        "budget": "latency:5ms",
        "estimator": {"name": "supernet", "provenance": "supernet demo.ckpt"},
        "pareto": pareto,
        "plot": None,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    trial = space.sample(seed=3)
    assert trial.id not in {a.id for a in archs}
    arch_json = json.dumps(trial.to_dict()).replace('"', '""')
    (run / "trials.csv").write_text(f'id,accuracy,latency_ms,arch\n{trial.id},0.5,0.9,"{arch_json}"\n')
    return {"archs": archs, "trial": trial}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One exported entry with trained weights (from a safetensors FILE), plus the fake run it came from."""
    base = tmp_path_factory.mktemp("zoo")
    space_file = base / "tiny.yaml"
    space_file.write_text(TINY_SPACE)
    space = nas.load_space(space_file)
    run = base / "runs" / "demo"
    info = _write_run(run, space_file, space)
    arch = info["archs"][0]
    model = _trained(nas.build(arch), seed=7)
    weights = _save_weights(model, base / "trained.safetensors")
    zoo = base / "zoo"
    records = export(run, pick=[arch.id], weights=weights, zoo=zoo)
    return types.SimpleNamespace(
        base=base,
        space_file=space_file,
        space=space,
        run=run,
        zoo=zoo,
        arch=arch,
        model=model,
        weights=weights,
        name=records[0]["name"],
        record=records[0],
        archs=info["archs"],
        trial=info["trial"],
    )


def _copy_zoo(env, dest: Path) -> Path:
    shutil.copytree(env.zoo, dest, ignore=shutil.ignore_patterns(STAGING_DIR))
    return dest


# --------------------------------------------------------------------------------------------- export/load
def test_export_writes_entry_with_checksums_and_default_name(env):
    assert env.name == "tiny-cpu1t-lat5ms-a"
    folder = env.zoo / env.name
    rec = read_index(env.zoo)["models"][env.name]
    assert set(rec["files"]) == {"arch.yaml", "model.safetensors", "model.onnx", "card.md", "pareto.png"}
    for fname, digest in rec["files"].items():
        assert sha256_file(folder / fname) == digest
    assert rec["weights"]["source"] == "file" and rec["weights"]["sha256"] == sha256_file(env.weights)
    assert rec["metrics"]["params"] == sum(p.numel() for p in env.model.parameters())
    assert rec["latency"][0]["provenance"].startswith("predicted by")
    doc = yaml.safe_load((folder / "arch.yaml").read_text())
    assert doc["id"] == env.arch.id and doc["space"] == "tiny" and doc["space_spec"]["name"] == "tiny"
    card = (folder / "card.md").read_text()
    for text in (
        "counted analytically",
        "MAPE 4.1%",
        "supernet top-1",
        "pareto.png",
        "create_model(",
        "trained checkpoint",
        "dynamic batch",
    ):
        assert text in card, text


def test_export_load_identical_outputs(env):
    loaded = create_model(env.name, zoo=env.zoo)
    assert type(loaded).__module__ == "nas.models.build" and not loaded.training
    x = _input(env.arch)
    with torch.no_grad():
        assert torch.equal(loaded(x), env.model(x))
        fused = create_model(env.name, zoo=env.zoo, fuse=True)
        torch.testing.assert_close(fused(x), env.model(x), atol=1e-4, rtol=1e-4)
        feats = create_model(env.name, zoo=env.zoo, features_only=True)(x)
        assert [f.shape[1] for f in feats] == [16, 32]
    assert loaded.pretrained_cfg["id"] == env.arch.id
    assert load_arch(env.name, env.zoo) == env.arch
    assert list_models(env.zoo) == [env.name]
    assert model_info(env.name, env.zoo)["id"] == env.arch.id


def test_onnx_parity_dynamic_batch(env):
    rec = env.record["onnx"]
    assert rec["dynamic_batch"] and rec["batches"] == [1, 3]
    assert max(rec["max_abs_diff"].values()) <= 1e-4
    sess = ort_session(env.zoo / env.name / "model.onnx")
    assert isinstance(sess.get_inputs()[0].shape[0], str)  # a named, free batch dimension
    deploy = create_model(env.name, zoo=env.zoo, fuse=True)
    for b in (1, 3):
        x = _input(env.arch, batch=b, seed=b)
        y = sess.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            ref = deploy(x).numpy()
        assert y.shape == ref.shape == (b, 10)
        assert np.abs(y - ref).max() <= 1e-4
        assert np.abs(ref).max() > 1e-2  # the comparison is not trivially small numbers
    (res,) = verify(env.name, env.zoo)
    assert res["ok"] and res["checksums"] == "ok" and res["onnx_max_abs_diff"] <= 1e-4


def test_export_onnx_1d_mixers(tmp_path):
    """The mixers the dynamo exporter specialises to batch 1 in 1D still export with a free batch."""
    space = nas.load_space("seq1d")
    stages = []
    for st, mixer in zip(space.stages, ["gnconv", "inception_dw", "partial_conv", "focal"]):
        stages.append(
            {
                "depth": 1,
                "width": st.widths[0],
                "layers": [{"mixer": mixer, "kernel": st.kernels[0], "ratio": st.ratios[0]}],
            }
        )
    arch = space.make_arch({"resolution": 1024, "stem": 16, "stages": stages})
    model = nas.fuse(nas.build(arch))
    res = export_onnx(model, (1, 1024), tmp_path / "m.onnx")
    assert res["max_abs_diff_all"] <= 1e-4 and set(res["max_abs_diff"]) == {"1", "3"}
    assert (tmp_path / "m.onnx").is_file() and not list(tmp_path.glob(".m.onnx*"))
    with pytest.raises(ZooError, match="exporter"):
        export_onnx(model, (1, 1024), tmp_path / "x.onnx", exporter="bogus")


# --------------------------------------------------------------------------------------------- safety
def test_tampered_weights_detected(env, tmp_path):
    zoo = _copy_zoo(env, tmp_path / "zoo")
    w = zoo / env.name / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="tampered"):
        create_model(env.name, zoo=zoo)
    (res,) = verify(env.name, zoo)
    assert not res["ok"] and res["checksums"] == "FAILED" and "model.safetensors" in res["problem"]
    code = cli.main(["zoo", "verify", "--zoo", str(zoo)])
    assert code == 2


def test_incomplete_and_malicious_entries(env, tmp_path, capsys):
    zoo = _copy_zoo(env, tmp_path / "zoo")
    (zoo / env.name / "model.onnx").unlink()
    (res,) = verify(env.name, zoo)
    assert not res["ok"] and "incomplete" in res["problem"]
    assert cli.main(["zoo", "verify", env.name, "--zoo", str(zoo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.onnx" in err[0] and "Traceback" not in err[0]

    # a YAML tag that would run code under an unsafe loader, with a matching checksum: refused, nothing runs
    marker = tmp_path / "pwned"
    arch_file = zoo / env.name / "arch.yaml"
    arch_file.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    index = yaml.safe_load((zoo / INDEX_FILE).read_text())
    index["models"][env.name]["files"]["arch.yaml"] = sha256_file(arch_file)
    (zoo / INDEX_FILE).write_text(yaml.safe_dump(index))
    with pytest.raises(ZooError, match="arch.yaml"):
        create_model(env.name, zoo=zoo)
    assert not marker.exists()

    # an edited arch with a consistent checksum: the recorded id no longer matches
    doc = yaml.safe_load((env.zoo / env.name / "arch.yaml").read_text())
    doc["arch"]["stem"] = 16
    arch_file.write_text(yaml.safe_dump(doc))
    index["models"][env.name]["files"]["arch.yaml"] = sha256_file(arch_file)
    (zoo / INDEX_FILE).write_text(yaml.safe_dump(index))
    with pytest.raises(ZooError, match="id"):
        create_model(env.name, zoo=zoo)

    # an index naming a file outside the entry is rejected before anything is opened
    index["models"][env.name]["files"]["../../etc/passwd"] = "0" * 64
    (zoo / INDEX_FILE).write_text(yaml.safe_dump(index))
    with pytest.raises(ZooError, match="not an entry file"):
        create_model(env.name, zoo=zoo)
    (zoo / INDEX_FILE).write_text("models: [unclosed\n")
    with pytest.raises(ZooError, match="index"):
        list_models(zoo)
    with pytest.raises(ZooError, match="no model 'nope'"):
        create_model("nope", zoo=env.zoo)
    with pytest.raises(ZooError, match="no such zoo"):
        create_model("x", zoo=tmp_path / "missing")


# --------------------------------------------------------------------------------------------- processes
def _sub_env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def test_two_concurrent_exports(env, tmp_path):
    """Two processes export into one zoo; both wait on the lock held here, then commit one after the other."""
    zoo = tmp_path / "zoo"
    picks = [env.archs[1].id, env.archs[2].id]
    with locked(zoo):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nas.cli.main",
                    "--json",
                    "export",
                    str(env.run),
                    "--pick",
                    p,
                    "--zoo",
                    str(zoo),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_sub_env(),
                cwd=tmp_path,
            )
            for p in picks
        ]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(list((zoo / STAGING_DIR).glob("export-*/pareto.png"))) < 2:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.2)
        time.sleep(0.3)  # both are now blocked on the lock (or done staging and about to ask for it)
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    names = sorted(json.loads(out)[0]["name"] for out, _ in outs)
    assert names == ["tiny-cpu1t-lat5ms-a", "tiny-cpu1t-lat5ms-b"]
    models = read_index(zoo)["models"]
    assert sorted(models) == names and {models[n]["id"] for n in names} == set(picks)
    assert all(r["ok"] for r in verify(zoo=zoo))
    assert not list((zoo / STAGING_DIR).iterdir())


def test_create_model_in_fresh_process(env, tmp_path):
    code = textwrap.dedent(f"""
        import json, sys, torch
        from nas.zoo import create_model
        model = create_model({env.name!r}, zoo={str(env.zoo)!r})
        x = torch.randn(2, 3, {env.arch.resolution}, {env.arch.resolution},
                        generator=torch.Generator().manual_seed(123))
        with torch.no_grad():
            y = model(x)
        bad = sorted(m for m in sys.modules if m.startswith(("nas.supernet", "timm")))
        print(json.dumps({{"y": y.tolist(), "modules": bad}}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_sub_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["modules"] == []  # no supernet (or timm) code involved
    with torch.no_grad():
        ref = env.model(_input(env.arch))
    torch.testing.assert_close(torch.tensor(out["y"]), ref, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------- sources
def test_supernet_weights(env, tmp_path, monkeypatch):
    arch = env.archs[1]
    trained = _trained(nas.build(arch), seed=11)
    seen = {}

    class FakeSupernet:
        def extract(self, a):
            seen["arch"] = a
            sub = nas.build(a)
            sub.load_state_dict(trained.state_dict())
            return sub

    def load_supernet(path):
        seen["ckpt"] = Path(path)
        return FakeSupernet()

    fake = types.ModuleType("nas.supernet")
    fake.load_supernet = load_supernet
    monkeypatch.setitem(sys.modules, "nas.supernet", fake)
    ckpt = tmp_path / "super.ckpt"
    ckpt.write_bytes(b"not read by the fake")
    zoo = tmp_path / "zoo"
    (rec,) = export(env.run, pick=[arch.id], weights=f"supernet:{ckpt}", zoo=zoo, name="from-supernet")
    assert seen["arch"] == arch and seen["ckpt"] == ckpt
    assert (
        rec["weights"]["source"] == "supernet"
        and "supernet" in (zoo / "from-supernet" / "card.md").read_text()
    )
    monkeypatch.delitem(sys.modules, "nas.supernet")
    x = _input(arch)
    with torch.no_grad():
        assert torch.equal(create_model("from-supernet", zoo=zoo)(x), trained(x))

    monkeypatch.setitem(sys.modules, "nas.supernet", None)  # the package is absent
    monkeypatch.setitem(sys.modules, "nas.supernet.checkpoint", None)
    with pytest.raises(ZooError, match="supernet"):
        export(env.run, pick=[arch.id], weights=f"supernet:{ckpt}", zoo=zoo)


def test_pick_errors_and_trials(env, tmp_path):
    zoo = tmp_path / "zoo"
    with pytest.raises(ZooError, match="pick 'pareto'"):
        export(env.run, zoo=zoo)
    with pytest.raises(ZooError, match="Pareto ids"):
        export(env.run, pick=["0123456789ab"], zoo=zoo)
    with pytest.raises(ZooError, match="either"):
        export(env.run, pick=["pareto", env.archs[1].id], zoo=zoo)
    with pytest.raises(ZooError, match="do not match"):
        export(env.run, pick=[env.archs[1].id], weights=env.weights, zoo=zoo)  # weights of another arch
    (rec,) = export(env.run, pick=[env.trial.id], zoo=zoo, name="trial-one")  # from trials.csv, arch-only
    assert rec["id"] == env.trial.id and rec["metrics"]["accuracy"] == 0.5
    assert rec["latency"][0]["provenance"].startswith("predicted")  # a trial's latency_ms is the prediction
    assert "model.safetensors" not in rec["files"]
    with pytest.raises(ZooError, match="with force"):
        export(env.run, pick=[env.archs[2].id], zoo=zoo, name="trial-one")
    assert not list((zoo / STAGING_DIR).iterdir())  # a failed export leaves nothing behind


def test_names():
    assert device_abbrev("cpu-1t") == "cpu1t"
    assert device_abbrev("cpu_1thread") == "cpu1t"
    assert device_abbrev("Jetson Orin GPU") == "jetsonoringpu"
    assert budget_abbrev("latency:5ms") == "lat5ms"
    assert budget_abbrev("latency:2.5ms,params:5M") == "lat2p5ms-params5m"
    assert budget_abbrev(None) == ""
    with pytest.raises(ZooError, match="model name"):
        export("whatever", name="Bad/Name")


def test_name_choice_reuses_identical_entries(env, tmp_path):
    item = item_from_arch(env.run / "pareto" / f"{env.arch.id}.yaml")
    files = {"arch.yaml": "0" * 64, "model.onnx": "0" * 64, "card.md": "0" * 64}
    index = {"models": {f"tiny-{env.arch.id}": {"id": env.arch.id, "files": files}}}
    assert choose_name(index, tmp_path, item, None, None, False) == (f"tiny-{env.arch.id}", True)
    assert choose_name(index, tmp_path, item, "f" * 64, None, False) == (f"tiny-{env.arch.id}-b", False)
    assert choose_name(index, tmp_path, item, "f" * 64, f"tiny-{env.arch.id}", True)[1] is True


# --------------------------------------------------------------------------------------------- CLI
def test_cli_arch_only_entry_loads_without_space_file(env, tmp_path, capsys):
    space_file = tmp_path / "tiny-copy.yaml"
    space_file.write_text(TINY_SPACE)
    arch = nas.load_space(space_file).make_arch(ARCH_A)
    arch_file = arch.save(tmp_path / "a.yaml")
    zoo = tmp_path / "zoo"
    assert cli.main(["export", str(arch_file), "--zoo", str(zoo)]) == 0
    name = f"tiny-{arch.id}"
    assert name in capsys.readouterr().out
    # re-exporting the same arch is idempotent: same name, one entry
    assert cli.main(["--json", "export", str(arch_file), "--zoo", str(zoo)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == name and list_models(zoo) == [name]
    space_file.unlink()  # the entry embeds its space definition
    arch_file.unlink()
    with pytest.raises(ZooError, match="architecture-only"):
        create_model(name, zoo=zoo)
    model = create_model(name, pretrained=False, zoo=zoo)
    assert model(_input(arch)).shape == (2, 10)
    card = (zoo / name / "card.md").read_text()
    assert "architecture-only" in card and "Latency is not known" in card and "Accuracy is not known" in card

    assert cli.main(["zoo", "list", "--zoo", str(zoo)]) == 0
    assert name in capsys.readouterr().out
    assert cli.main(["zoo", "show", name, "--zoo", str(zoo)]) == 0
    assert "# " + name in capsys.readouterr().out
    assert cli.main(["--json", "zoo", "verify", "--zoo", str(zoo)]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    assert res["ok"] and res["onnx_max_abs_diff"].startswith("n/a")
    assert cli.main(["zoo", "show", "nope", "--zoo", str(zoo)]) == 2
    assert (
        cli.main(
            [
                "export",
                str(env.run),
                "--pick",
                "pareto",
                "--zoo",
                str(zoo),
                "--weights",
                str(tmp_path / "missing.safetensors"),
            ]
        )
        == 2
    )


# --------------------------------------------------------------------------------------------- timm
def test_timm_registration_with_a_stand_in_registry(env, monkeypatch):
    """timm is an optional extra (not installed here): a minimal stand-in with timm's registry calls."""
    registry = {}
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")

    def register_model(fn):
        registry[fn.__name__] = fn
        return fn

    def create_model(
        model_name, pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None, **kwargs
    ):
        return registry[model_name](
            pretrained=pretrained,
            pretrained_cfg=pretrained_cfg,
            pretrained_cfg_overlay=pretrained_cfg_overlay,
            **kwargs,
        )

    models.register_model = register_model
    timm.models = models
    timm.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setitem(sys.modules, "timm.models", models)
    names = register_timm(zoo=env.zoo)
    assert f"nas_{env.name}" in names and "nas_tiny_cpu1t_lat5ms_a" in names
    model = timm.create_model(f"nas_{env.name}", pretrained=True)
    x = _input(env.arch)
    with torch.no_grad():
        assert torch.equal(model(x), env.model(x))
    with pytest.raises(ZooError, match="not supported"):
        timm.create_model(f"nas_{env.name}", drop_rate=0.5)

    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setitem(sys.modules, "timm.models", None)
    with pytest.raises(ZooError, match="timm is not installed"):
        register_timm(zoo=env.zoo)


# ---- fine-tuning from the inherited supernet weights -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_supernet(tmp_path_factory) -> Path:
    """A real supernet checkpoint: the tiny space trained one epoch on digits (11 steps, seconds)."""
    from nas.supernet.train import SupernetTrainer, TrainConfig

    out = tmp_path_factory.mktemp("supernet")
    cfg = TrainConfig(space="tiny", data="digits", epochs=1, batch_size=128, n_random=1, eval_every=0,
                      calib_batches=2, log_every=5, device="cpu")
    SupernetTrainer(cfg, out, quiet=True).fit()
    return out


def _top1(model: torch.nn.Module, arch, split) -> float:
    """Top-1 of a loaded zoo model on a data split, computed here (not by the exporter)."""
    from nas.data import arch_resolution, iterate, resize, space_io

    res, ch = arch_resolution(arch, arch.space), space_io(arch.space).in_channels
    correct = total = 0
    with torch.no_grad():
        for x, y in iterate(split, 100):
            correct += int((model(resize(x, res, ch)).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def test_export_finetune_records_both_measured_accuracies(tiny_supernet, tmp_path, capsys):
    from nas.data import load_data

    space = nas.load_space("tiny")
    arch = space.sample(rng=__import__("random").Random(3))
    arch_file = tmp_path / "arch.yaml"
    arch_file.write_text(yaml.safe_dump(arch.to_dict()))
    zoo, ck = tmp_path / "zoo", f"supernet:{tiny_supernet}"
    assert cli.main(["export", str(arch_file), "--weights", ck, "--zoo", str(zoo), "--name", "inherited"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(arch_file), "--weights", ck, "--finetune", "1", "--zoo", str(zoo),
                     "--name", "tuned"]) == 0
    err = capsys.readouterr().err
    assert f"fine-tune {arch.id}: 11/11 (100%) done in" in err  # progress of the fine-tune's 11 steps
    models = read_index(zoo)["models"]
    inh, rec = models["inherited"], models["tuned"]
    m, prov = rec["metrics"], rec["provenance"]
    # both accuracies, each measured on the same split with its provenance
    assert m["inherited_accuracy"] == inh["metrics"]["accuracy"]  # the inherited figure of a plain export
    assert prov["inherited_accuracy"] == inh["provenance"]["accuracy"]
    assert prov["inherited_accuracy"].startswith("measured: top-1 on the digits validation split")
    assert prov["accuracy"].startswith("measured: top-1 on the digits validation split (359 samples) after "
                                       "fine-tuning 1 epoch(s) (11 steps) on the digits training split")
    ft = rec["weights"]["finetune"]
    assert ft["epochs"] == 1 and ft["steps"] == 11 and ft["lr"] == pytest.approx(0.005) and ft["data"] == "digits"
    # the saved weights are the fine-tuned ones: they differ from the inherited, and an evaluation of the loaded
    # entry here gives the recorded accuracy
    assert rec["files"]["model.safetensors"] != inh["files"]["model.safetensors"]
    val = load_data("digits", space).val
    tuned, plain = create_model("tuned", zoo=zoo), create_model("inherited", zoo=zoo)
    assert _top1(tuned, arch, val) == m["accuracy"]
    assert _top1(plain, arch, val) == m["inherited_accuracy"]
    assert m["accuracy"] > m["inherited_accuracy"]  # one epoch from one epoch of supernet training helps
    card = (zoo / "tuned" / "card.md").read_text()
    assert "| fine-tuned (the weights of this entry) | " in card and "| inherited from the supernet | " in card
    assert "These are the fine-tuned weights." in card
    assert cli.main(["zoo", "verify", "--zoo", str(zoo)]) == 0  # checksums of the rewritten files hold


def test_export_finetune_needs_supernet_weights(tmp_path, capsys):
    arch = nas.load_space("tiny").min()
    arch_file = tmp_path / "arch.yaml"
    arch_file.write_text(yaml.safe_dump(arch.to_dict()))
    code = cli.main(["export", str(arch_file), "--finetune", "2", "--zoo", str(tmp_path / "zoo")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["nas: error: --finetune 2: fine-tuning starts from inherited weights; give weights "
                                 "supernet:CKPT (a checkpoint of `nas supernet train`)"]
    code = cli.main(["export", str(arch_file), "--finetune", "-1", "--zoo", str(tmp_path / "zoo")])
    assert code == 2 and "--finetune -1: give a number of epochs" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()
