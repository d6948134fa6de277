"""Shared torch pieces of every block: norms, activations, conv-norm-act units with BN folding.

Their costs are pure functions in :mod:`nas.blocks.costs` (re-exported here beside the modules).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks.costs import (  # noqa: F401  (the cost formulas, re-exported beside their modules)
    ACTS,
    NORMS,
    ZERO,
    Cost,
    conv_cost,
    conv_norm_act_cost,
    conv_out,
    conv_spatial,
    linear_cost,
    make_divisible,
    norm_cost,
    numel,
    se_cost,
)


def make_act(kind: str) -> nn.Module:
    """Activation module by name (see ACTS)."""
    table = {
        "relu": lambda: nn.ReLU(inplace=False),
        "relu6": lambda: nn.ReLU6(inplace=False),
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "hswish": nn.Hardswish,
        "hsigmoid": nn.Hardsigmoid,
        "sigmoid": nn.Sigmoid,
        "none": nn.Identity,
    }
    return table[kind]()


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of (N, C, *spatial) tensors (ConvNeXt's channels-first LN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps).movedim(-1, 1)


def make_norm(kind: str, c: int, dims: int) -> nn.Module:
    """Norm over channels of (N, C, *spatial) features: bn, ln (channel LN), gn (GroupNorm with 1 group)."""
    if kind == "bn":
        return nn.BatchNorm2d(c) if dims == 2 else nn.BatchNorm1d(c)
    if kind == "ln":
        return ChannelLayerNorm(c, eps=1e-6)
    if kind == "gn":
        return nn.GroupNorm(1, c)
    return nn.Identity()


def conv_nd(dims: int) -> type[nn.Module]:
    """nn.Conv1d or nn.Conv2d."""
    return nn.Conv2d if dims == 2 else nn.Conv1d


def make_conv(cin: int, cout: int, k: int, dims: int, stride: int = 1, groups: int = 1, bias: bool = False,
              dilation: int = 1, padding: int | None = None) -> nn.Module:
    """Convolution in 1D or 2D; 'same' padding (dilation*(k-1)//2) unless ``padding`` is given."""
    pad = dilation * (k - 1) // 2 if padding is None else padding
    return conv_nd(dims)(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=bias, dilation=dilation)


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv into the conv's weight and bias."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    b0 = bias if bias is not None else torch.zeros_like(std)
    return w, beta + (b0 - bn.running_mean) * scale


class ConvNormAct(nn.Module):
    """conv -> norm -> act, the unit stems, MBConv and downsampling use; ``fuse()`` folds BN into the conv."""

    def __init__(self, cin: int, cout: int, k: int, dims: int, stride: int = 1, groups: int = 1,
                 norm: str = "bn", act: str = "relu", bias: bool | None = None, dilation: int = 1,
                 padding: int | None = None):
        super().__init__()
        bias = (norm != "bn") if bias is None else bias
        self.conv = make_conv(cin, cout, k, dims, stride, groups, bias, dilation, padding)
        self.norm = make_norm(norm, cout, dims)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold a BatchNorm into the convolution (deploy form)."""
        if isinstance(self.norm, nn.modules.batchnorm._BatchNorm):
            w, b = fold_bn(self.conv.weight, self.conv.bias, self.norm)
            conv = self.conv
            fused = conv_nd(w.dim() - 2)(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                         conv.padding, conv.dilation, conv.groups, bias=True)
            fused.weight.copy_(w)
            fused.bias.copy_(b)
            self.conv = fused
            self.norm = nn.Identity()


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite: global pool, 1x1 reduce + act, 1x1 expand + gate, multiply."""

    def __init__(self, c: int, mid: int, dims: int, act: str = "relu", gate: str = "hsigmoid"):
        super().__init__()
        self.reduce = conv_nd(dims)(c, mid, 1, bias=True)
        self.act = make_act(act)
        self.expand = conv_nd(dims)(mid, c, 1, bias=True)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (CaiT/ConvNeXt)."""

    def __init__(self, c: int, init: float, dims: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((c,), float(init)))
        self.view = (1, c) + (1,) * dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(self.view)


class DropPath(nn.Module):
    """Stochastic depth on a residual branch; identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep
