"""Export archs to a zoo: standard weights (safetensors), ONNX of the deploy model, a card, the index.

Sources: a search run folder (``summary.json`` + ``pareto/<id>.yaml``; pick the whole Pareto front or
ids) or a single arch file. Weights: extracted from a supernet checkpoint (``supernet:CKPT``), a
trained safetensors state dict (``FILE``), or none (architecture-only entry).

Each entry is built in a private staging folder inside the zoo; only the commit (choosing the name,
rendering the card, moving the folder into place, updating ``index.yaml``) happens under the zoo's
lock, so concurrent exports into one zoo are safe and a crashed export leaves no half entry behind.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas import __version__
from nas.errors import NASError, ParamError, ZooError
from nas.io import read_json, sha256_file, write_yaml
from nas.models.build import fuse
from nas.reporting import Reporter
from nas.zoo.index import (
    ARCH_FILE,
    CARD_FILE,
    ONNX_FILE,
    PLOT_FILE,
    STAGING_DIR,
    WEIGHTS_FILE,
    check_name,
    file_checksums,
    locked,
    publish_permissions,
    read_index,
    write_index,
    zoo_path,
)
from nas.zoo.load import arch_document, input_shape, load_into, load_state

INIT_SEED = 0
COUNTED = "counted analytically (nas.count)"


# ------------------------------------------------------------------------------------------- sources
@dataclass
class ExportItem:
    """One arch to export, with what its source says about it."""

    arch: Any
    kind: str  # "run" | "arch"
    arch_file: str
    accuracy: float | None = None
    latency_ms: float | None = None
    provenance: dict[str, str | None] = field(default_factory=dict)
    run_dir: Path | None = None
    summary: dict[str, Any] | None = None
    score: float | None = None  # the search's training-free score, where its estimator was not an accuracy
    latency_device: str | None = None  # the device (profile) the latency holds on, when known
    feasible: bool | None = None  # whether the run found it inside its budget (a picked trial may not be)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run's ``summary.json``, checked for the fields the export reads."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ZooError(f"{run_dir}: not a search run folder (no summary.json) and not an arch file")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a JSON object")
    if not isinstance(data.get("space"), str):
        raise ZooError(f"{path}: space: missing (the name of the run's search space)")
    pareto = data.get("pareto")
    if not isinstance(pareto, list) or not all(
        isinstance(p, dict) and isinstance(p.get("id"), str) for p in pareto
    ):
        raise ZooError(f"{path}: pareto: expected a list of entries with id, arch_file, metrics, provenance")
    return data


def _run_space(run_dir: Path, summary: dict[str, Any], space: Any = None) -> Any:
    from nas.space import load_space

    if space is not None:
        return load_space(space)
    sf = summary.get("space_file")
    if sf:
        for cand in (Path(sf), run_dir / sf):
            if cand.is_file():
                return load_space(cand)
    return load_space(summary["space"])


def _float_or_none(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _flag(v: Any) -> bool | None:
    """A CSV boolean ("True"/"False", "1"/"0") or None."""
    text = str(v).strip().lower()
    return True if text in ("true", "1") else False if text in ("false", "0") else None


def _latency_device(summary: dict[str, Any], provenance: str) -> str | None:
    """The device a run's latency holds on: the measuring host's local profile where the verification measured
    it (a calibrated copy of another host's profile), else the search's device."""
    verify = summary.get("verify") or {}
    if provenance.startswith("measured") and verify.get("device"):
        return str(verify["device"])
    return summary.get("device")


def _trial_row(run_dir: Path, arch_id: str) -> dict[str, str] | None:
    path = run_dir / "trials.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if arch_id in (row.get("id"), row.get("arch_id")):
                return row
    return None


def _trial_arch(
    run_dir: Path, arch_id: str, row: dict[str, str] | None, space: Any
) -> tuple[Any, str] | None:
    """A trial's arch: its ``arch_file`` column, an ``arch`` JSON column, or a file named by its id."""
    if row is not None:
        if row.get("arch_file"):
            p = run_dir / row["arch_file"]
            if p.is_file():
                from nas.space import load_arch

                return load_arch(p, space), str(p)
        if row.get("arch"):
            try:
                data = json.loads(row["arch"])
            except json.JSONDecodeError:
                data = None
            if isinstance(data, dict):
                return space.arch_from_dict(
                    data, f"{run_dir / 'trials.csv'}: {arch_id}.arch"
                ), f"{run_dir / 'trials.csv'}#{arch_id}"
    for sub in ("pareto", "archs", "trials"):
        p = run_dir / sub / f"{arch_id}.yaml"
        if p.is_file():
            from nas.space import load_arch

            return load_arch(p, space), str(p)
    return None


def _study_params(run_dir: Path, summary: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Arch id -> (trial parameters, source) of every told trial in the run's Optuna study (``study.db``), read
    once per export: trials.csv names archs in their short form, which is for reading, not for rebuilding."""
    db = run_dir / "study.db"
    if not db.is_file() or not summary.get("study"):
        return {}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=str(summary["study"]), storage=f"sqlite:///{db}")
    except (KeyError, ValueError, RuntimeError):
        return {}
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for t in study.get_trials(deepcopy=False):
        arch_id = (t.user_attrs.get("row") or {}).get("arch_id")
        if arch_id:
            out.setdefault(arch_id, (t.params, f"{db}#trial {t.number}"))
    return out


def items_from_run(run_dir: str | os.PathLike, pick: list[str], space: Any = None) -> list[ExportItem]:
    """The archs picked from a run: ``["pareto"]`` for the whole front, or ids (from pareto or trials)."""
    from nas.space import load_arch

    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    sp = _run_space(run_dir, summary, space)
    pareto = {p["id"]: p for p in summary["pareto"]}
    if "pareto" in pick and len(pick) > 1:
        raise ZooError("pick: give either 'pareto' (the whole front) or arch ids, not both")
    ids = list(pareto) if pick == ["pareto"] else list(dict.fromkeys(pick))
    if not ids:
        raise ZooError(f"{run_dir / 'summary.json'}: pareto: empty; nothing to export")
    first_prov = (summary["pareto"][0].get("provenance") or {}) if summary["pareto"] else {}
    est_prov = (summary.get("estimator") or {}).get("provenance")
    lat_prov = ((summary.get("latency") or {}).get("provenance")  # the search's predictor (older runs: the front's,
                or (None if str(first_prov.get("latency")).startswith("measured") else first_prov.get("latency")))
    verify = summary.get("verify") or {}
    study: dict[str, tuple[dict[str, Any], str]] | None = None  # read when a picked trial needs it
    items = []
    for i in ids:
        if i in pareto:
            entry = pareto[i]
            rel = entry.get("arch_file") or f"pareto/{i}.yaml"
            path = run_dir / rel
            if not path.is_file():
                raise ZooError(f"{run_dir / 'summary.json'}: pareto {i}: arch file {path} missing")
            arch = load_arch(path, sp)
            m = entry.get("metrics") or {}
            prov = entry.get("provenance") or {}
            source = str(path)
        else:
            row = _trial_row(run_dir, i)
            found = _trial_arch(run_dir, i, row, sp)
            if found is None and row:
                study = _study_params(run_dir, summary) if study is None else study
                if i in study:
                    from nas.search.engine import params_to_arch

                    found = params_to_arch(sp, study[i][0]), study[i][1]
            if found is None:
                known = ", ".join(pareto) or "(none)"
                raise ZooError(
                    f"{run_dir}: no arch with id {i!r} in the Pareto front or trials.csv; Pareto ids: {known}"
                )
            arch, source = found
            row = row or {}
            m = {k: _float_or_none(row.get(k)) for k in ("accuracy", "score", "latency_ms")}
            prov = {"accuracy": first_prov.get("accuracy") or est_prov, "score": first_prov.get("score") or est_prov,
                    "latency": lat_prov}  # trials.csv's latency_ms is the search's prediction...
            if _float_or_none(row.get("measured_latency_ms")) is not None:  # ... unless the verification measured it
                from nas.search.verify import measured_provenance

                m["latency_ms"] = _float_or_none(row.get("measured_latency_ms"))
                prov["latency"] = measured_provenance(verify, str(summary.get("device")))
        if arch.id != i:
            raise ZooError(f"{source}: holds arch {arch.id}, not {i} as the run says")
        items.append(
            ExportItem(
                arch,
                "run",
                source,
                _float_or_none(m.get("accuracy")),
                _float_or_none(m.get("latency_ms")),
                {"accuracy": prov.get("accuracy"), "latency": prov.get("latency"), "score": prov.get("score")},
                run_dir,
                summary,
                score=_float_or_none(m.get("score")),
                latency_device=_latency_device(summary, str(prov.get("latency") or "")),
                feasible=True if i in pareto else _flag(row.get("feasible")),
            )
        )
    return items


def item_from_arch(path: str | os.PathLike, space: Any = None) -> ExportItem:
    """An arch file without a run: counted costs only; latency and accuracy not known."""
    from nas.space import load_arch

    return ExportItem(load_arch(path, space), "arch", str(path))


# ------------------------------------------------------------------------------------------- weights
class Weights:
    """Where an entry's weights come from: ``None`` (architecture-only), ``supernet:CKPT`` or ``FILE``."""

    def __init__(self, spec: str | os.PathLike | None):
        self.spec = None if spec in (None, "") else str(spec)
        self.kind = "none"
        self.path: Path | None = None
        self.sha256: str | None = None
        self._supernet = None
        if self.spec is None:
            return
        if self.spec.startswith("supernet:"):
            self.kind = "supernet"
            self.path = Path(self.spec.split(":", 1)[1])
        else:
            self.kind = "file"
            self.path = Path(self.spec)
        if not str(self.path) or not self.path.exists():
            raise ZooError(
                f"weights {self.spec}: {self.path} not found "
                "(give supernet:CKPT for a supernet checkpoint or a safetensors FILE)"
            )
        if self.path.is_file():
            self.sha256 = sha256_file(self.path)
        if self.kind == "file":
            self._state = load_state(self.path)

    def _load_supernet(self):
        """``nas.supernet.load_supernet(CKPT)`` (imported only here); its result, or the first item of a
        ``(supernet, state)`` pair, must have ``extract(arch)``."""
        if self._supernet is None:
            try:
                from nas.supernet import load_supernet
            except ImportError:
                try:
                    from nas.supernet.checkpoint import load_supernet
                except ImportError as e:
                    raise ZooError(
                        f"weights {self.spec}: supernet support (nas.supernet.load_supernet) is not "
                        f"available in this installation ({e})"
                    ) from None
            loaded = load_supernet(self.path)
            if not hasattr(loaded, "extract") and isinstance(loaded, tuple) and loaded:
                self._state_json = loaded[1] if len(loaded) > 1 and isinstance(loaded[1], dict) else None
                loaded = loaded[0]
            if not callable(getattr(loaded, "extract", None)):
                raise ZooError(
                    f"weights {self.spec}: load_supernet returned {type(loaded).__name__}, which has "
                    "no extract(arch)"
                )
            self._supernet = loaded
        return self._supernet

    def model_for(self, arch) -> nn.Module:
        """The standard model of ``arch`` (``nas.build``) with these weights, in eval mode."""
        from nas.models import build

        if self.kind == "none":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(INIT_SEED)
                model = build(arch)
        elif self.kind == "file":
            model = load_into(build(arch), self._state, str(self.path))
        elif self._evaluator() is not None:  # a real checkpoint: BN statistics recalibrated for this arch
            sub = self._evaluator().model(arch)
            state = {k: v.detach().cpu().clone() for k, v in sub.state_dict().items()}
            model = load_into(build(arch), state, f"supernet {self.path}: extract({arch.id})")
        else:
            sub = self._load_supernet().extract(arch)
            if not isinstance(sub, nn.Module):
                raise ZooError(
                    f"supernet {self.path}: extract({arch.id}) returned {type(sub).__name__}, "
                    "not an nn.Module"
                )
            state = {k: v.detach().cpu().clone() for k, v in sub.state_dict().items()}
            model = load_into(build(arch), state, f"supernet {self.path}: extract({arch.id})")
        return model.eval()

    def _evaluator(self):
        """For a checkpoint that records its training config: a SubnetEvaluator on the checkpoint's own data
        (BN recalibrated on its training batches, cached per arch); None otherwise."""
        if self.kind != "supernet":
            return None
        if getattr(self, "_ev", None) is None:
            supernet = self._load_supernet()
            state = getattr(self, "_state_json", None) or {}
            if not state.get("config"):
                self._ev = False
                return None
            from nas.data import load_data
            from nas.supernet.bn import SubnetEvaluator
            from nas.supernet.config import TrainConfig

            cfg = TrainConfig.from_dict(state["config"])
            self._data = load_data(cfg.data, supernet.space, seed=cfg.seed)
            self._ev = SubnetEvaluator(supernet.eval(), self._data.train, self._data.val,
                                       calib_batches=cfg.calib_batches, batch_size=cfg.eval_batch_size, seed=cfg.seed)
            self._cfg = cfg
        return self._ev or None

    def measure(self, arch, model: nn.Module, finetuned: dict[str, Any] | None = None) -> tuple[float, str] | None:
        """Top-1 accuracy of the exported ``model`` on the checkpoint data's test split (its validation
        split where the data has none), and where that figure comes from; None without a checkpoint.
        ``finetuned``: the record :meth:`finetune` returned, when ``model`` holds fine-tuned weights."""
        ev = self._evaluator()
        if ev is None:
            return None
        from nas.data import arch_resolution, iterate, resize, space_io

        split, name = self.eval_split()
        res, in_ch = arch_resolution(arch, arch.space), space_io(arch.space).in_channels
        correct = total = 0
        model.eval()
        with torch.no_grad():
            for x, y in iterate(split, 256):
                correct += int((model(resize(x, res, in_ch)).argmax(1) == y).sum())
                total += int(y.numel())
        inherited = (f"the weights inherited from {self.path} (step {(self._state_json or {}).get('step')}), BN "
                     f"recalibrated on {self._cfg.calib_batches} training batches")
        if finetuned is None:
            how = f"with {inherited}"
        else:
            f = finetuned
            how = (f"after fine-tuning {f['epochs']} epoch(s) ({f['steps']} steps) on the {f['data']} training split "
                   f"({f['train_samples']} samples) from {inherited}; recipe: {f['optimizer']} lr {f['lr']:g} cosine, "
                   f"batch {f['batch_size']}, weight decay {f['weight_decay']:g}, label smoothing "
                   f"{f['label_smoothing']:g}, shift {f['shift']} px, flip {f['flip']}, seed {f['seed']}")
        return correct / max(1, total), f"measured: top-1 on the {self._cfg.data} {name} split ({total} samples) {how}"

    def eval_split(self) -> tuple[Any, str]:
        """The split exported models are measured on: the test split, or validation where there is none."""
        if getattr(self._data, "test", None) is not None:
            return self._data.test, "test"
        return self._data.val, "validation"

    def finetune(self, arch, model: nn.Module, epochs: int, lr: float | None = None,
                 reporter: Reporter | None = None) -> dict[str, Any]:
        """Fine-tune ``model`` (holding the inherited weights) in place: ``epochs`` on the checkpoint data's
        training split with the checkpoint's recipe, at ``lr`` (default a tenth of the supernet's), no
        warm-up, seeded by the recipe's seed so a re-export gives the same weights; returns the recipe run."""
        if self._evaluator() is None:
            raise ParamError("finetune", f"{epochs}: needs weights supernet:CKPT from `nas supernet train` (the "
                                         "checkpoint names the data and the recipe)")
        from nas.supernet.train import fit_model, pick_device

        cfg = self._cfg
        rate = cfg.lr / 10 if lr is None else float(lr)
        dev = pick_device("auto")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            ran = fit_model(model.to(dev), arch, self._data, cfg, epochs=epochs, lr=rate, warmup_epochs=0,
                            device=dev, reporter=reporter, description=f"fine-tune {arch.id}")
        model.to("cpu").eval()
        return {
            "from": f"inherited weights of {self.path} (step {(self._state_json or {}).get('step')})",
            "data": cfg.data,
            "split": "train",
            "epochs": ran["epochs"],
            "steps": ran["steps"],
            "train_samples": ran["train_samples"],
            "optimizer": cfg.optimizer,
            "lr": ran["lr"],
            "schedule": "cosine, no warm-up",
            "batch_size": cfg.batch_size,
            "weight_decay": cfg.weight_decay,
            "label_smoothing": cfg.label_smoothing,
            "shift": ran["shift"],
            "flip": cfg.flip,
            "seed": cfg.seed,
            "device": str(dev),
            "seconds": round(ran["seconds"], 2),
        }

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"source": self.kind}
        if self.kind == "none":
            rec["init_seed"] = INIT_SEED
        else:
            rec["path"] = str(self.path)
            rec["sha256"] = self.sha256
        return rec


# ------------------------------------------------------------------------------------------- names
def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", str(text).lower())).strip("-")


def device_abbrev(device: str | None) -> str:
    """``'cpu-1t'``/``'cpu_1thread'`` -> ``'cpu1t'``: lowercase letters and digits only."""
    s = re.sub(r"(\d+)[\s_-]*(threads?|thr)\b", r"\1t", str(device or "").lower())
    return re.sub(r"[^a-z0-9]", "", s)[:24]


_KEY_ABBREV = {"latency": "lat", "params": "params", "macs": "macs", "memory": "mem"}


def budget_abbrev(budget: str | None) -> str:
    """``'latency:5ms,params:5M'`` -> ``'lat5ms-params5m'`` (a '.' becomes 'p': ``lat2p5ms``)."""
    if not budget:
        return ""
    from nas.cost.budget import Budget

    try:
        parts = []
        for c in Budget.parse(budget):
            value = c.text.split(":", 1)[1] if ":" in c.text else c.text[len(c.key) :]
            value = value.strip().lstrip("<=").strip().lower().replace(".", "p")
            parts.append(_KEY_ABBREV[c.key] + re.sub(r"[^a-z0-9]", "", value))
        return "-".join(parts)
    except NASError:
        return _slug(str(budget).replace(".", "p"))


def default_base(item: ExportItem) -> str:
    """``<space>-<device>-<budget>`` for a run, ``<space>-<id>`` for a bare arch."""
    space = _slug(item.arch.space.name) or "space"
    if item.kind == "arch":
        return f"{space}-{item.arch.id}"
    s = item.summary or {}
    device = re.sub(r"-host-[0-9a-f]+$", "", item.latency_device or s.get("device") or "")
    parts = [space, device_abbrev(device), budget_abbrev(s.get("budget"))]
    return "-".join(p for p in parts if p)[:70].strip("-")


def _letters() -> Iterator[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    yield from alphabet
    for a in alphabet:
        for b in alphabet:
            yield a + b


def _same(record: dict[str, Any] | None, arch_id: str, weights_sha: str | None) -> bool:
    return bool(record) and record.get("id") == arch_id and record["files"].get(WEIGHTS_FILE) == weights_sha


def choose_name(
    index: dict[str, Any],
    root: Path,
    item: ExportItem,
    weights_sha: str | None,
    explicit: str | None,
    force: bool,
) -> tuple[str, bool]:
    """(name, replaces an existing entry). Call under the zoo lock.

    An explicit name is used as given; an existing entry of that name is replaced when it holds the
    same arch and weights, or with ``force``, else it is an error. A default name takes the first free
    letter (``-a``, ``-b``, ... for a run; none, then ``-b``, ... for an arch file), re-using the name of
    an entry with the same arch and weights, so re-running an export does not duplicate it.
    """
    models = index["models"]

    def taken(n: str) -> bool:
        return n in models or (root / n).exists()

    if explicit is not None:
        check_name(explicit)
        if not taken(explicit):
            return explicit, False
        if force or _same(models.get(explicit), item.arch.id, weights_sha):
            return explicit, True
        raise ZooError(
            f"{root / explicit}: a model of that name exists (arch {models.get(explicit, {}).get('id')}); "
            "choose another name or replace it with force"
        )
    base = default_base(item)
    cands = (
        [f"{base}-{x}" for x in _letters()]
        if item.kind == "run"
        else [base] + [f"{base}-{x}" for x in list(_letters())[1:]]
    )
    for n in cands:
        if n in models and _same(models[n], item.arch.id, weights_sha):
            return n, True
    for n in cands:
        if not taken(n):
            return check_name(n), False
    raise ZooError(f"{root}: no free name left for {base}-*; give a name")


# ------------------------------------------------------------------------------------------- export
def _plain(obj: Any) -> Any:
    """Plain YAML-safe data: str/int/float subclasses (e.g. torch's version string) become builtins."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    for t in (bool, int, float, str):
        if isinstance(obj, t):
            return t(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stage(root: Path) -> Path:
    (root / STAGING_DIR).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="export-", dir=root / STAGING_DIR))


def _save_weights(model: nn.Module, path: Path, arch) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(
        state, str(path), metadata={"format": "pt", "nas_arch_id": arch.id, "nas_space": arch.space.name}
    )
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _base_record(item: ExportItem, weights: Weights) -> dict[str, Any]:
    from nas.cost.count import count

    arch = item.arch
    cost = count(arch)
    record: dict[str, Any] = {
        "id": arch.id,
        "space": arch.space.name,
        "arch": str(arch),
        "created": _now(),
        "nas_version": __version__,
        "input_shape": list(input_shape(arch)),
        "metrics": {
            "params": cost.params,
            "macs": cost.macs,
            "memory": cost.memory,
            "accuracy": item.accuracy,
            "latency_ms": item.latency_ms,
            **({"score": item.score} if item.score is not None else {}),
        },
        "provenance": {
            "params": COUNTED,
            "macs": COUNTED + "; conv, linear and matmul MACs",
            "memory": COUNTED + "; weights plus peak activations",
            "accuracy": item.provenance.get("accuracy"),
            **({"score": item.provenance.get("score")} if item.score is not None else {}),
        },
        "latency": [],
        "weights": weights.record(),
    }
    if item.kind == "run":
        s = item.summary or {}
        record["source"] = {
            "kind": "run",
            "run": str(item.run_dir),
            "study": s.get("study"),
            "device": s.get("device"),
            "budget": s.get("budget"),
            "estimator": s.get("estimator"),
            "arch_file": item.arch_file,
            "feasible": item.feasible,
        }
        if s.get("rerank"):  # the front was chosen by a second estimator (nas search --rerank)
            rr = s["rerank"]
            record["source"]["rerank"] = {k: rr.get(k) for k in ("name", "measures", "provenance", "quality")}
        record["latency"] = [
            {
                "device": item.latency_device or s.get("device"),
                "latency_ms": item.latency_ms,
                "provenance": item.provenance.get("latency"),
            }
        ]
    else:
        record["source"] = {"kind": "arch", "arch_file": item.arch_file}
    return record


def _prepare(item: ExportItem, weights: Weights, root: Path, exporter: str, opset: int, finetune: int = 0,
             finetune_lr: float | None = None, reporter: Reporter | None = None) -> tuple[Path, dict]:
    """Write arch.yaml, weights (fine-tuned for ``finetune`` epochs when > 0), ONNX and plot into a fresh
    staging folder; return it and the record."""
    from nas.zoo.card import pareto_plot
    from nas.zoo.onnx_export import export_onnx

    arch = item.arch
    record = _base_record(item, weights)
    stage = _stage(root)
    try:
        write_yaml(stage / ARCH_FILE, arch_document(arch))
        model = weights.model_for(arch)
        built = sum(p.numel() for p in model.parameters())
        if built != record["metrics"]["params"]:
            raise ZooError(
                f"arch {arch.id}: the built model has {built:,} params, the count says "
                f"{record['metrics']['params']:,}"
            )
        measured = weights.measure(arch, model)
        if measured is not None:  # the exported model's own accuracy, beside the search's estimate
            record["metrics"]["estimated_accuracy"] = record["metrics"]["accuracy"]
            record["provenance"]["estimated_accuracy"] = record["provenance"]["accuracy"]
            record["metrics"]["accuracy"], record["provenance"]["accuracy"] = measured
        if finetune:  # the inherited figure stays beside the fine-tuned one; the fine-tuned weights are saved
            record["metrics"]["inherited_accuracy"] = record["metrics"]["accuracy"]
            record["provenance"]["inherited_accuracy"] = record["provenance"]["accuracy"]
            ran = weights.finetune(arch, model, finetune, finetune_lr, reporter)
            record["metrics"]["accuracy"], record["provenance"]["accuracy"] = weights.measure(arch, model, ran)
            record["weights"]["finetune"] = ran
        if weights.kind != "none":
            _save_weights(model, stage / WEIGHTS_FILE, arch)
        deploy = fuse(copy.deepcopy(model))
        res = export_onnx(
            deploy, input_shape(arch), stage / ONNX_FILE, exporter=exporter, opset=opset, reference=model
        )
        record["onnx"] = {
            k: res[k]
            for k in (
                "exporter",
                "opset",
                "input_name",
                "output_names",
                "dynamic_batch",
                "batches",
                "max_abs_diff",
                "atol",
                "reference_max_abs_diff",
                "versions",
            )
        }
        record["onnx"]["compared_with"] = (
            "the fused PyTorch model (gate); reference_max_abs_diff: the unfused standard model"
        )
        if item.kind == "run" and item.summary is not None:
            caption = pareto_plot(
                item.summary, arch.id, stage / PLOT_FILE, f"{item.summary.get('study')}: {arch.id}"
            )
            if caption is None and item.summary.get("plot"):
                src = item.run_dir / item.summary["plot"]
                if src.is_file():
                    shutil.copyfile(src, stage / PLOT_FILE)
                    caption = f"The run's own Pareto plot (`{item.summary['plot']}` of `{item.run_dir}`)."
            if caption:
                record["plot"] = caption
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage, record


def _commit(
    stage: Path, record: dict[str, Any], item: ExportItem, root: Path, explicit: str | None, force: bool
) -> tuple[str, dict[str, Any]]:
    """Under the zoo lock: pick the name, write the card, move the entry into place, update the index."""
    from nas.zoo.card import render_card

    trash = None
    record = _plain(record)
    try:
        with locked(root):
            index = read_index(root)
            wsha = sha256_file(stage / WEIGHTS_FILE) if (stage / WEIGHTS_FILE).is_file() else None
            name, replace = choose_name(index, root, item, wsha, explicit, force)
            record["files"] = file_checksums(stage)
            (stage / CARD_FILE).write_text(render_card(name, record, root), encoding="utf-8")
            record["files"] = file_checksums(stage)
            publish_permissions(stage)
            dest = root / name
            if dest.exists():
                if not replace:
                    raise ZooError(f"{dest}: exists")
                trash = Path(tempfile.mkdtemp(prefix="old-", dir=root / STAGING_DIR))
                os.replace(dest, trash / name)
            os.replace(stage, dest)
            index["models"][name] = record
            try:
                write_index(root, index)
            except BaseException:  # put the old entry back: the index still describes it
                shutil.rmtree(dest, ignore_errors=True)
                if trash is not None:
                    os.replace(trash / name, dest)
                raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return name, record


def export(
    source: str | os.PathLike,
    *,
    pick: list[str] | None = None,
    weights: str | os.PathLike | None = None,
    zoo: str | os.PathLike | None = None,
    name: str | None = None,
    space: Any = None,
    force: bool = False,
    exporter: str = "auto",
    opset: int = 17,
    on_step: Callable[[str], None] | None = None,
    finetune: int = 0,
    finetune_lr: float | None = None,
    reporter: Reporter | None = None,
) -> list[dict[str, Any]]:
    """Export a run's picks (``pick=["pareto"]`` or ids) or one arch file into ``zoo``.

    ``weights``: ``"supernet:CKPT"``, a safetensors state-dict file, or None (architecture-only).
    ``finetune``: epochs of fine-tuning from the inherited supernet weights before saving them (0: none),
    at ``finetune_lr`` (default a tenth of the supernet's rate); the record keeps both accuracies, inherited
    and fine-tuned, measured on the same split. Fine-tuning progress goes to ``reporter``.
    ``name``: the entry name (with several models, a prefix: ``NAME-a``, ``NAME-b``, ...); default
    ``<space>-<device>-<budget>-<letter>`` for a run, ``<space>-<id>`` for an arch file. ``on_step`` is
    called with each finished entry's name. Returns ``[{"name", "path", **index record}]``.
    """
    if name is not None:
        check_name(name)
    root = zoo_path(zoo)
    src = Path(source)
    if src.is_dir():
        if not pick:
            summary = read_summary(src)
            ids = ", ".join(p["id"] for p in summary["pareto"]) or "(none)"
            raise ZooError(f"{src}: a run folder needs pick 'pareto' or arch ids; Pareto ids: {ids}")
        items = items_from_run(src, list(pick), space)
    elif src.is_file():
        if pick:
            raise ZooError(f"{src}: pick applies to a run folder, not an arch file")
        items = [item_from_arch(src, space)]
    else:
        raise ZooError(f"{src}: no such run folder or arch file")
    if finetune < 0:
        raise ParamError("finetune", f"{finetune}: give a number of epochs (0 = no fine-tuning)")
    if finetune_lr is not None and not finetune_lr > 0:
        raise ParamError("finetune_lr", f"{finetune_lr}: must be a positive learning rate")
    w = Weights(weights)
    if finetune and w.kind != "supernet":
        raise ParamError("finetune", f"{finetune}: fine-tuning starts from inherited weights; give weights "
                                     "supernet:CKPT (a checkpoint of `nas supernet train`)")
    names = (
        [name]
        if (name is not None and len(items) == 1)
        else [f"{name}-{x}" if name is not None else None for x, _ in zip(_letters(), items)]
    )
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for item, explicit in zip(items, names):
        stage, record = _prepare(item, w, root, exporter, opset, finetune, finetune_lr, reporter)
        final, record = _commit(stage, record, item, root, explicit, force)
        out.append({"name": final, "path": str(root / final), **record})
        if on_step is not None:
            on_step(final)
    return out
