"""Where latency predictor files are found and saved: ``predictors/<device>-<space>.json``.

Looked up in ./predictors (or ``$NAS_HOME/predictors``) first, then in the built-in folder; new fits are
written to the first.
"""

from __future__ import annotations

from pathlib import Path

from nas.errors import PredictorError
from nas.paths import builtin_dir, user_dir
from nas.space import SearchSpace, load_space


def predictor_name(device: str, space: str) -> str:
    """The file name of the predictor of ``device`` for ``space``."""
    return f"{device}-{space}.json"


def predictor_roots() -> list[Path]:
    """Where predictor files are looked up: ./predictors (or $NAS_HOME), then the built-in folder."""
    out: list[Path] = []
    for r in (user_dir("predictors"), builtin_dir("predictors")):
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def space_name(space: str | SearchSpace) -> str:
    """The name of a space given as object, built-in name or YAML path."""
    if not isinstance(space, str):
        return space.name
    if str(space).endswith((".yaml", ".yml")):
        return load_space(space).name
    return str(space)


def find_predictor(device: str, space: str | SearchSpace) -> Path:
    """The file of the predictor of ``device`` for ``space`` (``predictors/<device>-<space>.json``)."""
    p = Path(device)
    if p.suffix == ".json" and p.is_file():
        return p
    space = space_name(space)
    name = predictor_name(device, space)
    for root in predictor_roots():
        if (root / name).is_file():
            return root / name
    have = sorted({q.name for r in predictor_roots() if r.is_dir() for q in r.glob("*.json")})
    shown = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "") if have else "none"
    raise PredictorError(
        f"no latency predictor {name} (looked in {', '.join(str(r) for r in predictor_roots())}); "
        f"available: {shown}; fit one with: nas predictor fit --device {device} --space {space}"
    )


def list_predictors() -> list[Path]:
    """Every predictor file found (a user file shadows a built-in one of the same name), by name."""
    seen: dict[str, Path] = {}
    for root in predictor_roots():
        if root.is_dir():
            for p in sorted(root.glob("*.json")):
                seen.setdefault(p.name, p)
    return [seen[k] for k in sorted(seen)]
