"""The torch module of a layer (norm + token mixer + channel mixer around residuals); see nas.blocks.layer."""
from __future__ import annotations

import torch
from torch import nn

from nas.blocks.common import DropPath, LayerScale, make_act, make_conv, make_norm
from nas.blocks.layer import LayerCfg, hidden_width
from nas.blocks.registry import get_mixer


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
    """The standard module of a layer configuration (a self-contained mixer is the whole layer)."""
    defn = get_mixer(cfg.mixer)
    if defn.self_contained:
        return defn.build(cfg)
    return Layer(cfg)
