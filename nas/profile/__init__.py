"""Device profiling: the latency-measurement protocol (timer) and machine provenance (machine).

``measure(module, input_shape, Protocol(...))`` times a module on torch-cpu, onnxruntime or
torch-cuda with warm-up, pinned threads, robust statistics and re-measurement of unstable entries;
``machine_info(protocol)`` describes where it was measured.
"""

from nas.profile.machine import MACHINE_KEYS, machine_info
from nas.profile.timer import (
    BACKENDS,
    Measurement,
    Protocol,
    Timer,
    export_onnx,
    measure,
    measure_session,
    ort_session,
    summarize,
)

__all__ = [
    "BACKENDS",
    "MACHINE_KEYS",
    "Measurement",
    "Protocol",
    "Timer",
    "export_onnx",
    "machine_info",
    "measure",
    "measure_session",
    "ort_session",
    "summarize",
]
