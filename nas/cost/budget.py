"""Budgets: the ``latency:5ms,params:5M`` grammar and feasibility checks.

A budget is a set of upper limits, at most one per key::

    latency:5ms         time: us, ms, s              (stored in ms); the median of timings at separate moments
    latency@p90:5ms     the same limit on the 90th percentile of each timing run (a tail-latency budget)
    params:5M           count: K, M, G or none       (stored as a count)
    macs:600M           count: K, M, G or none       (stored as a count of multiply-accumulates)
    memory:20MB         size: B, KB, MB, GB, KiB, MiB, GiB   (stored in bytes)

Pieces are comma-separated or given as several strings; ``<`` is implied and an explicit ``<`` or
``<=`` after the colon (``latency:<5ms``) is accepted. A value meets a limit when it is at most the
limit: :meth:`Constraint.violation` is the relative violation ``(value - limit) / limit`` and ``<= 0``
means feasible, the convention Optuna's constraints use; relative, so limits of different units weigh
alike. It is the one formula the search, its feasible start, pre-screening and the design baseline use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from nas.errors import BudgetError, NASError
from nas.units import fmt_bytes, parse_bytes, parse_count, parse_time_ms

KEYS: tuple[str, ...] = ("latency", "params", "macs", "memory")
"""The keys a budget may limit, in canonical order."""

# key -> (parser of the value text into base units, what the key takes, example)
_GRAMMAR: dict[str, tuple[Callable[[str], float], str, str]] = {
    "latency": (lambda s: parse_time_ms(s.lower()), "a time (us, ms, s)", "latency:5ms"),
    "params": (parse_count, "a count (K, M, G or none)", "params:5M"),
    "macs": (parse_count, "a count (K, M, G or none)", "macs:600M"),
    "memory": (parse_bytes, "a size (B, KB, MB, GB, KiB, MiB, GiB)", "memory:20MB"),
}

_PIECE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:@([A-Za-z0-9]+))?\s*(?::\s*(?:<=|<)?|<=|<)\s*(.*?)\s*$")
STATS: tuple[str, ...] = ("p50", "p90")
"""The statistics a latency limit may hold: ``p50`` (the median, default) or ``p90`` (the 90th percentile)."""
_STAT_ALIASES = {"p50": "p50", "median": "p50", "p90": "p90"}
_CHOOSE = "choose from " + ", ".join(KEYS)


def _si_plain(n: float) -> str:
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}"
    return f"{n:.0f}"


def _fmt_limit(key: str, limit: float) -> str:
    if key == "latency":
        return f"{limit:.6g} ms"
    if key == "memory":
        return fmt_bytes(limit)
    return _si_plain(limit)


def _canonical_text(key: str, limit: float, stat: str = "p50") -> str:
    unit = {"latency": "ms", "memory": "B"}.get(key, "")
    at = f"@{stat}" if stat != "p50" else ""
    return f"{key}{at}:{limit:.12g}{unit}"


@dataclass(frozen=True)
class Constraint:
    """One upper limit: ``key`` in :data:`KEYS`, ``limit`` in base units (ms, count, count, bytes).

    ``text`` is the piece the limit was parsed from (``'latency:5ms'``); left empty, a canonical
    text that parses back to the same constraint is filled in. ``stat`` is the statistic a latency limit holds
    (:data:`STATS`: the median of timings, or their 90th percentile); other keys are exact and take none.
    """

    key: str
    limit: float
    text: str = ""
    stat: str = "p50"

    def __post_init__(self) -> None:
        if self.key not in KEYS:
            raise BudgetError(f"budget key '{self.key}' is unknown; {_CHOOSE}")
        limit = float(self.limit)
        if not math.isfinite(limit) or limit <= 0:
            raise BudgetError(f"budget {self.key}: limit must be a positive number, got {self.limit!r}")
        if self.stat not in STATS or (self.stat != "p50" and self.key != "latency"):
            raise BudgetError(f"budget {self.key}@{self.stat}: only latency takes a statistic; choose "
                              f"latency@{' or latency@'.join(STATS)}")
        object.__setattr__(self, "limit", limit)
        if not self.text:
            object.__setattr__(self, "text", _canonical_text(self.key, limit, self.stat))

    def violation(self, value: float) -> float:
        """Relative violation ``(value - limit) / limit``; ``<= 0`` means the value meets the limit."""
        return (float(value) - self.limit) / self.limit

    def violations_of(self, values: np.ndarray) -> np.ndarray:
        """:meth:`violation` of many values at once (non-finite values stay non-finite)."""
        with np.errstate(invalid="ignore"):
            return (np.asarray(values, dtype=float) - self.limit) / self.limit

    def feasible(self, value: float) -> bool:
        """Whether ``value`` meets the limit."""
        return self.violation(value) <= 0

    def __str__(self) -> str:
        at = f" ({self.stat})" if self.stat != "p50" else ""
        return f"{self.key}{at} < {_fmt_limit(self.key, self.limit)}"


def parse_constraint(piece: str) -> Constraint:
    """Parse one piece such as ``'latency:5ms'`` or ``'memory:<=20MiB'``."""
    text = piece.strip()
    m = _PIECE.match(text)
    if m is None:
        raise BudgetError(
            f"budget '{text}': expected key:value, e.g. latency:5ms; keys are {', '.join(KEYS)}"
        )
    key, at, value = m.group(1).lower(), m.group(2), m.group(3)
    if key not in _GRAMMAR:
        raise BudgetError(f"budget '{text}': unknown key '{m.group(1)}'; {_CHOOSE}")
    stat = "p50"
    if at is not None:
        stat = _STAT_ALIASES.get(at.lower(), "")
        if key != "latency" or not stat:
            raise BudgetError(f"budget '{text}': '@{at}' is not allowed; only latency takes a statistic: "
                              f"latency:5ms (median, default) or latency@p90:5ms")
    parse, takes, example = _GRAMMAR[key]
    if not value:
        raise BudgetError(f"budget '{text}': missing value; {key} takes {takes}, e.g. {example}")
    try:
        limit = parse(value)
    except NASError:
        raise BudgetError(f"budget '{text}': {key} takes {takes}, e.g. {example}") from None
    if limit <= 0:
        raise BudgetError(f"budget '{text}': the limit must be positive, e.g. {example}")
    return Constraint(key, limit, text, stat)


class Budget:
    """A set of :class:`Constraint`, at most one per key, kept in :data:`KEYS` order."""

    __slots__ = ("_by_key",)

    def __init__(self, constraints: Iterable[Constraint] = ()) -> None:
        by_key: dict[str, Constraint] = {}
        for c in constraints:
            if c.key in by_key:
                raise BudgetError(
                    f"budget '{c.text}': {c.key} is already limited by '{by_key[c.key].text}'; "
                    "give each key at most once"
                )
            by_key[c.key] = c
        self._by_key = {k: by_key[k] for k in KEYS if k in by_key}

    @classmethod
    def parse(cls, texts: str | Iterable[str] | Budget | None) -> Budget:
        """Parse ``'latency:5ms,params:5M'`` or a list of such strings (e.g. a repeated CLI flag).

        Empty pieces are ignored, so ``''`` or ``[]`` is the empty budget (no limits).
        """
        if isinstance(texts, Budget):
            return texts
        if texts is None:
            return cls()
        if isinstance(texts, str):
            texts = [texts]
        pieces: list[str] = []
        for t in texts:
            if not isinstance(t, str):
                raise BudgetError(f"budget {t!r}: expected a string such as 'latency:5ms'")
            pieces.extend(p for p in t.split(",") if p.strip())
        return cls(parse_constraint(p) for p in pieces)

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        return tuple(self._by_key.values())

    @property
    def keys(self) -> tuple[str, ...]:
        """The limited keys, in :data:`KEYS` order."""
        return tuple(self._by_key)

    @property
    def texts(self) -> list[str]:
        """The pieces, as written; ``Budget.parse(b.texts) == b``."""
        return [c.text for c in self._by_key.values()]

    def get(self, key: str) -> Constraint | None:
        """The constraint on ``key``, or None when the budget does not limit it."""
        return self._by_key.get(key)

    def limits(self) -> dict[str, float]:
        """``{key: limit}`` in base units."""
        return {k: c.limit for k, c in self._by_key.items()}

    def violations(self, values: Mapping[str, float]) -> dict[str, float]:
        """``{key: (value - limit) / limit}`` for every limited key; ``<= 0`` means that limit is met.

        ``values`` must hold a value for every limited key (extra keys are ignored).
        """
        out: dict[str, float] = {}
        for key, c in self._by_key.items():
            if values.get(key) is None:
                raise BudgetError(f"budget {c}: no {key} value to check it against")
            out[key] = c.violation(values[key])
        return out

    def feasible(self, values: Mapping[str, float]) -> bool:
        """Whether every limit is met."""
        return all(v <= 0 for v in self.violations(values).values())

    def total_violation(self, values: Mapping[str, float]) -> float:
        """Sum of the positive relative violations (0 when feasible): how far outside the budget."""
        return sum(max(0.0, v) for v in self.violations(values).values())

    def __iter__(self) -> Iterator[Constraint]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Budget):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _identity(self) -> tuple:
        return tuple((k, c.limit, c.stat) for k, c in self._by_key.items())

    def __str__(self) -> str:
        return ", ".join(str(c) for c in self._by_key.values()) if self._by_key else "no limits"

    def __repr__(self) -> str:
        return f"Budget.parse({','.join(self.texts)!r})"
