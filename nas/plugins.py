"""Late binding by name: a part that lives in a later stage, named ``"package.module:attr"``, imported on first use.

The block registry names each mixer's torch module this way, and a space family names what builds, counts
and trains its archs (nas.models, nas.cost, nas.supernet): the definitions stay light and low in the stage
order, and the heavy parts are imported only by the command that uses them.
"""
from __future__ import annotations

import importlib
from functools import cache
from typing import Any


@cache
def load(path: str) -> Any:
    """The attribute ``attr`` of module ``package.module`` for ``"package.module:attr"`` (imported once)."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"plugin path {path!r}: expected 'package.module:attr'")
    return getattr(importlib.import_module(module), attr)
