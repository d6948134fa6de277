"""Units: parse quantities with units and print figures with them (DESIGN.md: ms, MACs, counts, bytes)."""
from __future__ import annotations

import math

from nas.errors import NASError

_SI = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_TIME_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_BYTES = {"B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 1024.0, "MIB": 1024.0**2, "GIB": 1024.0**3}


def _split(text: str) -> tuple[float, str]:
    s = text.strip().replace(" ", "")
    i = 0
    while i < len(s) and (s[i].isdigit() or s[i] in ".eE+-"):
        # stop at an 'e'/'E' that starts a unit rather than an exponent
        if s[i] in "eE" and (i + 1 >= len(s) or not (s[i + 1].isdigit() or s[i + 1] in "+-")):
            break
        i += 1
    num, unit = s[:i], s[i:]
    try:
        value = float(num)
    except ValueError:
        raise NASError(f"'{text}' is not a number with a unit") from None
    if not math.isfinite(value):
        raise NASError(f"'{text}' is not a finite number")
    return value, unit


def parse_time_ms(text: str) -> float:
    """'5ms' -> 5.0, '800us' -> 0.8, '1s' -> 1000.0."""
    value, unit = _split(text)
    if unit not in _TIME_MS:
        raise NASError(f"'{text}': time unit must be one of {', '.join(_TIME_MS)}")
    return value * _TIME_MS[unit]


def parse_count(text: str) -> float:
    """'5M' -> 5e6, '600K' -> 6e5, '1.2G' -> 1.2e9, '300' -> 300."""
    value, unit = _split(text)
    if unit.upper() not in _SI:
        raise NASError(f"'{text}': count unit must be one of K, M, G (or none)")
    return value * _SI[unit.upper()]


def parse_bytes(text: str) -> float:
    """'20MB' -> 2e7, '1GiB' -> 1073741824."""
    value, unit = _split(text)
    if unit.upper() not in _BYTES:
        raise NASError(f"'{text}': memory unit must be one of B, KB, MB, GB, KiB, MiB, GiB")
    return value * _BYTES[unit.upper()]


def _si(value: float, unit: str, digits: int = 2) -> str:
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def fmt_params(n: float) -> str:
    """3504872 -> '3.50 M params'."""
    return _si(n, " params").replace("  ", " ")


def fmt_macs(n: float) -> str:
    """4.46e9 -> '4.46 GMACs'."""
    return _si(n, "MACs")


def fmt_ms(ms: float) -> str:
    """Latency in ms with sensible precision."""
    if ms < 1:
        return f"{ms * 1e3:.0f} us"
    if ms < 100:
        return f"{ms:.2f} ms"
    return f"{ms:.0f} ms"


def fmt_bytes(n: float) -> str:
    """Bytes as MB/GB (decimal, as budgets are written)."""
    return _si(n, "B")
