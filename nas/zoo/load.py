"""Loading zoo entries: ``create_model(name)`` gives the standard nn.Module with its weights.

Nothing read from an entry is ever executed: ``arch.yaml`` is read with ``yaml.safe_load``, weights
come from safetensors, the ONNX file is only parsed by onnxruntime. Every file is checked against the
SHA-256 the index records before it is used, so a tampered or incomplete entry fails with a ZooError
naming the file. The model is built by ``nas.build`` from the arch and the space definition embedded
in ``arch.yaml`` (validated like any space file), so loading needs neither the space file nor any
supernet code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from nas.errors import NASError, ZooError
from nas.models.build import fuse as deploy_form
from nas.zoo.index import (
    ARCH_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    check_files,
    get_record,
    read_index,
    zoo_path,
)

ARCH_FORMAT = "nas-zoo-arch/1"


def read_entry_arch(path: str | os.PathLike, expected_id: str | None = None):
    """The Arch in an entry's ``arch.yaml``, its space rebuilt from the embedded, re-validated definition.

    Falls back to the space named by ``space`` when the file embeds none. The arch's id must equal the
    recorded one (and ``expected_id`` when given): a mismatch means an edited file or an incompatible
    version of nas.
    """
    import yaml

    from nas.space.language import parse_space
    from nas.space.space import SearchSpace, load_space

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ZooError(
            f"{path}: cannot read the arch ({type(e).__name__}: {getattr(e, 'problem', e)})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("arch"), dict):
        raise ZooError(f"{path}: expected a mapping with format, id, space, arch (and space_spec)")
    if data.get("format") != ARCH_FORMAT:
        raise ZooError(f"{path}: format: {data.get('format')!r} is not {ARCH_FORMAT!r}")
    raw = data.get("space_spec")
    try:
        if raw is not None:
            space = SearchSpace(parse_space(raw, f"{path}: space_spec"))
        elif isinstance(data.get("space"), str):
            space = load_space(data["space"])
        else:
            raise ZooError(f"{path}: neither space_spec nor a space name; the arch cannot be built")
        if data.get("space") not in (None, space.name):
            raise ZooError(f"{path}: space: {data.get('space')!r} but space_spec defines {space.name!r}")
        arch = space.arch_from_dict(data["arch"], f"{path}: arch")
    except ZooError:
        raise
    except NASError as e:
        raise ZooError(f"{path}: does not validate: {e}") from None
    for want in (data.get("id"), expected_id):
        if want is not None and arch.id != want:
            raise ZooError(
                f"{path}: the arch has id {arch.id}, the entry records {want}; "
                "the file was edited or was written by an incompatible version"
            )
    return arch


def arch_document(arch) -> dict[str, Any]:
    """The content of an entry's ``arch.yaml``: format, id, space name, arch and the space's definition."""
    return {
        "format": ARCH_FORMAT,
        "id": arch.id,
        "space": arch.space.name,
        "arch": arch.to_dict(),
        "space_spec": arch.space.spec.raw,
    }


def load_state(path: str | os.PathLike) -> dict:
    """A safetensors state dict (never pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ZooError(f"{path}: not a readable safetensors file ({e})") from None


def load_into(model: nn.Module, state: dict, source: str, features_only: bool = False) -> nn.Module:
    """Load ``state`` into ``model`` strictly (a features-only model may leave the head out)."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
        more = f" (+{len(lines) - 2} more)" if len(lines) > 2 else ""
        raise ZooError(
            f"{source}: weights do not match the arch's model: {'; '.join(lines[:2])}{more}"
        ) from None
    unexpected = list(result.unexpected_keys)
    if features_only:
        unexpected = [k for k in unexpected if not k.startswith("head.")]
    if result.missing_keys or unexpected:
        parts = []
        if result.missing_keys:
            parts.append(
                f"missing {', '.join(result.missing_keys[:5])}{' ...' if len(result.missing_keys) > 5 else ''}"
            )
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        raise ZooError(f"{source}: weights do not match the arch's model ({'; '.join(parts)})")
    return model


def load_arch(name: str, zoo: str | os.PathLike | None = None):
    """The Arch of a zoo entry (checksum checked first)."""
    record = get_record(zoo, name)
    folder = check_files(zoo, name, record, (ARCH_FILE,))
    return read_entry_arch(folder / ARCH_FILE, record.get("id"))


def create_model(
    name: str,
    pretrained: bool = True,
    zoo: str | os.PathLike | None = None,
    *,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    fuse: bool = False,
) -> nn.Module:
    """The standard ``nn.Module`` of zoo entry ``name`` (built by ``nas.build``; no supernet code).

    ``pretrained`` loads the entry's weights (an architecture-only entry then raises ZooError; pass
    ``pretrained=False`` for a freshly initialised model). ``zoo`` defaults to ``$NAS_ZOO`` or ``./zoo``.
    ``features_only``/``out_indices`` give the multi-scale backbone; ``fuse`` the deploy form.
    The model is returned in eval mode, with ``model.pretrained_cfg`` describing the entry.
    """
    from nas.models import build

    record = get_record(zoo, name)
    has_weights = WEIGHTS_FILE in record["files"]
    if pretrained and not has_weights:
        raise ZooError(f"zoo model {name!r} is architecture-only (no weights); use pretrained=False")
    folder = check_files(zoo, name, record, (ARCH_FILE, WEIGHTS_FILE) if pretrained else (ARCH_FILE,))
    arch = read_entry_arch(folder / ARCH_FILE, record.get("id"))
    model = build(arch, features_only=features_only, out_indices=out_indices)
    if pretrained:
        load_into(model, load_state(folder / WEIGHTS_FILE), str(folder / WEIGHTS_FILE), features_only)
    model.eval()
    if fuse:
        deploy_form(model)
    model.pretrained_cfg = {
        "name": name,
        "id": arch.id,
        "space": arch.space.name,
        "arch": str(arch),
        "input_size": list(input_shape(arch)),
        "num_classes": arch.space.spec.head.classes,
        "pretrained": bool(pretrained),
        "zoo": str(zoo_path(zoo)),
    }
    return model


def input_shape(arch) -> tuple[int, ...]:
    """One sample's input shape (channels, *spatial) for an arch."""
    return (arch.space.spec.in_channels, *(arch.resolution,) * arch.space.dims)


def list_models(zoo: str | os.PathLike | None = None) -> list[str]:
    """Names of the zoo's models (empty for a zoo that does not exist yet)."""
    return sorted(read_index(zoo)["models"])


def model_info(name: str, zoo: str | os.PathLike | None = None) -> dict[str, Any]:
    """The index record of a model (metrics, provenance, ONNX parity, files with SHA-256)."""
    return {"name": name, **get_record(zoo, name)}


def verify(name: str | None = None, zoo: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Re-check entries (one, or all): every file's SHA-256, the arch, and ONNX parity at batch 1 and 3.

    Parity compares onnxruntime with the fused model rebuilt from the entry's weights (within the
    tolerance recorded at export). An architecture-only entry has no weights to compare with: its
    ONNX file is checked to load and run with the right output shapes. Returns one result per entry:
    ``{"name", "ok", "checksums", "onnx_max_abs_diff", "problem"}``; never raises for a bad entry.
    """
    from nas.zoo.onnx_export import DEFAULT_ATOL, DEFAULT_BATCHES, ort_session, parity

    index = read_index(zoo, must_exist=True)
    names = [name] if name is not None else sorted(index["models"])
    if name is not None and name not in index["models"]:
        get_record(zoo, name)  # raises, listing the known names
    results = []
    for n in names:
        record = index["models"][n]
        res: dict[str, Any] = {
            "name": n,
            "ok": False,
            "checksums": "?",
            "onnx_max_abs_diff": None,
            "problem": None,
        }
        try:
            folder = check_files(zoo, n, record)
            res["checksums"] = "ok"
            arch = read_entry_arch(folder / ARCH_FILE, record.get("id"))
            onnx_rec = record.get("onnx") or {}
            atol = float(onnx_rec.get("atol", DEFAULT_ATOL))
            batches = tuple(int(b) for b in onnx_rec.get("batches", DEFAULT_BATCHES))
            has_weights = WEIGHTS_FILE in record["files"]
            model = create_model(n, pretrained=has_weights, zoo=zoo)
            deploy_form(model)
            diffs = parity(
                ort_session(folder / ONNX_FILE), model, input_shape(arch), batches, compare=has_weights
            )
            if has_weights:
                worst = max(diffs.values())
                res["onnx_max_abs_diff"] = worst
                if not worst <= atol:
                    raise ZooError(
                        f"{folder / ONNX_FILE}: onnxruntime differs from the weights by {worst:.3g} "
                        f"(> {atol:g})"
                    )
            else:
                res["onnx_max_abs_diff"] = "n/a (architecture-only)"
            res["ok"] = True
        except NASError as e:
            if res["checksums"] == "?":
                res["checksums"] = "FAILED"
            res["problem"] = str(e)
        results.append(res)
    return results
