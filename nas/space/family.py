"""Space families: what every kind of search space offers, and the registry of families with their own folder.

A YAML space (:class:`nas.space.SearchSpace`) and the NAS-Bench-201 cell space (:mod:`nas.nb201`) are two
families. Everything past the space stage - search, profiling, predictors, the supernet - talks to a space
through :class:`SpaceFamily`; ``nas.build``, ``nas.count`` and ``make_supernet`` hand an arch (``arch.space``)
or a space to its family's ``build``, ``count`` and ``supernet``. Those live in later stages (models, cost,
supernet), so a family names them as ``"package.module:attr"`` (:func:`nas.plugins.load`).
A family registers under the name ``load_space`` answers to (timm-style): the built-in ones are listed in
:data:`BUILTIN`, others call ``register_family(name, factory)``.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

    from nas.cost.count import ArchCost


@runtime_checkable
class SpaceFamily(Protocol):
    """A space of archs: drawing, changing and encoding them, and their search parameters."""

    name: str
    dims: int
    source_path: Path | None
    family: str
    """The family's registered name (``yaml`` for YAML spaces); ``name`` is the space's own."""

    @property
    def description(self) -> str:
        """One line on what the space is."""
        ...

    def structure(self) -> int | str:
        """What a listing says the networks are made of: the number of stages, or ``cell``."""
        ...

    def is_fixed(self) -> bool:
        """Whether the space holds exactly one arch (a reference backbone)."""
        ...

    def build(self, arch: Any, features_only: bool = False, out_indices: tuple[int, ...] | None = None,
              drop_path: float | None = None) -> nn.Module:
        """The standard torch network of ``arch`` (what ``nas.build`` returns)."""
        ...

    def count(self, arch: Any) -> ArchCost:
        """Params, MACs and memory of ``arch``, analytically (what ``nas.count`` returns)."""
        ...

    def supernet(self, seed: int = 0, init: bool = True, sharing: str = "mlp") -> nn.Module:
        """A weight-sharing supernet over every arch of the space (``init=False``: zeroed, to load into;
        ``sharing``: what the choices of a layer slot share, ``mlp`` or ``none``)."""
        ...

    def checkpoint_state(self) -> dict[str, Any]:
        """What a supernet checkpoint records to rebuild this space (:func:`space_from_state` reads it)."""
        ...

    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> Any: ...
    def sample_many(self, n: int, seed: int = 0) -> list[Any]: ...
    def min(self, rng: random.Random | None = None) -> Any: ...
    def max(self, rng: random.Random | None = None) -> Any: ...
    def mutate(self, arch: Any, prob: float = 0.1, seed: int | None = None,
               rng: random.Random | None = None) -> Any: ...
    def crossover(self, a: Any, b: Any, seed: int | None = None, rng: random.Random | None = None) -> Any: ...
    def make_arch(self, data: dict, source: str = "<arch>") -> Any: ...
    def arch_from_dict(self, data: dict, source: str = "<arch>") -> Any: ...
    def encode(self, arch: Any) -> Any: ...
    def encoding_names(self) -> list[str]: ...
    def log10_size(self) -> float: ...

    def search_choices(self) -> dict[str, list]:
        """One categorical search parameter per free choice: name -> its values."""
        ...

    def arch_from_params(self, params: dict[str, Any]) -> Any:
        """The canonical arch of a set of search parameters (unused ones ignored)."""
        ...

    def params_of(self, arch: Any, rng: random.Random) -> dict[str, Any]:
        """Search parameters that give ``arch`` (free slots drawn from ``rng``)."""
        ...

    def input_shape(self, arch: Any) -> tuple[int, ...]:
        """One sample's input shape (channels, *spatial) for ``arch``."""
        ...

    @property
    def classes(self) -> int:
        """Outputs of the classifier head."""
        ...


FAMILIES: dict[str, Callable[[], SpaceFamily]] = {}
BUILTIN = {"nb201": ("nas.nb201.space", "NB201Space")}
"""Families that ship with nas, loaded on first use: name -> (module, class)."""


def register_family(name: str, make: Callable[[], SpaceFamily]) -> None:
    """Make ``load_space(name)`` return ``make()`` (a family with its own folder, like ``nb201``)."""
    if name in FAMILIES and FAMILIES[name] is not make:
        raise ValueError(f"space family {name!r} registered twice")
    FAMILIES[name] = make


def family_names() -> list[str]:
    """Names of the registered families (after the built-in ones are loaded)."""
    _builtin()
    return sorted(FAMILIES)


def get_family(name: str) -> SpaceFamily | None:
    """A registered family by name, or None."""
    _builtin()
    make = FAMILIES.get(name)
    return make() if make is not None else None


def space_from_state(state: dict[str, Any]) -> SpaceFamily | None:
    """The family space a checkpoint's ``checkpoint_state()`` names (None: a YAML space, rebuilt from its content)."""
    if "raw" in state:
        return None
    return get_family(str(state.get("name", "")))


def _builtin() -> None:
    import importlib

    for name, (module, cls) in BUILTIN.items():
        if name not in FAMILIES:
            FAMILIES[name] = getattr(importlib.import_module(module), cls)

