"""Supernet checkpoints: one safetensors file (tensors) carrying its JSON state in the header metadata.

``<run>/checkpoint.safetensors`` holds the supernet's bank (``model/<name>``), the optimizer's tensor
state (``optim/<param index>/<key>``) and, in the header's ``nas.state`` metadata, a JSON document with
everything else: the space (its YAML content, so a checkpoint is self-contained), the training
configuration, the step/epoch reached, the optimizer's param groups and scalar state, the AMP scaler,
the data's normalisation and recent metrics. The file is written atomically (temp file, fsync, rename),
so a kill leaves either the previous checkpoint or the new one. ``<run>/state.json`` is a readable copy
of the JSON state. Nothing is pickled; loading never runs code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nas.errors import NASError
from nas.io import atomic_path, write_json
from nas.space.family import space_from_state as family_space
from nas.space.language import parse_space
from nas.space.space import SearchSpace

FORMAT = "nas-supernet/1"
FILENAME = "checkpoint.safetensors"
STATE_FILE = "state.json"


def checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file of a run folder, or the file itself."""
    p = Path(path)
    return p / FILENAME if p.is_dir() else p


def space_from_state(state: dict) -> SearchSpace:
    """The search space a checkpoint was trained on (from the YAML content it carries)."""
    sp = state.get("space") or {}
    family = family_space(sp)  # a family with its own folder records only its name (nb201)
    if family is not None:
        return family
    raw = sp.get("raw")
    if not isinstance(raw, dict):
        raise NASError("checkpoint: no space content in its state")
    return SearchSpace(parse_space(raw, sp.get("source", "<checkpoint>")), None)


def save_checkpoint(
    path: str | os.PathLike, supernet, optimizer: torch.optim.Optimizer | None, state: dict[str, Any]
) -> Path:
    """Write tensors + JSON state atomically; returns the path written."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in supernet.state_dict().items():
        tensors[f"model/{k}"] = v.detach().to("cpu").contiguous()
    state = dict(state)
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim/{idx}/{k}"] = v.detach().to("cpu").contiguous()
                else:
                    scalars.setdefault(str(idx), {})[k] = v
        state["optimizer"] = {
            "param_groups": sd["param_groups"],
            "scalars": scalars,
            "type": type(optimizer).__name__,
        }
    state["format"] = FORMAT
    meta = {"nas.state": json.dumps(state), "format": FORMAT}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    write_json(path.parent / STATE_FILE, state)
    return path


@dataclass
class Checkpoint:
    """A loaded checkpoint: the JSON state, model tensors and optimizer tensors (on CPU)."""

    path: Path
    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    optim: dict[str, torch.Tensor]

    @property
    def space(self) -> SearchSpace:
        return space_from_state(self.state)

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Load the saved optimizer state into ``optimizer`` (built over the same parameters)."""
        meta = self.state.get("optimizer")
        if meta is None:
            raise NASError(f"{self.path}: no optimizer state")
        st: dict[int, dict[str, Any]] = {}
        for key, t in self.optim.items():
            idx, k = key.split("/", 1)
            st.setdefault(int(idx), {})[k] = t
        for idx, sc in meta.get("scalars", {}).items():
            st.setdefault(int(idx), {}).update(sc)
        optimizer.load_state_dict({"state": st, "param_groups": meta["param_groups"]})


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file (or a run folder's); raises NASError naming the file when it is not one."""
    p = checkpoint_path(path)
    if not p.is_file():
        raise NASError(f"{p}: no such checkpoint")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or "nas.state" not in meta:
                raise NASError(f"{p}: not a nas supernet checkpoint (format {meta.get('format')!r})")
            state = json.loads(meta["nas.state"])
            model, optim = {}, {}
            for k in f.keys():
                if k.startswith("model/"):
                    model[k[len("model/") :]] = f.get_tensor(k)
                elif k.startswith("optim/"):
                    optim[k[len("optim/") :]] = f.get_tensor(k)
    except NASError:
        raise
    except Exception as e:  # a truncated or foreign file
        raise NASError(f"{p}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    return Checkpoint(p, state, model, optim)


def load_supernet(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(Supernet with the checkpoint's weights, state) — for evaluation and extraction."""
    ck = load_checkpoint(path)
    sn = ck.space.supernet(init=False, sharing=str((ck.state.get("config") or {}).get("sharing", "mlp")))
    missing, unexpected = sn.load_state_dict(ck.model, strict=False)
    if missing or unexpected:
        raise NASError(
            f"{ck.path}: checkpoint does not match the supernet of its space "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    return sn.to(device), ck.state
