"""mbconv: the inverted residual of MobileNetV2/V3, OFA and FBNet; a self-contained layer.

1x1 expand -> k x k depthwise (carries the stride) -> optional squeeze-excite -> 1x1 project (no act);
identity shortcut when stride 1 and channels match. Grouped 1x1s via ``groups``.
Hidden width = make_divisible(round(cin * ratio), 8) (cin itself at ratio 1).

Options (``mixer_options.mbconv``):
- ``expand_conv``: ``auto`` leaves the expand conv out at ratio 1 (MobileNetV2's first block), ``always``
  keeps it (a 1x1 cin -> cin conv + norm + act), so no one has to write ratio 1.0001;
- squeeze-excite rules: ``se_from`` (``expanded``: the ratio is of the hidden width, MobileNetV3/OFA;
  ``input``: of the block's input channels, EfficientNet), rounded by
  ``make_divisible(channels * se, se_divisor, se_min)`` (divisor 1: plain rounding; se_min 0: the divisor),
  with ``se_act`` after the reduce conv and ``se_gate`` (hsigmoid or sigmoid) on the expand conv.
"""
from __future__ import annotations

import math

from nas.blocks.costs import ACTS, Cost, conv_norm_act_cost, make_divisible, numel, se_cost
from nas.blocks.registry import MixerDef, module_builder, register


def mb_hidden(cin: int, ratio: float) -> int:
    """Expanded width of an inverted residual."""
    return cin if ratio == 1 else make_divisible(round(cin * ratio), 8)


def has_expand(cfg) -> bool:
    """Whether the block has its 1x1 expand conv (always, except at ratio 1 with expand_conv auto)."""
    return cfg.ratio != 1 or cfg.opt("expand_conv") == "always"


def se_width(hidden: int, se: float, divisor: int = 8, min_value: int = 0) -> int:
    """Squeeze-excite bottleneck width: make_divisible(hidden * se, divisor, min_value or divisor)."""
    return make_divisible(hidden * se, divisor, min_value or None)


def block_se_width(cfg) -> int:
    """The SE width of a block under its space's rules (which channels, divisor, minimum)."""
    base = cfg.cin if cfg.opt("se_from") == "input" else mb_hidden(cfg.cin, cfg.ratio)
    return se_width(base, cfg.se, cfg.opt("se_divisor"), cfg.opt("se_min"))


def mbconv_cost(cfg) -> Cost:
    """Cost of MBConv from its configuration."""
    hid = mb_hidden(cfg.cin, cfg.ratio)
    out_sp = cfg.out_spatial
    cost = Cost()
    if has_expand(cfg):
        cost = cost + conv_norm_act_cost(cfg.cin, hid, 1, cfg.spatial, cfg.groups, cfg.norm)
    cost = cost + conv_norm_act_cost(hid, hid, cfg.kernel, out_sp, hid, cfg.norm)
    if cfg.se:
        cost = cost + se_cost(hid, block_se_width(cfg), cfg.dims) + Cost(0, 0, hid * numel(out_sp))
    return cost + conv_norm_act_cost(hid, cfg.cout, 1, out_sp, cfg.groups, cfg.norm)


def _check(cfg) -> str | None:
    hid = mb_hidden(cfg.cin, cfg.ratio)
    if cfg.groups > 1 and hid % cfg.groups:
        return f"mbconv: groups={cfg.groups} must divide the expanded width {hid}"
    return None


def mbconv_entropy(cfg) -> float:
    """``log(cin/g)`` [expand conv] + ``d log k`` (depthwise) + ``log(hidden/g)`` (project); SE is a gate (0)."""
    hid, g = mb_hidden(cfg.cin, cfg.ratio), cfg.groups
    h = cfg.dims * math.log(cfg.kernel) + math.log(hid / g)
    if has_expand(cfg):
        h += math.log(cfg.cin / g)
    return h


def mbconv_reorder(cfgs, names: list[str]) -> list:
    """The supernet's channel groups: the expanded width (sorted by the project conv's input columns; expand,
    depthwise and SE convs alike) and the SE bottleneck. Only where every configuration of the slot expands
    (ratio != 1) with ungrouped convs: otherwise the hidden channels are the input's and must keep their order.
    """
    proj = "project.conv.weight"
    if proj not in names or not cfgs or not all(c.ratio != 1 and c.groups == 1 for c in cfgs):
        return []
    members = [(proj, 1)]
    for n in names:
        if n.startswith(("expand.", "dw.", "se.expand.")):
            members.append((n, 0))
        elif n == "se.reduce.weight":
            members.append((n, 1))
    groups = [((proj, 1), members)]
    if "se.expand.weight" in names:
        se = [("se.expand.weight", 1)] + [(n, 0) for n in ("se.reduce.weight", "se.reduce.bias") if n in names]
        groups.append((("se.expand.weight", 1), se))
    return groups


register(MixerDef(name="mbconv", abbrev="mb", build=module_builder("nas.blocks.modules.mbconv:MBConv"), cost=mbconv_cost, self_contained=True,
                  options={"se_gate": "hsigmoid"}, check=_check, has_se=True, odd_kernel=True,
                  optional={"expand_conv": "auto", "se_from": "expanded", "se_divisor": 8, "se_min": 0,
                            "se_act": "relu"},
                  choices={"se_gate": ("hsigmoid", "sigmoid"), "expand_conv": ("auto", "always"),
                           "se_from": ("expanded", "input"), "se_act": ACTS},
                  entropy=mbconv_entropy, reorder=mbconv_reorder))
