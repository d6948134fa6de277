"""Command-line flags made from a config dataclass, so a setting is declared once (its field) and not copied.

A field's ``metadata`` may give ``help``, ``choices``, ``flag`` (when the flag is not ``--field-name``),
``type`` (when the annotation does not say it, e.g. ``int | None``), ``nargs``, ``metavar``, ``action``
(``append``), ``show_default=False`` (the help does not end in "(default ...)") or ``cli=False`` (not a
flag). Booleans that default to False become ``store_true`` switches; those that default to True become
``store_false`` switches under their ``flag`` (``--no-...``).
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

_TYPES = {"int": int, "float": float, "str": str}


def add_config_flags(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = (),
                     only: tuple[str, ...] | None = None) -> None:
    """One flag per field of the dataclass ``cls`` (defaults and help from the fields), in field order;
    ``only`` limits them to those fields (to place a hand-written flag between them)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in exclude or meta.get("cli") is False or (only is not None and f.name not in only):
            continue
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None  # a required field: the command checks it was given
        help_text = meta.get("help", "")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        kw: dict[str, Any] = {"dest": f.name, "default": default}
        if kind == "bool" and isinstance(default, bool):
            kw["action"] = "store_false" if default else "store_true"
        else:
            if meta.get("action"):
                kw["action"] = meta["action"]
            else:
                kw["type"] = _number(flag, meta.get("type", _TYPES.get(kind, str)))
            for key in ("nargs", "metavar"):
                if key in meta:
                    kw[key] = meta[key]
            if "flag" in meta and "metavar" not in kw and kw.get("action") is None:
                kw["metavar"] = flag.lstrip("-").replace("-", "_").upper()  # named after the flag, not the field
            if meta.get("choices"):
                kw["choices"] = tuple(meta["choices"])
            if meta.get("show_default", True):
                help_text = f"{help_text} (default {default})" if help_text else f"default {default}"
        parser.add_argument(flag, help=help_text or None, **kw)


def _number(flag: str, convert: Any) -> Any:
    """``convert`` (int or float) as a flag type whose error is one line naming the flag (argparse's own
    error prints the whole usage); other types unchanged."""
    if convert not in (int, float):
        return convert
    want = "an integer" if convert is int else "a number"

    def parse(text: str) -> Any:
        from nas.errors import NASError

        try:
            return convert(text)
        except ValueError:
            raise NASError(f"{flag} {text}: must be {want}") from None
    parse.__name__ = convert.__name__
    return parse


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """The dataclass ``cls`` from parsed flags (fields without a flag keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if f.metadata.get("cli") is not False and hasattr(args, f.name)}  # a hand-made flag may share a name
    return cls(**{**values, **overrides})


def add_calibrate_flag(parser: argparse.ArgumentParser) -> None:
    """``--calibrate``: how a command that predicts latency for this machine checks the profile first."""
    from nas.latency.modes import MODES

    parser.add_argument("--calibrate", choices=MODES, default=None,
                        help="check the device profile against this host first (a short probe): auto (default, or "
                             "$NAS_CALIBRATE) calibrates it here when they disagree and caches that; always: "
                             "calibrate now; never: only say how far off it is; off: measure nothing here")
