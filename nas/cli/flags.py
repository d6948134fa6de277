"""Command-line flags made from a config dataclass, so a setting is declared once (its field) and not copied.

A field's ``metadata`` may give ``help``, ``choices``, ``flag`` (when the flag is not ``--field-name``) or
``cli=False`` (not a flag). Booleans that default to False become ``store_true`` switches.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

_TYPES = {"int": int, "float": float, "str": str}


def add_config_flags(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()) -> None:
    """One flag per field of the dataclass ``cls`` (defaults and help from the fields)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in exclude or meta.get("cli") is False:
            continue
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = meta.get("help", "")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        kw: dict[str, Any] = {"dest": f.name, "default": default}
        if kind == "bool" and default is False:
            kw["action"] = "store_true"
        else:
            kw["type"] = _TYPES.get(kind, str)
            if "choices" in meta:
                kw["choices"] = tuple(meta["choices"])
            help_text = f"{help_text} (default {default})" if help_text else f"default {default}"
        parser.add_argument(flag, help=help_text, **kw)


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """The dataclass ``cls`` from parsed flags (fields without a flag keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})


def add_calibrate_flag(parser: argparse.ArgumentParser) -> None:
    """``--calibrate``: how a command that predicts latency for this machine checks the profile first."""
    from nas.latency.calibrate import MODES

    parser.add_argument("--calibrate", choices=MODES, default=None,
                        help="check the device profile against this host first (a short probe): auto (default, or "
                             "$NAS_CALIBRATE) calibrates it here when they disagree and caches that; always: "
                             "calibrate now; never: only say how far off it is; off: measure nothing here")
