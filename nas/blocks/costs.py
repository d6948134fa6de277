"""Cost formulas of every block's pieces: pure functions of a configuration, no torch.

Params as counts, MACs of conv/linear/matmul only (norms, activations, pooling and element-wise products
are not MACs), activations as element counts. Listing and validating spaces, counting archs and the latency
key index need only this module; the torch modules live in :mod:`nas.blocks.common` and ``nas.blocks.modules``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


def conv_norm_act_cost(cin: int, cout: int, k: int, spatial_out: tuple[int, ...], groups: int = 1,
                       norm: str = "bn", bias: bool | None = None) -> Cost:
    """Cost of a ConvNormAct with the same arguments."""
    bias = (norm != "bn") if bias is None else bias
    return conv_cost(cin, cout, k, spatial_out, groups, bias) + Cost(norm_cost(norm, cout, spatial_out).params)


def se_cost(c: int, mid: int, dims: int) -> Cost:
    """Cost of SqueezeExcite: two 1x1 convs on a 1-position map."""
    one = (1,) * dims
    return conv_cost(c, mid, 1, one, bias=True) + conv_cost(mid, c, 1, one, bias=True)
