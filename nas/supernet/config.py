"""TrainConfig: the hyper-parameters of a supernet training run (saved in every checkpoint).

Plain data with no heavy imports; the ``nas supernet train`` flags are made from these fields
(``nas.cli.flags``), so a setting is declared once, here, with its help text.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nas.errors import NASError, ParamError
from nas.supernet.sharing import SHARINGS

DATA_HELP = ("digits | fashion-mnist[:DIR] | mnist1d[:N] | synthetic[:N] | cifar10:DIR | cifar100:DIR | folder:DIR | "
             "npy:X.npy,y.npy | npz:FILE | csv:FILE")


def _f(default: Any, help: str = "", **meta: Any) -> Any:  # noqa: A002 - the flag's help
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Hyper-parameters of a supernet training run (saved in every checkpoint)."""

    space: str = _f("tiny", "built-in space name or YAML")
    data: str = _f("digits", DATA_HELP)
    epochs: int = _f(30)
    batch_size: int = _f(64, "global batch (split over workers)")
    lr: float = _f(0.05)
    optimizer: str = _f("sgd", "sgd (Nesterov momentum) or adamw", choices=("sgd", "adamw"))
    momentum: float = _f(0.9)
    weight_decay: float = _f(5e-5)
    warmup_epochs: float = _f(1.0)
    n_random: int = _f(2, "random subnets per step besides max/min")
    # sharing and sandwich_mixers: the defaults ranked hybrid-s archs best against standalone training
    # (bench/README.md, "Why the supernet misranks"); a checkpoint from before them keeps mlp/fixed.
    sharing: str = _f(
        "none", "what the mixers of a layer slot share: mlp = the norms and channel MLP around them (fewer weights); "
        "none = nothing, each mixer owns a whole layer, so a self-contained one (mbconv) is not trained less "
        "than the rest", choices=SHARINGS)
    sandwich_mixers: str = _f(
        "random", "mixers of the step's largest/smallest subnets: fixed = the most/least expensive ones; random = "
        "drawn per layer each step (their depth, width, kernel and ratio stay extreme), so every mixer's weights "
        "get the same share of training", choices=("fixed", "random"))
    sandwich_resolution: str = _f(
        "extreme", "input resolution of the step's largest/smallest subnets: extreme = the largest/smallest; "
        "random = drawn per step", choices=("extreme", "random"))
    kd_alpha: float = _f(1.0, "distillation weight of the children's loss (the rest: labels)")
    kd_temperature: float = _f(1.0)
    label_smoothing: float = _f(0.1)
    grad_clip: float = _f(5.0, "0 = off")
    shift: int = _f(-1, "random translation (px); -1 = 1/8 of the size")
    flip: bool = _f(False, "random horizontal flips (natural images)")
    seed: int = _f(0)
    eval_every: int = _f(1, "epochs between evaluations (0 = end)")
    calib_batches: int = _f(10, "BN recalibration batches")
    eval_batch_size: int = _f(256)
    checkpoint_every: int = _f(200, "steps between checkpoints (one is also written at every epoch end)")
    log_every: int = _f(10, "steps between metrics.csv rows")
    reorder_every: int = _f(0, "epochs between channel-importance re-sorting (0 = never)")
    amp: str = _f("auto", "mixed precision: auto = on for CUDA (bf16, else fp16 with loss scaling); on = also on "
                          "CPU (bfloat16 autocast)", choices=("auto", "on", "off"))
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    max_steps: int = _f(0, "stop (checkpointed) at this global step; 0 = run to the end")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        # a checkpoint from before these fields trained as they then did
        d = {"sandwich_mixers": "fixed", "sandwich_resolution": "extreme", "sharing": "mlp", **d}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise NASError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be at least 1")
        for f in dataclasses.fields(self):  # every field with a choice list: optimizer, sharing, amp, ...
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices is not None and value not in choices:
                raise ParamError(f.name, f"{value}: choose from {', '.join(choices)}")
        if self.n_random < 0:
            raise ParamError("n_random", f"{self.n_random}: must be >= 0")
