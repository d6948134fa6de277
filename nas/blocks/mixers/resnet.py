"""basic and bottleneck: ResNet's residual blocks with dense k x k convs; self-contained layers.

- ``basic`` (ResNet-18/34): k x k conv (carries the stride) -> norm -> act -> k x k conv -> norm;
  the middle width is ``round(cout * ratio)`` (ratio 1 in ResNet).
- ``bottleneck`` (ResNet-50 and up, ResNeXt): 1x1 reduce -> norm -> act -> k x k conv with ``groups``
  (carries the stride, as in torchvision's "ResNet v1.5") -> norm -> act -> 1x1 expand -> norm; the middle
  width is ``round(cout * ratio)`` (ratio 0.25 in ResNet-50; ResNeXt-50 32x4d: ratio 0.5, groups 32, so
  the width per group is ``cout * ratio / groups``). ``width_per_group`` w (0: off) takes torchvision's
  parametrisation instead: middle width ``int(round(cout * ratio) * w / 64) * groups``, so ResNeXt-50 32x4d
  is ratio 0.25, groups 32, w 4, and Wide ResNet-50-2 is ratio 0.25, w 128.

The shortcut is the identity when the shape is kept, else a projection: a 1x1 conv with the block's
stride and a norm (``shortcut: conv``), or ResNet-D's average pool then 1x1 conv (``shortcut: avgpool``).
The activation after the sum is the stage's act (``act_after_sum: false`` leaves it out). Convs carry no
bias (they are followed by a norm). Kernels must be odd ('same' padding).
"""
from __future__ import annotations

import math

from nas.blocks.costs import Cost, conv_norm_act_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register


def mid_width(cfg) -> int:
    """Width of the block's inner convs: ``planes = round(cout * ratio)``; with ``width_per_group`` w,
    torchvision's ResNeXt / wide-ResNet rule ``int(planes * w / 64) * groups``."""
    planes = max(1, int(round(cfg.cout * cfg.ratio)))
    wpg = cfg.opt("width_per_group")
    return int(planes * wpg / 64) * cfg.groups if wpg else planes


def needs_projection(cfg) -> bool:
    """Whether the shortcut must change shape (stride or channels)."""
    return cfg.stride != 1 or cfg.cin != cfg.cout


def _cost(cfg, kind: str) -> Cost:
    k, mid, g, nm = cfg.kernel, mid_width(cfg), cfg.groups, cfg.norm
    sp, out = cfg.spatial, cfg.out_spatial
    if kind == "basic":
        cost = (conv_norm_act_cost(cfg.cin, mid, k, out, g, nm, False)
                + conv_norm_act_cost(mid, cfg.cout, k, out, g, nm, False))
    else:
        cost = (conv_norm_act_cost(cfg.cin, mid, 1, sp, 1, nm, False)
                + conv_norm_act_cost(mid, mid, k, out, g, nm, False)
                + conv_norm_act_cost(mid, cfg.cout, 1, out, 1, nm, False))
    if needs_projection(cfg):
        avg = cfg.opt("shortcut") == "avgpool" and cfg.stride > 1
        cost = cost + conv_norm_act_cost(cfg.cin, cfg.cout, 1, out, 1, nm, False)
        if avg:
            cost = cost + Cost(0, 0, cfg.cin * numel(out))
    return cost + Cost(0, 0, cfg.cout * numel(out))  # the sum's output


def _entropy(cfg, kind: str) -> float:
    """Sum of log fan-ins along the main branch (the shortcut is a side path)."""
    d, k, mid, g = cfg.dims, cfg.kernel, mid_width(cfg), cfg.groups
    if kind == "basic":
        return math.log(cfg.cin / g) + math.log(mid / g) + 2 * d * math.log(k)
    return math.log(cfg.cin) + math.log(mid / g) + d * math.log(k) + math.log(mid)


def _check(cfg, kind: str) -> str | None:
    mid, g = mid_width(cfg), cfg.groups
    if mid < 1:
        return f"{kind}: width_per_group {cfg.opt('width_per_group')} leaves no middle channel at width {cfg.cout}"
    if mid % g:
        return f"{kind}: groups={g} must divide the middle width {mid} (= round(width x ratio))"
    if kind == "basic" and cfg.cout % g:
        return f"{kind}: groups={g} must divide the width {cfg.cout}"
    return None


_OPTIONS = {"shortcut": "conv", "act_after_sum": True, "width_per_group": 0}
_CHOICES = {"shortcut": ("conv", "avgpool")}

for _kind, _abbrev, _doc in (("basic", "rb", "two k x k convs"), ("bottleneck", "bt", "1x1 -> k x k -> 1x1")):
    register(MixerDef(
        name=_kind, abbrev=_abbrev,
        build=module_builder(f"nas.blocks.modules.resnet:build_{_kind}"),
        cost=lambda cfg, kind=_kind: _cost(cfg, kind),
        self_contained=True, odd_kernel=True, options={}, optional=dict(_OPTIONS), choices=dict(_CHOICES),
        check=lambda cfg, kind=_kind: _check(cfg, kind),
        entropy=lambda cfg, kind=_kind: _entropy(cfg, kind),
    ))
