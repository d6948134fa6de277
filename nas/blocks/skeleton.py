"""The skeleton's units next to the mixers: stem and downsample convs and the head, one definition each.

A unit's specification (:class:`ConvSpec`, :class:`StemSpec`, :class:`HeadSpec`, as the space language
parses them), its configuration at an input shape (:class:`ConvUnit`, :class:`HeadCfg`), its cost
(:func:`conv_unit_cost`, :func:`head_cost`), its latency key (:func:`conv_key`, :func:`head_key`) and its
structural-entropy term (:func:`conv_entropy`, :func:`stem_entropy`) live here, torch-free; the modules
are in :mod:`nas.blocks.modules.skeleton`. :func:`unit_cost` is the cost of any unit a network plan holds
(a layer, a conv unit or the head).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from nas.blocks.costs import Cost, conv_cost, conv_norm_act_cost, conv_spatial, linear_cost, norm_cost, numel
from nas.blocks.keys import format_key
from nas.blocks.layer import LayerCfg, layer_cost


@dataclass(frozen=True)
class ConvSpec:
    """A fixed conv unit of the skeleton (stem or downsample)."""

    kernel: int
    stride: int
    norm: str
    act: str
    bias: bool | None = None
    norm_position: str = "post"
    pad: int | None = None
    """Explicit padding (None: the default rule, see ``padding``)."""

    @property
    def padding(self) -> int:
        """Explicit padding if given; else patchify convs (kernel == stride) use none and others pad
        (k-1)//2 to keep 'same' alignment."""
        if self.pad is not None:
            return self.pad
        return 0 if self.kernel == self.stride else (self.kernel - 1) // 2

    def out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape after the conv."""
        return conv_spatial(spatial, self.kernel, self.stride, padding=self.padding)


STEM_OPS = ("conv", "maxpool", "avgpool")


@dataclass(frozen=True)
class StemOp:
    """One op of a multi-op stem: a conv-norm-act (``width`` None: the stem's width) or a pooling."""

    op: str
    kernel: int
    stride: int
    pad: int | None = None
    width: int | None = None
    norm: str = "bn"
    act: str = "relu"
    bias: bool | None = None

    @property
    def padding(self) -> int:
        return (self.kernel - 1) // 2 if self.pad is None else self.pad

    def out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return conv_spatial(spatial, self.kernel, self.stride, padding=self.padding)

    def text(self) -> str:
        """Compact form for keys, e.g. ``conv:k7s2p3:w-:bn:relu`` or ``maxpool:k3s2p1``."""
        geo = f"k{self.kernel}s{self.stride}p{self.padding}"
        if self.op != "conv":
            return f"{self.op}:{geo}"
        w = "-" if self.width is None else str(self.width)
        bias = "" if self.bias is None else f":bias{int(self.bias)}"
        return f"conv:{geo}:w{w}:{self.norm}:{self.act}{bias}"


@dataclass(frozen=True)
class StemSpec:
    """A stem of several ops in order (e.g. conv-BN-act then max pool; two convs)."""

    ops: tuple[StemOp, ...]

    def out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        for op in self.ops:
            spatial = op.out_spatial(spatial)
        return spatial

    def conv_widths(self, cin: int, width: int) -> list[tuple[StemOp, int, int]]:
        """(op, in channels, out channels) of every op for a stem of output ``width``."""
        out, c = [], cin
        for op in self.ops:
            cout = (op.width or width) if op.op == "conv" else c
            out.append((op, c, cout))
            c = cout
        return out

    # the first conv's geometry, for code that reads a single-conv stem's fields
    @property
    def kernel(self) -> int:
        return self.ops[0].kernel

    @property
    def stride(self) -> int:
        return self.ops[0].stride

    @property
    def padding(self) -> int:
        return self.ops[0].padding


@dataclass(frozen=True)
class HeadSpec:
    """The head: optional 1x1 conv before pooling, global pool, optional norm, optional linear, classifier."""

    type: str = "classifier"
    classes: int = 1000
    pre: tuple[int, str, str] | None = None  # (width, norm, act)
    norm: str = "none"
    post: tuple[int, str, bool] | None = None  # (width, act, bias)
    dropout: float = 0.0
    out_indices: tuple[int, ...] | None = None
    norm_at: str = "pooled"
    """Where ``norm`` sits: ``pooled`` (on the pooled vector) or ``map`` (on the feature map, before pooling)."""
    post_norm: str = "none"
    """A norm after the hidden linear of ``post`` (none, bn, ln)."""
    post_order: str = "norm_act"
    """Order after the hidden linear: ``norm_act`` (linear, norm, act) or ``act_norm`` (MetaFormer's MLP head)."""


@dataclass(frozen=True, slots=True)
class ConvUnit:
    """A fixed conv of the skeleton at a given input shape (stem or downsample)."""

    cin: int
    cout: int
    spatial: tuple[int, ...]
    spec: ConvSpec | StemSpec  # a stem may be a short sequence of ops

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return self.spec.out_spatial(self.spatial)


@dataclass(frozen=True, slots=True)
class HeadCfg:
    """The head at its input: channels, spatial shape, dims and the space's head description."""

    cin: int
    spatial: tuple[int, ...]
    dims: int
    head: HeadSpec


# ---------------------------------------------------------------------------------- costs

@lru_cache(maxsize=10_000)
def conv_unit_cost(u: ConvUnit) -> Cost:
    """Cost of a stem/downsample conv unit."""
    s = u.spec
    if isinstance(s, StemSpec):
        cost, sp = Cost(), u.spatial
        for op, cin, cout in s.conv_widths(u.cin, u.cout):
            sp = op.out_spatial(sp)
            if op.op == "conv":
                cost = cost + conv_norm_act_cost(cin, cout, op.kernel, sp, norm=op.norm, bias=op.bias)
            else:
                cost = cost + Cost(0, 0, cout * numel(sp))
        return cost
    out = u.out_spatial
    if s.norm_position == "pre":
        bias = True if s.bias is None else s.bias
        return Cost(norm_cost(s.norm, u.cin, u.spatial).params) + conv_cost(u.cin, u.cout, s.kernel, out, bias=bias)
    return conv_norm_act_cost(u.cin, u.cout, s.kernel, out, norm=s.norm, bias=s.bias)


def head_cost(unit: HeadCfg) -> Cost:
    """Cost of the classification head at its input (zero for features-only heads)."""
    h = unit.head
    if h.type == "features":
        return Cost()
    c, sp = unit.cin, unit.spatial
    cost = Cost()
    if h.pre is not None:
        w, nm, _ = h.pre
        cost = cost + conv_norm_act_cost(c, w, 1, sp, norm=nm)
        c = w
    if h.norm != "none":
        cost = cost + Cost(2 * c)
    if h.post is not None:
        w, _, bias = h.post
        cost = cost + linear_cost(c, w, 1, bias)
        c = w
        if h.post_norm != "none":
            cost = cost + Cost(2 * c)
    return cost + linear_cost(c, h.classes, 1)


# ----------------------------------------------------------------------------------- keys

def _hw(spatial: Sequence[int]) -> str:
    return "x".join(str(s) for s in spatial)


@lru_cache(maxsize=100_000)
def conv_key(u: ConvUnit) -> str:
    """Key of a stem/downsample conv unit, e.g. ``conv|cin=3|cout=32|hw=224x224|k=3|s=2|d=2|norm=bn|act=gelu``."""
    s = u.spec
    if isinstance(s, StemSpec):  # a multi-op stem: one unit, its ops in order
        return format_key("stem", [("cin", u.cin), ("cout", u.cout), ("hw", _hw(u.spatial)), ("d", len(u.spatial)),
                                   ("ops", ",".join(op.text() for op in s.ops))])
    f: list[tuple[str, object]] = [("cin", u.cin), ("cout", u.cout), ("hw", _hw(u.spatial)), ("k", s.kernel),
                                   ("s", s.stride), ("p", s.padding), ("d", len(u.spatial)), ("norm", s.norm),
                                   ("act", s.act)]
    if s.bias is not None:
        f.append(("bias", int(s.bias)))
    if s.norm_position != "post":
        f.append(("normpos", s.norm_position))
    return format_key("conv", f)


@lru_cache(maxsize=10_000)
def head_key(h: HeadCfg) -> str:
    """Key of the classifier head, e.g. ``head|cin=384|hw=7x7|d=2|pre=1024,bn,gelu|norm=none|classes=1000``.

    Dropout is left out (it does nothing at inference).
    """
    spec = h.head
    f: list[tuple[str, object]] = [("cin", h.cin), ("hw", _hw(h.spatial)), ("d", h.dims)]
    if spec.pre is not None:
        f.append(("pre", "{},{},{}".format(*spec.pre)))
    f.append(("norm", spec.norm))
    if spec.norm_at != "pooled":
        f.append(("norm_at", spec.norm_at))
    if spec.post is not None:
        w, act, bias = spec.post
        f.append(("post", f"{w},{act},{int(bias)}"))
        if spec.post_norm != "none":
            f.append(("post_norm", f"{spec.post_norm},{spec.post_order}"))
    f.append(("classes", spec.classes))
    return format_key("head", f)


# -------------------------------------------------------------------------------- entropy

def conv_entropy(cin: int, kernel: int, dims: int, groups: int = 1) -> float:
    """Entropy term of a dense (or grouped) conv: ``log(cin/groups * kernel^dims)``."""
    return math.log(cin / groups) + dims * math.log(kernel)


def stem_entropy(stem: ConvSpec | StemSpec, cin: int, width: int, spatial: tuple[int, ...]
                 ) -> tuple[float, tuple[int, ...]]:
    """(entropy, out spatial) of a stem: ``log(c_in * k^d)`` per conv it chains (pooling adds 0).

    A one-conv stem's term does not depend on the stem width; a multi-op stem's later convs read the
    earlier ones' widths (fixed in the YAML, or the stem width, passed as ``width``)."""
    d = len(spatial)
    if not isinstance(stem, StemSpec):
        return conv_entropy(cin, stem.kernel, d), stem.out_spatial(spatial)
    h = 0.0
    for op, c_in, _ in stem.conv_widths(cin, width):
        if op.op == "conv":
            h += conv_entropy(c_in, op.kernel, d)
        spatial = op.out_spatial(spatial)
    return h, spatial


def unit_cost(cfg: LayerCfg | ConvUnit | HeadCfg) -> Cost:
    """The cost of any unit of a network plan, from its own definition."""
    return _UNIT_COSTS[type(cfg)](cfg)


_UNIT_COSTS = {LayerCfg: layer_cost, ConvUnit: conv_unit_cost, HeadCfg: head_cost}
