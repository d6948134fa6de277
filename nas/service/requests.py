"""Checks of what requests ask for, before anything is queued or touches the file system.

A search request is checked by the engine's own code (budget parsing, defaults, config checks, the latency
predictor lookup, budget feasibility), so a 422 carries the same message as the CLI's error, naming the
field (the :class:`~nas.search.config.SearchConfig` field, which is the request's). Names that would become
paths (spaces, devices, zoo entries, profiles) must be names the service lists; a path is refused.
"""
from __future__ import annotations

import re
from typing import Any

from nas.errors import NASError, ParamError
from nas.search.config import describe

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")

def search_fields() -> tuple[str, ...]:
    """The settings a search request may give: those :class:`~nas.search.config.SearchConfig` declares for
    the service (the CLI's flags come from the same declarations)."""
    from nas.search.config import search_settings

    return tuple(search_settings(service=True))


MAX_WORKERS = 8
MAX_TRIALS = 100_000


class Invalid(NASError):
    """A request field with a value the service refuses: a 422 naming ``field``."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def field_of(e: NASError, default: str | None = None) -> str | None:
    """The request field an error is about."""
    return getattr(e, "field", None) or getattr(e, "param", None) or default


def safe_name(field: str, value: Any) -> str:
    """``value`` when it is a plain name (no '/', no '..', at most 80 characters), else Invalid."""
    if not isinstance(value, str) or not NAME.match(value) or ".." in value:
        raise Invalid(field, f"{field} {describe(value)}: not a valid name (letters, digits, '.', '-', '_'; no paths)")
    return value


def space_names() -> list[str]:
    """The spaces a request may name: the built-in ones and reference/<name> backbones."""
    from nas.paths import builtin_dir
    from nas.space import builtin_spaces

    ref = builtin_dir("search_spaces") / "reference"
    return builtin_spaces() + sorted(f"reference/{p.stem}" for p in ref.glob("*.yaml"))


def check_space(value: Any) -> str:
    """A space name the service knows (never a path)."""
    names = space_names()
    if value not in names:
        raise Invalid("space", f"space {describe(value)}: the service takes built-in space names; choose from "
                               f"{', '.join(names)}")
    return value


def device_names() -> list[str]:
    """The device profiles the service can see (built-in ones and those uploaded to it)."""
    from nas.profile.store import list_profiles

    return [p.name for p in list_profiles()]


def check_device(value: Any) -> str:
    """A device profile name the service lists (never a path)."""
    names = device_names()
    if value not in names:
        raise Invalid("device", f"device {describe(value)}: unknown; choose from {', '.join(names)}")
    return value


def check_accuracy(value: Any) -> None:
    """Estimators a request may name: proxy:NAME, or debug:sleep:S (S <= 5; a slow test score). Others name
    files, which a request may not."""
    if not isinstance(value, str):
        raise Invalid("accuracy", f"accuracy {describe(value)}: expected a string such as proxy:entropy")
    kind, _, arg = value.partition(":")
    if kind == "proxy":
        return
    if kind == "debug" and arg.startswith("sleep:"):
        try:
            secs = float(arg.split(":", 1)[1])
        except ValueError:
            secs = -1.0
        if 0 <= secs <= 5:
            return
    raise Invalid("accuracy", f"accuracy {describe(value)}: the service takes proxy:NAME (training-free scores); "
                              f"supernet and predictor files are not accepted from requests")


def check_search(req: dict[str, Any]) -> dict[str, Any]:
    """The SearchConfig fields of a valid search request (defaults resolved), else Invalid/ParamError naming
    the field. The checks are the engine's (:func:`nas.search.engine.prepare_search`, as ``nas search`` runs
    them), plus what the service allows: names it lists, training-free scores, its caps on workers and trials."""
    from nas.reporting import SILENT
    from nas.search.config import SearchConfig, check_value
    from nas.search.engine import prepare_search

    allowed = search_fields()
    unknown = sorted(set(req) - set(allowed))
    if unknown:
        raise Invalid(unknown[0][:40], f"{describe(unknown[0])}: unknown field; allowed: {', '.join(allowed)}")
    d = {k: v for k, v in req.items() if v is not None}
    for k, v in d.items():
        check_value(k, v)
    if not d.get("budget"):
        raise Invalid("budget", "budget: required, e.g. latency:5ms (keys latency, params, macs, memory)")
    d["space"] = check_space(d.get("space", "hybrid"))
    if "device" in d:
        check_device(d["device"])
    if "accuracy" in d:
        check_accuracy(d["accuracy"])
    if d.get("workers", 1) > MAX_WORKERS:
        raise Invalid("workers", f"workers {d['workers']}: must be 1 to {MAX_WORKERS}")
    if d.get("trials", 0) > MAX_TRIALS:
        raise Invalid("trials", f"trials {d['trials']}: at most {MAX_TRIALS} per job")
    if isinstance(d.get("objectives"), str):
        d["objectives"] = [o.strip() for o in d["objectives"].split(",") if o.strip()]
    if "objectives" in d and not d["objectives"]:
        raise Invalid("objectives", "objectives: empty; list accuracy plus any of latency, params, macs, memory "
                                    "(or leave it out for the default)")
    cfg = SearchConfig(**{**d, "objectives": tuple(d["objectives"]) if d.get("objectives") else None})
    prep = prepare_search(cfg, SILENT)
    from nas.search.estimators import make_estimator

    _step("accuracy", make_estimator, cfg.accuracy, prep.space)
    out = {k: getattr(cfg, k) for k in allowed}
    out["objectives"] = list(cfg.objectives)
    out["device"] = d.get("device")  # as asked: None lets the job choose (and calibrate) this machine's profile
    return out


def _step(field: str, fn: Any, *args: Any) -> Any:
    """Run one check; a NASError without a named parameter is attributed to ``field``."""
    try:
        return fn(*args)
    except ParamError:
        raise
    except NASError as e:
        raise Invalid(field, str(e)) from None


def check_design(req: dict[str, Any]) -> dict[str, Any]:
    """The arguments of an analytical design request, checked as the CLI checks them."""
    allowed = ("space", "budget", "device", "top", "rho", "time_limit", "uniform")
    unknown = sorted(set(req) - set(allowed))
    if unknown:
        raise Invalid(unknown[0], f"{unknown[0]}: unknown field; allowed: {', '.join(allowed)}")
    d = {"space": "hybrid", "top": 1, "rho": "default", "time_limit": 10.0, "uniform": False,
         **{k: v for k, v in req.items() if v is not None}}
    check_space(d["space"])
    budget = d.get("budget")
    if not budget:
        raise Invalid("budget", "budget: required, e.g. macs:300M (keys latency, params, macs, memory)")
    if not (isinstance(budget, str) or isinstance(budget, list) and all(isinstance(b, str) for b in budget)):
        raise Invalid("budget", f"budget {describe(budget)}: expected a string such as macs:300M, or a list of them")
    if "device" in d:
        check_device(d["device"])
    if not _number(d["top"], int) or not 1 <= d["top"] <= 20:
        raise Invalid("top", f"top {describe(d['top'])}: must be an integer 1 to 20")
    if not _number(d["time_limit"]) or not 0 < d["time_limit"] <= 60:
        raise Invalid("time_limit", f"time_limit {describe(d['time_limit'])}: must be in (0, 60] seconds")
    rho = d["rho"]
    if rho not in ("default", None) and not (_number(rho) and rho > 0):
        raise Invalid("rho", f"rho {describe(rho)}: expected a positive number, 'default' or null (no bound)")
    if not isinstance(d["uniform"], bool):
        raise Invalid("uniform", f"uniform {describe(d['uniform'])}: expected true or false")
    return d


def _number(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    """Whether ``value`` is a JSON number of ``kind`` (true/false are not numbers) and finite."""
    return isinstance(value, kind) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
