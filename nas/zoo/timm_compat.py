"""Optional timm integration: register zoo models so ``timm.create_model("nas_<name>")`` works.

timm is an optional extra (``pip install 'nas[timm]'``); nothing here imports it at module import time.
``register_timm(zoo)`` adds one timm model entry point per zoo model. The entry point builds the
model through :func:`nas.zoo.create_model` (checksums checked, safetensors weights, no supernet
code) and accepts the keyword arguments timm passes along (``pretrained_cfg``, ``cache_dir``, ...),
ignoring them; ``features_only``/``out_indices`` are honoured, other model options are refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from nas.errors import ZooError

PREFIX = "nas_"
_TIMM_PASSTHROUGH = (
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "cache_dir",
    "checkpoint_path",
    "pretrained_strict",
)

__all__ = ["PREFIX", "register_timm", "timm_name"]


def timm_name(name: str) -> str:
    """The timm model name of zoo entry ``name``: ``nas_<name>``."""
    return PREFIX + name


def _entrypoint(name: str, zoo: str | os.PathLike | None) -> Callable[..., Any]:
    def entry(pretrained: bool = False, **kwargs: Any):
        from nas.zoo.load import create_model

        opts = {k: kwargs.pop(k) for k in ("features_only", "out_indices") if k in kwargs}
        for k in _TIMM_PASSTHROUGH:
            kwargs.pop(k, None)
        extra = {k: v for k, v in kwargs.items() if v is not None}
        if extra:
            raise ZooError(
                f"timm model {timm_name(name)!r}: options {', '.join(sorted(extra))} are not supported "
                "by zoo models (supported: pretrained, features_only, out_indices)"
            )
        if opts.get("out_indices") is not None:
            opts["out_indices"] = tuple(opts["out_indices"])
        return create_model(name, pretrained=pretrained, zoo=zoo, **opts)

    entry.__name__ = entry.__qualname__ = timm_name(name)
    entry.__module__ = __name__
    entry.__doc__ = f"Zoo model {name!r} from {zoo} (nas.zoo.create_model)."
    return entry


def register_timm(zoo: str | os.PathLike | None = None, names: list[str] | None = None) -> list[str]:
    """Register the zoo's models (or ``names``) with timm; returns the timm names registered.

    Raises ZooError when timm is not installed. A name with '-' is also registered with '_' instead
    (``nas_hybrid_cpu1t_lat5ms_a``), for code that spells model names as identifiers.
    """
    try:
        from timm.models import register_model
    except ImportError:
        raise ZooError(
            "timm is not installed; install the extra (pip install 'nas[timm]') to use "
            "timm.create_model with zoo models, or use nas.zoo.create_model"
        ) from None
    from nas.zoo.load import list_models

    wanted = list_models(zoo) if names is None else list(names)
    known = set(list_models(zoo))
    done = []
    for n in wanted:
        if n not in known:
            raise ZooError(f"zoo {zoo}: no model {n!r}; the zoo has: {', '.join(sorted(known)) or '(none)'}")
        for alias in dict.fromkeys([n, n.replace("-", "_")]):
            fn = _entrypoint(n, zoo)
            fn.__name__ = fn.__qualname__ = timm_name(alias)
            register_model(fn)
            done.append(timm_name(alias))
    return done
