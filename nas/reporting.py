"""How the library reports to whoever runs it: progress, log lines, warnings, tables.

Long jobs (search, profiling, supernet training, design) take a :class:`Reporter` and never draw on the
screen themselves. The CLI passes its terminal reporter (``nas.cli.ui.reporter()``: progress bars with
ETA, tables, stderr lines); a service passes one that records progress; the default, :class:`Silent`,
shows nothing.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol


class Progress(Protocol):
    """One running job's progress: ``advance`` by steps done, ``set_description`` to relabel it."""

    def advance(self, n: int = 1) -> None: ...

    def set_description(self, description: str) -> None: ...


class Reporter(Protocol):
    """What the library reports through (see the module docstring)."""

    def progress(self, total: int | None, description: str, *, completed: int = 0
                 ) -> contextlib.AbstractContextManager[Progress]: ...

    def log(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None: ...


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def set_description(self, description: str) -> None:
        pass


class Silent:
    """A reporter that shows nothing (the library's default)."""

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str, *, completed: int = 0) -> Iterator[Progress]:
        yield _NoProgress()

    def log(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        pass


SILENT = Silent()


def or_silent(reporter: Reporter | None) -> Reporter:
    """``reporter``, or the silent one when None."""
    return SILENT if reporter is None else reporter


class Held(Silent):
    """A reporter that keeps log lines and warnings back until :meth:`replay`: messages of a step whose outcome
    decides whether they matter (a device chosen for a budget that is then refused says nothing, the refusal alone
    is the one line)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def log(self, message: str) -> None:
        self.messages.append(("log", message))

    def warn(self, message: str) -> None:
        self.messages.append(("warn", message))

    def replay(self, reporter: Reporter) -> None:
        """Send what was held to ``reporter``, in order."""
        for kind, message in self.messages:
            getattr(reporter, kind)(message)
        self.messages.clear()
