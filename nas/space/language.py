"""The search-space language: a validated, declarative YAML description of a space of backbones.

A space has an input (channels; resolution choices in 2D, length choices in 1D), a stem, N stages and a
head. A stage lists choices for depth and width, and for each layer's mixer, kernel, ratio (MLP ratio, or
expand ratio for mbconv) and groups; keys named in ``per_layer`` vary layer by layer (FBNet-style),
the others are chosen once per stage (OFA-style depth/width). Fixed values are one-element lists, or
plain scalars; ``{layers: [v0, v1, ...]}`` fixes a layer key layer by layer (one value per layer up to the
largest depth), so mixed expand ratios need no extra stages. Every error names the file, the key path and
what is allowed.

Beyond the layer keys:
- stem: one conv (``kernel``, ``stride``, ``padding``, ``norm``, ``act``, ``bias``), or ``ops``: a list of
  ``{op: conv|maxpool|avgpool, kernel, stride, padding}`` (convs also take ``width`` -- default the stem
  width, which the last conv always outputs -- ``norm``, ``act``, ``bias``);
- downsample convs take an explicit ``padding`` too (default: none for patchify, else (k-1)//2);
- ``mixer_options`` per mixer (e.g. mbconv's squeeze-excite rules and ``expand_conv``; basic/bottleneck's
  ``shortcut`` and ``act_after_sum``), checked against each mixer's declared options and words;
- ``channel_mixer_options``: ``bias``, ``norm`` after the first linear (none, bn, ln), ``act``;
- head: ``norm`` (ln, bn) at ``norm_at: pooled|map``; ``post`` takes ``norm`` and ``order``
  (``norm_act`` or ``act_norm``) after its hidden linear.
Settings that would be ignored are refused: ``se`` on a stage without squeeze-excite mixers, options of
a mixer the stage does not use, kernels a mixer cannot build, inputs too small for the skeleton.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from nas.blocks.costs import ACTS, NORMS
from nas.blocks.layer import CHANNEL_MIXERS, CM_OPTIONS, LAYOUTS
from nas.blocks.registry import get_mixer, mixer_names
from nas.blocks.skeleton import STEM_OPS, ConvSpec, HeadSpec, StemOp, StemSpec  # noqa: F401  (the language's units)
from nas.errors import SpaceError

LAYER_KEYS = ("mixer", "kernel", "ratio", "groups")
DOWNSAMPLE_TYPES = ("conv", "in_block", "none")
HEAD_TYPES = ("classifier", "features")

_INHERITABLE = (*LAYER_KEYS, "per_layer", "downsample", "layout", "norm", "act", "channel_mixer", "se",
                "layer_scale", "mixer_options", "channel_mixer_options")


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
    fixed: tuple[tuple[str, tuple], ...] = ()
    """Per-layer fixed values: (key, value of layer 0, 1, ...) for keys written as ``{layers: [...]}``."""
    cm_options: tuple[tuple[str, Any], ...] = ()
    """Channel-mixer options that differ from the defaults (see nas.blocks.layer.CM_OPTIONS)."""

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def fixed_values(self, key: str) -> tuple | None:
        """The per-layer fixed values of a layer key, or None when the key is a free choice."""
        for k, v in self.fixed:
            if k == key:
                return v
        return None

    def layer_allowed(self, key: str, index: int) -> tuple:
        """The values layer ``index`` may take for a layer key (one value where it is fixed per layer)."""
        if key == "mixer":
            return self.mixer_choices(index)
        vals = self.fixed_values(key)
        return (vals[index],) if vals is not None else self.layer_choices(key)

    def layer_choices(self, key: str) -> tuple:
        """The choice list of a layer key."""
        return {"mixer": self.mixers, "kernel": self.kernels, "ratio": self.ratios, "groups": self.groups}[key]

    def mixer_choices(self, index: int) -> tuple[str, ...]:
        """Mixers allowed at layer ``index`` (a stride-carrying first layer cannot be skipped)."""
        vals = self.fixed_values("mixer")
        if vals is not None:
            return (vals[index],)
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
        defn = get_mixer(mixer)
        merged = dict(defn.options)
        for k, v in self.mixer_options.get(mixer, {}).items():
            if k in defn.options or v != defn.optional[k]:  # optional ones only when not the default
                merged[k] = v
        return tuple(sorted(merged.items()))


@dataclass(frozen=True, eq=False)
class SpaceSpec:
    """The parsed, validated content of a space file (SearchSpace adds sampling and arch handling)."""

    name: str
    dims: int
    in_channels: int
    resolutions: tuple[int, ...]
    stem_widths: tuple[int, ...]
    stem: ConvSpec | StemSpec
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

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"{value!r} is not true/false")
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
    if bias is not None:
        r.boolean(bias, f"{path}.bias")
    pos = r.word(node.get("norm_position", "post"), f"{path}.norm_position", ("pre", "post"), "a norm position")
    pad = node.get("padding")
    if pad is not None:
        pad = r.number(pad, f"{path}.padding", int, 0, k - 1)
    return ConvSpec(k, s, nm, ac, bias, pos, pad)


def _stem_spec(r: _Reader, node: dict) -> ConvSpec | StemSpec:
    """A one-conv stem (kernel, stride, ... at the top level) or a list of ``ops``."""
    if "ops" not in node:
        return _conv_spec(r, node, "stem", 3, 2, "bn", "relu")
    extra = [k for k in node if k not in ("width", "ops")]
    if extra:
        raise r.fail(f"stem.{extra[0]}", "a stem with ops takes only width and ops; put conv settings in an op")
    ops_node = node["ops"]
    if not isinstance(ops_node, list) or not ops_node:
        raise r.fail("stem.ops", "must be a non-empty list of ops (conv, maxpool, avgpool)")
    ops = []
    for i, o in enumerate(ops_node):
        p = f"stem.ops[{i}]"
        if not isinstance(o, dict):
            raise r.fail(p, "expected a mapping with op, kernel, stride, ...")
        kind = r.word(o.get("op", "conv"), f"{p}.op", STEM_OPS, "a stem op")
        keys = ("op", "kernel", "stride", "padding") + (("width", "norm", "act", "bias") if kind == "conv" else ())
        r.mapping(o, p, keys, ("kernel",))
        k = r.number(o["kernel"], f"{p}.kernel", int, 1)
        st = r.number(o.get("stride", 1), f"{p}.stride", int, 1)
        pad = o.get("padding")
        if pad is not None:
            pad = r.number(pad, f"{p}.padding", int, 0, k - 1 if kind == "conv" else k // 2)
        elif kind != "conv" and k % 2 == 0:
            raise r.fail(f"{p}.padding", f"a {kind} of even kernel {k} needs an explicit padding (at most {k // 2})")
        if kind != "conv":
            ops.append(StemOp(kind, k, st, pad))
            continue
        w = o.get("width")
        if w is not None:
            w = r.number(w, f"{p}.width", int, 1)
        bias = o.get("bias")
        if bias is not None:
            r.boolean(bias, f"{p}.bias")
        ops.append(StemOp("conv", k, st, pad, w, r.word(o.get("norm", "bn"), f"{p}.norm", NORMS, "a norm"),
                          r.word(o.get("act", "relu"), f"{p}.act", ACTS, "an activation"), bias))
    if ops[0].op != "conv":
        raise r.fail("stem.ops[0].op", "a stem starts with a conv")
    convs = [i for i, o in enumerate(ops) if o.op == "conv"]
    if ops[convs[-1]].width is not None:
        raise r.fail(f"stem.ops[{convs[-1]}].width", "the last conv outputs the stem width; leave its width out")
    return StemSpec(tuple(ops))


def _mixer_options(r: _Reader, node: Any, path: str) -> dict[str, dict[str, Any]]:
    if node is None:
        return {}
    names = [m for m in mixer_names() if m != "skip"]
    r.mapping(node, path, tuple(names))
    out = {}
    for m, opts in node.items():
        defn = get_mixer(m)
        allowed = tuple(defn.all_options)
        if not allowed:
            raise r.fail(f"{path}.{m}", f"mixer {m} takes no options")
        r.mapping(opts, f"{path}.{m}", allowed)
        clean = {}
        for k, v in opts.items():
            default, p = defn.default(k), f"{path}.{m}.{k}"
            if isinstance(default, bool):
                v = r.boolean(v, p)
            elif isinstance(default, (int, float)):
                v = r.number(v, p, type(default), 0)
            elif k in defn.choices:
                v = r.word(v, p, defn.choices[k], f"a {k} of {m}")
            elif not isinstance(v, str):
                raise r.fail(p, f"{v!r} is not a string")
            clean[k] = v
        out[m] = clean
    return out


def _cm_options(r: _Reader, node: Any, path: str) -> tuple[tuple[str, Any], ...]:
    """Channel-mixer options (bias, norm, act); only values that differ from the defaults are kept."""
    if node is None:
        return ()
    r.mapping(node, path, tuple(CM_OPTIONS))
    out = {}
    if "bias" in node:
        out["bias"] = r.boolean(node["bias"], f"{path}.bias")
    if "norm" in node:
        out["norm"] = r.word(node["norm"], f"{path}.norm", ("none", "bn", "ln"), "an MLP norm")
    if "act" in node:
        out["act"] = r.word(node["act"], f"{path}.act", ACTS, "an activation")
    return tuple(sorted((k, v) for k, v in out.items() if v != CM_OPTIONS[k]))


def _layer_key(r: _Reader, value: Any, path: str, item, depths: tuple[int, ...], key: str):
    """A layer key's choices, or per-layer fixed values written ``{layers: [v0, v1, ...]}``.

    Returns (choices, fixed values or None)."""
    if isinstance(value, dict) and "layers" in value:
        r.mapping(value, path, ("layers",))
        vals = value["layers"]
        if not isinstance(vals, list) or not vals:
            raise r.fail(f"{path}.layers", "must be a non-empty list with one value per layer")
        if len(vals) != max(depths):
            raise r.fail(f"{path}.layers", f"gives {len(vals)} values; the stage's largest depth is {max(depths)}")
        fixed = tuple(item(v, f"{path}.layers[{i}]") for i, v in enumerate(vals))
        if key == "mixer" and "skip" in fixed:
            raise r.fail(f"{path}.layers", "'skip' cannot be a fixed layer value")
        choices: list = []
        for v in fixed:
            if v not in choices:
                choices.append(v)
        return tuple(choices), fixed
    return r.choices(value, path, item), None


def _check_layer_keys_used(r: _Reader, node: dict, path: str, used: list[str], cm: str) -> None:
    """Layer keys a stage sets itself must reach some layer (inherited defaults may not apply everywhere)."""
    defs = [get_mixer(m) for m in used]
    if "kernel" in node and not any(d.uses_kernel for d in defs):
        raise r.fail(f"{path}.kernel", f"no mixer of this stage takes a kernel ({', '.join(used)})")
    if "groups" in node and node["groups"] not in (1, [1]) and not any(d.self_contained for d in defs):
        raise r.fail(f"{path}.groups", f"groups apply to self-contained mixers "
                                       f"({', '.join(m for m in mixer_names() if m != 'skip' and get_mixer(m).self_contained)}); "
                                       f"this stage has {', '.join(used)}")
    if "ratio" in node and cm == "none" and not any(d.self_contained for d in defs):
        raise r.fail(f"{path}.ratio", "this stage has no channel mixer (channel_mixer none) and no self-contained "
                                      "mixer, so no layer uses a ratio")


def _se_mixers() -> list[str]:
    return [m for m in mixer_names() if m != "skip" and get_mixer(m).has_se]


def _check_defaults_used(r: _Reader, defaults: dict, stages: list[StageSpec]) -> None:
    """Space-wide defaults that no stage can use are refused rather than ignored."""
    used = {m for st in stages for m in st.mixers if m != "skip"}
    for m in (defaults.get("mixer_options") or {}):
        if m not in used:
            raise r.fail(f"defaults.mixer_options.{m}", f"mixer {m} is used by no stage (mixers: {', '.join(sorted(used))})")
    if defaults.get("se") and not any(st.se for st in stages):
        raise r.fail("defaults.se", f"no stage has a mixer with squeeze-excite; se applies to: {', '.join(_se_mixers())}")


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
    stem_node = r.mapping(top["stem"], "stem", ("width", "kernel", "stride", "padding", "norm", "act", "bias", "ops"),
                          ("width",))
    stem_widths = r.choices(stem_node["width"], "stem.width", lambda v, p: r.number(v, p, int, 1))
    stem = _stem_spec(r, stem_node)

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
        items = {"mixer": lambda v, p: r.word(v, p, all_mixers, "a mixer"),
                 "kernel": lambda v, p: r.number(v, p, int, 1), "ratio": _ratio(r),
                 "groups": lambda v, p: r.number(v, p, int, 1)}
        defaults_of = {"mixer": "dwconv", "kernel": 3, "ratio": 4, "groups": 1}
        layer_vals, fixed = {}, {}
        for key in LAYER_KEYS:
            layer_vals[key], fx = _layer_key(r, get(key, defaults_of[key]), f"{path}.{key}", items[key], depths, key)
            if fx is not None:
                fixed[key] = fx
        mixers, kernels, ratios, groups = (layer_vals[k] for k in LAYER_KEYS)
        per_layer = get("per_layer", [])
        if not isinstance(per_layer, list):
            raise r.fail(f"{path}.per_layer", f"must be a list of keys from {', '.join(LAYER_KEYS)}")
        for i, k in enumerate(per_layer):
            r.word(k, f"{path}.per_layer[{i}]", LAYER_KEYS, "a per-layer key")
        per_layer = [*per_layer, *(k for k in fixed if k not in per_layer)]  # fixed values vary by layer
        for m in mixers:
            if m != "skip" and get_mixer(m).odd_kernel and get_mixer(m).uses_kernel:
                even = [k for k in kernels if k % 2 == 0]
                if even:
                    raise r.fail(f"{path}.kernel", f"{m} builds only odd kernels ('same' padding); "
                                                   f"{even[0]} is even")
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
        used = [m for m in mixers if m != "skip"]
        if se and not any(get_mixer(m).has_se for m in used):
            if "se" in node:
                raise r.fail(f"{path}.se", f"no mixer of this stage has squeeze-excite ({', '.join(used)}); "
                                           f"se applies to: {', '.join(_se_mixers())}")
            se = 0.0  # inherited from defaults: it applies to the stages whose mixers have SE
        for m in node.get("mixer_options") or {}:
            if m not in used:
                raise r.fail(f"{path}.mixer_options.{m}", f"mixer {m} is not used in this stage "
                                                          f"(mixers: {', '.join(used)})")
        mopts = {m: o for m, o in mopts.items() if m in used}
        _check_layer_keys_used(r, node, path, used, cm)
        cm_opts = _cm_options(r, get("channel_mixer_options", None), f"{path}.channel_mixer_options")
        if "channel_mixer_options" in node and (cm == "none" or all(get_mixer(m).self_contained for m in used)):
            raise r.fail(f"{path}.channel_mixer_options", "this stage has no channel mixer (channel_mixer none, "
                                                          "or only self-contained mixers)")

        down_node = get("downsample", None)
        self_contained = all(m == "skip" or get_mixer(m).self_contained for m in mixers)
        if down_node is None:
            down_node = {"type": "in_block" if self_contained else ("conv" if stride > 1 or widths != prev_widths
                                                                     else "none")}
        if isinstance(down_node, str):
            down_node = {"type": down_node}
        r.mapping(down_node, f"{path}.downsample", ("type", "kernel", "padding", "norm", "act", "bias",
                                                     "norm_position"))
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
                                dtype, down, layout, norm, act, cm, se, ls, mopts, tuple(fixed.items()), cm_opts))
        prev_widths = widths
    _check_defaults_used(r, defaults, stages)

    head_node = r.mapping(top.get("head") or {}, "head",
                          ("type", "classes", "pre", "pool", "norm", "norm_at", "post", "dropout", "out_indices"))
    htype = r.word(head_node.get("type", "classifier"), "head.type", HEAD_TYPES, "a head type")
    classes = r.number(head_node.get("classes", 1000), "head.classes", int, 1)
    pre = post = None
    if head_node.get("pre") is not None:
        p = r.mapping(head_node["pre"], "head.pre", ("width", "norm", "act"), ("width",))
        pre = (r.number(p["width"], "head.pre.width", int, 1), r.word(p.get("norm", "bn"), "head.pre.norm", NORMS,
               "a norm"), r.word(p.get("act", "relu"), "head.pre.act", ACTS, "an activation"))
    if head_node.get("pool", "avg") != "avg":
        raise r.fail("head.pool", f"{head_node['pool']!r} is not a pooling; choose from avg")
    hnorm = r.word(head_node.get("norm", "none"), "head.norm", ("ln", "bn", "none"), "a head norm")
    norm_at = r.word(head_node.get("norm_at", "pooled"), "head.norm_at", ("pooled", "map"), "a head norm place")
    if "norm_at" in head_node and hnorm == "none":
        raise r.fail("head.norm_at", "head.norm is none; set head.norm (ln or bn) or leave norm_at out")
    post_norm, post_order = "none", "norm_act"
    if head_node.get("post") is not None:
        p = r.mapping(head_node["post"], "head.post", ("width", "act", "bias", "norm", "order"), ("width",))
        post = (r.number(p["width"], "head.post.width", int, 1),
                r.word(p.get("act", "relu"), "head.post.act", ACTS, "an activation"),
                r.boolean(p.get("bias", True), "head.post.bias"))
        post_norm = r.word(p.get("norm", "none"), "head.post.norm", ("none", "bn", "ln"), "a norm")
        post_order = r.word(p.get("order", "norm_act"), "head.post.order", ("norm_act", "act_norm"),
                            "an order after the hidden linear")
    dropout = r.number(head_node.get("dropout", 0.0), "head.dropout", float, 0.0, 1.0)
    out_idx = head_node.get("out_indices")
    if out_idx is not None:
        out_idx = r.choices(out_idx, "head.out_indices", lambda v, p: r.number(v, p, int, 0, len(stages) - 1))
    head = HeadSpec(htype, classes, pre, hnorm, post, dropout, out_idx, norm_at, post_norm, post_order)
    drop_path = r.number(top.get("drop_path", 0.0), "drop_path", float, 0.0, 1.0)
    desc = top.get("description", "")
    return SpaceSpec(name.strip(), dims, in_ch, resolutions, stem_widths, stem, tuple(stages), head, drop_path,
                     str(desc).strip(), str(source), data)
