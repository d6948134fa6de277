"""The ``--calibrate`` modes and their default (``$NAS_CALIBRATE``), light enough for flag parsing."""

from __future__ import annotations

import os

from nas.errors import ParamError

MODES = ("auto", "always", "never", "off")
"""auto: probe, calibrate when the profile disagrees; always: calibrate now; never: probe only; off: measure nothing."""


def default_mode() -> str:
    """``$NAS_CALIBRATE`` (auto when unset): the default of ``--calibrate``."""
    mode = os.environ.get("NAS_CALIBRATE", "auto") or "auto"
    if mode not in MODES:
        raise ParamError("calibrate", f"'{mode}' (from $NAS_CALIBRATE) unknown; choose from {', '.join(MODES)}")
    return mode
