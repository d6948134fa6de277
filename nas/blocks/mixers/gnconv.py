"""gnconv: HorNet's recursive gated convolution of order n (``order`` option, 2..5).

Widths of the orders: w_i = C / 2^(n-1-i) for i = 0..n-1 (so w_0 = C/2^(n-1), w_{n-1} = C).
proj_in (1x1, bias) maps C to 2C = w_0 + sum(w); the first w_0 channels are the gate seed p_0, the other
sum(w) channels go through ONE k x k depthwise conv (bias) and are split into q_0..q_{n-1} of widths w_i.
Then p_1 = p_0 * q_0 and, for i = 1..n-1, p_{i+1} = conv1x1_i(p_i) * q_i (1x1 with bias, w_{i-1} -> w_i);
proj_out (1x1, bias) maps p_n (C channels) back to C. Each order doubles the width and multiplies in a
spatially mixed gate, giving n-th order spatial interactions at depthwise-conv cost.
"""

from __future__ import annotations

import math

from nas.blocks.costs import Cost, conv_cost, numel
from nas.blocks.registry import MixerDef, module_builder, register

ORDERS = (2, 3, 4, 5)


def order_widths(c: int, order: int) -> list[int]:
    """Channel widths of the gating orders, narrowest first."""
    return [c >> (order - 1 - i) for i in range(order)]


def gnconv_cost(cfg) -> Cost:
    """proj_in, the depthwise conv over sum(w) channels, n-1 gating 1x1s and proj_out (all with bias).

    act adds the gated products (sum(w) elements per position).
    """
    c, sp = cfg.c, cfg.spatial
    w = order_widths(c, cfg.opt("order"))
    total = sum(w)
    cost = conv_cost(c, w[0] + total, 1, sp, bias=True) + conv_cost(total, total, cfg.kernel, sp, total, True)
    for a, b in zip(w[:-1], w[1:], strict=True):
        cost = cost + conv_cost(a, b, 1, sp, bias=True)
    return cost + conv_cost(c, c, 1, sp, bias=True) + Cost(0, 0, total * numel(sp))


def _check(cfg) -> str | None:
    order = cfg.opt("order")
    if order not in ORDERS:
        return f"gnconv: order {order} must be one of {ORDERS}"
    if cfg.c % (1 << (order - 1)):
        return f"gnconv: channels {cfg.c} not divisible by 2^(order-1) = {1 << (order - 1)}"
    if cfg.kernel % 2 == 0:
        return f"gnconv: kernel {cfg.kernel} must be odd"
    return None


def _entropy(cfg) -> float:
    """``2 log c + d log k + sum_{i<n-1} log w_i``: proj_in/out, the depthwise conv, the gate chain (entropy)."""
    w = order_widths(cfg.c, cfg.opt("order"))
    return 2 * math.log(cfg.c) + cfg.dims * math.log(cfg.kernel) + sum(math.log(x) for x in w[:-1])


def _segments(cfg, name: str) -> tuple[int, ...] | None:
    """proj_in's rows: the gate seed w_0, then the order widths; the depthwise conv's: the order widths."""
    if name not in ("proj_in.weight", "proj_in.bias", "dw.weight", "dw.bias"):
        return None
    w = tuple(order_widths(cfg.c, cfg.opt("order")))
    return (w[0], *w) if name.startswith("proj_in") else w


register(
    MixerDef(
        name="gnconv",
        abbrev="gn",
        build=module_builder("nas.blocks.modules.gnconv:build"),
        cost=gnconv_cost,
        options={"order": 3},
        check=_check, entropy=_entropy, segments=_segments,
    )
)
