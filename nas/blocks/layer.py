"""A layer: norm + token mixer + channel mixer around residuals, built and costed from one LayerCfg.

This module is the definition (configuration, cost, latency key, checks) and needs no torch; the module
itself is :class:`nas.blocks.modules.layer.Layer`, built by :func:`nas.blocks.modules.layer.build_layer`.

Layouts:
- ``metaformer``: x + ls1*mixer(norm1(x)); then x + ls2*mlp(norm2(x)) (PoolFormer/MetaFormer);
- ``convnext``: x + ls*mlp(norm(mixer(x))) (ConvNeXt: one residual, the norm between mixer and MLP);
- self-contained mixers (mbconv) ignore the layout: they are the whole layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nas.blocks.costs import Cost, conv_cost, norm_cost, numel
from nas.blocks.keys import format_key
from nas.blocks.registry import get_mixer

LAYOUTS = ("metaformer", "convnext")
CHANNEL_MIXERS = ("mlp", "glu", "none")
CM_OPTIONS = {"bias": True, "norm": "none", "act": None}
"""Channel-mixer options and defaults: bias of both linears, a norm after the first linear (none, bn, ln),
the activation (None: the stage's act)."""


@dataclass(frozen=True, slots=True)
class LayerCfg:
    """Everything that defines one layer at one input shape; hashable, so costs memoise on it."""

    mixer: str
    cin: int
    cout: int
    spatial: tuple[int, ...]
    kernel: int = 3
    ratio: float = 4.0
    groups: int = 1
    stride: int = 1
    dims: int = 2
    norm: str = "bn"
    act: str = "gelu"
    layout: str = "metaformer"
    channel_mixer: str = "mlp"
    se: float = 0.0
    layer_scale: float | None = None
    opts: tuple[tuple[str, Any], ...] = ()
    drop_path: float = 0.0
    cm_opts: tuple[tuple[str, Any], ...] = ()
    """Channel-mixer options that differ from the defaults (see CM_OPTIONS), sorted by name."""

    @property
    def c(self) -> int:
        """Channels of a shape-preserving layer."""
        return self.cin

    def opt(self, name: str) -> Any:
        """A mixer option: the space's value, else the mixer's default."""
        for k, v in self.opts:
            if k == name:
                return v
        return get_mixer(self.mixer).default(name)

    def cm(self, name: str) -> Any:
        """A channel-mixer option (bias, norm, act): the space's value, else the default."""
        for k, v in self.cm_opts:
            if k == name:
                return v
        return self.act if name == "act" else CM_OPTIONS[name]

    @property
    def out_spatial(self) -> tuple[int, ...]:
        """Spatial shape after the layer (only self-contained mixers stride)."""
        if self.stride == 1:
            return self.spatial
        return tuple((s + self.stride - 1) // self.stride for s in self.spatial)


def hidden_width(c: int, ratio: float) -> int:
    """Hidden width of the channel mixer: round(ratio * C)."""
    return max(1, int(round(c * ratio)))


def mlp_segments(cfg: LayerCfg, name: str) -> tuple[int, ...] | None:
    """Supernet weight sharing of the layer's own tensors: a GLU's first linear holds value|gate halves."""
    if cfg.channel_mixer == "glu" and name in ("mlp.fc1.weight", "mlp.fc1.bias"):
        h = hidden_width(cfg.c, cfg.ratio)
        return (h, h)
    return None


def mlp_cost(cfg: LayerCfg) -> Cost:
    """Cost of the channel mixer of a layer."""
    if cfg.channel_mixer == "none":
        return Cost()
    c, sp = cfg.c, cfg.spatial
    h = hidden_width(c, cfg.ratio)
    mult = 2 if cfg.channel_mixer == "glu" else 1
    bias = cfg.cm("bias")
    cost = conv_cost(c, h * mult, 1, sp, bias=bias) + conv_cost(h, c, 1, sp, bias=bias)
    return cost + Cost(norm_cost(cfg.cm("norm"), h * mult, sp).params)


@lru_cache(maxsize=200_000)
def layer_cost(cfg: LayerCfg) -> Cost:
    """Analytic cost of a layer (memoised: spaces repeat configurations)."""
    defn = get_mixer(cfg.mixer)
    if defn.self_contained:
        return defn.cost(cfg)
    c, sp = cfg.c, cfg.spatial
    cost = defn.cost(cfg) + mlp_cost(cfg)
    n_norms = (2 if cfg.channel_mixer != "none" else 1) if cfg.layout == "metaformer" else 1
    cost = cost + Cost(n_norms * norm_cost(cfg.norm, c, sp).params, 0, 0)
    n_scales = (1 + (cfg.channel_mixer != "none")) if cfg.layout == "metaformer" else 1
    if cfg.layer_scale is not None:
        cost = cost + Cost(n_scales * c, 0, 0)
    return cost + Cost(0, 0, c * numel(sp))  # the residual sum's output


@lru_cache(maxsize=200_000)
def latency_key(cfg: LayerCfg) -> str:
    """The signature a device profile indexes a layer by: type, then numeric fields, then options.

    Training-only settings (drop path, layer-scale init) are left out: they do not change inference time.
    """
    defn = get_mixer(cfg.mixer)
    f: list[tuple[str, object]] = [("cin", cfg.cin), ("cout", cfg.cout), ("hw", "x".join(map(str, cfg.spatial))),
                                   ("s", cfg.stride)]
    if defn.uses_kernel:
        f.append(("k", cfg.kernel))
    if defn.self_contained or cfg.channel_mixer != "none":
        f.append(("r", f"{cfg.ratio:g}"))
    if cfg.groups != 1:
        f.append(("g", cfg.groups))
    if cfg.se:
        f.append(("se", f"{cfg.se:g}"))
    f += [("d", cfg.dims), ("norm", cfg.norm), ("act", cfg.act)]
    if not defn.self_contained:
        f += [("layout", cfg.layout), ("cm", cfg.channel_mixer), ("ls", int(cfg.layer_scale is not None))]
    f += [*cfg.opts, *((f"mlp.{k}", v) for k, v in cfg.cm_opts)]  # mlp.*: only options that differ from the defaults
    return format_key(f"layer:{cfg.mixer}", f)


def check_layer(cfg: LayerCfg) -> str | None:
    """Why the layer cannot be built (e.g. channels not divisible by heads), or None."""
    defn = get_mixer(cfg.mixer)
    if cfg.dims not in defn.dims:
        return f"mixer {cfg.mixer} has no {cfg.dims}D form"
    if not defn.self_contained and (cfg.cin != cfg.cout or cfg.stride != 1):
        return f"mixer {cfg.mixer} keeps shape; it cannot change channels or stride (use a downsample layer)"
    if cfg.groups > 1 and (cfg.cin % cfg.groups or cfg.cout % cfg.groups):
        return f"groups={cfg.groups} must divide the channels {cfg.cin}->{cfg.cout}"
    return defn.check(cfg) if defn.check else None
