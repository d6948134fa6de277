"""Terminal output every command uses: tables, JSON, progress with ETA, info/warning lines.

On a terminal tables and progress bars are drawn with rich; otherwise (pipes, files, CI logs)
tables are plain aligned text and progress is an occasional plain line on stderr. In JSON mode
(``nas --json``) stdout carries only JSON and progress is silent. Results go to stdout,
everything else (progress, info, warnings) to stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import PurePath
from typing import IO, Any

_state = {"json": False}


def configure(json_mode: bool | None = None) -> None:
    """Set process-wide output options (the CLI calls this from the global flags)."""
    if json_mode is not None:
        _state["json"] = bool(json_mode)


def json_mode() -> bool:
    """Whether machine (JSON) output is on."""
    return _state["json"]


def _resolve_json(flag: bool | None) -> bool:
    return _state["json"] if flag is None else bool(flag)


def is_tty(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default stdout) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def fmt_duration(seconds: float) -> str:
    """``5.2 -> '5s'``, ``75 -> '1m15s'``, ``7384 -> '2h03m'``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


# ---------------------------------------------------------------------------------------------- JSON


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays, tensors
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, PurePath):
        return str(obj)
    return str(obj)


def to_json(obj: Any, indent: int | None = 2) -> str:
    """JSON text of ``obj``; numpy/torch scalars, dataclasses, paths and sets are converted."""
    return json.dumps(obj, indent=indent, default=_json_default, allow_nan=True)


@contextlib.contextmanager
def stdout_kept_for_json() -> Iterator[None]:
    """In JSON mode, keep stdout for the JSON a command writes after this block: during it stdout goes to stderr
    (Ray's driver prints a worker's death to stdout from a thread of its own), and a Ray session started inside
    it ends with it (a session that was up before is left up). Outside JSON mode, nothing changes."""
    if not json_mode():
        yield
        return
    was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    with contextlib.redirect_stdout(sys.stderr):
        try:
            yield
        finally:
            ray = sys.modules.get("ray")
            if ray is not None and not was_up and ray.is_initialized():
                ray.shutdown()


def print_json(obj: Any, stream: IO[str] | None = None) -> None:
    """Print ``obj`` as JSON on stdout (or ``stream``)."""
    stream = sys.stdout if stream is None else stream
    stream.write(to_json(obj) + "\n")
    stream.flush()


# --------------------------------------------------------------------------------------------- tables


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3e}"
        if abs(value) >= 1e4:
            return f"{value:.0f}"
        return f"{value:.4g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _row_values(row: Mapping[str, Any] | Sequence[Any], columns: Sequence[str]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(c) for c in columns]
    values = list(row)
    if len(values) != len(columns):
        raise ValueError(f"table row has {len(values)} cells, expected {len(columns)}: {values!r}")
    return values


def plain_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (numbers right-aligned), as printed when stdout is not a terminal."""
    cells = [[_cell(v) for v in r] for r in rows]
    numeric = [
        bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows) for i in range(len(columns))
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(list(columns)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    if not cells:
        out.append("(no rows)")
    return "\n".join(out) + "\n"


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any] | Sequence[Any]],
    json_mode: bool | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Print rows under ``columns``: rich on a terminal, plain text otherwise, JSON in JSON mode.

    A row is a sequence aligned with ``columns`` or a mapping keyed by column name. In JSON mode the
    output is a list of ``{column: value}`` dicts with values kept as numbers; ``json_mode=None``
    follows the global ``--json`` flag.
    """
    stream = sys.stdout if stream is None else stream
    columns = list(columns)
    values = [_row_values(r, columns) for r in rows]
    if _resolve_json(json_mode):
        print_json([dict(zip(columns, v, strict=True)) for v in values], stream=stream)
        return
    if not is_tty(stream):
        stream.write(plain_table(title, columns, values))
        stream.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, c in enumerate(columns):
        numeric = bool(values) and all(_is_number(v[i]) or v[i] is None for v in values)
        table.add_column(c, justify="right" if numeric else "left")
    for v in values:
        table.add_row(*(_cell(x) for x in v))
    Console(file=stream).print(table)


# ------------------------------------------------------------------------------------------- messages


def info(msg: str) -> None:
    """A progress/status line for humans, on stderr."""
    print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    """A warning line on stderr."""
    print(f"nas: warning: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- progress


class _Progress:
    """What ``progress()`` yields: count work with ``advance``, relabel with ``set_description``."""

    def __init__(self, total: int | None, description: str, completed: int = 0) -> None:
        self.total = total
        self.description = description
        self.completed = completed

    def advance(self, n: int = 1) -> None:
        self.completed += n
        self._update()

    def set_description(self, description: str) -> None:
        self.description = description
        self._update()

    def _update(self) -> None:
        pass


class _PlainProgress(_Progress):
    """Plain lines on a stream, at most one per ``interval`` seconds, plus one when done."""

    def __init__(
        self,
        total: int | None,
        description: str,
        completed: int,
        stream: IO[str],
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(total, description, completed)
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._start = clock()
        self._start_count = completed
        self._last = self._start

    def line(self, final: bool = False) -> str:
        elapsed = self._clock() - self._start
        done = self.completed
        if self.total:
            head = f"{self.description}: {done}/{self.total} ({100.0 * done / self.total:.0f}%)"
        else:
            head = f"{self.description}: {done}"
        if final:
            return f"{head} done in {fmt_duration(elapsed)}"
        rate_done = done - self._start_count
        if self.total and rate_done > 0:
            eta = elapsed / rate_done * max(self.total - done, 0)
            return f"{head} elapsed {fmt_duration(elapsed)}, ETA {fmt_duration(eta)}"
        return f"{head} elapsed {fmt_duration(elapsed)}" + (", ETA ?" if self.total else "")

    def _emit(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def _update(self) -> None:
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._emit(self.line())

    def finish(self) -> None:
        self._emit(self.line(final=True))


class _RichProgress(_Progress):
    def __init__(self, total: int | None, description: str, completed: int, stream: IO[str]) -> None:
        super().__init__(total, description, completed)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task = self._bar.add_task(description, total=total, completed=completed)

    def start(self) -> None:
        self._bar.start()

    def close(self) -> None:
        self._bar.stop()

    def _update(self) -> None:
        self._bar.update(self._task, completed=self.completed, description=self.description)


@contextlib.contextmanager
def progress(
    total: int | None,
    description: str,
    *,
    completed: int = 0,
    json_mode: bool | None = None,
    stream: IO[str] | None = None,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[_Progress]:
    """Show progress of ``total`` steps (None if unknown) on stderr.

    Yields an object with ``advance(n=1)`` and ``set_description(text)``. On a terminal: a rich bar
    with ETA. Otherwise: a plain ``desc: done/total (pct) elapsed .., ETA ..`` line at most every
    ``interval`` seconds and a closing line when the block ends normally. Silent in JSON mode.
    ``completed`` is the work already done (a resumed job); the ETA counts only work done now.
    """
    stream = sys.stderr if stream is None else stream
    if _resolve_json(json_mode):
        yield _Progress(total, description, completed)
        return
    if is_tty(stream):
        bar = _RichProgress(total, description, completed, stream)
        bar.start()
        try:
            yield bar
        finally:
            bar.close()
        return
    plain = _PlainProgress(total, description, completed, stream, interval, clock)
    yield plain
    plain.finish()


# ------------------------------------------------------------------------------------------- reporter


class TerminalReporter:
    """The CLI's :class:`nas.reporting.Reporter`: progress bars with ETA, tables and lines on the terminal."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def progress(self, total: int | None, description: str, *, completed: int = 0):
        return progress(total, description, completed=completed, json_mode=True if self.quiet else None)

    def log(self, message: str) -> None:
        if not self.quiet:
            info(message)

    def warn(self, message: str) -> None:
        warn(message)

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        print_table(title, columns, rows)


def reporter(quiet: bool = False) -> TerminalReporter:
    """The terminal reporter the commands hand to library jobs."""
    return TerminalReporter(quiet)
