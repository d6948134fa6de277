"""nas: hardware-aware neural architecture search and analytical design.

The Python API: ``load_space``, ``load_arch``, ``build``, ``count``, ``load_latency_model``, ``calibrate_latency``;
see README.md.
Heavy parts (torch, the model code) are imported on first use, so ``import nas`` stays fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from nas.errors import NASError

if TYPE_CHECKING:
    from nas.cost.count import ArchCost, count
    from nas.latency.calibrate import calibrate_latency, load_latency_model
    from nas.models.build import build, fuse
    from nas.space import Arch, SearchSpace, load_arch, load_space

_LAZY = {
    "Arch": "nas.space", "SearchSpace": "nas.space", "load_arch": "nas.space", "load_space": "nas.space",
    "ArchCost": "nas.cost.count", "count": "nas.cost.count",
    "build": "nas.models.build", "fuse": "nas.models.build",
    "load_latency_model": "nas.latency.calibrate", "calibrate_latency": "nas.latency.calibrate",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["Arch", "ArchCost", "NASError", "SearchSpace", "build", "calibrate_latency", "count", "fuse", "load_arch",
           "load_latency_model", "load_space", "__version__"]
