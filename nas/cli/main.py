"""The ``nas`` command: global flags, subcommand discovery and the error policy.

Each subcommand lives in ``nas/cli/cmd_<name>.py`` and exposes ``register(subparsers)``, which adds
its parser(s) and sets ``func=handler`` with ``set_defaults``; a handler takes the parsed args and
returns an exit code (None means 0). ``--debug`` and ``--json`` work before or after the
subcommand.

Exit codes: 0 success; 2 user error (a :class:`nas.errors.NASError`, a usage error, or no
subcommand); 1 internal error (a bug; ``--debug`` shows the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from types import ModuleType

from nas.cli import ui
from nas.errors import NASError, ParamError

COMMAND_MODULES = ["space", "build", "profile", "predictor", "supernet", "search", "design", "export", "zoo", "serve"]

PROG = "nas"
_PARSER_KEY = "_nas_parser"


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return version("nas")
    except PackageNotFoundError:
        return "unknown"


def _add_global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    g = parser.add_argument_group("global options")
    g.add_argument("--debug", action="store_true", default=default, help="show tracebacks on errors")
    g.add_argument("--json", action="store_true", default=default, help="machine-readable JSON output")


class _SubParser(argparse.ArgumentParser):
    """Parser class for every subcommand level: accepts the global flags after the subcommand.

    The flags default to SUPPRESS here so a flag given before the subcommand is not reset; each
    level also records itself so a command group called without its subcommand can print its help.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _add_global_flags(self, argparse.SUPPRESS)
        self.set_defaults(**{_PARSER_KEY: self})


def load_command_modules(names: Iterable[str] = COMMAND_MODULES) -> list[ModuleType]:
    """Import ``nas.cli.cmd_<name>`` for each name; a module that does not exist is skipped.

    Only the absence of that exact module is tolerated: an import error inside an existing command
    module (a missing dependency, a bug) propagates.
    """
    modules = []
    for name in names:
        modname = f"nas.cli.cmd_{name}"
        try:
            modules.append(importlib.import_module(modname))
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
    return modules


def build_parser(modules: Iterable[ModuleType] | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every command module's ``register`` applied.

    ``modules`` defaults to :func:`load_command_modules`; any object with a ``register(subparsers)``
    callable works (tests pass small fakes).
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Hardware-aware neural architecture search and analytical design.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    _add_global_flags(parser, False)
    sub = parser.add_subparsers(title="commands", metavar="<command>", parser_class=_SubParser)
    for module in load_command_modules() if modules is None else modules:
        register = getattr(module, "register", None)
        if not callable(register):
            raise TypeError(
                f"command module {getattr(module, '__name__', module)!r} has no register(subparsers)"
            )
        register(sub)
    parser.set_defaults(**{_PARSER_KEY: parser})
    return parser


PARAM_FLAGS = {"resolutions": "--resolution"}
"""Library parameters whose flag is not the parameter's own name with dashes."""


def flag_of(param: str) -> str:
    """The command-line flag that sets a library parameter (``n_random`` -> ``--n-random``)."""
    return PARAM_FLAGS.get(param, "--" + param.replace("_", "-"))


def user_message(e: NASError) -> str:
    """The one line a user error prints: a :class:`ParamError` names the flag rather than the parameter."""
    if isinstance(e, ParamError):
        sep = "" if e.detail.startswith(":") else " "
        return f"{flag_of(e.param)}{sep}{e.detail}"
    return str(e)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None, *, modules: Iterable[ModuleType] | None = None) -> int:
    """Run ``nas`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # until parsed: a failure while loading commands honours it too
    prev_json = ui.json_mode()
    try:
        parser = build_parser(modules)
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version, usage errors
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        debug = bool(args.debug)
        ui.configure(json_mode=bool(args.json))
        if debug:
            logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        reached = getattr(args, _PARSER_KEY, parser)
        if hasattr(args, _PARSER_KEY):
            delattr(args, _PARSER_KEY)
        func = getattr(args, "func", None)
        if func is None:  # `nas` or a command group without its subcommand
            reached.print_help(sys.stderr)
            return 2
        code = func(args)
        return 0 if code is None else int(code)
    except NASError as e:
        if debug:
            traceback.print_exc()
        _err(f"{PROG}: error: {_one_line(user_message(e)) or type(e).__name__}")
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _err(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `nas ... | head`: the reader left; not an error worth a traceback
        try:
            sys.stdout = open(os.devnull, "w")  # silence the failing flush at interpreter exit
        except OSError:
            pass
        return 1
    except Exception as e:
        if debug:
            traceback.print_exc()
            _err(f"{PROG}: internal error: {type(e).__name__}: {_one_line(e)}")
        else:
            _err(
                f"{PROG}: internal error: {type(e).__name__}: {_one_line(e)} (run with --debug for the traceback)"
            )
        return 1
    finally:
        ui.configure(json_mode=prev_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
