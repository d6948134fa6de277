"""Supernet ranking fidelity: one-shot vs inherit-then-fine-tune vs few-shot sub-supernets (issue #26, item 3).

Scores the 40 hybrid-s archs of the accuracy ground truth (``bench/accuracy_groundtruth.py``: each trained
alone, mean top-1 test accuracy over its seeds) three ways, for each of ``--seeds`` supernet seeds, on the
ground truth's Fashion-MNIST training subset and validation subset:

- ``one-shot``: the supernet of ``bench/estimator_fidelity.py`` (sandwich rule, in-place distillation, its
  ``SUPERNET`` recipe) trained for ``--epochs`` epochs; each arch evaluated with inherited weights after BN
  recalibration (``nas.supernet.bn.SubnetEvaluator``);
- ``fine-tune``: each arch extracted from that supernet as a standalone net and trained further, labels only,
  for ``--ft-epochs`` epochs at ``--ft-lr`` (cosine, no warm-up; ``nas.supernet.train.fit_model``, the
  ground truth's optimiser settings), then evaluated the same way (BN recalibrated on the same batches);
- ``few-shot``: one sub-supernet per mixer family of the first layer of stage ``--split-stage`` (``GROUPS``),
  each initialised from the one-shot supernet and trained further with the same sandwich recipe on archs
  of its family only (``--fs-steps`` steps in all at ``--ft-lr``, shared out by the family's share of the
  space's mixers: about the fine-tuning's CPU); each arch evaluated in its family's sub-supernet.

For each it reports Kendall's tau-b (of the inherited validation accuracy; also of minus the validation
loss), Spearman's rho and the top-10 overlap against the ground truth per seed, and the CPU seconds per
arch (everything a method needs to score the 40 archs, the one-shot supernet included, divided by 40),
beside ``train:2`` of ``bench/results/estimators_hybrid-s_fashion-mnist.json``. Writes
``bench/results/supernet_fewshot.json`` and ``.log``.

    NAS_DATA=/work/shared/datasets python bench/supernet_fewshot.py --smoke   # ~2 min: the pipeline only
    NAS_DATA=/work/shared/datasets python bench/supernet_fewshot.py           # 47 min on 2 cores (AMD EPYC)

The full run is 9 tasks, about 5,250 CPU seconds: per seed the supernet (558 steps, ~570 s with its
evaluation), the 40 fine-tunes (~640 s) and the 3 sub-supernets (~530 s with their evaluations).

The work runs as tasks (per seed: the one-shot supernet; the fine-tunes; one per few-shot family) on
``--jobs`` processes of one torch thread each. Every task caches its checkpoints and results under
``--work`` (default runs/supernet-fewshot/), so an interrupted run resumes and a finished one is reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import random
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_groundtruth import RECIPE, machine, read_rows, seed_tau, table_paths  # noqa: E402
from estimator_fidelity import SUPERNET, agreement, supernet_config  # noqa: E402

# Mixer families of the split layer (the first layer of the split stage): each leaves several ground-truth
# archs (last stage: 19 / 14 / 7 of the 40).
GROUPS = {
    "conv": ("dwconv", "inception_dw", "dilated_reparam", "partial_conv", "lka", "mbconv"),
    "attention": ("attention", "focal", "gnconv"),
    "pool": ("pool", "identity"),
}
SETTINGS = {"epochs": 6, "ft_epochs": 1, "ft_lr": 0.02, "fs_steps": 540, "split_stage": -1, "seeds": [0, 1, 2]}
SMOKE = {"epochs": 1, "fs_steps": 12, "seeds": [0, 1], "train_subset": 1280, "val_subset": 500, "per_group": 2}
ESTIMATORS = ROOT / "bench" / "results" / "estimators_hybrid-s_fashion-mnist.json"
ONESHOT_E16 = {0: "estimators_hybrid-s_fashion-mnist.json", 1: "estimators_hybrid-s_fashion-mnist_e16_random_none_s1.json",
               2: "estimators_hybrid-s_fashion-mnist_e16_random_none_s2.json"}
METHODS = ("one-shot", "fine-tune", "few-shot")


# ---- the ground truth -----------------------------------------------------------------------------------
def load_truth(table: Path) -> dict[str, Any]:
    """The ground-truth table's recipe, its archs (smallest MACs first) and their mean test accuracy."""
    from nas.errors import NASError
    from nas.io import read_json, sha256_file

    sidecar = table.with_name(table.stem + "_recipe.json")
    if not table.is_file() or not sidecar.is_file():
        raise NASError(f"{table}: no ground-truth table (and {sidecar.name}); run bench/accuracy_groundtruth.py")
    meta = read_json(sidecar)
    rows = [r for r in read_rows(table) if r["recipe"] == meta["recipe_hash"]]
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["arch_id"], []).append(r)
    ids = sorted(by, key=lambda i: float(by[i][0]["macs"]))
    return {"recipe": meta["recipe"], "recipe_hash": meta["recipe_hash"], "sha256": sha256_file(table),
            "ids": ids, "archs": {i: json.loads(by[i][0]["arch"]) for i in ids},
            "truth": {i: float(np.mean([float(r["test_accuracy"]) for r in by[i]])) for i in ids},
            "ceiling": seed_tau(rows), "rows": len(rows)}


def split_mixer(arch: dict, stage: int) -> str:
    """The mixer of the first layer of stage ``stage`` of an arch (as a dict)."""
    return arch["stages"][stage]["layers"][0]["mixer"]


def group_of(mixer: str) -> str:
    """The family (a ``GROUPS`` key) of a mixer."""
    from nas.errors import NASError

    for g, mixers in GROUPS.items():
        if mixer in mixers:
            return g
    raise NASError(f"mixer {mixer}: in no family of GROUPS")


def pick_archs(gt: dict, stage: int, per_group: int) -> list[str]:
    """The arch ids scored: all of them, or (``per_group`` > 0, the smoke) the first few of each family."""
    if per_group <= 0:
        return list(gt["ids"])
    out: list[str] = []
    for g in GROUPS:
        out += [i for i in gt["ids"] if group_of(split_mixer(gt["archs"][i], stage)) == g][:per_group]
    return [i for i in gt["ids"] if i in out]


def group_steps(total: int) -> dict[str, int]:
    """The few-shot steps of each family: ``total`` shared out by the family's share of the mixers."""
    n = sum(len(m) for m in GROUPS.values())
    return {g: max(1, round(total * len(m) / n)) for g, m in GROUPS.items()}


# ---- torch side (run in the workers) --------------------------------------------------------------------
def _group_trainer_class():
    """``SupernetTrainer`` whose sandwich holds only archs with a split-layer mixer of one family."""
    from nas.errors import NASError
    from nas.supernet.train import SupernetTrainer, step_seed

    class GroupTrainer(SupernetTrainer):
        """Trains a sub-supernet of few-shot NAS: every sampled arch's split-layer mixer is in ``mixers``."""

        def restrict(self, mixers: tuple[str, ...], stage: int, steps: int) -> None:
            """Keep to ``mixers`` at ``stage``; run ``steps`` steps of cosine decay with no warm-up."""
            self.mixers, self.split_stage = frozenset(mixers), stage
            self.total_steps, self.warmup = steps, 0

        def _draw(self, make) -> Any:
            """An arch from ``make()``, redrawn until its split-layer mixer is one of the family's."""
            for _ in range(10_000):
                a = make()
                if split_mixer(a.to_dict(), self.split_stage) in self.mixers:
                    return a
            raise NASError(f"no arch with a mixer of {sorted(self.mixers)} at stage {self.split_stage}")

        def archs(self, step: int) -> list:
            rng = random.Random(step_seed(self.cfg.seed, step, 1))
            ext = random.Random(step_seed(self.cfg.seed, step, 4))
            out = [self._draw(lambda: self.space.max(rng=ext)), self._draw(lambda: self.space.min(rng=ext))]
            return out + [self._draw(lambda: self.space.sample(rng=rng)) for _ in range(self.cfg.n_random)]

    return GroupTrainer


def _net_evaluator(trainer, net):
    """A ``SubnetEvaluator`` of ``trainer`` that scores the standalone ``net`` (same calibration, same val)."""
    from nas.supernet.bn import SubnetEvaluator, recalibrate_bn

    class NetEvaluator(SubnetEvaluator):
        """Evaluates a given net as ``SubnetEvaluator`` evaluates an extracted subnet."""

        def model(self, arch):
            batches = (self._input(self.calib.batch(i)[0], arch) for i in self._calib_idx)
            recalibrate_bn(net, batches)
            return net.eval()

    c = trainer.cfg
    return NetEvaluator(trainer.supernet, trainer.data.train, trainer.data.val, c.calib_batches,
                        c.eval_batch_size, c.seed, "cpu", write_back=False)


_CTX: dict[str, Any] = {}


def _init_worker(data_spec: str) -> None:
    """Worker start: one torch thread, quiet Ray, the data spec."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    _CTX["data_spec"] = data_spec


def _data(st: dict):
    """The training / validation subsets of the ground truth (cached per worker)."""
    key = (st["train_subset"], st["val_subset"])
    if _CTX.get("data_key") != key:
        from nas.data import load_data, subset
        from nas.space import load_space

        r = st["recipe"]
        d = load_data(_CTX["data_spec"], load_space(r["space"]))
        _CTX["data"], _CTX["data_key"] = subset(d, key[0], key[1], r["subset_seed"]), key
    return _CTX["data"]


def _config(st: dict, seed: int, **over):
    """The one-shot supernet's ``TrainConfig`` for ``seed`` (fields in ``over`` replaced)."""
    cfg = supernet_config(st["recipe"], dict(SUPERNET, epochs=st["epochs"], seed=seed))
    return dataclasses.replace(cfg, **over)


def _oneshot_trainer(st: dict, seed: int, train: bool):
    """The seed's one-shot supernet trainer (resumed from its checkpoint; trained to the end if ``train``)."""
    from nas.supernet.checkpoint import FILENAME
    from nas.supernet.train import SupernetTrainer

    work = Path(st["work"]) / f"seed{seed}" / "oneshot"
    tr = SupernetTrainer(_config(st, seed), work, resume=(work / FILENAME).is_file(), data=_data(st), quiet=True)
    if train and tr.step < tr.total_steps:
        tr.fit()
    return tr


def _evaluate(ev, space, st: dict, ids: list[str]) -> dict[str, list[float]]:
    """Inherited validation accuracy and loss of each arch of ``ids`` by evaluator ``ev``."""
    out = {}
    for i in ids:
        r = ev.evaluate(space.arch_from_dict(st["archs"][i]))
        out[i] = [r["accuracy"], r["loss"]]
    return out


def _timed(fn, *a) -> tuple[Any, float]:
    """``fn(*a)`` and its CPU seconds (this process; one thread)."""
    c0 = time.process_time()
    return fn(*a), time.process_time() - c0


def task_oneshot(st: dict, seed: int) -> dict:
    """Train (or resume) the seed's one-shot supernet and score every arch with inherited weights."""
    from nas.io import read_json, write_json

    side = Path(st["work"]) / f"seed{seed}" / "oneshot_train.json"
    c0 = time.process_time()
    tr = _oneshot_trainer(st, seed, train=False)
    start = tr.step
    if tr.step < tr.total_steps:
        tr.fit()
        run = time.process_time() - c0
        write_json(side, {"cpu_s": run * tr.total_steps / (tr.step - start), "steps": tr.total_steps,
                          "resumed_at": start})
    train = read_json(side)
    scores, cpu = _timed(_evaluate, tr.evaluator(), tr.space, st, st["ids"])
    return {"scores": scores, "train_cpu_s": train["cpu_s"], "eval_cpu_s": cpu, "steps": tr.total_steps}


def task_finetune(st: dict, seed: int) -> dict:
    """Fine-tune each arch extracted from the one-shot supernet, then score it (cached per arch)."""
    from nas.io import read_json, write_json
    from nas.supernet.train import fit_model

    part = Path(st["work"]) / f"seed{seed}" / "finetune_partial.json"
    done = read_json(part) if part.is_file() else {}
    tr = _oneshot_trainer(st, seed, train=False)
    for i in st["ids"]:
        if i in done:
            continue
        c0 = time.process_time()
        arch = tr.space.arch_from_dict(st["archs"][i])
        net = tr.supernet.extract(arch)
        fit = fit_model(net, arch, tr.data, tr.cfg, epochs=st["ft_epochs"], lr=st["ft_lr"], warmup_epochs=0,
                        space=tr.space)
        r = _net_evaluator(tr, net).evaluate(arch)
        done[i] = {"score": [r["accuracy"], r["loss"]], "cpu_s": time.process_time() - c0, "steps": fit["steps"]}
        write_json(part, done)
    return {"scores": {i: done[i]["score"] for i in st["ids"]}, "cpu_s": sum(done[i]["cpu_s"] for i in st["ids"]),
            "steps_per_arch": done[st["ids"][0]]["steps"]}


def task_fewshot(st: dict, seed: int, group: str) -> dict:
    """Train the family's sub-supernet from the one-shot weights, then score the family's archs in it."""
    from nas.io import read_json, write_json
    from nas.supernet.checkpoint import FILENAME

    work = Path(st["work"]) / f"seed{seed}" / f"fewshot_{group}"
    side = work.with_name(work.name + "_train.json")
    steps = group_steps(st["fs_steps"])[group]
    c0 = time.process_time()
    resume = (work / FILENAME).is_file()
    tr = _group_trainer_class()(_config(st, seed, lr=st["ft_lr"], warmup_epochs=0), work, resume=resume,
                                data=_data(st), quiet=True)
    tr.restrict(GROUPS[group], st["split_stage"], steps)
    if not resume:
        tr.supernet.load_state_dict(_oneshot_trainer(st, seed, train=False).supernet.state_dict())
    start = tr.step
    if tr.step < steps:
        while tr.step < steps:
            tr.train_step()
            if tr.step % 100 == 0:
                tr.save()
        tr.save()
        run = time.process_time() - c0
        write_json(side, {"cpu_s": run * steps / (tr.step - start), "steps": steps, "resumed_at": start})
    train = read_json(side)
    ids = [i for i in st["ids"] if group_of(split_mixer(st["archs"][i], st["split_stage"])) == group]
    scores, cpu = _timed(_evaluate, tr.evaluator(), tr.space, st, ids)
    return {"scores": scores, "train_cpu_s": train["cpu_s"], "eval_cpu_s": cpu, "steps": steps}


TASKS = {"oneshot": task_oneshot, "finetune": task_finetune, "fewshot": task_fewshot}


def run_task(st: dict, key: tuple) -> dict:
    """Run task ``key`` = (kind, seed[, family]) unless its result is cached; return the result."""
    from nas.io import read_json, write_json

    path = Path(st["work"]) / f"seed{key[1]}" / ("_".join(map(str, (key[0],) + key[2:])) + ".json")
    if path.is_file():
        return read_json(path)
    t0 = time.perf_counter()
    out = TASKS[key[0]](st, *key[1:])
    out["wall_s"] = time.perf_counter() - t0
    write_json(path, out)
    return out


# ---- the driver -------------------------------------------------------------------------------------------
class Log:
    """Lines to stdout and to the log file, each with its UTC time."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        line = f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} {msg}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def task_keys(seeds: list[int]) -> list[tuple]:
    """Every task, seed by seed (a seed is finished early), the next supernets started in between so
    that two workers stay busy."""
    keys: list[tuple] = [("oneshot", s) for s in seeds[:2]]
    for n, s in enumerate(seeds):
        keys.append(("finetune", s))
        keys += [("oneshot", seeds[n + 2])] if n + 2 < len(seeds) else []
        keys += [("fewshot", s, g) for g in GROUPS]
    return keys


def run_all(st: dict, jobs: int, data_spec: str, log: Log) -> dict[tuple, dict]:
    """Run every task on ``jobs`` processes, a seed's others after its one-shot supernet."""
    pending, results = task_keys(st["seeds"]), {}
    running: dict[Future, tuple] = {}
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(data_spec,)) as pool:
        while pending or running:
            for key in [k for k in pending if k[0] == "oneshot" or ("oneshot", k[1]) in results]:
                if len(running) >= jobs:
                    break
                pending.remove(key)
                running[pool.submit(run_task, st, key)] = key
                log(f"start {key}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                key = running.pop(f)
                results[key] = f.result()
                r = results[key]
                cpu = r.get("cpu_s", r.get("train_cpu_s", 0) + r.get("eval_cpu_s", 0))
                log(f"done  {key}: {cpu:.0f} s cpu, {r['wall_s']:.0f} s wall")
    return results


def method_scores(res: dict[tuple, dict], seed: int, ids: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per method, the [accuracy, loss] of each arch for one seed."""
    fs: dict[str, list[float]] = {}
    for g in GROUPS:
        fs.update(res[("fewshot", seed, g)]["scores"])
    return {"one-shot": res[("oneshot", seed)]["scores"], "fine-tune": res[("finetune", seed)]["scores"],
            "few-shot": fs}


def method_costs(res: dict[tuple, dict], seed: int, n: int) -> dict[str, dict[str, float]]:
    """Per method, CPU seconds per arch: all of it (the one-shot supernet included) and beyond that."""
    o = res[("oneshot", seed)]
    fs = [res[("fewshot", seed, g)] for g in GROUPS]
    extra = {"one-shot": o["eval_cpu_s"], "fine-tune": res[("finetune", seed)]["cpu_s"],
             "few-shot": sum(r["train_cpu_s"] + r["eval_cpu_s"] for r in fs)}
    return {m: {"cpu_s_per_arch": (o["train_cpu_s"] + e) / n, "beyond_supernet_cpu_s_per_arch": e / n}
            for m, e in extra.items()}


def within_family(st: dict, scores: dict[str, list[float]]) -> dict[str, float | None]:
    """Kendall tau of the accuracy within each mixer family of the split layer (no cross-family order)."""
    out = {}
    for g in GROUPS:
        ids = [i for i in st["ids"] if group_of(split_mixer(st["archs"][i], st["split_stage"])) == g]
        out[g] = agreement([scores[i][0] for i in ids], [st["truth"][i] for i in ids])["kendall_tau"]
    return out


def _mean(values: list[float | None]) -> float | None:
    """The mean of the values that are not None (None if none is), rounded."""
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def summarise(st: dict, res: dict[tuple, dict]) -> dict[str, Any]:
    """Per method: per-seed agreement with the truth, mean and sd of tau, mean costs."""
    ids = st["ids"]
    truth = [st["truth"][i] for i in ids]
    out: dict[str, Any] = {}
    for m in METHODS:
        per_seed, costs = {}, []
        for s in st["seeds"]:
            sc = method_scores(res, s, ids)[m]
            a = agreement([sc[i][0] for i in ids], truth)
            a["kendall_tau_neg_val_loss"] = agreement([-sc[i][1] for i in ids], truth)["kendall_tau"]
            a["kendall_tau_within_family"] = within_family(st, sc)
            per_seed[str(s)] = a
            costs.append(method_costs(res, s, len(ids))[m])
        taus = [v["kendall_tau"] for v in per_seed.values()]
        out[m] = {
            "per_seed": per_seed,
            "kendall_tau_mean": round(float(np.mean(taus)), 4),
            "kendall_tau_sd": round(float(np.std(taus, ddof=1)), 4) if len(taus) > 1 else None,
            "kendall_tau_neg_val_loss_mean": round(float(np.mean([v["kendall_tau_neg_val_loss"]
                                                                  for v in per_seed.values()])), 4),
            "spearman_mean": round(float(np.mean([v["spearman"] for v in per_seed.values()])), 4),
            "top10_overlap_mean": round(float(np.mean([v["top10_overlap"] for v in per_seed.values()])), 3),
            "kendall_tau_within_family_mean": {
                g: _mean([v["kendall_tau_within_family"][g] for v in per_seed.values()]) for g in GROUPS},
            **{k: round(float(np.mean([c[k] for c in costs])), 2) for k in costs[0]},
        }
    return out


def references() -> dict[str, Any]:
    """train:2 (short training from scratch) and the 16-epoch one-shot supernet, from earlier results."""
    from nas.io import read_json

    est = read_json(ESTIMATORS)
    t2 = est["results"]["train:2"]
    ref = {"train:2": {"source": str(ESTIMATORS.relative_to(ROOT)), "kendall_tau": t2["kendall_tau"],
                       "spearman": t2["spearman"], "top10_overlap": t2["top10_overlap"],
                       "cpu_s_per_arch": round(est["short_training"]["train:2"]["cpu_s"] / len(est["arch_ids"]), 2)}}
    taus = {}
    for s, name in ONESHOT_E16.items():
        p = ESTIMATORS.with_name(name)
        if p.is_file():
            d = read_json(p)
            taus[str(s)] = d["results"]["supernet"]["kendall_tau"]
            epochs = d["supernet"]["recipe"]["epochs"]
    if taus:
        ref["one-shot e16"] = {"source": [ONESHOT_E16[int(s)] for s in taus], "per_seed": taus,
                               "kendall_tau_mean": round(float(np.mean(list(taus.values()))), 4), "epochs": epochs}
    return ref


def print_table(summary: dict, refs: dict, seeds: list[int], n: int, ceiling: dict) -> None:
    """The figures, one line a method."""
    from nas.cli import ui

    head = ["method", *[f"tau s{s}" for s in seeds], "tau mean±sd", "tau(-loss)", "tau in-family", "spearman",
            "top10", "cpu s/arch", "beyond sn"]
    rows = []
    for m, v in summary.items():
        sd = "" if v["kendall_tau_sd"] is None else f"±{v['kendall_tau_sd']:.3f}"
        rows.append([m, *[v["per_seed"][str(s)]["kendall_tau"] for s in seeds], f"{v['kendall_tau_mean']:.3f}{sd}",
                     v["kendall_tau_neg_val_loss_mean"], _mean(list(v["kendall_tau_within_family_mean"].values())),
                     v["spearman_mean"], v["top10_overlap_mean"],
                     v["cpu_s_per_arch"], v["beyond_supernet_cpu_s_per_arch"]])
    t2 = refs["train:2"]
    rows.append(["train:2 (ref)", *["" for _ in seeds], f"{t2['kendall_tau']:.3f}", "", "", t2["spearman"],
                 t2["top10_overlap"], t2["cpu_s_per_arch"], ""])
    e16 = refs.get("one-shot e16")
    if e16:
        rows.append([f"one-shot e{e16['epochs']} (ref)", *[e16["per_seed"].get(str(s), "") for s in seeds],
                     f"{e16['kendall_tau_mean']:.3f}", "", "", "", "", "", ""])
    tau_c = ceiling.get("kendall_tau")
    ui.print_table(f"supernet ranking vs standalone test accuracy ({n} archs; seed-to-seed tau "
                   f"{'-' if tau_c is None else round(tau_c, 3)})", head, rows)


def settings_of(args: argparse.Namespace, gt: dict) -> dict[str, Any]:
    """Everything that changes a result (the cache key of the work folder)."""
    r = gt["recipe"]
    smoke = SMOKE if args.smoke else {}
    st = {"epochs": smoke.get("epochs", args.epochs), "ft_epochs": args.ft_epochs, "ft_lr": args.ft_lr,
          "fs_steps": smoke.get("fs_steps", args.fs_steps), "split_stage": args.split_stage,
          "seeds": smoke.get("seeds", [int(s) for s in args.seeds.split(",")]),
          "train_subset": smoke.get("train_subset", r["train_subset"]),
          "val_subset": smoke.get("val_subset", r["val_subset"]), "recipe": r, "groups": GROUPS,
          "supernet": SUPERNET}
    ids = pick_archs(gt, args.split_stage, smoke.get("per_group", 0))
    st.update(ids=ids, archs={i: gt["archs"][i] for i in ids}, truth={i: gt["truth"][i] for i in ids})
    return st


def check_work(st: dict, work: Path) -> None:
    """Tie the work folder to the settings: a folder of other settings is an error, not a silent mix."""
    from nas.errors import NASError
    from nas.io import read_json, write_json

    key = {k: v for k, v in st.items() if k not in ("work", "seeds")}  # seeds are cached one folder each
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    path = work / "settings.json"
    if path.is_file() and read_json(path)["hash"] != h:
        raise NASError(f"{work}: holds a run of other settings; give another --work (or remove it)")
    write_json(path, {"hash": h, "settings": {k: v for k, v in st.items() if k not in ("archs", "truth")}})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default=None, help="ground-truth CSV (default bench/results/groundtruth_...csv)")
    ap.add_argument("--data", default="fashion-mnist", help="fashion-mnist or fashion-mnist:DIR")
    ap.add_argument("--work", default=None, help="cache folder (default runs/supernet-fewshot[/smoke])")
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/supernet_fewshot.json)")
    ap.add_argument("--seeds", default=",".join(map(str, SETTINGS["seeds"])), help="comma list of supernet seeds")
    ap.add_argument("--epochs", type=int, default=SETTINGS["epochs"], help="one-shot supernet epochs")
    ap.add_argument("--ft-epochs", type=int, default=SETTINGS["ft_epochs"], help="fine-tuning epochs per arch")
    ap.add_argument("--ft-lr", type=float, default=SETTINGS["ft_lr"], help="peak lr of fine-tuning and few-shot")
    ap.add_argument("--fs-steps", type=int, default=SETTINGS["fs_steps"],
                    help="few-shot supernet steps, all families together")
    ap.add_argument("--split-stage", type=int, default=SETTINGS["split_stage"],
                    help="stage whose first layer's mixer splits the supernet (-1 = the last)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    ap.add_argument("--smoke", action="store_true", help="tiny data, 6 archs, 2 seeds: the pipeline only")
    args = ap.parse_args(argv)

    from nas.errors import NASError
    from nas.io import write_json

    if args.jobs < 1 or args.epochs < 1 or args.ft_epochs < 1 or args.fs_steps < len(GROUPS):
        raise NASError("--jobs, --epochs and --ft-epochs must be at least 1, --fs-steps at least 3")
    table = Path(args.table) if args.table else table_paths(ROOT / "bench" / "results", RECIPE)[0]
    gt = load_truth(table)
    st = settings_of(args, gt)
    work = Path(args.work) if args.work else ROOT / "runs" / "supernet-fewshot" / ("smoke" if args.smoke else "")
    st["work"] = str(work)
    out = Path(args.out) if args.out else (work / "supernet_fewshot.json" if args.smoke
                                           else ROOT / "bench" / "results" / "supernet_fewshot.json")
    check_work(st, work)
    log = Log(out.with_suffix(".log"))
    command = "python bench/supernet_fewshot.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log(f"{command}: {len(st['ids'])} archs, seeds {st['seeds']}, work {work}")
    t0 = time.perf_counter()
    res = run_all(st, args.jobs, args.data, log)
    summary, refs = summarise(st, res), references()
    report = {
        "what": "Kendall tau of supernet-based accuracy estimates (one-shot, inherit-then-fine-tune, few-shot) "
                "against the mean standalone top-1 test accuracy of the ground-truth archs",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": command,
        "this_call_wall_s": round(time.perf_counter() - t0, 1),
        "tasks_cpu_s": round(sum(v.get("cpu_s", v.get("train_cpu_s", 0) + v.get("eval_cpu_s", 0))
                                 for v in res.values()), 1),
        "ground_truth": {"table": str(table.relative_to(ROOT)) if table.is_relative_to(ROOT) else str(table),
                         "sha256": gt["sha256"], "recipe_hash": gt["recipe_hash"], "rows": gt["rows"],
                         "archs": len(st["ids"])},
        "ceiling_seed_to_seed": gt["ceiling"],
        "settings": {k: v for k, v in st.items() if k not in ("archs", "truth", "ids", "recipe")},
        "how": {"one-shot": "estimator_fidelity's SUPERNET recipe for `epochs` epochs; inherited weights, BN "
                            "recalibrated on calib_batches training batches, accuracy on the validation subset",
                "fine-tune": "each arch extracted and trained ft_epochs epochs (labels only, cosine from ft_lr, no "
                             "warm-up, the ground truth's SGD settings), then BN recalibrated and evaluated the same way",
                "few-shot": "one sub-supernet per mixer family of the split stage's first layer, from the one-shot "
                            "weights, fs_steps sandwich steps in all (per family: fewshot_steps) at ft_lr, cosine, "
                            "sampling only archs of the family; each arch evaluated in its family's sub-supernet",
                "cpu_s_per_arch": "process CPU seconds (one thread) of everything the method needs for these archs, "
                                  "the one-shot supernet's training included, divided by the number of archs; "
                                  "beyond_supernet: the same without the one-shot supernet's training"},
        "fewshot_steps": group_steps(st["fs_steps"]),
        "fewshot_archs": {g: sum(group_of(split_mixer(st["archs"][i], st["split_stage"])) == g for i in st["ids"])
                          for g in GROUPS},
        "results": summary,
        "references": refs,
        "costs_per_seed": {str(s): method_costs(res, s, len(st["ids"])) for s in st["seeds"]},
        "tasks": {"/".join(map(str, k)): {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in res.items()},
        "scores": {str(s): method_scores(res, s, st["ids"]) for s in st["seeds"]},
        "truth": st["truth"],
    }
    write_json(out, report)
    print_table(summary, refs, st["seeds"], len(st["ids"]), gt["ceiling"])
    log(f"wrote {out} ({report['this_call_wall_s']:.0f} s wall this call)")
    return 0


if __name__ == "__main__":
    from nas.errors import run_script

    run_script(main)
