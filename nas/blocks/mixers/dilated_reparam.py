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

from nas.blocks.costs import Cost, conv_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register


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


def _bank_name(cfg, name: str) -> str:
    """Each branch's weights are shared per dilation, whatever its index in this kernel's schedule."""
    if not name.startswith("branches."):
        return name
    idx, rest = name[len("branches.") :].split(".", 1)
    return f"branch@d{branch_schedule(cfg.kernel)[int(idx)][1]}.{rest}"


register(
    MixerDef(
        name="dilated_reparam",
        abbrev="dr",
        build=module_builder("nas.blocks.modules.dilated_reparam:build"),
        cost=reparam_cost,
        check=_check, entropy=_entropy, bank_name=_bank_name,
    )
)
