"""Supernet training: sampling determinism, data-parallel agreement, resume after a kill, BN recalibration,
data loaders (digits, CIFAR's pickles read safely, image folders, 1D arrays), checkpoints and the CLI.

Ray Train itself takes about a minute to start two workers on this 2-core machine, so these tests check
the per-step seeded agreement and the gradient all-reduce with two torch.distributed (gloo) processes;
``bench/supernet_overhead.py --ray 2`` runs a real two-worker Ray Train job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.cli import main as cli
from nas.data import augment, load_data, read_cifar_batch, resize
from nas.errors import NASError
from nas.space import load_space
from nas.supernet import Supernet
from nas.supernet.bn import SubnetEvaluator, recalibrate_bn
from nas.supernet.checkpoint import load_checkpoint, load_supernet
from nas.supernet.train import SupernetTrainer, TrainConfig, sandwich, step_seed, train_standalone

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(batch_size=128, n_random=1, eval_every=0, calib_batches=2, log_every=1)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---- sampling determinism ----------------------------------------------------------------------------------
def test_sandwich_is_seeded_per_step():
    space = load_space("tiny")
    a = [x.id for x in sandwich(space, 0, 5, 3)]
    assert a == [x.id for x in sandwich(space, 0, 5, 3)]
    assert a[0] == space.max().id and a[1] == space.min().id
    assert a != [x.id for x in sandwich(space, 0, 6, 3)]
    assert a != [x.id for x in sandwich(space, 1, 5, 3)]
    # the same in a fresh interpreter with another hash seed (what a worker process sees)
    code = (
        "from nas.space import load_space; from nas.supernet.train import sandwich, step_seed;"
        "print([x.id for x in sandwich(load_space('tiny'), 0, 5, 3)], step_seed(0, 5, 3, 1))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**_env(), "PYTHONHASHSEED": "123"},
        check=True,
    )
    assert out.stdout.strip() == f"{a} {step_seed(0, 5, 3, 1)}"


def test_random_sandwich_mixers_give_every_mixer_its_turn_at_the_extremes():
    """With ``sandwich_mixers=random`` the step's largest/smallest keep their extreme sizes but their mixers
    vary per step (seeded), so over an epoch every mixer of a layer is trained at the extremes; the random
    archs of a step are the same as with fixed mixers. ``resolution="random"`` changes only the extremes'
    input size, and every size of the space comes up."""
    space = load_space("hybrid-s")
    big, small = space.max(), space.min()
    seen: set[str] = set()
    sizes: set[int] = set()
    for step in range(60):
        fixed = sandwich(space, 0, step, 2)
        rnd = sandwich(space, 0, step, 2, mixers="random")
        assert [a.id for a in rnd] == [a.id for a in sandwich(space, 0, step, 2, mixers="random")]
        assert [a.id for a in rnd[2:]] == [a.id for a in fixed[2:]]
        for a, ref in ((rnd[0], big), (rnd[1], small)):
            assert (a.resolution, a.stem) == (ref.resolution, ref.stem)
            assert [(s.depth, s.width) for s in a.stages] == [(s.depth, s.width) for s in ref.stages]
            assert space.count(a).params > 0
        assert all(lc.mixer != "skip" for s in rnd[0].stages for lc in s.layers)
        seen |= {lc.mixer for lc in rnd[0].stages[0].layers}
        both = sandwich(space, 0, step, 2, mixers="random", resolution="random")
        assert [a.stages for a in both] == [a.stages for a in rnd]  # only the extremes' input size differs
        sizes.update(a.resolution for a in both[:2])
    assert seen == set(space.stages[0].mixers) - {"skip"}
    assert sizes == set(space.spec.resolutions)
    assert space.count(big).macs >= max(space.count(sandwich(space, 0, s, 0, mixers="random")[0]).macs
                                         for s in range(20))
    cfg = TrainConfig.from_dict(dataclasses.asdict(TrainConfig()) | {"sandwich_mixers": "random"})
    assert cfg.sandwich_mixers == "random"
    old = dataclasses.asdict(TrainConfig())
    for k in ("sandwich_mixers", "sandwich_resolution", "sharing"):
        old.pop(k)
    old = TrainConfig.from_dict(old)  # a checkpoint from before these options trained as they did then
    assert (old.sandwich_mixers, old.sandwich_resolution, old.sharing) == ("fixed", "extreme", "mlp")


def test_workers_agree_on_archs_and_take_their_own_shard(tmp_path):
    data = load_data("digits", load_space("tiny"))
    cfg = TrainConfig(**FAST)
    t0 = SupernetTrainer(cfg, tmp_path, rank=0, world=2, data=data, quiet=True)
    t1 = SupernetTrainer(cfg, tmp_path, rank=1, world=2, data=data, quiet=True)
    for step in (0, 3, 17):
        assert [a.id for a in t0.archs(step)] == [a.id for a in t1.archs(step)]
        x0, _ = t0._batch(step)
        x1, _ = t1._batch(step)
        assert x0.shape[0] == x1.shape[0] == 64 and not torch.equal(x0, x1)


def _dist_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        data = load_data("digits", load_space("tiny"))
        cfg = TrainConfig(**{**FAST, "checkpoint_every": 1000})
        tr = SupernetTrainer(cfg, out, rank=rank, world=world, data=data, quiet=True)
        ids = []
        for _ in range(3):
            ids.append([a.id for a in tr.archs(tr.step)])
            tr.train_step()
        from safetensors.torch import save_file

        params = {k: v.detach().clone().contiguous() for k, v in tr.supernet.named_parameters()}
        save_file(params, f"{out}/rank{rank}.safetensors", metadata={"ids": json.dumps(ids)})
    finally:
        dist.destroy_process_group()


def test_data_parallel_gloo_workers_stay_identical(tmp_path):
    """Two processes, each its own half of every batch: after all-reduced steps their weights are identical."""
    import socket

    import torch.multiprocessing as mp
    from safetensors import safe_open

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_dist_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    tensors, ids = [], []
    for r in range(2):
        with safe_open(str(tmp_path / f"rank{r}.safetensors"), "pt") as f:
            ids.append(json.loads(f.metadata()["ids"]))
            tensors.append({k: f.get_tensor(k) for k in f.keys()})
    assert ids[0] == ids[1]
    assert tensors[0].keys() == tensors[1].keys()
    assert all(torch.equal(tensors[0][k], tensors[1][k]) for k in tensors[0])
    fresh = dict(Supernet(load_space("tiny"), seed=0).named_parameters())
    assert any(not torch.equal(tensors[0][k], fresh[k].detach()) for k in tensors[0])  # it did train


# ---- training ------------------------------------------------------------------------------------------------
def test_tiny_training_run_lowers_the_loss(tmp_path):
    cfg = TrainConfig(epochs=3, lr=0.1, **{**FAST, "log_every": 11, "eval_every": 3, "calib_batches": 3})
    tr = SupernetTrainer(cfg, tmp_path, quiet=True)
    summary = tr.fit()
    assert summary["finished"] and summary["steps"] == 33
    import csv

    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    first, last = float(rows[0]["loss_max"]), float(rows[-1]["loss_max"])
    assert last < first - 0.3, (first, last)
    assert float(rows[-1]["loss_min"]) < float(rows[0]["loss_min"])
    acc = {r["which"]: r["accuracy"] for r in summary["eval"]}
    assert acc["max"] > 0.5  # 10 classes: chance is 0.1
    assert (tmp_path / "eval.csv").is_file() and (tmp_path / "state.json").is_file()


def test_a_run_without_shared_mlps_resumes_and_loads_as_one(tmp_path):
    """``--sharing none`` is recorded in the checkpoint: a resumed run and ``load_supernet`` rebuild the same
    per-mixer layers (a supernet of the other mode would not fit the saved bank)."""
    cfg = TrainConfig(epochs=1, lr=0.1, sharing="none", sandwich_mixers="random", **{**FAST, "max_steps": 2})
    tr = SupernetTrainer(cfg, tmp_path, quiet=True)
    tr.fit()
    assert tr.supernet.sharing == "none" and tr.step == 2
    sn, state = load_supernet(tmp_path)
    assert sn.sharing == "none" and state["config"]["sharing"] == "none"
    assert set(sn.state_dict()) == set(tr.supernet.state_dict())
    again = SupernetTrainer(TrainConfig(), tmp_path, resume=True, quiet=True)
    assert (again.cfg.sharing, again.cfg.sandwich_mixers, again.step) == ("none", "random", 2)


def test_amp_on_cpu_trains_in_bfloat16_and_lowers_the_loss(tmp_path):
    # one epoch in small batches, the max and min subnets only: bf16 on a CPU without AVX512-BF16 is slow
    cfg = TrainConfig(epochs=1, lr=0.1, amp="on", **{**FAST, "batch_size": 32, "n_random": 0, "log_every": 5})
    tr = SupernetTrainer(cfg, tmp_path, quiet=True)
    assert tr.amp_dtype == torch.bfloat16 and tr.scaler is None
    x, _ = tr._batch(0)
    tr.supernet.set_active(tr.largest)
    with tr._autocast():
        assert tr.supernet(x).dtype == torch.bfloat16  # the forward really runs in bf16
    tr.fit()
    import csv

    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert float(rows[-1]["loss_max"]) < float(rows[0]["loss_max"]) - 0.3
    assert all(p.dtype == torch.float32 for p in tr.supernet.parameters())  # master weights stay fp32


def test_resume_after_kill_is_exact(tmp_path):
    """Kill a training process (SIGKILL) mid-run, resume it: the weights equal those of an unbroken run."""
    args = [
        "--space",
        "tiny",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--n-random",
        "0",
        "--eval-every",
        "0",
        "--calib-batches",
        "2",
        "--checkpoint-every",
        "1",
        "--threads",
        "1",
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.cli.main", "supernet", "train", *args, "--out", str(killed)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = killed / "state.json"
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            step = json.loads(state.read_text())["step"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            step = 0
        if step >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    at_kill = load_checkpoint(killed).state["step"]
    assert 3 <= at_kill < 22
    assert cli.main(["supernet", "train", *args, "--out", str(killed), "--resume"]) == 0
    whole = tmp_path / "whole"
    assert cli.main(["supernet", "train", *args, "--out", str(whole)]) == 0
    a, b = load_checkpoint(killed), load_checkpoint(whole)
    assert a.state["step"] == b.state["step"] == 22
    assert a.model.keys() == b.model.keys() and a.optim.keys() == b.optim.keys()
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert all(torch.equal(a.optim[k], b.optim[k]) for k in a.optim)
    steps = [int(r.split(",")[0]) for r in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps))  # rows past the checkpoint were dropped on resume, none doubled


def test_existing_run_needs_resume_and_checkpoint_errors(tmp_path):
    cfg = TrainConfig(epochs=1, max_steps=1, **FAST)
    SupernetTrainer(cfg, tmp_path, quiet=True).fit()
    with pytest.raises(NASError, match="resume it"):
        SupernetTrainer(cfg, tmp_path, quiet=True)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(NASError, match="cannot read checkpoint|not a nas"):
        load_checkpoint(bad)
    with pytest.raises(NASError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")


# ---- BN recalibration --------------------------------------------------------------------------------------
def test_recalibrate_bn_computes_the_statistics_of_the_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5))
    xs = [torch.randn(8, 1, 5, 5) * 3 + 1 for _ in range(3)]
    stats = recalibrate_bn(model, xs)
    assert not model.training
    feats = [model[0](x).detach() for x in xs]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats])
    vars_ = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats])
    assert torch.allclose(stats["1.running_mean"], means.mean(0), atol=1e-5)  # cumulative average of batches
    assert torch.allclose(stats["1.running_var"], vars_.mean(0), atol=1e-4)


def test_evaluator_recalibrates_once_per_arch_and_matches_the_supernet():
    space = load_space("tiny")
    data = load_data("digits", space)
    sn = Supernet(space, seed=0)
    ev = SubnetEvaluator(sn, data.train, data.val, calib_batches=2, batch_size=64)
    a = space.sample(seed=11)
    r1 = ev.evaluate(a)
    r2 = ev.evaluate(a)
    assert ev.calibrations == 1 and r1 == r2  # cached
    m = ev.model(a)
    assert ev.calibrations == 1
    x = resize(data.val.batch(np.arange(16))[0], a.resolution)
    sn.eval()
    with torch.no_grad():
        assert float((sn(x, a) - m(x)).abs().max()) <= 1e-5  # statistics were written back into the bank
    # stale (never calibrated) statistics differ from recalibrated ones
    fresh = Supernet(space, seed=0).extract(a).state_dict()
    key = next(k for k in fresh if k.endswith("running_mean"))
    assert not torch.equal(fresh[key], m.state_dict()[key])
    ev.clear()
    ev.evaluate(a)
    assert ev.calibrations == 2


# ---- data ----------------------------------------------------------------------------------------------------
def test_digits_split_and_augment():
    d = load_data("digits", load_space("tiny"))
    assert (len(d.train), len(d.val), d.classes, d.channels, d.size) == (1438, 359, 10, 1, (8, 8))
    x, y = d.train.batch(np.arange(10))
    assert x.shape == (10, 1, 8, 8) and y.dtype == torch.long
    assert abs(float(d.train.x.mean())) < 1e-4
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(augment(x, g1, 1, True), augment(x, g2, 1, True))
    assert resize(x, 4).shape == (10, 1, 4, 4)
    assert resize(x, 8, channels=3).shape == (10, 3, 8, 8)


def test_digits_folds_partition_the_dataset():
    from nas.data import kfold_split

    space = load_space("tiny")
    folds = [load_data(f"digits:fold={f}/5", space) for f in range(5)]
    assert [len(d.train) + len(d.val) for d in folds] == [1797] * 5
    assert sum(len(d.val) for d in folds) == 1797
    assert "5-fold, val = fold 2" in folds[2].info["split"]
    y = np.repeat(np.arange(10), 30)
    vals = [kfold_split(y, f, 5)[1] for f in range(5)]
    assert sorted(np.concatenate(vals).tolist()) == list(range(300))  # each sample in one val split
    assert all((np.bincount(y[v], minlength=10) == 6).all() for v in vals)  # stratified
    tr, va = kfold_split(y, 1, 5)
    assert not set(tr) & set(va) and len(tr) + len(va) == 300
    for bad in ("digits:fold=5/5", "digits:fold=1/1", "digits:3/5", "digits:fold=a/b"):
        with pytest.raises(NASError, match="fold=F/K"):
            load_data(bad, space)


def _cifar_batch(path: Path, n: int, key: str) -> None:
    rng = np.random.default_rng(0)
    obj = {
        b"batch_label": b"test",
        key.encode(): rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_cifar_python_format_with_restricted_unpickler(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        _cifar_batch(root / f"data_batch_{i}", 20, "labels")
    _cifar_batch(root / "test_batch", 10, "labels")
    space = load_space("ofa-mbv3")
    d = load_data(f"cifar10:{root}", space)
    assert (len(d.train), len(d.val), d.classes, d.channels, d.size) == (100, 10, 10, 3, (32, 32))

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil_batch"
    evil.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(NASError, match="refusing|not a CIFAR"):
        read_cifar_batch(evil)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(NASError, match="missing"):
        load_data(f"cifar100:{root}", space)


def test_image_folder_without_torchvision(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    d = load_data(f"folder:{tmp_path}", load_space("tiny"))
    assert d.classes == 2 and len(d.train) + len(d.val) == 12
    x, y = d.train.batch(np.arange(3))
    assert x.shape == (3, 1, 8, 8) and set(y.tolist()) <= {0, 1}


def test_1d_arrays_from_numpy_and_csv(tmp_path):
    space = load_space("seq1d")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 64)).astype(np.float32), rng.integers(0, 3, 40)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    d = load_data(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}", space)
    assert d.dims == 1 and d.channels == 1 and d.classes == 3 and d.size == (64,)
    assert d.train.batch(np.arange(2))[0].shape == (2, 1, 64)
    assert resize(d.train.batch(np.arange(2))[0], 1024).shape == (2, 1, 1024)
    with open(tmp_path / "s.csv", "w") as f:
        f.write(",".join(f"v{i}" for i in range(8)) + ",label\n")
        for r in range(20):
            f.write(",".join(str(v) for v in rng.normal(size=8)) + f",{r % 2}\n")
    d = load_data(f"csv:{tmp_path / 's.csv'}", space)
    assert d.classes == 2 and d.size == (8,) and len(d.train) + len(d.val) == 20
    with pytest.raises(NASError, match="unknown source"):
        load_data("imagenet", space)
    with pytest.raises(NASError, match="1D"):
        load_data("digits", space)


# ---- checkpoints and the CLI ---------------------------------------------------------------------------------
def test_cli_train_eval_extract(tmp_path, capsys):
    run = tmp_path / "run"
    base = [
        "supernet",
        "train",
        "--space",
        "tiny",
        "--data",
        "synthetic:320",
        "--out",
        str(run),
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--n-random",
        "0",
        "--threads",
        "1",
        "--calib-batches",
        "1",
    ]
    assert cli.main(base) == 0
    sn, state = load_supernet(run)
    assert (
        state["step"] == 4 and state["space"]["name"] == "tiny" and state["data"]["spec"] == "synthetic:320"
    )
    arch = load_space("tiny").sample(seed=2)
    arch.save(tmp_path / "a.yaml")
    (tmp_path / "many.json").write_text(
        json.dumps([a.to_dict() for a in load_space("tiny").sample_many(2, 5)])
    )
    capsys.readouterr()
    code = cli.main(
        [
            "--json",
            "supernet",
            "eval",
            "--checkpoint",
            str(run),
            "--arch",
            str(tmp_path / "a.yaml"),
            "--archs",
            str(tmp_path / "many.json"),
            "--extremes",
            "--calib-batches",
            "1",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in out["results"]][:1] == [arch.id] and len(out["results"]) == 5
    assert all(0 <= r["accuracy"] <= 1 for r in out["results"]) and "BN recalibrated" in out["provenance"]
    assert (
        cli.main(
            [
                "supernet",
                "extract",
                "--checkpoint",
                str(run),
                "--arch",
                str(tmp_path / "a.yaml"),
                "--out",
                str(tmp_path / "model"),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    from safetensors.torch import load_file

    import nas

    model = nas.build(arch)
    model.load_state_dict(load_file(str(tmp_path / "model" / "model.safetensors")))
    capsys.readouterr()
    assert cli.main(["supernet", "eval", "--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such checkpoint" in err[0]


def test_nb201_cell_space_trains_one_shot(tmp_path):
    """The NB201 cell space gets a one-shot supernet (per-edge op weights) through the same trainer."""
    cfg = TrainConfig(
        space="nb201",
        data="synthetic:160",
        epochs=1,
        max_steps=2,
        batch_size=32,
        n_random=1,
        eval_every=0,
        calib_batches=1,
    )
    tr = SupernetTrainer(cfg, tmp_path, quiet=True)
    assert type(tr.supernet).__name__ == "NB201Supernet"
    before = {k: v.clone() for k, v in tr.supernet.state_dict().items()}
    tr.fit()
    sn, state = load_supernet(tmp_path)
    assert state["step"] == 2 and state["space"] == {"name": "nb201"}
    assert any(not torch.equal(before[k], v) for k, v in sn.state_dict().items())
    arch = sn.space.sample(seed=1)
    ev = SubnetEvaluator(sn, tr.data.train, tr.data.val, calib_batches=1, batch_size=32)
    assert 0.0 <= ev.evaluate(arch)["accuracy"] <= 1.0


def test_standalone_training_reports_val_and_test_accuracy():
    """A held-out test split is evaluated with the trained model; without one only val is reported."""
    from nas.data import ArrayDataset, DataSplits
    from nas.supernet.train import with_classes

    g = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.arange(n) % 2
        x = torch.randn(n, 1, 8, 8, generator=g) * 0.3 + y.view(-1, 1, 1, 1).float() * 2 - 1  # separable
        return ArrayDataset(x, y)
    space = load_space("tiny")
    d = DataSplits("test", split(256), split(64), 2, 1, 2, (8, 8), {}, test=split(100))
    cfg = TrainConfig(space="tiny", epochs=2, batch_size=32, lr=0.05, shift=0)
    arch = with_classes(space, 2).arch_from_dict(space.min().to_dict())
    r = train_standalone(arch, d, cfg)
    assert r["test_accuracy"] >= 0.9 and r["accuracy"] >= 0.9  # the classes are separable
    assert round(r["test_accuracy"] * 100) == r["test_accuracy"] * 100  # a count out of the 100 test samples
    assert train_standalone(arch, d, cfg) == r  # seeded: the same numbers again
    assert "test_accuracy" not in train_standalone(arch, dataclasses.replace(d, test=None), cfg)
