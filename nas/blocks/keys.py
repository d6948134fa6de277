"""Latency keys: the one place a unit's key is written (:func:`format_key`) and read (:func:`parse_key`).

A key is ``name|field=value|field=value``, e.g. ``layer:dwconv|cin=64|cout=64|hw=28x28|s=1|k=7|...``:
the signature a device profile's block table is indexed by. Layers, stem/downsample convs and heads
all write theirs through :func:`format_key`; the block-table predictors and the profile tools read them
through :func:`parse_key`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from functools import lru_cache

from nas.errors import PredictorError

Value = int | float | str

_INT = re.compile(r"^[+-]?\d+$")
_SHAPE = re.compile(r"^\d+(x\d+)+$")


def format_key(name: str, fields: Iterable[tuple[str, object]]) -> str:
    """``('conv', [('cin', 3), ('hw', '32x32')])`` -> ``'conv|cin=3|hw=32x32'`` (fields in order)."""
    return "|".join([name, *(f"{k}={v}" for k, v in fields)])


def _typed(text: str) -> Value:
    """ints, floats, and spatial shapes ``56x56`` as their number of positions (so they interpolate)."""
    if _INT.match(text):
        return int(text)
    if _SHAPE.match(text):
        return math.prod(int(p) for p in text.split("x"))
    try:
        f = float(text)
    except ValueError:
        return text
    return f if math.isfinite(f) else text


def parse_key(key: str, typed: bool = True) -> tuple[str, dict[str, Value]]:
    """``'mbconv|cin=24|k=5|act=relu'`` -> ``('mbconv', {'cin': 24, 'k': 5, 'act': 'relu'})``.

    ``typed=False`` keeps every value as written (``hw='56x56'``); errors name the key and the part. Parses are
    memoised (a profile's keys are read again by every predictor loaded from it); each call gets its own dict.
    """
    if not isinstance(key, str) or not key:
        raise PredictorError(f"latency key {key!r} must be a non-empty string 'name|field=value|...'")
    name, fields = _parse(key, typed)
    return name, dict(fields)


@lru_cache(maxsize=1 << 16)
def _parse(key: str, typed: bool) -> tuple[str, tuple[tuple[str, Value], ...]]:
    parts = key.split("|")
    name = parts[0]
    if not name or "=" in name:
        raise PredictorError(f"latency key '{key}': must start with a block name ('name|field=value|...')")
    fields: dict[str, Value] = {}
    for part in parts[1:]:
        f, sep, v = part.partition("=")
        if not sep or not f or not v:
            raise PredictorError(f"latency key '{key}': '{part}' is not 'field=value'")
        if f in fields:
            raise PredictorError(f"latency key '{key}': field '{f}' repeated")
        fields[f] = _typed(v) if typed else v
    return name, tuple(fields.items())
