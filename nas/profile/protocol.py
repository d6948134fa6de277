"""The latency-measurement protocol: how a number in a device profile was measured (no torch needed).

Kept apart from the timer so that reading or validating a protocol (the CLI's choices, a profile's
metadata) does not import torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from nas.errors import ProfileError

BACKENDS = ("torch-cpu", "onnxruntime", "torch-cuda")
DTYPE_NAMES = ("float32", "float16", "bfloat16")
ONNX_DTYPES = ("float32",)
ONNX_EXPORTERS = ("auto", "legacy", "dynamo")


@dataclass(frozen=True)
class Protocol:
    """How a latency is measured. Stored next to every measured number (provenance).

    ``warmup`` runs (and at least ``warmup_min_s`` seconds) are discarded; then at least ``repeats``
    timed runs and at least ``min_time_s`` seconds of measured time are collected. A measurement
    whose ``(p75 - p25) / median`` exceeds ``max_rel_spread`` is unstable and is re-measured up to
    ``remeasure`` times. ``onnx_exporter`` picks the ONNX exporter for the onnxruntime backend:
    ``auto`` tries the (much faster) legacy TorchScript exporter and falls back to the dynamo one.
    """

    backend: str = "torch-cpu"
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    warmup: int = 10
    warmup_min_s: float = 0.05
    repeats: int = 30
    min_time_s: float = 0.2
    max_rel_spread: float = 0.05
    remeasure: int = 2
    onnx_exporter: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ProfileError(
                f"protocol: backend '{self.backend}' unknown; choose from {', '.join(BACKENDS)}"
            )
        if self.dtype not in DTYPE_NAMES:
            raise ProfileError(f"protocol: dtype '{self.dtype}' unknown; choose from {', '.join(DTYPE_NAMES)}")
        if self.backend == "onnxruntime" and self.dtype not in ONNX_DTYPES:
            raise ProfileError(
                f"protocol: dtype '{self.dtype}' not supported by backend onnxruntime; "
                f"choose from {', '.join(ONNX_DTYPES)}"
            )
        if self.onnx_exporter not in ONNX_EXPORTERS:
            raise ProfileError(
                f"protocol: onnx_exporter '{self.onnx_exporter}' unknown; choose from {', '.join(ONNX_EXPORTERS)}"
            )
        for name, low in (("threads", 1), ("batch", 1), ("warmup", 0), ("repeats", 1), ("remeasure", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ProfileError(f"protocol: {name} must be an integer >= {low}, got {value!r}")
        for name in ("warmup_min_s", "min_time_s", "max_rel_spread"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ProfileError(f"protocol: {name} must be a number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-ready), every field included."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        """Inverse of :meth:`to_dict`; missing fields take defaults, unknown fields are an error."""
        if not isinstance(data, dict):
            raise ProfileError(f"protocol: expected a mapping, got {type(data).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ProfileError(
                f"protocol: unknown field(s) {', '.join(map(str, unknown))}; allowed: {', '.join(allowed)}"
            )
        return cls(**data)
