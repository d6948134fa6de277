"""Shared building pieces of every block: norms, activations, conv-norm-act units with BN folding, costs.

Costs here are pure functions of the configuration: params as counts, MACs of conv/linear/matmul only
(norms, activations, pooling and element-wise products are not MACs), activations as element counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("bn", "ln", "gn", "none")
ACTS = ("relu", "relu6", "gelu", "silu", "hswish", "hsigmoid", "sigmoid", "none")


@dataclass(frozen=True, slots=True)
class Cost:
    """Analytic cost of a piece of network: parameters, MACs, and activation elements written."""

    params: int = 0
    macs: int = 0
    act: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs, self.act + other.act)


ZERO = Cost()


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (MobileNet rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def numel(spatial: tuple[int, ...]) -> int:
    """Number of positions in a feature map."""
    return math.prod(spatial)


def conv_out(size: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def conv_spatial(spatial: tuple[int, ...], k: int, stride: int, dilation: int = 1,
                 padding: int | None = None) -> tuple[int, ...]:
    """Output spatial shape of a conv ('same' padding dilation*(k-1)//2 unless ``padding`` is given)."""
    pad = dilation * (k - 1) // 2 if padding is None else padding
    return tuple(conv_out(s, k, stride, pad, dilation) for s in spatial)


def conv_cost(cin: int, cout: int, k: int | tuple[int, ...], out_spatial: tuple[int, ...], groups: int = 1,
              bias: bool = False) -> Cost:
    """Params and MACs of a convolution with kernel k (int: same size along every axis)."""
    ks = math.prod(k) if isinstance(k, tuple) else k ** len(out_spatial)
    w = cout * (cin // groups) * ks
    n = numel(out_spatial)
    return Cost(w + (cout if bias else 0), w * n, cout * n)


def linear_cost(cin: int, cout: int, tokens: int, bias: bool = True) -> Cost:
    """Params and MACs of a linear layer applied to ``tokens`` positions."""
    return Cost(cin * cout + (cout if bias else 0), cin * cout * tokens, cout * tokens)


def norm_cost(kind: str, c: int, spatial: tuple[int, ...]) -> Cost:
    """Norms carry 2C affine parameters (BN running stats are buffers) and no MACs."""
    if kind == "none":
        return ZERO
    return Cost(2 * c, 0, c * numel(spatial))


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


def conv_norm_act_cost(cin: int, cout: int, k: int, spatial_out: tuple[int, ...], groups: int = 1,
                       norm: str = "bn", bias: bool | None = None) -> Cost:
    """Cost of a ConvNormAct with the same arguments."""
    bias = (norm != "bn") if bias is None else bias
    return conv_cost(cin, cout, k, spatial_out, groups, bias) + Cost(norm_cost(norm, cout, spatial_out).params)


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


def se_cost(c: int, mid: int, dims: int) -> Cost:
    """Cost of SqueezeExcite: two 1x1 convs on a 1-position map."""
    one = (1,) * dims
    return conv_cost(c, mid, 1, one, bias=True) + conv_cost(mid, c, 1, one, bias=True)


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
