"""Device profiling: measuring (timer, quiet guard, the profiling job) and storing (profiles on disk).

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

# Profiles and the profiling job (lazy: they pull in pandas and the model code).
_LAZY = {
    "Profile": "nas.profile.store",
    "default_device": "nas.profile.store",
    "list_profiles": "nas.profile.store",
    "ProfileSettings": "nas.profile.run",
    "run_profile": "nas.profile.run",
    "import_table": "nas.profile.importer",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas.profile' has no attribute {name!r}")
