"""One exception family for user mistakes; the CLI turns these into one line and exit code 2."""
from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


class NASError(Exception):
    """A user-facing error: bad input, missing file, impossible request.

    The message must name the file/field at fault and what is allowed.
    """


class ParamError(NASError):
    """A bad value of one named parameter of a library call: ``ParamError("trials", "0: must be at least 1")``.

    The message names the parameter as the library spells it (``trials 0: must be at least 1``); the CLI
    shows the flag that sets it instead (``--trials 0: ...``).
    """

    def __init__(self, param: str, detail: str):
        self.param = param
        self.detail = detail
        super().__init__(f"{param} {detail}" if not detail.startswith(":") else f"{param}{detail}")


class SpaceError(NASError):
    """A search-space YAML or an arch does not validate."""


class BudgetError(NASError):
    """A budget string cannot be parsed or cannot be met."""


class ProfileError(NASError):
    """A device profile is missing, incomplete or inconsistent."""


class PredictorError(NASError):
    """A predictor file is missing, malformed or does not match the profile/space."""


class ZooError(NASError):
    """A zoo entry is missing, incomplete or fails its checksums."""


def where(path: object | None, key: str | None = None) -> str:
    """Format the 'file: key' prefix error messages start with."""
    parts = [str(p) for p in (path, key) if p not in (None, "")]
    return ": ".join(parts)


def run_script(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s code, as the CLI would: a :class:`NASError` becomes one line on stderr and exit code 2,
    anything else keeps its traceback (the ``__main__`` of the bench scripts)."""
    import sys

    try:
        code = main()
    except NASError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
