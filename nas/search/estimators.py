"""Accuracy estimators a search scores archs with: supernet, accuracy predictor, training-free proxy.

An accuracy estimator is created from a spec string (``proxy:zen``, ``supernet:CKPT``, ``predictor:FILE``)
so Ray workers can rebuild it from plain text and keep it resident. Every estimator states its
provenance, which the tables, the summary and the model cards print next to its figures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nas.errors import ParamError
from nas.space import Arch, SearchSpace


class AccuracyEstimator(Protocol):
    """Scores archs; higher is better."""

    name: str
    provenance: str

    def evaluate(self, arch: Arch) -> float: ...


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
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("crashed")
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


def make_estimator(spec: str, space: SearchSpace | None = None) -> AccuracyEstimator:
    """Build an accuracy estimator from its spec string; errors list the allowed forms."""
    kind, _, arg = spec.partition(":")
    if kind == "proxy":
        names = proxy_names()
        if arg not in names:
            raise ParamError("accuracy", f"{spec}: unknown proxy '{arg}'; choose from {', '.join(names)}")
        structural = set(_analytic_proxies()) - {"params", "macs"}  # read a YAML space's structure
        if space is not None and not isinstance(space, SearchSpace) and arg in structural:
            model_based = sorted(set(names) - structural)
            raise ParamError("accuracy", f"{spec}: an analytic score of YAML spaces; for {space.name} choose from "
                                         f"{', '.join(model_based)}")
        return ProxyEstimator(arg, space=space)
    if kind == "supernet":
        if not arg or not Path(arg).exists():
            raise ParamError("accuracy", f"{spec}: no supernet checkpoint at '{arg}'")
        return SupernetEstimator(arg)
    if kind == "predictor":
        if not arg or not Path(arg).is_file():
            raise ParamError("accuracy", f"{spec}: no accuracy predictor file at '{arg}'")
        return PredictorEstimator(arg)
    if kind == "debug" and arg.startswith("crash-once:"):
        return CrashOnceEstimator(arg.split(":", 1)[1])
    if kind == "debug" and arg.startswith("die-after:"):
        n, _, marker = arg[len("die-after:"):].partition(":")
        return DieAfterEstimator(int(n), marker)
    if kind == "debug" and arg.startswith("sleep:"):
        return SleepEstimator(float(arg.split(":", 1)[1]))
    raise ParamError("accuracy", f"{spec}: choose from supernet:CKPT, predictor:FILE, proxy:NAME "
                   f"({', '.join(proxy_names())})")
