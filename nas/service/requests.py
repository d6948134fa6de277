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

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
SEARCH_FIELDS = ("space", "budget", "device", "accuracy", "objectives", "strategy", "trials", "seed", "init",
                 "prescreen", "prescreen_share", "population", "batch", "workers")
TYPES: dict[str, tuple[type, ...]] = {
    "space": (str,), "budget": (str, list), "device": (str,), "accuracy": (str,), "objectives": (str, list),
    "strategy": (str,), "trials": (int,), "seed": (int,), "init": (str,), "prescreen": (int,),
    "prescreen_share": (int, float), "population": (int,), "batch": (int,), "workers": (int,)}
"""The JSON type of each search field (a wrong type is a 422 naming it, before any check runs)."""
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
        raise Invalid(field, f"{field} {value!r}: not a valid name (letters, digits, '.', '-', '_'; no paths)")
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
        raise Invalid("space", f"space {value!r}: the service takes built-in space names; choose from "
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
        raise Invalid("device", f"device {value!r}: unknown; choose from {', '.join(names)}")
    return value


def check_accuracy(value: Any) -> None:
    """Estimators a request may name: proxy:NAME, or debug:sleep:S (S <= 5; a slow test score). Others name
    files, which a request may not."""
    if not isinstance(value, str):
        raise Invalid("accuracy", f"accuracy {value!r}: expected a string such as proxy:entropy")
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
    raise Invalid("accuracy", f"accuracy {value}: the service takes proxy:NAME (training-free scores); "
                              f"supernet and predictor files are not accepted from requests")


def check_search(req: dict[str, Any]) -> dict[str, Any]:
    """The SearchConfig fields of a valid search request (defaults resolved), else Invalid/ParamError."""
    from nas.cost.budget import Budget
    from nas.reporting import SILENT
    from nas.search import engine
    from nas.search.config import SearchConfig
    from nas.space import load_space

    unknown = sorted(set(req) - set(SEARCH_FIELDS))
    if unknown:
        raise Invalid(unknown[0], f"{unknown[0]}: unknown field; allowed: {', '.join(SEARCH_FIELDS)}")
    d = {k: v for k, v in req.items() if v is not None}
    for k, v in d.items():
        ok = isinstance(v, TYPES[k]) and not isinstance(v, bool)
        if ok and isinstance(v, list):
            ok = all(isinstance(x, str) for x in v)
        if not ok:
            want = " or ".join("a list of strings" if t is list else {"str": "a string", "int": "an integer",
                                                                      "float": "a number"}[t.__name__]
                               for t in TYPES[k])
            raise Invalid(k, f"{k} {v!r}: expected {want}")
    if not d.get("budget"):
        raise Invalid("budget", "budget: required, e.g. latency:5ms (keys latency, params, macs, memory)")
    d["space"] = check_space(d.get("space", "hybrid"))
    if "device" in d:
        check_device(d["device"])
    if "accuracy" in d:
        check_accuracy(d["accuracy"])
    workers = d.get("workers", 1)
    if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise Invalid("workers", f"workers {workers}: must be 1 to {MAX_WORKERS}")
    if isinstance(d.get("trials"), int) and d["trials"] > MAX_TRIALS:
        raise Invalid("trials", f"trials {d['trials']}: at most {MAX_TRIALS} per job")
    if isinstance(d.get("objectives"), str):
        d["objectives"] = [o.strip() for o in d["objectives"].split(",") if o.strip()]
    cfg = SearchConfig(**{**d, "objectives": tuple(d["objectives"]) if d.get("objectives") else None})
    space = _step("space", load_space, cfg.space)
    budget = _step("budget", Budget.parse, cfg.budget)
    from nas.search.prescreen import validate_prescreen

    validate_prescreen(cfg.prescreen, cfg.prescreen_share)
    _step("device", engine.resolve_defaults, cfg, space, budget, SILENT)
    from nas.search.estimators import make_estimator

    _step("accuracy", make_estimator, cfg.accuracy, space)
    engine._check_config(cfg, space)
    latency = None
    if "latency" in cfg.objectives or "latency" in budget.keys:
        from nas.latency import load_latency_model

        cfg.device = cfg.device or _step("device", engine._default_device, space, SILENT)
        latency = _step("device", load_latency_model, cfg.device, space)
    _step("budget", engine.check_budget_feasible, space, budget, latency)
    out = {k: getattr(cfg, k) for k in SEARCH_FIELDS}
    out["objectives"] = list(cfg.objectives)
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
    if not d.get("budget"):
        raise Invalid("budget", "budget: required, e.g. macs:300M (keys latency, params, macs, memory)")
    if "device" in d:
        check_device(d["device"])
    if not isinstance(d["top"], int) or not 1 <= d["top"] <= 20:
        raise Invalid("top", f"top {d['top']}: must be 1 to 20")
    if not isinstance(d["time_limit"], (int, float)) or not 0 < d["time_limit"] <= 60:
        raise Invalid("time_limit", f"time_limit {d['time_limit']}: must be in (0, 60] seconds")
    rho = d["rho"]
    if rho not in ("default", None) and not (isinstance(rho, (int, float)) and rho > 0):
        raise Invalid("rho", f"rho {rho!r}: expected a positive number, 'default' or null (no bound)")
    return d
