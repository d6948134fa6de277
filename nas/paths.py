"""Where built-in data lives: search_spaces/, hardware_profiles/, predictors/ (and bench/ results) at the project's
top level.

Resolved the same way for a source checkout, an editable install and a wheel (which ships the folders
under ``<prefix>/share/nas/``); ``NAS_HOME`` overrides all of them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

KINDS = ("search_spaces", "hardware_profiles", "predictors", "bench")


def _roots() -> list[Path]:
    roots = []
    if os.environ.get("NAS_HOME"):
        roots.append(Path(os.environ["NAS_HOME"]))
    roots.append(Path(__file__).resolve().parents[1])  # source checkout / editable install
    roots.append(Path(sys.prefix) / "share" / "nas")  # wheel install (data-files)
    return roots


def builtin_dir(kind: str) -> Path:
    """The folder holding built-in data of ``kind``: the package's own (checkout or wheel) where it has one,
    else ``$NAS_HOME``'s. NAS_HOME is where user data goes (:func:`user_dir`), so writing a user file there
    never hides the built-in ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}")
    roots = _roots()
    for root in roots[1:] + roots[:1] if os.environ.get("NAS_HOME") else roots:
        if (root / kind).is_dir():
            return root / kind
    return _roots()[0] / kind


def user_dir(kind: str) -> Path:
    """Where user-made data of ``kind`` is written: ./<kind> in the working directory, else NAS_HOME."""
    if os.environ.get("NAS_HOME"):
        return Path(os.environ["NAS_HOME"]) / kind
    return Path.cwd() / kind


def cache_dir(kind: str) -> Path:
    """Where facts about this machine that outlive a command are cached: ``$NAS_HOME/cache/<kind>``, else
    ``$XDG_CACHE_HOME/nas/<kind>`` (``~/.cache/nas/<kind>``). Safe to delete: they are measured again."""
    if os.environ.get("NAS_HOME"):
        return Path(os.environ["NAS_HOME"]) / "cache" / kind
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nas" / kind
