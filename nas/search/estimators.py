"""Accuracy estimators a search scores archs with: supernet, accuracy predictor, short training, training-free
proxy.

An accuracy estimator is created from a spec string (``proxy:zen``, ``supernet:CKPT``, ``predictor:FILE``,
``train:EPOCHS:DATA``) so Ray workers can rebuild it from plain text and keep it resident. Every estimator states its
provenance, which the tables, the summary and the model cards print next to its figures.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from nas.errors import ParamError
from nas.space import Arch, SearchSpace


class AccuracyEstimator(Protocol):
    """Scores archs; higher is better."""

    name: str
    provenance: str

    def evaluate(self, arch: Arch) -> float: ...



class Scored(NamedTuple):
    """An estimator's value with the accuracy measured on the way: short training ranks by minus the validation
    loss (``score``) and also counts its validation top-1 (``accuracy``), which is what a user reads."""

    score: float
    accuracy: float | None = None


def split_score(value: float | Scored) -> tuple[float | None, float | None]:
    """``(score, measured accuracy)`` of what an estimator returned; a non-finite score (no signal) is None."""
    score, acc = (value.score, value.accuracy) if isinstance(value, Scored) else (value, None)
    score = float(score)
    return (score if math.isfinite(score) else None), (None if acc is None else float(acc))


@dataclass
class ProxyEstimator:
    """A training-free score of the arch's standard model (nas.proxies), or the analytic entropy."""

    proxy: str
    batch_size: int = 8
    seed: int = 0
    space: SearchSpace | None = None  # the arch's family (input shape, classes); default: the arch's own space

    @property
    def name(self) -> str:
        return f"proxy:{self.proxy}"

    @property
    def provenance(self) -> str:
        if self.proxy in _analytic_proxies():
            return f"training-free score '{self.proxy}' (analytic, from the arch's structure; not an accuracy)"
        return (f"training-free score '{self.proxy}' on the untrained model, batch {self.batch_size}, seed "
                f"{self.seed} (ranks archs; not an accuracy)")

    def evaluate(self, arch: Arch) -> float:
        analytic = _analytic_proxies()
        if self.proxy in analytic:
            return float(analytic[self.proxy](arch))
        import torch

        from nas.models import build
        from nas.proxies import compute

        torch.manual_seed(self.seed)
        model = build(arch)
        space = self.space if self.space is not None else arch.space
        return float(compute(self.proxy, model, space.input_shape(arch), seed=self.seed, batch_size=self.batch_size,
                             num_classes=space.classes))


def _analytic_proxies() -> dict:
    out: dict = {}
    try:
        from nas.proxies.entropy import ENTROPY_PROXIES

        out.update(ENTROPY_PROXIES)
    except ImportError:  # pragma: no cover - the analytical design package is part of nas
        pass
    from nas.cost.count import count

    out.setdefault("params", lambda a: float(count(a).params))
    out.setdefault("macs", lambda a: float(count(a).macs))
    return out


def proxy_names() -> list[str]:
    """All names ``proxy:NAME`` accepts."""
    names = set(_analytic_proxies())
    try:
        from nas.proxies import PROXIES

        names |= set(PROXIES)
    except ImportError:  # pragma: no cover
        pass
    return sorted(names)


@dataclass
class SupernetEstimator:
    """Accuracy of the subnet with weights inherited from a trained supernet, after BN recalibration.

    The data and the recalibration settings are the checkpoint's own (its training config): BN statistics
    come from training batches, accuracy from the validation split (never the test split), and each arch's
    statistics are cached, so an arch scored twice is recalibrated once."""

    checkpoint: str
    limit_batches: int | None = None  # validation batches per arch (None: the whole validation split)

    def __post_init__(self) -> None:
        from nas.data import load_data
        from nas.supernet import SubnetEvaluator, load_supernet
        from nas.supernet.config import TrainConfig

        supernet, state = load_supernet(self.checkpoint)
        cfg = TrainConfig.from_dict(state.get("config") or {})
        self._data = load_data(cfg.data, supernet.space, seed=cfg.seed)
        self._ev = SubnetEvaluator(supernet.eval(), self._data.train, self._data.val,
                                   calib_batches=cfg.calib_batches, batch_size=cfg.eval_batch_size, seed=cfg.seed)
        self._what = (f"{cfg.data} validation split ({len(self._data.val)} samples), BN recalibrated on "
                      f"{cfg.calib_batches} training batches; supernet step {state.get('step')}")

    @property
    def name(self) -> str:
        return f"supernet:{self.checkpoint}"

    @property
    def provenance(self) -> str:
        return f"supernet-inherited accuracy ({self.checkpoint}: {self._what})"

    def evaluate(self, arch: Arch) -> float:
        return float(self._ev.evaluate(arch, limit_batches=self.limit_batches)["accuracy"])


SHORT_TRAIN = {"train_subset": 12000, "val_subset": 3000, "subset_seed": 0, "batch_size": 128, "optimizer": "sgd",
               "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-5, "warmup_epochs": 0.5, "label_smoothing": 0.1,
               "grad_clip": 5.0, "shift": 2, "seed": 0}
"""The recipe of ``train:EPOCHS:DATA``: the hybrid-s ground truth's (bench/accuracy_groundtruth.py), run for a
few epochs. Its rank agreement with that ground truth is measured by bench/estimator_fidelity.py running this
estimator; the ground truth's 2 px shifts ranked better than 1/8 of the size (3 px) did (bench/README.md)."""


@dataclass
class ShortTrainEstimator:
    """Low-fidelity training: each arch trained alone from scratch for a few epochs on a fixed subset of the
    data, scored by minus its validation loss (the loss ranks archs better than top-1 of a short run,
    bench/README.md). Costs seconds per arch an epoch instead of a supernet's training up front."""

    epochs: int
    data: str
    space: SearchSpace | None = None

    def __post_init__(self) -> None:
        import dataclasses as dc

        from nas.supernet.config import TrainConfig

        fields = {f.name for f in dc.fields(TrainConfig)}  # the recipe minus its data subsets
        self._cfg = TrainConfig(data=self.data, epochs=self.epochs, device="cpu",
                                **{k: v for k, v in SHORT_TRAIN.items() if k in fields})
        self._data = self._load(self.space) if self.space is not None else None

    def _load(self, space: SearchSpace):
        """The recipe's training and validation subsets; the test split stays unread (a search never sees it)."""
        import dataclasses as dc

        from nas.data import load_data, subset

        r = SHORT_TRAIN
        d = load_data(self.data, space, seed=r["subset_seed"])
        return dc.replace(subset(d, r["train_subset"], r["val_subset"], r["subset_seed"]), test=None)

    @property
    def name(self) -> str:
        return f"train:{self.epochs}:{self.data}"

    @property
    def provenance(self) -> str:
        r = SHORT_TRAIN
        n = f"{len(self._data.train):,}" if self._data is not None else f"up to {r['train_subset']:,}"
        v = f"{len(self._data.val):,}" if self._data is not None else f"up to {r['val_subset']:,}"
        return (f"short training from scratch: {self.epochs} epoch(s) on {n} {self.data} training samples "
                f"(SGD lr {r['lr']:g}, cosine, batch {r['batch_size']}, shifts <= {r['shift']} px, seed {r['seed']}); "
                f"score = minus the cross-entropy on {v} validation samples (ranks archs); trained accuracy = "
                f"top-1 on the same {v} validation samples")

    def evaluate(self, arch: Arch) -> Scored:
        from nas.supernet.train import train_standalone

        space = self.space if self.space is not None else arch.space
        if self._data is None:
            self._data = self._load(space)
        r = train_standalone(arch, self._data, self._cfg, space=space)
        return Scored(-float(r["loss"]), float(r["accuracy"]))


@dataclass
class PredictorEstimator:
    """An accuracy predictor (JSON, nas.predictors) fitted on (arch, accuracy) pairs."""

    path: str

    def __post_init__(self) -> None:
        from nas.predictors import load_predictor

        self._p = load_predictor(self.path)

    @property
    def name(self) -> str:
        return f"predictor:{self.path}"

    @property
    def provenance(self) -> str:
        return f"predicted accuracy ({Path(self.path).name})"

    def evaluate(self, arch: Arch) -> float:
        return float(self._p.predict(arch.encode()[None, :])[0])


@dataclass
class CrashOnceEstimator:
    """Test aid (``debug:crash-once:MARKER``): the worker process dies the first time, then scores params."""

    marker: str

    name = "debug:crash-once"
    provenance = "test estimator (parameter count)"

    def evaluate(self, arch: Arch) -> float:
        try:  # created atomically: of two workers that start at once, exactly one dies
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, b"crashed")
            os.close(fd)
            os._exit(17)
        from nas.cost.count import count

        return float(count(arch).params)


@dataclass
class DieAfterEstimator:
    """Test aid (``debug:die-after:N:MARKER``): scores the parameter count; the process dies at its (N+1)-th
    score unless MARKER exists (it is written first), as a kill in the middle of a batch would."""

    n: int
    marker: str
    done: int = 0

    name = "debug:die-after"
    provenance = "test estimator (parameter count)"

    def evaluate(self, arch: Arch) -> float:
        if self.done >= self.n and not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(17)
        self.done += 1
        from nas.cost.count import count

        return float(count(arch).params)


@dataclass
class SleepEstimator:
    """Test aid (``debug:sleep:SECONDS``): scores the parameter count after sleeping, to mimic slow scores."""

    seconds: float

    name = "debug:sleep"
    provenance = "test estimator (parameter count, delayed)"

    def evaluate(self, arch: Arch) -> float:
        import time

        time.sleep(self.seconds)
        from nas.cost.count import count

        return float(count(arch).params)


def check_spec(spec: str, space: SearchSpace | None = None, param: str = "accuracy") -> tuple[str, str]:
    """Check an estimator spec without building it (no checkpoint or data is loaded), so a search can refuse a
    bad one before it writes anything; returns ``(kind, argument)``. Errors name ``param`` (the setting that gave
    the spec: accuracy, rerank) and list the allowed forms."""
    kind, _, arg = spec.partition(":")
    if kind == "proxy":
        names = proxy_names()
        if arg not in names:
            raise ParamError(param, f"{spec}: unknown proxy '{arg}'; choose from {', '.join(names)}")
        structural = set(_analytic_proxies()) - {"params", "macs"}  # read a YAML space's structure
        if space is not None and not isinstance(space, SearchSpace) and arg in structural:
            model_based = sorted(set(names) - structural)
            raise ParamError(param, f"{spec}: an analytic score of YAML spaces; for {space.name} choose from "
                                         f"{', '.join(model_based)}")
    elif kind == "supernet":
        if not arg or not Path(arg).exists():
            raise ParamError(param, f"{spec}: no supernet checkpoint at '{arg}'")
    elif kind == "train":
        from nas.data import DATA_KINDS

        epochs, _, data = arg.partition(":")
        if not epochs.isdigit() or int(epochs) < 1 or data.partition(":")[0] not in DATA_KINDS:
            raise ParamError(param, f"{spec}: give train:EPOCHS:DATA, e.g. train:1:fashion-mnist (EPOCHS a "
                                         "whole number >= 1; DATA as for nas supernet train --data)")
    elif kind == "predictor":
        if not arg or not Path(arg).is_file():
            raise ParamError(param, f"{spec}: no accuracy predictor file at '{arg}'")
    elif not (kind == "debug" and arg.startswith(("crash-once:", "die-after:", "sleep:"))):
        raise ParamError(param, f"{spec}: choose from supernet:CKPT, predictor:FILE, train:EPOCHS:DATA, "
                                     f"proxy:NAME ({', '.join(proxy_names())})")
    return kind, arg


def make_estimator(spec: str, space: SearchSpace | None = None) -> AccuracyEstimator:
    """Build an accuracy estimator from its spec string (checked by :func:`check_spec`)."""
    kind, arg = check_spec(spec, space)
    if kind == "proxy":
        return ProxyEstimator(arg, space=space)
    if kind == "supernet":
        return SupernetEstimator(arg)
    if kind == "train":
        epochs, _, data = arg.partition(":")
        return ShortTrainEstimator(int(epochs), data, space=space)
    if kind == "predictor":
        return PredictorEstimator(arg)
    if arg.startswith("crash-once:"):
        return CrashOnceEstimator(arg.split(":", 1)[1])
    if arg.startswith("die-after:"):
        n, _, marker = arg[len("die-after:"):].partition(":")
        return DieAfterEstimator(int(n), marker)
    return SleepEstimator(float(arg.split(":", 1)[1]))
