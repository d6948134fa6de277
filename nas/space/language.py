"""The search-space language: a validated, declarative YAML description of a space of backbones.

A space has an input (channels; resolution choices in 2D, length choices in 1D), a stem, N stages and a
head. A stage lists choices for depth and width, and for each layer's mixer, kernel, ratio (MLP ratio, or
expand ratio for mbconv) and groups; keys named in ``per_layer`` vary layer by layer (FBNet-style),
the others are chosen once per stage (OFA-style depth/width). Fixed values are one-element lists, or
plain scalars. Every error names the file, the key path and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from nas.blocks.common import ACTS, NORMS
from nas.blocks.layer import CHANNEL_MIXERS, LAYOUTS
from nas.blocks.registry import get_mixer, mixer_names
from nas.errors import SpaceError

LAYER_KEYS = ("mixer", "kernel", "ratio", "groups")
DOWNSAMPLE_TYPES = ("conv", "in_block", "none")
HEAD_TYPES = ("classifier", "features")

_STAGE_SCALARS = ("stride", "layout", "norm", "act", "channel_mixer", "se", "layer_scale")
_INHERITABLE = (*LAYER_KEYS, "per_layer", "downsample", "layout", "norm", "act", "channel_mixer", "se",
                "layer_scale", "mixer_options")


@dataclass(frozen=True)
class ConvSpec:
    """A fixed conv unit of the skeleton (stem or downsample)."""

    kernel: int
    stride: int
    norm: str
    act: str
    bias: bool | None = None
    norm_position: str = "post"

    @property
    def padding(self) -> int:
        """Patchify convs (kernel == stride) use no padding; others pad to keep 'same' alignment."""
        return 0 if self.kernel == self.stride else (self.kernel - 1) // 2


@dataclass(frozen=True)
class StageSpec:
    """Choices and fixed settings of one stage."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mixers: tuple[str, ...]
    kernels: tuple[int, ...]
    ratios: tuple[float, ...]
    groups: tuple[int, ...]
    per_layer: frozenset[str]
    stride: int
    downsample: str
    down: ConvSpec | None
    layout: str
    norm: str
    act: str
    channel_mixer: str
    se: float
    layer_scale: float | None
    mixer_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def layer_choices(self, key: str) -> tuple:
        """The choice list of a layer key."""
        return {"mixer": self.mixers, "kernel": self.kernels, "ratio": self.ratios, "groups": self.groups}[key]

    def mixer_choices(self, index: int) -> tuple[str, ...]:
        """Mixers allowed at layer ``index`` (a stride-carrying first layer cannot be skipped)."""
        if index == 0 and self.downsample == "in_block":
            return self._first_mixers
        return self.mixers

    @cached_property
    def _first_mixers(self) -> tuple[str, ...]:
        return tuple(m for m in self.mixers if m != "skip")

    def options_for(self, mixer: str) -> tuple[tuple[str, Any], ...]:
        """Mixer options as sorted (key, value) pairs, defaults filled in."""
        if mixer == "skip":
            return ()
        merged = dict(get_mixer(mixer).options)
        merged.update(self.mixer_options.get(mixer, {}))
        return tuple(sorted(merged.items()))


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


@dataclass(frozen=True, eq=False)
class SpaceSpec:
    """The parsed, validated content of a space file (SearchSpace adds sampling and arch handling)."""

    name: str
    dims: int
    in_channels: int
    resolutions: tuple[int, ...]
    stem_widths: tuple[int, ...]
    stem: ConvSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    drop_path: float
    description: str
    source: str
    raw: dict = field(repr=False, default_factory=dict)


class _Reader:
    """Validation helpers that raise SpaceError naming file, key path and what is allowed."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, msg: str) -> SpaceError:
        return SpaceError(f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}")

    def mapping(self, node: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(node, dict):
            raise self.fail(path, f"expected a mapping with keys {', '.join(allowed)}, got {type(node).__name__}")
        for key in node:
            if key not in allowed:
                raise self.fail(f"{path}.{key}" if path else str(key),
                                f"unknown key; allowed: {', '.join(allowed)}")
        for key in required:
            if key not in node:
                raise self.fail(f"{path}.{key}" if path else key, "missing (required)")
        return node

    def number(self, value: Any, path: str, kind: type, lo: float | None = None, hi: float | None = None):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int and ok and float(value) != int(value):
            ok = False
        if not ok:
            raise self.fail(path, f"{value!r} is not {'an integer' if kind is int else 'a number'}")
        value = kind(value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise self.fail(path, f"{value!r} out of range; must be {rng}")
        return value

    def word(self, value: Any, path: str, allowed: tuple[str, ...] | list[str], what: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(path, f"{value!r} is not {what}; choose from {', '.join(allowed)}")
        return value

    def choices(self, value: Any, path: str, item) -> tuple:
        """A scalar or a non-empty list, each item validated by ``item(value, path)``; duplicates removed."""
        if isinstance(value, dict) and set(value) <= {"min", "max", "step"}:
            self.mapping(value, path, ("min", "max", "step"), ("min", "max"))
            lo = self.number(value["min"], f"{path}.min", int, 1)
            hi = self.number(value["max"], f"{path}.max", int, lo)
            step = self.number(value.get("step", 1), f"{path}.step", int, 1)
            value = list(range(lo, hi + 1, step))
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(path, "empty choice list; give at least one value")
        out: list = []
        for i, v in enumerate(items):
            v = item(v, f"{path}[{i}]" if isinstance(value, list) else path)
            if v not in out:
                out.append(v)
        return tuple(out)


def _ratio(r: _Reader):
    def item(v, p):
        x = r.number(v, p, float, 0.0)
        if x <= 0:
            raise r.fail(p, f"{v!r} must be > 0")
        return int(x) if x == int(x) else x
    return item


def _conv_spec(r: _Reader, node: dict, path: str, default_kernel: int, default_stride: int, norm: str,
               act: str) -> ConvSpec:
    k = r.number(node.get("kernel", default_kernel), f"{path}.kernel", int, 1)
    s = r.number(node.get("stride", default_stride), f"{path}.stride", int, 1)
    nm = r.word(node.get("norm", norm), f"{path}.norm", NORMS, "a norm")
    ac = r.word(node.get("act", act), f"{path}.act", ACTS, "an activation")
    bias = node.get("bias")
    if bias is not None and not isinstance(bias, bool):
        raise r.fail(f"{path}.bias", f"{bias!r} is not true/false")
    pos = r.word(node.get("norm_position", "post"), f"{path}.norm_position", ("pre", "post"), "a norm position")
    return ConvSpec(k, s, nm, ac, bias, pos)


def _mixer_options(r: _Reader, node: Any, path: str) -> dict[str, dict[str, Any]]:
    if node is None:
        return {}
    names = [m for m in mixer_names() if m != "skip"]
    r.mapping(node, path, tuple(names))
    out = {}
    for m, opts in node.items():
        allowed = tuple(get_mixer(m).options)
        if not allowed:
            raise r.fail(f"{path}.{m}", f"mixer {m} takes no options")
        r.mapping(opts, f"{path}.{m}", allowed)
        for k, v in opts.items():
            default = get_mixer(m).options[k]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                v = r.number(v, f"{path}.{m}.{k}", type(default), 0)
            elif isinstance(default, str):
                if not isinstance(v, str):
                    raise r.fail(f"{path}.{m}.{k}", f"{v!r} is not a string")
            opts = {**opts, k: v}
        out[m] = dict(opts)
    return out


def parse_space(data: Any, source: str | Path = "<space>") -> SpaceSpec:
    """Validate a loaded YAML document and return its SpaceSpec; raises SpaceError naming the bad key."""
    r = _Reader(str(source))
    top = r.mapping(data, "", ("name", "description", "dims", "input", "defaults", "stem", "stages", "head",
                               "drop_path"), ("name", "input", "stem", "stages"))
    name = top["name"]
    if not isinstance(name, str) or not name.strip():
        raise r.fail("name", "must be a non-empty string")
    dims = r.number(top.get("dims", 2), "dims", int, 1, 2)
    inp = r.mapping(top["input"], "input", ("channels", "resolution", "length"), ("channels",))
    in_ch = r.number(inp["channels"], "input.channels", int, 1)
    size_key = "resolution" if dims == 2 else "length"
    other = "length" if dims == 2 else "resolution"
    if other in inp:
        raise r.fail(f"input.{other}", f"a {dims}D space takes input.{size_key}, not input.{other}")
    if size_key not in inp:
        raise r.fail(f"input.{size_key}", "missing (required)")
    resolutions = tuple(sorted(r.choices(inp[size_key], f"input.{size_key}",
                                         lambda v, p: r.number(v, p, int, 1))))

    defaults = r.mapping(top.get("defaults") or {}, "defaults", _INHERITABLE)
    stem_node = r.mapping(top["stem"], "stem", ("width", "kernel", "stride", "norm", "act", "bias"), ("width",))
    stem_widths = r.choices(stem_node["width"], "stem.width", lambda v, p: r.number(v, p, int, 1))
    stem = _conv_spec(r, stem_node, "stem", 3, 2, "bn", "relu")

    stages_node = top["stages"]
    if not isinstance(stages_node, list) or not stages_node:
        raise r.fail("stages", "must be a non-empty list of stages")
    all_mixers = mixer_names()
    stages: list[StageSpec] = []
    prev_widths = stem_widths
    for si, node in enumerate(stages_node):
        path = f"stages[{si}]"
        r.mapping(node, path, ("depth", "width", "stride", *_INHERITABLE), ("depth", "width"))
        merged = {**defaults, **node}

        def get(key, default, merged=merged):
            return merged.get(key, default)

        depths = tuple(sorted(r.choices(node["depth"], f"{path}.depth", lambda v, p: r.number(v, p, int, 1))))
        widths = r.choices(node["width"], f"{path}.width", lambda v, p: r.number(v, p, int, 1))
        mixers = r.choices(get("mixer", "dwconv"), f"{path}.mixer",
                           lambda v, p: r.word(v, p, all_mixers, "a mixer"))
        kernels = r.choices(get("kernel", 3), f"{path}.kernel", lambda v, p: r.number(v, p, int, 1))
        ratios = r.choices(get("ratio", 4), f"{path}.ratio", _ratio(r))
        groups = r.choices(get("groups", 1), f"{path}.groups", lambda v, p: r.number(v, p, int, 1))
        per_layer = get("per_layer", [])
        if not isinstance(per_layer, list):
            raise r.fail(f"{path}.per_layer", f"must be a list of keys from {', '.join(LAYER_KEYS)}")
        for i, k in enumerate(per_layer):
            r.word(k, f"{path}.per_layer[{i}]", LAYER_KEYS, "a per-layer key")
        if "skip" in mixers and "mixer" not in per_layer:
            raise r.fail(f"{path}.mixer", "'skip' is a per-layer choice; add mixer to per_layer")
        if mixers == ("skip",):
            raise r.fail(f"{path}.mixer", "a stage cannot consist of 'skip' only")
        stride = r.number(node.get("stride", 1), f"{path}.stride", int, 1)
        layout = r.word(get("layout", "metaformer"), f"{path}.layout", LAYOUTS, "a layout")
        norm = r.word(get("norm", "bn"), f"{path}.norm", NORMS, "a norm")
        act = r.word(get("act", "gelu"), f"{path}.act", ACTS, "an activation")
        cm = r.word(get("channel_mixer", "mlp"), f"{path}.channel_mixer", CHANNEL_MIXERS, "a channel mixer")
        se = r.number(get("se", 0), f"{path}.se", float, 0.0, 1.0)
        ls = get("layer_scale", None)
        ls = None if ls is None else r.number(ls, f"{path}.layer_scale", float, 0.0)
        mopts = _mixer_options(r, get("mixer_options", None), f"{path}.mixer_options")

        down_node = get("downsample", None)
        self_contained = all(m == "skip" or get_mixer(m).self_contained for m in mixers)
        if down_node is None:
            down_node = {"type": "in_block" if self_contained else ("conv" if stride > 1 or widths != prev_widths
                                                                     else "none")}
        if isinstance(down_node, str):
            down_node = {"type": down_node}
        r.mapping(down_node, f"{path}.downsample", ("type", "kernel", "norm", "act", "bias", "norm_position"))
        dtype = r.word(down_node.get("type", "conv"), f"{path}.downsample.type", DOWNSAMPLE_TYPES,
                       "a downsample type")
        down = None
        if dtype == "conv":
            down = _conv_spec(r, {**down_node, "stride": stride}, f"{path}.downsample",
                              3 if stride > 1 else 1, stride, norm, "none")
        elif dtype == "in_block":
            first = [m for m in mixers if m != "skip"]
            bad = [m for m in first if not get_mixer(m).self_contained]
            if bad:
                raise r.fail(f"{path}.downsample", f"in_block needs self-contained mixers (mbconv) in the first "
                                                   f"layer; {', '.join(bad)} cannot change channels or stride")
        else:  # none
            if stride != 1:
                raise r.fail(f"{path}.downsample", f"type none cannot carry stride {stride}; use conv or in_block")
            if not (len(widths) == 1 and tuple(prev_widths) == widths):
                raise r.fail(f"{path}.width", f"downsample none keeps channels: width must be fixed and equal to "
                                              f"the previous width {list(prev_widths)}")
        for m in mixers:
            if m != "skip" and dims not in get_mixer(m).dims:
                raise r.fail(f"{path}.mixer", f"{m} has no {dims}D form")
        stages.append(StageSpec(depths, widths, mixers, kernels, ratios, groups, frozenset(per_layer), stride,
                                dtype, down, layout, norm, act, cm, se, ls, mopts))
        prev_widths = widths

    head_node = r.mapping(top.get("head") or {}, "head",
                          ("type", "classes", "pre", "pool", "norm", "post", "dropout", "out_indices"))
    htype = r.word(head_node.get("type", "classifier"), "head.type", HEAD_TYPES, "a head type")
    classes = r.number(head_node.get("classes", 1000), "head.classes", int, 1)
    pre = post = None
    if head_node.get("pre") is not None:
        p = r.mapping(head_node["pre"], "head.pre", ("width", "norm", "act"), ("width",))
        pre = (r.number(p["width"], "head.pre.width", int, 1), r.word(p.get("norm", "bn"), "head.pre.norm", NORMS,
               "a norm"), r.word(p.get("act", "relu"), "head.pre.act", ACTS, "an activation"))
    if head_node.get("pool", "avg") != "avg":
        raise r.fail("head.pool", f"{head_node['pool']!r} is not a pooling; choose from avg")
    hnorm = r.word(head_node.get("norm", "none"), "head.norm", ("ln", "none"), "a head norm")
    if head_node.get("post") is not None:
        p = r.mapping(head_node["post"], "head.post", ("width", "act", "bias"), ("width",))
        post = (r.number(p["width"], "head.post.width", int, 1),
                r.word(p.get("act", "relu"), "head.post.act", ACTS, "an activation"), bool(p.get("bias", True)))
    dropout = r.number(head_node.get("dropout", 0.0), "head.dropout", float, 0.0, 1.0)
    out_idx = head_node.get("out_indices")
    if out_idx is not None:
        out_idx = r.choices(out_idx, "head.out_indices", lambda v, p: r.number(v, p, int, 0, len(stages) - 1))
    head = HeadSpec(htype, classes, pre, hnorm, post, dropout, out_idx)
    drop_path = r.number(top.get("drop_path", 0.0), "drop_path", float, 0.0, 1.0)
    desc = top.get("description", "")
    return SpaceSpec(name.strip(), dims, in_ch, resolutions, stem_widths, stem, tuple(stages), head, drop_path,
                     str(desc).strip(), str(source), data)
