"""ONNX: the one place modules are exported (legacy TorchScript or dynamo exporter) and onnxruntime sessions made.

The profiler exports to bytes at a fixed batch (it times one batch size); the zoo exports files with a
dynamic batch. Both go through :func:`export` and :func:`session`; each caller turns failures into its
own error type.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

EXPORTERS = ("legacy", "dynamo")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' warnings and log lines (deprecations, missing torchvision ops)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    buf = io.StringIO()
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export(model: nn.Module, x: torch.Tensor, target: str | os.PathLike | io.BytesIO, exporter: str, *,
           dynamic_batch: bool = False, opset: int | None = None, output_names: Sequence[str] = ("output",)
           ) -> None:
    """Export ``model`` on example input ``x`` (input name ``input``) with ``exporter`` (legacy | dynamo).

    ``dynamic_batch`` makes the first axis free; otherwise the batch of ``x`` is fixed."""
    if exporter not in EXPORTERS:
        raise ValueError(f"ONNX exporter {exporter!r} unknown; choose from {', '.join(EXPORTERS)}")
    dest = target if isinstance(target, io.BytesIO) else str(target)
    names = list(output_names)
    kw: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    with quiet(), torch.no_grad():
        if exporter == "legacy":
            if dynamic_batch:
                kw["dynamic_axes"] = {n: {0: "batch"} for n in ["input", *names]}
            torch.onnx.export(model, (x,), dest, dynamo=False, input_names=["input"], output_names=names,
                              do_constant_folding=True, **kw)
        else:
            if dynamic_batch:
                kw["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
            torch.onnx.export(model, (x,), dest, dynamo=True, verbose=False, input_names=["input"],
                              output_names=names, optimize=True, external_data=False, **kw)


def session(source: bytes | str | os.PathLike, threads: int | None = None, sequential: bool = False) -> Any:
    """An onnxruntime CPU session for ONNX bytes or a file (``threads``: intra-op threads; ``sequential``:
    one inter-op thread, sequential execution and every graph optimisation, the timing set-up)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
    opts.log_severity_level = 3
    if sequential:
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    src = source if isinstance(source, bytes) else str(Path(source))
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
