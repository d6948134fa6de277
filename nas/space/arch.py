"""Arch: one point of a search space, a frozen canonical value with a stable id.

Its data is plain: resolution, stem width and, per stage, depth, width and one entry per active layer
(mixer, kernel, ratio, groups). Fields a layer does not use (the kernel of attention, the MLP ratio of a
layer without channel mixer) are None, so one network has exactly one id.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from nas.io import write_yaml

if TYPE_CHECKING:
    import numpy as np

    from nas.space.space import SearchSpace


class LayerChoice(NamedTuple):
    """The choices of one layer."""

    mixer: str
    kernel: int | None
    ratio: float | None
    groups: int


class StageChoice(NamedTuple):
    """The choices of one stage: its depth, width and active layers."""

    depth: int
    width: int
    layers: tuple[LayerChoice, ...]


def _num(x: float | None) -> float | int | None:
    if x is None:
        return None
    return int(x) if float(x) == int(x) else float(x)


class Arch:
    """A canonical, validated architecture of a space (build it with ``nas.build``)."""

    __slots__ = ("space", "resolution", "stem", "stages", "_key", "_id")

    def __init__(self, space: SearchSpace, resolution: int, stem: int, stages: tuple[StageChoice, ...]):
        _set = object.__setattr__
        _set(self, "space", space)
        _set(self, "resolution", resolution)
        _set(self, "stem", stem)
        _set(self, "stages", stages)
        _set(self, "_key", None)
        _set(self, "_id", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Arch is immutable; use mutate()/replace via the space")

    # ---- canonical forms -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what YAML/JSON files hold)."""
        return {
            "space": self.space.name,
            "resolution": self.resolution,
            "stem": self.stem,
            "stages": [
                {"depth": s.depth, "width": s.width,
                 "layers": [{"mixer": lc.mixer, "kernel": lc.kernel, "ratio": _num(lc.ratio), "groups": lc.groups}
                            for lc in s.layers]}
                for s in self.stages
            ],
        }

    @property
    def key(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal archs have equal keys."""
        if self._key is None:
            object.__setattr__(self, "_key", json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))
        return self._key

    @property
    def id(self) -> str:
        """Short stable hash of the canonical JSON (12 hex digits)."""
        if self._id is None:
            object.__setattr__(self, "_id", hashlib.sha256(self.key.encode()).hexdigest()[:12])
        return self._id

    def _ident(self) -> tuple:
        # what the key is made of, without building it: equal exactly when the keys are (layers are canonical, and
        # a whole ratio compares and hashes as its int), at a fraction of the key's cost (sets of many draws)
        return (self.space.name, self.resolution, self.stem, self.stages)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self._ident() == other._ident()

    def __hash__(self) -> int:
        return hash(self._ident())

    def __str__(self) -> str:
        """Compact form, e.g. ``r224 s32 | 48: dw7r4 at-r4 | 96: mb5r6 mb3r3``."""
        from nas.blocks.registry import get_mixer

        def layer(lc: LayerChoice) -> str:
            if lc.mixer == "skip":
                return "--"
            s = get_mixer(lc.mixer).abbrev + (str(lc.kernel) if lc.kernel is not None else "-")
            if lc.ratio is not None:
                s += f"r{_num(lc.ratio)}"
            if lc.groups != 1:
                s += f"g{lc.groups}"
            return s

        size = "r" if self.space.dims == 2 else "l"
        parts = [f"{size}{self.resolution} s{self.stem}"]
        parts += [f"{s.width}: " + " ".join(layer(lc) for lc in s.layers) for s in self.stages]
        return " | ".join(parts)

    def __repr__(self) -> str:
        return f"Arch({self.space.name}:{self.id} {self})"

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the arch as YAML (atomically), with its id and the space it belongs to."""
        data = {"id": self.id, **self.to_dict()}
        if self.space.source_path is not None:
            data["space_file"] = str(self.space.source_path)
        return write_yaml(path, data)

    def to_json(self) -> str:
        return json.dumps({"id": self.id, **self.to_dict()})

    # ---- conveniences that delegate to the space -------------------------------------------------
    def encode(self) -> np.ndarray:
        """Fixed-length numeric vector of this arch (see SearchSpace.encode)."""
        return self.space.encode(self)

    @property
    def layers(self) -> list[LayerChoice]:
        """All active (non-skip) layers in order."""
        return [lc for s in self.stages for lc in s.layers if lc.mixer != "skip"]
