"""The `nas` CLI framework: flags, exit codes, error policy, tables and progress output."""

from __future__ import annotations

import io
import json
import sys
import types

import pytest

from nas.cli import main as cli
from nas.cli import ui
from nas.errors import BudgetError, NASError


def _fake_module(calls: list):
    """A tiny command module: `fake ok|user|bug|interrupt|table|none` and a `group` with `sub`."""

    def handler(args):
        calls.append(args)
        if args.what == "user":
            raise BudgetError("budget 'flops:3G': unknown key 'flops'")
        if args.what == "multiline":
            raise NASError("first line\nsecond line")
        if args.what == "bug":
            raise ZeroDivisionError("boom")
        if args.what == "interrupt":
            raise KeyboardInterrupt
        if args.what == "table":
            ui.print_table("Results", ["arch", "latency_ms"], [["a1", 1.5], ["a2", 12.25]])
            return None
        if args.what == "code":
            return 3
        return None

    def register(subparsers):
        p = subparsers.add_parser("fake", help="a fake command")
        p.add_argument("what", nargs="?", default="ok")
        p.set_defaults(func=handler)
        g = subparsers.add_parser("group", help="a command group")
        gs = g.add_subparsers(title="actions")
        s = gs.add_parser("sub")
        s.add_argument("--n", type=int, default=1)
        s.set_defaults(func=lambda args: calls.append(args))

    return types.SimpleNamespace(__name__="fake_cmd", register=register)


@pytest.fixture
def run(capsys):
    calls: list = []
    mods = [_fake_module(calls)]

    def _run(*argv):
        code = cli.main(list(argv), modules=mods)
        out, err = capsys.readouterr()
        return code, out, err

    _run.calls = calls
    return _run


def test_success_and_return_codes(run):
    assert run("fake")[0] == 0
    assert run("fake", "code")[0] == 3
    assert run.calls[0].debug is False and run.calls[0].json is False


@pytest.mark.parametrize(
    "argv", [["--debug", "--json", "fake"], ["fake", "--debug", "--json"], ["--json", "fake", "--debug"]]
)
def test_global_flags_before_or_after_the_subcommand(run, argv):
    assert run(*argv)[0] == 0
    args = run.calls[-1]
    assert args.debug is True and args.json is True
    assert not hasattr(args, "_nas_parser")


def test_global_flags_in_nested_subcommands(run):
    assert run("group", "sub", "--n", "4", "--json")[0] == 0
    assert run.calls[-1].json is True and run.calls[-1].n == 4


def test_nas_error_is_one_line_exit_2_no_traceback(run):
    code, out, err = run("fake", "user")
    assert code == 2
    assert err == "nas: error: budget 'flops:3G': unknown key 'flops'\n"
    assert "Traceback" not in err and out == ""


def test_nas_error_message_is_forced_to_one_line(run):
    code, _, err = run("fake", "multiline")
    assert code == 2 and err == "nas: error: first line second line\n"


def test_debug_shows_the_traceback(run):
    code, _, err = run("--debug", "fake", "user")
    assert code == 2
    assert "Traceback (most recent call last)" in err and "BudgetError" in err
    assert err.rstrip().splitlines()[-1] == "nas: error: budget 'flops:3G': unknown key 'flops'"


def test_internal_error_exit_1(run):
    code, _, err = run("fake", "bug")
    assert code == 1
    assert err == "nas: internal error: ZeroDivisionError: boom (run with --debug for the traceback)\n"
    code, _, err = run("fake", "bug", "--debug")
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


def test_keyboard_interrupt_exit_130(run):
    code, _, err = run("fake", "interrupt")
    assert code == 130 and err == "nas: interrupted\n"


def test_usage_errors_exit_2(run):
    code, _, err = run("fake", "ok", "--no-such-flag")
    assert code == 2 and "unrecognized arguments: --no-such-flag" in err
    code, _, err = run("nosuchcommand")
    assert code == 2 and "invalid choice" in err
    code, _, err = run("group", "sub", "--n", "x")
    assert code == 2 and "invalid int value" in err


def test_no_subcommand_prints_help_exit_2(run):
    code, out, err = run()
    assert code == 2
    assert "usage: nas" in err and "fake" in err and "group" in err
    code, _, err = run("group")  # a group without its action shows the group's help
    assert code == 2 and "usage: nas group" in err and "sub" in err


def test_version_and_help_exit_0(run):
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("nas ")
    code, out, _ = run("fake", "--help")
    assert code == 0 and "--json" in out and "--debug" in out


def test_json_mode_is_restored_after_main(run):
    assert ui.json_mode() is False
    run("--json", "fake")
    assert ui.json_mode() is False


def test_table_through_the_cli_plain_and_json(run):
    code, out, _ = run("fake", "table")
    assert code == 0
    assert out.splitlines() == [
        "Results",
        "arch  latency_ms",
        "----  ----------",
        "a1           1.5",
        "a2         12.25",
    ]
    code, out, _ = run("fake", "table", "--json")
    assert code == 0
    assert json.loads(out) == [{"arch": "a1", "latency_ms": 1.5}, {"arch": "a2", "latency_ms": 12.25}]


def test_load_command_modules_skips_only_missing_command_modules(monkeypatch):
    assert cli.load_command_modules(["surely_not_a_command"]) == []
    broken = types.ModuleType("nas.cli.cmd_broken_for_test")

    def fake_import(name):
        assert name == "nas.cli.cmd_broken_for_test"
        raise ModuleNotFoundError("No module named 'some_missing_dep'", name="some_missing_dep")

    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError, match="some_missing_dep"):
        cli.load_command_modules(["broken_for_test"])
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: broken)
    assert cli.load_command_modules(["broken_for_test"]) == [broken]


def test_build_parser_rejects_a_module_without_register():
    with pytest.raises(TypeError, match="register"):
        cli.build_parser([types.SimpleNamespace(__name__="bad")])


def test_real_command_modules_register_cleanly():
    parser = cli.build_parser()
    assert parser.prog == "nas"
    assert cli.COMMAND_MODULES[0] == "space" and len(cli.COMMAND_MODULES) == 10


# -------------------------------------------------------------------------------------------------- ui


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_is_tty():
    assert ui.is_tty(io.StringIO()) is False
    assert ui.is_tty(_TTY()) is True
    assert ui.is_tty(object()) is False


def test_plain_table_alignment_and_cells():
    buf = io.StringIO()
    rows = [
        {"name": "x", "n": 3, "ok": True, "v": None},
        {"name": "longer", "n": 12345678, "ok": False, "v": 0.5},
    ]
    ui.print_table("T", ["name", "n", "ok", "v"], rows, json_mode=False, stream=buf)
    assert buf.getvalue().splitlines() == [
        "T",
        "name           n  ok     v",
        "------  --------  ---  ---",
        "x              3  yes    -",
        "longer  12345678  no   0.5",
    ]


def test_plain_table_empty_and_row_length_check():
    buf = io.StringIO()
    ui.print_table(None, ["a", "b"], [], json_mode=False, stream=buf)
    assert buf.getvalue().splitlines() == ["a  b", "-  -", "(no rows)"]
    with pytest.raises(ValueError, match="2 cells, expected 3"):
        ui.print_table("t", ["a", "b", "c"], [[1, 2]], json_mode=False, stream=io.StringIO())


def test_json_table_keeps_numbers_and_follows_global_flag():
    buf = io.StringIO()
    ui.print_table("T", ["a", "b"], [[1, 2.5], ("x", None)], json_mode=True, stream=buf)
    assert json.loads(buf.getvalue()) == [{"a": 1, "b": 2.5}, {"a": "x", "b": None}]
    ui.configure(json_mode=True)
    try:
        buf = io.StringIO()
        ui.print_table("T", ["a"], [[1]], stream=buf)
        assert json.loads(buf.getvalue()) == [{"a": 1}]
    finally:
        ui.configure(json_mode=False)


def test_rich_table_on_a_tty():
    buf = _TTY()
    ui.print_table("Pareto", ["arch", "ms"], [["a1", 1.5]], json_mode=False, stream=buf)
    text = buf.getvalue()
    assert "Pareto" in text and "a1" in text and "1.5" in text
    assert "----" not in text  # not the plain form


def test_print_json_converts_common_types(capsys):
    import dataclasses
    from pathlib import Path

    @dataclasses.dataclass
    class P:
        x: int

    ui.print_json({"p": Path("a/b"), "d": P(1), "s": {2, 1}})
    assert json.loads(capsys.readouterr().out) == {"p": "a/b", "d": {"x": 1}, "s": [1, 2]}


def test_info_and_warn_go_to_stderr(capsys):
    ui.info("hello")
    ui.warn("careful")
    out, err = capsys.readouterr()
    assert out == "" and err == "hello\nnas: warning: careful\n"


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_plain_lines_are_rate_limited_with_eta():
    buf, clock = io.StringIO(), _Clock()
    with ui.progress(10, "search", stream=buf, json_mode=False, clock=clock) as p:
        for _ in range(4):  # 4 steps within 2 s: no line yet
            clock.t += 0.4
            p.advance()
        assert buf.getvalue() == ""
        clock.t += 0.4  # 2.0 s elapsed, 5 done -> ETA 2 s
        p.advance()
        p.advance(2)  # same instant: rate-limited
        clock.t += 2.0
        p.set_description("search (gen 2)")
    lines = buf.getvalue().splitlines()
    assert lines == [
        "search: 5/10 (50%) elapsed 2s, ETA 2s",
        "search (gen 2): 7/10 (70%) elapsed 4s, ETA 2s",
        "search (gen 2): 7/10 (70%) done in 4s",
    ]


def test_progress_resumed_and_unknown_total():
    buf, clock = io.StringIO(), _Clock()
    with ui.progress(100, "train", completed=90, stream=buf, json_mode=False, clock=clock) as p:
        clock.t += 3
        p.advance(5)  # ETA from work done now: 3 s per 5 steps, 5 left
    assert buf.getvalue().splitlines()[0] == "train: 95/100 (95%) elapsed 3s, ETA 3s"
    buf = io.StringIO()
    with ui.progress(None, "scan", stream=buf, json_mode=False, interval=0, clock=clock) as p:
        p.advance(3)
    assert buf.getvalue().splitlines() == ["scan: 3 elapsed 0s", "scan: 3 done in 0s"]


def test_progress_defaults_to_stderr_and_is_silent_in_json_mode(capsys, monkeypatch):
    with ui.progress(2, "x", interval=0) as p:
        p.advance(2)
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1].startswith("x: 2/2 (100%) done in")
    with ui.progress(2, "x", json_mode=True, interval=0) as p:
        p.advance(2)
        assert p.completed == 2
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(sys, "stderr", _TTY())  # a rich bar on a terminal, ending at 2/2
    with ui.progress(2, "bar", json_mode=False) as p:
        p.advance(2)
    assert "bar" in sys.stderr.getvalue() and "2/2" in sys.stderr.getvalue()


def test_fmt_duration():
    assert [ui.fmt_duration(s) for s in (0.4, 59, 75, 7384, float("nan"))] == [
        "0s",
        "59s",
        "1m15s",
        "2h03m",
        "?",
    ]


def test_start_up_commands_import_no_heavy_library():
    """`nas --version`, `--help` and `space list` start fast: they import neither torch nor optuna (issue 12)."""
    import subprocess

    probe = ("import sys, runpy; sys.argv = ['nas', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('nas.cli.main', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('HEAVY', sorted(m for m in ('torch', 'optuna', 'scipy.stats') if m in sys.modules))")
    for argv in (["--version"], ["--help"], ["space", "list"]):
        out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True).stdout
        assert "HEAVY []" in out, (argv, out[-300:])


def test_profile_flags_are_the_profile_settings_fields():
    """`nas profile` flags are made from ProfileSettings (nas.cli.flags): each field's value arrives as given."""
    import dataclasses
    from pathlib import Path

    from nas.cli import cmd_profile
    from nas.cli.flags import config_from_args
    from nas.profile.settings import ProfileSettings

    parser = cli.build_parser([cmd_profile])
    args = parser.parse_args(["profile", "--space", "tiny", "--space", "seq1d", "--threads", "2", "--calib", "7",
                              "--holdout", "0", "--resolution", "32", "64", "--root", "hp", "--no-recheck",
                              "--calib-spread", "uniform", "--max-minutes", "1.5"])
    s = config_from_args(ProfileSettings, args)
    assert (s.spaces, s.threads, s.n_calib, s.n_holdout, s.resolutions, s.root, s.recheck, s.calib_spread,
            s.max_minutes) == (["tiny", "seq1d"], 2, 7, 0, [32, 64], Path("hp"), False, "uniform", 1.5)
    defaults = config_from_args(ProfileSettings, parser.parse_args(["profile"]), spaces=["tiny"])
    assert defaults == ProfileSettings(spaces=["tiny"])  # every flag defaults to its field
    flagged = {f.name for f in dataclasses.fields(ProfileSettings) if f.metadata.get("cli") is not False}
    assert flagged <= set(vars(args))
