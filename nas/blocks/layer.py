"""A layer: norm + token mixer + channel mixer around residuals, built and costed from one LayerCfg.

Layouts:
- ``metaformer``: x + ls1*mixer(norm1(x)); then x + ls2*mlp(norm2(x)) (PoolFormer/MetaFormer);
- ``convnext``: x + ls*mlp(norm(mixer(x))) (ConvNeXt: one residual, the norm between mixer and MLP);
- self-contained mixers (mbconv) ignore the layout: they are the whole layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from nas.blocks.common import (
    Cost,
    DropPath,
    LayerScale,
    conv_cost,
    make_act,
    make_conv,
    make_norm,
    norm_cost,
    numel,
)
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


class Mlp(nn.Module):
    """Channel mixer: 1x1 conv expand, [norm], act, 1x1 conv project (GLU: a gated pair before the project).

    ``bias`` applies to both 1x1 convs; ``norm`` (bn or ln) sits right after the first one.
    """

    def __init__(self, c: int, hidden: int, dims: int, act: str, glu: bool = False, bias: bool = True,
                 norm: str = "none"):
        super().__init__()
        self.glu = glu
        self.fc1 = make_conv(c, hidden * (2 if glu else 1), 1, dims, bias=bias)
        self.norm = make_norm(norm, hidden * (2 if glu else 1), dims) if norm != "none" else None
        self.act = make_act(act)
        self.fc2 = make_conv(hidden, c, 1, dims, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.norm is not None:
            h = self.norm(h)
        if self.glu:
            a, b = h.chunk(2, dim=1)
            h = self.act(a) * b
        else:
            h = self.act(h)
        return self.fc2(h)


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


def make_mlp(cfg: LayerCfg) -> Mlp:
    """The channel mixer module of a layer configuration."""
    return Mlp(cfg.c, hidden_width(cfg.c, cfg.ratio), cfg.dims, cfg.cm("act"), cfg.channel_mixer == "glu",
               cfg.cm("bias"), cfg.cm("norm"))


class Layer(nn.Module):
    """A residual layer around a token mixer (see the module docstring for layouts)."""

    def __init__(self, cfg: LayerCfg):
        super().__init__()
        self.layout = cfg.layout
        c, d = cfg.c, cfg.dims
        self.mixer = get_mixer(cfg.mixer).build(cfg)
        self.drop_path = DropPath(cfg.drop_path)
        ls = (lambda: LayerScale(c, cfg.layer_scale, d)) if cfg.layer_scale is not None else nn.Identity
        has_mlp = cfg.channel_mixer != "none"
        if self.layout == "metaformer":
            self.norm1 = make_norm(cfg.norm, c, d)
            self.ls1 = ls()
            if has_mlp:
                self.norm2 = make_norm(cfg.norm, c, d)
        else:  # convnext: mixer -> norm -> mlp -> scale
            self.norm = make_norm(cfg.norm, c, d)
        self.mlp = make_mlp(cfg) if has_mlp else None
        self.ls2 = ls() if has_mlp or self.layout == "convnext" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "metaformer":
            x = x + self.drop_path(self.ls1(self.mixer(self.norm1(x))))
            if self.mlp is not None:
                x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
            return x
        h = self.norm(self.mixer(x))
        if self.mlp is not None:
            h = self.mlp(h)
        return x + self.drop_path(self.ls2(h))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm in front of the MLP into its first 1x1 conv (exact: no padding involved).

        A BatchNorm in front of a padded mixer cannot be folded exactly and stays (it is an affine op).
        """
        norm = self.norm2 if self.layout == "metaformer" and self.mlp is not None else None
        if self.layout == "convnext" and self.mlp is not None:
            norm = self.norm
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
            return
        fc1 = self.mlp.fc1
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        w = fc1.weight
        if fc1.bias is None:  # a bias-free MLP gains the folded shift as a bias
            fc1.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
        fc1.bias.add_(w.flatten(1) @ shift)
        w.mul_(scale.reshape(1, -1, *([1] * (w.dim() - 2))))
        if self.layout == "metaformer":
            self.norm2 = nn.Identity()
        else:
            self.norm = nn.Identity()


def build_layer(cfg: LayerCfg) -> nn.Module:
    """The standard module of a layer configuration."""
    defn = get_mixer(cfg.mixer)
    if defn.self_contained:
        return defn.build(cfg)
    return Layer(cfg)


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
