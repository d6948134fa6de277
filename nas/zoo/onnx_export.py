"""ONNX export with a dynamic batch dimension, checked against onnxruntime.

``export_onnx(model, input_shape, path)`` exports a module for inputs ``(batch, *input_shape)`` with a
free batch dimension, then runs the file in onnxruntime at several batch sizes (1 and 3 by default)
and compares with the PyTorch model; the file is only written (atomically) when every batch agrees
within ``atol``. It returns the parity figures.

Two exporters exist in torch 2.x: the TorchScript ("legacy") one with ``dynamic_axes`` and the
torch.export-based ("dynamo") one with ``dynamic_shapes``. On this code base the legacy exporter
handles every token mixer, 2D and 1D, at batch 1 and 3, several times faster; the dynamo exporter
silently specialises the batch to 1 for some 1D mixers (inception_dw, partial_conv, gnconv, focal),
which the batch-3 check catches. ``exporter="auto"`` therefore tries legacy first and falls back to
dynamo (e.g. on a torch where the legacy exporter is gone); the one that passed is reported.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.errors import ZooError
from nas.models import onnx as onnx_io
from nas.models.onnx import EXPORTERS

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4
DEFAULT_BATCHES = (1, 3)


def _outputs(y: Any) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, (list, tuple)):
        return [t for item in y for t in _outputs(item)]
    if isinstance(y, dict):
        return [t for v in y.values() for t in _outputs(v)]
    raise ZooError(f"cannot export a model whose output is a {type(y).__name__}")


def _export(
    model: nn.Module, x: torch.Tensor, path: Path, exporter: str, opset: int, output_names: list[str]
) -> None:
    if exporter not in EXPORTERS:
        raise ZooError(f"ONNX exporter {exporter!r} unknown; choose from auto, {', '.join(EXPORTERS)}")
    onnx_io.export(model, x, path, exporter, dynamic_batch=True, opset=opset, output_names=output_names)


def ort_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for an ONNX file."""
    try:
        return onnx_io.session(path, threads)
    except Exception as e:  # onnxruntime raises its own exception types
        raise ZooError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from None


def parity(
    session: Any,
    model: nn.Module,
    input_shape: Sequence[int],
    batches: Sequence[int] = DEFAULT_BATCHES,
    seed: int = 0,
    compare: bool = True,
) -> dict[int, float | None]:
    """Max abs difference between onnxruntime and ``model`` on seeded random inputs, per batch size.

    Also checks that the ONNX outputs have the model's shapes (a batch fixed at export shows here);
    ``compare=False`` checks only that (for a file whose weights ``model`` does not hold): values None.
    """
    gen = torch.Generator().manual_seed(seed)
    in_name = session.get_inputs()[0].name
    out: dict[int, float | None] = {}
    model.eval()
    for b in batches:
        x = torch.randn((b, *input_shape), generator=gen)
        with torch.no_grad():
            ref = [t.detach().float().numpy() for t in _outputs(model(x))]
        try:
            got = session.run(None, {in_name: x.numpy()})
        except Exception as e:  # onnxruntime raises its own exception types
            raise ZooError(f"onnxruntime failed at batch {b}: {type(e).__name__}: {str(e)[:200]}") from None
        if len(got) != len(ref) or any(np.shape(g) != r.shape for g, r in zip(got, ref)):
            raise ZooError(
                f"ONNX outputs at batch {b} have shapes {[np.shape(g) for g in got]}, "
                f"PyTorch {[r.shape for r in ref]} (batch not dynamic?)"
            )
        if not compare:
            out[b] = None
            continue
        out[b] = max(
            float(np.max(np.abs(g.astype(np.float64) - r))) if r.size else 0.0 for g, r in zip(got, ref)
        )
    return out


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    exporter: str = "auto",
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    batches: Sequence[int] = DEFAULT_BATCHES,
    reference: nn.Module | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Export ``model`` (eval mode, as given: fuse it first for deploy) to ``path`` with a dynamic batch.

    ``input_shape`` is one sample's shape without the batch, e.g. ``(3, 224, 224)`` or ``(1, 2048)``.
    The file is checked with ``onnx.checker`` and run in onnxruntime at each of ``batches``; it is
    written (atomically) only when the max abs difference to ``model`` is at most ``atol`` for all of
    them, else ZooError says what each exporter got. ``reference`` (e.g. the unfused model) is also
    compared, for information (``reference_max_abs_diff``); it does not gate.

    Returns ``{"path", "exporter", "opset", "input_name", "output_names", "input_shape", "dynamic_batch",
    "batches", "max_abs_diff" (per batch), "max_abs_diff_all", "atol", "reference_max_abs_diff", "tried",
    "versions"}``.
    """
    import onnx
    import onnxruntime

    path = Path(path)
    input_shape = tuple(int(s) for s in input_shape)
    order = EXPORTERS if exporter == "auto" else (exporter,)
    for e in order:
        if e not in EXPORTERS:
            raise ZooError(f"ONNX exporter {e!r} unknown; choose from auto, {', '.join(EXPORTERS)}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            y = model(torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(seed)))
        n_out = len(_outputs(y))
        output_names = ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
        x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(seed + 1))
        tried: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            for name in order:
                try:
                    _export(model, x, tmp, name, opset, output_names)
                    onnx.checker.check_model(str(tmp))
                    opsets = {
                        o.domain: o.version
                        for o in onnx.load(str(tmp), load_external_data=False).opset_import
                    }
                    diffs = parity(ort_session(tmp), model, input_shape, batches, seed)
                except Exception as e:  # each exporter fails in its own way; try the next one
                    msg = str(e).splitlines()[0][:200] if str(e) else ""
                    tried.append(f"{name}: {type(e).__name__}: {msg}")
                    continue
                worst = max(diffs.values())
                if not worst <= atol:
                    tried.append(
                        f"{name}: max abs difference {worst:.3g} > {atol:g} "
                        f"(per batch {', '.join(f'{b}: {d:.3g}' for b, d in diffs.items())})"
                    )
                    continue
                ref_diffs = None
                if reference is not None:
                    ref = parity(ort_session(tmp), reference, input_shape, batches, seed)
                    ref_diffs = {str(b): d for b, d in ref.items()}
                tried.append(f"{name}: ok")
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                return {
                    "path": str(path),
                    "exporter": name,
                    "opset": opsets.get("", opset),
                    "input_name": "input",
                    "output_names": output_names,
                    "input_shape": ["batch", *input_shape],
                    "dynamic_batch": True,
                    "batches": list(batches),
                    "max_abs_diff": {str(b): d for b, d in diffs.items()},
                    "max_abs_diff_all": worst,
                    "atol": atol,
                    "reference_max_abs_diff": ref_diffs,
                    "tried": tried,
                    "versions": {
                        "torch": str(torch.__version__),
                        "onnx": str(onnx.__version__),
                        "onnxruntime": str(onnxruntime.__version__),
                    },
                }
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise ZooError(
            f"{path}: ONNX export failed the onnxruntime check with every exporter: " + "; ".join(tried)
        )
    finally:
        model.train(was_training)
