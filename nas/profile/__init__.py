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

# Profiles, units and latency predictors (lazy: they pull in pandas and the model code).
_LAZY = {
    "Profile": "nas.profile.store",
    "default_device": "nas.profile.store",
    "list_profiles": "nas.profile.store",
    "Unit": "nas.profile.units",
    "arch_units": "nas.profile.units",
    "space_units": "nas.profile.units",
    "ProfileSettings": "nas.profile.run",
    "run_profile": "nas.profile.run",
    "import_table": "nas.profile.importer",
    "LatencyPredictor": "nas.profile.predict",
    "fit_latency_predictor": "nas.profile.predict",
    "load_latency_predictor": "nas.profile.predict",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas.profile' has no attribute {name!r}")
