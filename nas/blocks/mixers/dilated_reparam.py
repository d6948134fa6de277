"""dilated_reparam: a large depthwise kernel trained with parallel small dilated branches (UniRepLKNet idea).

Training form: a k x k depthwise conv + BN, plus parallel depthwise branches, each conv + BN, all summed.
Deploy form (``fuse()``): every BN is folded into its conv, each dilated kernel is expanded to its
effective size by inserting zeros between taps, zero-padded to k x k and added, giving ONE k x k depthwise
conv with bias that computes the same function in eval mode.

Branch schedule (:func:`branch_schedule`), as a function of the odd kernel k; a branch is only used when
its effective size ``dilation * (kernel - 1) + 1`` is strictly below k:
- a dense small kernel: 5 x 5 (dilation 1) when k >= 7, else 3 x 3 (dilation 1) when k == 5;
- 3 x 3 kernels with dilations 2, 4, 8, ... (effective sizes 5, 9, 17, ...).
So k=3: none; k=5: 3d1; k=7 and 9: 5d1, 3d2; k=11..17: 5d1, 3d2, 3d4; k=19..33: adds 3d8.
The BNs are part of the mixer (whatever ``cfg.norm`` is): they are what makes re-parameterisation exact.
Cost counts the training form, so it matches the built (unfused) module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks.common import ConvNormAct, Cost, conv_cost, conv_nd, numel
from nas.blocks.registry import MixerDef, register


def branch_schedule(k: int) -> list[tuple[int, int]]:
    """(kernel, dilation) of the parallel branches for a k x k main kernel (see the module docstring)."""
    out: list[tuple[int, int]] = []
    if k >= 7:
        out.append((5, 1))
    elif k == 5:
        out.append((3, 1))
    d = 2
    while 2 * d + 1 < k:
        out.append((3, d))
        d *= 2
    return out


def _dw_bn(c: int, k: int, dims: int, dilation: int = 1) -> ConvNormAct:
    return ConvNormAct(c, c, k, dims, groups=c, norm="bn", act="none", dilation=dilation)


class DilatedReparam(nn.Module):
    """Sum of a k x k depthwise conv + BN and small dilated depthwise conv + BN branches; fusable."""

    def __init__(self, c: int, k: int, dims: int):
        super().__init__()
        self.c, self.k, self.dims = c, k, dims
        self.main: nn.Module = _dw_bn(c, k, dims)
        self.branches = nn.ModuleList(_dw_bn(c, kb, dims, d) for kb, d in branch_schedule(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x)
        for b in self.branches:
            out = out + b(x)
        return out

    @torch.no_grad()
    def fuse(self) -> None:
        """Merge every branch into one k x k depthwise conv with bias (eval-mode equivalent)."""
        if not self.branches and not isinstance(self.main, ConvNormAct):
            return
        weight, bias = self._folded(self.main, 1)
        for b in self.branches:
            w, bb = self._folded(b, b.conv.dilation[0])
            pad = (self.k - w.shape[-1]) // 2
            weight = weight + F.pad(w, [pad] * (2 * self.dims))
            bias = bias + bb
        fused = conv_nd(self.dims)(self.c, self.c, self.k, padding=self.k // 2, groups=self.c, bias=True)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.main = fused
        self.branches = nn.ModuleList()

    @staticmethod
    def _folded(unit: ConvNormAct, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A branch's BN-folded kernel, expanded to its effective (dilated) size with zeros."""
        unit.fuse()
        w, b = unit.conv.weight, unit.conv.bias
        if dilation > 1:
            ks = w.shape[-1]
            size = dilation * (ks - 1) + 1
            big = w.new_zeros(*w.shape[:2], *([size] * (w.dim() - 2)))
            idx = (slice(None), slice(None)) + (slice(None, None, dilation),) * (w.dim() - 2)
            big[idx] = w
            w = big
        return w, b


def reparam_cost(cfg) -> Cost:
    """Training form: each branch is a depthwise conv (no bias) + BN (2C params); act adds the sum."""
    c, sp = cfg.c, cfg.spatial
    cost = Cost(0, 0, c * numel(sp))
    for kb in [cfg.kernel] + [kb for kb, _ in branch_schedule(cfg.kernel)]:
        cost = cost + conv_cost(c, c, kb, sp, groups=c) + Cost(2 * c)
    return cost


def _check(cfg) -> str | None:
    if cfg.kernel % 2 == 0:
        return f"dilated_reparam: kernel {cfg.kernel} must be odd to merge branches centred"
    return None


def _entropy(cfg) -> float:
    """``d log k``: the deploy form is one dense k^d depthwise kernel (structural entropy, nas.proxies)."""
    return cfg.dims * math.log(cfg.kernel)


register(
    MixerDef(
        name="dilated_reparam",
        abbrev="dr",
        build=lambda cfg: DilatedReparam(cfg.c, cfg.kernel, cfg.dims),
        cost=reparam_cost,
        check=_check, entropy=_entropy,
    )
)
