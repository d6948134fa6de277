"""Device profiling: measuring (timer, quiet guard, the profiling job) and storing (profiles on disk).

``measure(module, input_shape, Protocol(...))`` times a module on torch-cpu, onnxruntime or
torch-cuda with warm-up, pinned threads, robust statistics and re-measurement of unstable entries;
``machine_info(protocol)`` describes where it was measured; ``Profile`` reads and writes profile folders.
Every name is imported on first use (the timer pulls in torch, the store pandas).
"""

_LAZY = {
    "MACHINE_KEYS": "nas.profile.machine",
    "machine_info": "nas.profile.machine",
    "BACKENDS": "nas.profile.protocol",
    "Protocol": "nas.profile.protocol",
    "Measurement": "nas.profile.timer",
    "Timer": "nas.profile.timer",
    "export_onnx": "nas.profile.timer",
    "measure": "nas.profile.timer",
    "measure_session": "nas.profile.timer",
    "ort_session": "nas.profile.timer",
    "summarize": "nas.profile.timer",
    "Profile": "nas.profile.store",
    "default_device": "nas.profile.store",
    "list_profiles": "nas.profile.store",
    "ProfileSettings": "nas.profile.settings",
    "run_profile": "nas.profile.run",
    "import_table": "nas.profile.importer",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas.profile' has no attribute {name!r}")
