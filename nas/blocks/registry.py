"""The block registry: YAML names -> one definition each (module builder + analytic cost).

A token mixer registers a :class:`MixerDef`. From it come the standard module (``build``), the cost
(``cost``), and, through :func:`nas.blocks.layer.latency_key`, the key device profiles index by.
Adding a mixer is its definition under ``nas/blocks/mixers/`` (torch-free, with one ``register`` call)
and its torch module under ``nas/blocks/modules/``, named by ``module_builder``.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from nas.blocks.costs import Cost
    from nas.blocks.layer import LayerCfg


ReorderGroup = tuple[tuple[str, int], list[tuple[str, int]]]
"""((tensor whose L1 norm ranks the channels, its channel axis), [(tensor, axis) permuted alike, ...])."""


@dataclass(frozen=True)
class MixerDef:
    """One token mixer: how to build it and what it costs, for a given layer configuration.

    ``self_contained`` mixers (mbconv) are the whole layer: their own residual, no norm/channel mixer
    around them, and they may change channels and stride. Others map (N, C, *S) to the same shape.
    """

    name: str
    abbrev: str
    build: Callable[[LayerCfg], nn.Module]
    cost: Callable[[LayerCfg], Cost]
    uses_kernel: bool = True
    dims: tuple[int, ...] = (1, 2)
    self_contained: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    """Fixed per-space options with their defaults (e.g. attention head_dim); YAML mixer_options override."""
    check: Callable[[LayerCfg], str | None] | None = None
    """Returns why a configuration is impossible (e.g. channels not divisible), or None."""
    optional: dict[str, Any] = field(default_factory=dict)
    """Further options with their defaults; unlike ``options`` they enter a layer's options (and so its
    latency key) only when a space sets them to another value, so adding one changes no existing key."""
    choices: dict[str, tuple] = field(default_factory=dict)
    """Allowed values of word options (e.g. se_gate: hsigmoid, sigmoid); checked when the YAML is parsed."""
    has_se: bool = False
    """Whether the stage's ``se`` (squeeze-excite ratio) applies to this mixer."""
    odd_kernel: bool = False
    """Whether the kernel must be odd ('same' padding only keeps the shape for odd kernels)."""
    entropy: Callable[[LayerCfg], float] | None = None
    """The structural-entropy term of a layer (see nas.proxies.entropy); every mixer defines one."""
    bank_name: Callable[[LayerCfg, str], str] | None = None
    """Supernet weight sharing: the bank tensor that tensor ``name`` of this configuration reads (a variant
    tag where the structure changes with the kernel, so only like reads like); None: its own name."""
    segments: Callable[[LayerCfg, str], tuple[int, ...] | None] | None = None
    """Supernet weight sharing: the sizes of the C-dependent blocks concatenated along tensor ``name``'s first
    axis (e.g. attention's q|k|v), each sliced first-n on its own; None: one block."""
    reorder: Callable[[Collection[LayerCfg], list[str]], list[ReorderGroup]] | None = None
    """Supernet channel re-sorting of a self-contained layer: given the configurations a slot takes and its
    bank tensor names, the groups ``((importance tensor, axis), [(tensor, axis), ...])`` to permute alike."""

    def default(self, name: str) -> Any:
        """The default value of an option (``options`` or ``optional``)."""
        if name in self.options:
            return self.options[name]
        return self.optional[name]

    @property
    def all_options(self) -> dict[str, Any]:
        """Every option with its default."""
        return {**self.options, **self.optional}


class module_builder:  # noqa: N801 - used like a function: build=module_builder("mod:attr")
    """A mixer's ``build``: the callable ``"package.module:attr"``, imported on first call.

    Definitions name their torch module this way, so defining (listing, validating, costing) a mixer
    imports no torch; only building one does.
    """

    __slots__ = ("path", "_fn")

    def __init__(self, path: str):
        self.path = path
        self._fn: Callable[[LayerCfg], nn.Module] | None = None

    def __call__(self, cfg: LayerCfg) -> nn.Module:
        if self._fn is None:
            from nas.plugins import load

            self._fn = load(self.path)
        return self._fn(cfg)

    def __repr__(self) -> str:
        return f"module_builder({self.path!r})"


MIXERS: dict[str, MixerDef] = {}


def register(defn: MixerDef) -> MixerDef:
    """Add a mixer definition to the registry (names and abbreviations must be unique)."""
    if defn.name in MIXERS:
        raise ValueError(f"mixer {defn.name!r} registered twice")
    if any(m.abbrev == defn.abbrev for m in MIXERS.values()):
        raise ValueError(f"mixer abbreviation {defn.abbrev!r} registered twice")
    MIXERS[defn.name] = defn
    return defn


def mixer_names() -> list[str]:
    """Registered mixer names plus 'skip' (the layer is left out)."""
    from nas.blocks import mixers  # noqa: F401  (registers the catalogue)

    return [*MIXERS, "skip"]


def get_mixer(name: str) -> MixerDef:
    """The definition of a mixer by its YAML name."""
    from nas.blocks import mixers  # noqa: F401

    return MIXERS[name]
