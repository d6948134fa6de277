"""Supernet training: the sandwich rule with in-place distillation, resumable, data-parallel ready.

Each step trains, on the same batch, the largest arch (on the labels), the smallest and ``n_random``
random archs (each distilled from the largest's detached output: in-place distillation, as in BigNAS
and AttentiveNAS); their gradients are summed and one optimizer step is taken. Every random choice of a
step is derived from ``(seed, step)``: the archs (so data-parallel workers agree on the subnets without
talking), the data order (per epoch), augmentation and dropout masks (also per rank). Together with the
optimizer state in the checkpoint this makes a resumed run continue exactly as an uninterrupted one.

Outputs in the run folder: ``checkpoint.safetensors`` (+ ``state.json``), ``metrics.csv`` (per logged
step) and ``eval.csv`` (accuracy of the largest and smallest subnets after BN recalibration, per epoch).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.data import (
    DataSplits,
    arch_resolution,
    augment,
    epoch_order,
    iterate,
    load_data,
    resize,
    space_io,
    steps_per_epoch,
)
from nas.errors import NASError, ParamError
from nas.reporting import SILENT, Reporter, or_silent
from nas.space.arch import Arch
from nas.space.language import parse_space
from nas.space.space import SearchSpace, load_space
from nas.supernet.bn import SubnetEvaluator
from nas.supernet.checkpoint import FILENAME, load_checkpoint, save_checkpoint, space_from_state
from nas.supernet.config import TrainConfig

METRIC_COLUMNS = ["step", "epoch", "lr", "loss_max", "loss_min", "loss_random", "seconds", "samples_per_s"]
EVAL_COLUMNS = ["epoch", "step", "which", "arch_id", "accuracy", "loss", "arch"]


# ---- per-step seeding -----------------------------------------------------------------------------------
def step_seed(seed: int, step: int, *extra: int) -> int:
    """A 63-bit seed for (seed, step, ...): the same on every worker and after a resume."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, step, *extra]).generate_state(2, np.uint64)[0] >> 1)


def sandwich(
    space: SearchSpace,
    seed: int,
    step: int,
    n_random: int,
    largest: Arch | None = None,
    smallest: Arch | None = None,
    mixers: str = "fixed",
    resolution: str = "extreme",
) -> list[Arch]:
    """The archs of a training step: largest, smallest, then ``n_random`` random archs seeded by (seed, step).

    ``mixers="random"``: the largest and smallest keep their extreme depths, widths, kernels and ratios but
    draw each layer's mixer per step (seeded apart from the random archs, which stay the same). With fixed
    mixers half of a step's subnets train the most and least expensive mixer only; in a space whose mixers
    do not nest that biases the shared weights towards archs built of those two.

    ``resolution="random"``: the largest and smallest take a resolution drawn per step (of the space's input
    resolutions) instead of the largest and smallest: the teacher then shapes the shared filters at every
    input size, not at the largest only."""
    rng = random.Random(step_seed(seed, step, 1))
    ext = random.Random(step_seed(seed, step, 4))
    if mixers == "random":
        largest, smallest = space.max(rng=ext), space.min(rng=ext)
    out = [largest or space.max(), smallest or space.min()]
    sizes = tuple(getattr(getattr(space, "spec", None), "resolutions", ()))
    if resolution == "random" and len(sizes) > 1:
        out = [space.make_arch({**a.to_dict(), "resolution": sizes[int(ext.random() * len(sizes))]}) for a in out]
    return out + [space.sample(rng=rng) for _ in range(n_random)]


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Soft cross-entropy to the teacher's distribution (in-place distillation), scaled by T^2."""
    t = temperature
    p = F.softmax(teacher.float() / t, dim=1)
    return -(p * F.log_softmax(student.float() / t, dim=1)).sum(1).mean() * (t * t)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero (``step`` counts from 0)."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only (not on norms, biases, layer scales, kernel transforms)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() > 1 and not name.startswith("kt.") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ParamError("device", f"{name}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParamError("device", f"{name}: CUDA is not available on this machine")
    return dev


def with_classes(space: SearchSpace, classes: int) -> SearchSpace:
    """The space with its classifier set to ``classes`` outputs (same name; the checkpoint carries it)."""
    if space_io(space).classes == classes:
        return space
    if getattr(space, "spec", None) is None:
        raise NASError(
            f"space {space.name} has a fixed {space_io(space).classes}-class head; the data has {classes}"
        )
    raw = copy.deepcopy(space.spec.raw)
    raw.setdefault("head", {})
    raw["head"] = dict(raw["head"] or {}, classes=int(classes))
    return SearchSpace(parse_space(raw, space.spec.source), space.source_path)


def auto_shift(cfg: TrainConfig, data: DataSplits) -> int:
    return cfg.shift if cfg.shift >= 0 else max(1, min(data.size) // 8)


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


# ---- CSV logs ---------------------------------------------------------------------------------------------
class CsvLog:
    """An append-only CSV file; on resume rows past the resumed step are dropped (they will be redone)."""

    def __init__(self, path: Path, columns: list[str], keep_until_step: int | None = None):
        self.path, self.columns = path, columns
        rows = []
        if keep_until_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r.get("step", 0))) <= keep_until_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(rows)

    def add(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: row.get(k) for k in self.columns})


# ---- the trainer ------------------------------------------------------------------------------------------
class SupernetTrainer:
    """Trains a supernet into a run folder. ``rank``/``world`` > 1: data-parallel (torch.distributed set up)."""

    def __init__(
        self,
        cfg: TrainConfig,
        out: str | Path,
        resume: bool = False,
        rank: int = 0,
        world: int = 1,
        data: DataSplits | None = None,
        device: str | None = None,
        quiet: bool = False,
    ):
        self.out = Path(out)
        self.rank, self.world = rank, world
        self.quiet = quiet or rank != 0
        ck = None
        ck_file = self.out / FILENAME
        if resume:
            ck = load_checkpoint(ck_file)
            saved = TrainConfig.from_dict(ck.state["config"])
            cfg = dataclasses.replace(saved, device=cfg.device, max_steps=cfg.max_steps)
        elif ck_file.exists() and rank == 0:
            raise NASError(
                f"{ck_file}: a run is already there; resume it to continue, or choose another output folder"
            )
        cfg.check()
        self.cfg = cfg
        if cfg.batch_size % world:
            raise NASError(f"batch size {cfg.batch_size} is not divisible by {world} workers")
        self.device = pick_device(device or cfg.device)
        space = space_from_state(ck.state) if ck else load_space(cfg.space)
        self.data = data if data is not None else load_data(cfg.data, space, cfg.seed)
        self.space = with_classes(space, self.data.classes)
        self.supernet = self.space.supernet(seed=cfg.seed, init=ck is None, sharing=cfg.sharing).to(self.device)
        self.optimizer = make_optimizer(self.supernet, cfg)
        self.amp_dtype = None
        if self.device.type == "cuda" and cfg.amp in ("auto", "on"):
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif cfg.amp == "on":  # CPU: bfloat16 autocast (fast on CPUs with AVX512-BF16 / AMX), no loss scaling
            self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step = 0
        self.history: dict[str, Any] = {}
        if ck is not None:
            self.supernet.load_state_dict({k: v.to(self.device) for k, v in ck.model.items()})
            ck.restore_optimizer(self.optimizer)
            self.step = int(ck.state["step"])
            self.history = ck.state.get("history", {})
            if self.scaler is not None and ck.state.get("scaler"):
                self.scaler.load_state_dict(ck.state["scaler"])
        self.largest, self.smallest = self.space.max(), self.space.min()
        self.local_batch = cfg.batch_size // world
        self.steps_per_epoch = steps_per_epoch(len(self.data.train), cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        self.shift = auto_shift(cfg, self.data)
        self.params = [p for p in self.supernet.parameters() if p.requires_grad]
        keep = self.step if ck is not None else None
        if rank == 0:
            self.metrics = CsvLog(self.out / "metrics.csv", METRIC_COLUMNS, keep if keep is not None else -1)
            self.evals = CsvLog(self.out / "eval.csv", EVAL_COLUMNS, keep if keep is not None else -1)

    # ---- one step -----------------------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = epoch_order(len(self.data.train), self.cfg.seed, epoch)
        start = pos * self.cfg.batch_size + self.rank * self.local_batch
        x, y = self.data.train.batch(order[start : start + self.local_batch])
        if self.shift or self.cfg.flip:
            g = torch.Generator().manual_seed(step_seed(self.cfg.seed, step, 2, self.rank))
            x = augment(x, g, self.shift, self.cfg.flip)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def archs(self, step: int) -> list[Arch]:
        """The sandwich of a step (identical on every worker)."""
        return sandwich(self.space, self.cfg.seed, step, self.cfg.n_random, self.largest, self.smallest,
                        self.cfg.sandwich_mixers, self.cfg.sandwich_resolution)

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self) -> dict[str, float]:
        """Run step ``self.step`` (sandwich + distillation + optimizer step) and advance the counter."""
        cfg, step = self.cfg, self.step
        torch.manual_seed(step_seed(cfg.seed, step, 3, self.rank))  # dropout / drop-path masks
        x, y = self._batch(step)
        lr = lr_at(step, self.total_steps, cfg.lr, self.warmup)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.supernet.train()
        self.optimizer.zero_grad(set_to_none=True)
        in_ch = space_io(self.space).in_channels
        teacher = None
        losses = []
        for arch in self.archs(step):
            xa = resize(x, arch_resolution(arch, self.space), in_ch)
            with self._autocast():
                out = self.supernet(xa, arch)
            if teacher is None:
                loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
                teacher = out.detach()
            else:
                loss = cfg.kd_alpha * kd_loss(out, teacher, cfg.kd_temperature)
                if cfg.kd_alpha < 1:
                    loss = loss + (1 - cfg.kd_alpha) * F.cross_entropy(
                        out.float(), y, label_smoothing=cfg.label_smoothing
                    )
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            losses.append(float(loss.detach()))
        if self.world > 1:
            self._allreduce_grads()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        rnd = losses[2:]
        return {
            "lr": lr,
            "loss_max": losses[0],
            "loss_min": losses[1] if len(losses) > 1 else float("nan"),
            "loss_random": sum(rnd) / len(rnd) if rnd else float("nan"),
        }

    def _allreduce_grads(self) -> None:
        """Average gradients over workers. The sandwich is the same on every worker, so the set of
        parameters with a gradient is too; one flat all-reduce carries them all."""
        import torch.distributed as dist

        used = [p for p in self.params if p.grad is not None]
        if not used:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat)
        flat /= self.world
        off = 0
        for p in used:
            n = p.numel()
            p.grad.copy_(flat[off : off + n].view_as(p.grad))
            off += n

    # ---- evaluation, checkpoints ------------------------------------------------------------------------------
    def evaluator(self) -> SubnetEvaluator:
        return SubnetEvaluator(
            self.supernet,
            self.data.train,
            self.data.val,
            self.cfg.calib_batches,
            self.cfg.eval_batch_size,
            self.cfg.seed,
            self.device,
            write_back=False,
        )

    def evaluate(self) -> list[dict[str, Any]]:
        """Accuracy of the largest and smallest subnets (inherited weights, BN recalibrated)."""
        ev = self.evaluator()
        rows = []
        was = self.supernet.training
        for which, arch in (("max", self.largest), ("min", self.smallest)):
            r = ev.evaluate(arch)
            rows.append(
                {
                    "epoch": self.step / self.steps_per_epoch,
                    "step": self.step,
                    "which": which,
                    "arch_id": arch.id,
                    "accuracy": r["accuracy"],
                    "loss": r["loss"],
                    "arch": str(arch),
                }
            )
        self.supernet.train(was)
        return rows

    def state(self) -> dict[str, Any]:
        return {
            "kind": "supernet",
            "space": self.space.checkpoint_state(),
            "config": dataclasses.asdict(self.cfg),
            "step": self.step,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch": self.step / self.steps_per_epoch,
            "workers": self.world,
            "data": {
                "spec": self.data.spec,
                "classes": self.data.classes,
                "channels": self.data.channels,
                "size": list(self.data.size),
                **{k: v for k, v in self.data.info.items() if k != "classes_names"},
            },
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "history": self.history,
            "torch": torch.__version__,
            "supernet": self.supernet.describe(),
        }

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        return save_checkpoint(self.out / FILENAME, self.supernet, self.optimizer, self.state())

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    # ---- the loop ------------------------------------------------------------------------------------------
    def fit(self, report=None, reporter: Reporter | None = None) -> dict[str, Any]:
        """Train until the last step (or ``max_steps``); returns a summary. ``report(metrics)`` is called
        at every epoch end (Ray Train passes its reporter here); progress with the loss goes to
        ``reporter`` (silent by default, and always on workers other than rank 0)."""
        cfg = self.cfg
        stop = self.total_steps if cfg.max_steps <= 0 else min(self.total_steps, cfg.max_steps)
        t0 = time.perf_counter()
        last_log_t, last_log_step = t0, self.step
        window: list[dict[str, float]] = []
        started_at = self.step
        out = SILENT if self.quiet else or_silent(reporter)
        with out.progress(self.total_steps, "supernet train", completed=self.step) as bar:
            while self.step < stop:
                m = self.train_step()
                window.append(m)
                if bar is not None:
                    bar.advance()
                epoch_end = self.step % self.steps_per_epoch == 0
                done = self.step >= stop
                if self.rank == 0 and (self.step % cfg.log_every == 0 or epoch_end or done):
                    now = time.perf_counter()
                    n = max(1, self.step - last_log_step)
                    row = {
                        "step": self.step,
                        "epoch": round(self.step / self.steps_per_epoch, 4),
                        "lr": m["lr"],
                        **{k: _mean([w[k] for w in window]) for k in ("loss_max", "loss_min", "loss_random")},
                        "seconds": round(now - t0, 3),
                        "samples_per_s": round(n * cfg.batch_size / max(1e-9, now - last_log_t), 1),
                    }
                    self.metrics.add(row)
                    self.history["last"] = row
                    bar.set_description(f"supernet train (loss {row['loss_max']:.3f}/{row['loss_min']:.3f})")
                    window, last_log_t, last_log_step = [], now, self.step
                if epoch_end:
                    epoch = self.step // self.steps_per_epoch
                    if cfg.reorder_every and epoch % cfg.reorder_every == 0 and self.step < self.total_steps:
                        self.supernet.reorder_channels(self.optimizer)
                    final = self.step >= self.total_steps
                    if self.rank == 0 and ((cfg.eval_every and epoch % cfg.eval_every == 0) or final):
                        rows = self.evaluate()
                        for r in rows:
                            self.evals.add(r)
                        self.history["eval"] = rows
                    if report is not None:
                        report(
                            {
                                "step": self.step,
                                "epoch": epoch,
                                **self.history.get("last", {}),
                                **{f"acc_{r['which']}": r["accuracy"] for r in self.history.get("eval", [])},
                            }
                        )
                if epoch_end or done or self.step % cfg.checkpoint_every == 0:
                    self.save()
                    self._barrier()
        return {
            "steps": self.step,
            "total_steps": self.total_steps,
            "finished": self.step >= self.total_steps,
            "seconds": time.perf_counter() - t0,
            "steps_run": self.step - started_at,
            "checkpoint": str(self.out / FILENAME),
            "last": self.history.get("last"),
            "eval": self.history.get("eval"),
        }


# ---- standalone training (the reference the supernet is compared against) --------------------------------
def _evaluate_model(model: nn.Module, ds, res: int, in_ch: int, batch_size: int, dev: torch.device) -> dict:
    """Top-1 accuracy and mean cross-entropy of ``model`` (in eval mode) over a whole split."""
    correct = total_n = 0
    loss_sum = 0.0
    with torch.no_grad():
        for x, y in iterate(ds, batch_size):
            out = model(resize(x.to(dev), res, in_ch))
            y = y.to(dev)
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            total_n += int(y.numel())
    return {"accuracy": correct / total_n, "loss": loss_sum / total_n}


def fit_model(
    model: nn.Module,
    arch: Arch,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    warmup_epochs: float | None = None,
    device: str | torch.device = "cpu",
    space=None,
    reporter: Reporter | None = None,
    description: str = "train",
) -> dict[str, Any]:
    """Train ``model`` (the standard module of ``arch``) in place with the recipe of ``cfg``, labels only:
    cosine learning rate after a linear warm-up, the recipe's optimizer, augmentation and data order.
    ``epochs``, ``lr`` and ``warmup_epochs`` override the recipe's (a fine-tune runs few epochs at a small
    rate); progress with ETA goes to ``reporter``. Leaves ``model`` in eval mode; returns what was run."""
    epochs = cfg.epochs if epochs is None else int(epochs)
    base_lr = cfg.lr if lr is None else float(lr)
    dev = torch.device(device)
    opt = make_optimizer(model, cfg)
    spe = steps_per_epoch(len(data.train), cfg.batch_size)
    warm_epochs = cfg.warmup_epochs if warmup_epochs is None else warmup_epochs
    total, warm = epochs * spe, int(round(warm_epochs * spe))
    shift = auto_shift(cfg, data)
    space = space if space is not None else arch.space
    in_ch, res = space_io(space).in_channels, arch_resolution(arch, space)
    t0 = time.perf_counter()
    model.train()
    with or_silent(reporter).progress(total, description) as bar:
        for step in range(total):
            epoch, pos = divmod(step, spe)
            order = epoch_order(len(data.train), cfg.seed, epoch)
            x, y = data.train.batch(order[pos * cfg.batch_size : (pos + 1) * cfg.batch_size])
            if shift or cfg.flip:
                x = augment(x, torch.Generator().manual_seed(step_seed(cfg.seed, step, 2, 0)), shift, cfg.flip)
            x, y = resize(x.to(dev), res, in_ch), y.to(dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, base_lr, warm)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            bar.advance()
    model.eval()
    return {"epochs": epochs, "steps": total, "lr": base_lr, "warmup_steps": warm, "shift": shift,
            "train_samples": len(data.train), "seconds": time.perf_counter() - t0}


def train_standalone(
    arch: Arch, data: DataSplits, cfg: TrainConfig, device: str = "cpu", space=None
) -> dict[str, float]:
    """Train ``build(arch)`` alone with the same recipe (labels only); return its validation accuracy
    and loss (``accuracy``, ``loss``) and, when the data has a test split, ``test_accuracy``/``test_loss``."""
    from nas.models import build

    torch.manual_seed(cfg.seed)
    dev = torch.device(device)
    model = build(arch).to(dev)
    space = space if space is not None else arch.space
    fit_model(model, arch, data, cfg, device=dev, space=space)
    in_ch, res = space_io(space).in_channels, arch_resolution(arch, space)
    out = _evaluate_model(model, data.val, res, in_ch, cfg.eval_batch_size, dev)
    if getattr(data, "test", None) is not None:
        t = _evaluate_model(model, data.test, res, in_ch, cfg.eval_batch_size, dev)
        out.update(test_accuracy=t["accuracy"], test_loss=t["loss"])
    return out
