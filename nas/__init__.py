"""nas: hardware-aware neural architecture search and analytical design.

The Python API: ``load_space``, ``load_arch``, ``build``, ``count``; see README.md.
"""
from nas.cost.count import ArchCost, count
from nas.errors import NASError
from nas.models.build import build, fuse
from nas.space import Arch, SearchSpace, load_arch, load_space


def load_latency_predictor(device: str | None, space):  # noqa: ANN001, ANN201 - thin re-export
    """The calibrated latency predictor of a device profile for a space (see nas.profile.predict)."""
    from nas.profile.predict import load_latency_predictor as _load

    return _load(device, space)


__version__ = "0.1.0"
__all__ = ["Arch", "ArchCost", "NASError", "SearchSpace", "build", "count", "fuse", "load_arch", "load_latency_predictor", "load_space",
           "__version__"]
