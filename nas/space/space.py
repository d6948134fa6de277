"""SearchSpace: a parsed space plus everything done with its points (make, sample, min/max, mutate, encode)."""
from __future__ import annotations

import itertools
import math
import random
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.blocks.layer import LayerCfg, check_layer
from nas.blocks.registry import get_mixer
from nas.errors import SpaceError
from nas.io import read_yaml
from nas.paths import builtin_dir
from nas.plugins import load as load_part
from nas.space.arch import Arch, LayerChoice, StageChoice
from nas.space.language import LAYER_KEYS, SpaceSpec, StageSpec, parse_space

if TYPE_CHECKING:
    import numpy as np


class SearchSpace:
    """A validated space of backbones; every arch it yields can be built and counted."""

    def __init__(self, spec: SpaceSpec, source_path: Path | None = None):
        self.spec = spec
        self.source_path = source_path
        self._count_cache: dict = {}  # nas.count's per-unit memo (keys hold choices and shapes)
        self._canon_cache: dict = {}
        self._check_all_layers()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dims(self) -> int:
        return self.spec.dims

    @property
    def stages(self) -> tuple[StageSpec, ...]:
        return self.spec.stages

    # ---- the SpaceFamily protocol: description, networks, costs, supernet -----------------------------
    family = "yaml"

    @property
    def description(self) -> str:
        return self.spec.description

    def structure(self) -> int:
        """The number of stages."""
        return len(self.stages)

    def build(self, arch: Arch, features_only: bool = False, out_indices: tuple[int, ...] | None = None,
              drop_path: float | None = None) -> Any:
        """The standard network of ``arch`` (nas.models.build.Network)."""
        return load_part("nas.models.build:build_network")(arch, features_only, out_indices, drop_path)

    def count(self, arch: Arch) -> Any:
        """Params, MACs and memory of ``arch`` (nas.cost.count, memoised per unit in this space)."""
        return load_part("nas.cost.count:count_arch")(arch)

    def supernet(self, seed: int = 0, init: bool = True, sharing: str = "mlp") -> Any:
        """The weight-sharing supernet over the space (nas.supernet.Supernet; ``sharing``: what the mixers
        of a layer slot share, ``mlp`` or ``none``)."""
        return load_part("nas.supernet.supernet:Supernet")(self, seed=seed, init=init, sharing=sharing)

    def checkpoint_state(self) -> dict[str, Any]:
        """The YAML content itself, so a checkpoint rebuilds the space without the file."""
        return {"name": self.spec.name, "raw": self.spec.raw, "source": self.spec.source}

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.stages)} stages, ~10^{self.log10_size():.1f} archs)"

    # ---- validation ------------------------------------------------------------------------------
    def _stage_shapes(self, resolution: int) -> list[tuple[int, ...]]:
        """Spatial shape at each stage's layers for an input resolution (strides are fixed by the space)."""
        sp = self.spec.stem.out_spatial((resolution,) * self.dims)
        shapes = []
        for stage in self.stages:
            if stage.downsample == "conv":
                sp = stage.down.out_spatial(sp)
            shapes.append(sp)
            if stage.downsample == "in_block":
                sp = tuple((s + stage.stride - 1) // stage.stride for s in sp)
        return shapes

    def _check_sizes(self) -> None:
        """Every feature map must keep at least one position at the smallest input size."""
        from nas.space.language import StemSpec

        spec = self.spec
        r = min(spec.resolutions)
        stem = spec.stem
        steps = ([(f"stem.ops[{i}]", op) for i, op in enumerate(stem.ops)] if isinstance(stem, StemSpec)
                 else [("stem", stem)])
        for si, st in enumerate(self.stages):
            if st.downsample == "conv":
                steps.append((f"stages[{si}].downsample", st.down))
            elif st.downsample == "in_block" and st.stride > 1:
                steps.append((f"stages[{si}]", st.stride))
        sizes = (r,) * self.dims
        for where, unit in steps:
            if isinstance(unit, int):  # a stride-carrying first layer: 'same' padding, ceil division
                sizes = tuple((x + unit - 1) // unit for x in sizes)
                continue
            sizes = unit.out_spatial(sizes)
            if min(sizes) < 1:
                what = "input.resolution" if self.dims == 2 else "input.length"
                raise SpaceError(f"{spec.source}: {what}: {r} is too small; the feature map vanishes at {where}")

    def _check_all_layers(self) -> None:
        """Every combination of a stage's choices must give a buildable layer; fail early naming it."""
        self._check_sizes()
        src = self.spec.source
        shapes = [self._stage_shapes(r) for r in (min(self.spec.resolutions), max(self.spec.resolutions))]
        for si, stage in enumerate(self.stages):
            for w, m, k, r, g in itertools.product(stage.widths, stage.mixers, stage.kernels, stage.ratios,
                                                   stage.groups):
                if m == "skip":
                    continue
                for shape in shapes:
                    lc = self._canon_layer(stage, m, k, r, g)
                    cfg = LayerCfg(mixer=m, cin=w, cout=w, spatial=shape[si], kernel=lc.kernel or 0,
                                   ratio=float(lc.ratio or 0), groups=lc.groups, dims=self.dims, norm=stage.norm,
                                   act=stage.act, layout=stage.layout, channel_mixer=stage.channel_mixer,
                                   se=stage.se, layer_scale=stage.layer_scale, opts=stage.options_for(m),
                                   cm_opts=stage.cm_options)
                    why = check_layer(cfg)
                    if why:
                        raise SpaceError(f"{src}: stages[{si}]: width {w}, mixer {m}, kernel {k}: {why}")

    # ---- making archs ----------------------------------------------------------------------------
    def _canon_layer(self, stage: StageSpec, mixer: str, kernel: Any, ratio: Any, groups: Any) -> LayerChoice:
        key = (id(stage), mixer, kernel, ratio, groups)
        hit = self._canon_cache.get(key)
        if hit is None:
            hit = self._canon_cache[key] = self._canon_layer_uncached(stage, mixer, kernel, ratio, groups)
        return hit

    @staticmethod
    def _canon_layer_uncached(stage: StageSpec, mixer: str, kernel: Any, ratio: Any, groups: Any) -> LayerChoice:
        if mixer == "skip":
            return LayerChoice("skip", None, None, 1)
        d = get_mixer(mixer)
        k = kernel if d.uses_kernel else None
        r = ratio if (d.self_contained or stage.channel_mixer != "none") else None
        if r is not None:
            r = int(r) if float(r) == int(r) else float(r)
        g = groups if d.self_contained else 1
        return LayerChoice(mixer, k, r, g)

    def make_arch(self, data: dict[str, Any], source: str = "<arch>") -> Arch:
        """Validate plain data against this space and return the canonical Arch (errors name the field)."""
        def fail(path: str, msg: str) -> SpaceError:
            return SpaceError(f"{source}: {path}: {msg}")

        if not isinstance(data, dict):
            raise SpaceError(f"{source}: an arch is a mapping with resolution, stem and stages")
        if data.get("space", self.name) != self.name:
            raise fail("space", f"arch is of space {data.get('space')!r}, not {self.name!r}")
        res = data.get("resolution", max(self.spec.resolutions))
        if res not in self.spec.resolutions:
            raise fail("resolution", f"{res!r} not allowed; choose from {list(self.spec.resolutions)}")
        stem = data.get("stem", self.spec.stem_widths[0] if len(self.spec.stem_widths) == 1 else None)
        if stem not in self.spec.stem_widths:
            raise fail("stem", f"{stem!r} not allowed; choose from {list(self.spec.stem_widths)}")
        stages_in = data.get("stages")
        if not isinstance(stages_in, list) or len(stages_in) != len(self.stages):
            raise fail("stages", f"expected a list of {len(self.stages)} stages")
        stages = []
        for si, (st, node) in enumerate(zip(self.stages, stages_in)):
            p = f"stages[{si}]"
            if not isinstance(node, dict):
                raise fail(p, "expected a mapping with depth, width, layers")
            layers_in = node.get("layers")
            depth = node.get("depth", len(layers_in) if isinstance(layers_in, list) else None)
            if depth not in st.depths:
                raise fail(f"{p}.depth", f"{depth!r} not allowed; choose from {list(st.depths)}")
            width = node.get("width", st.widths[0] if len(st.widths) == 1 else None)
            if width not in st.widths:
                raise fail(f"{p}.width", f"{width!r} not allowed; choose from {list(st.widths)}")
            if not isinstance(layers_in, list) or len(layers_in) != depth:
                raise fail(f"{p}.layers", f"expected a list of {depth} layers (the depth)")
            layers = []
            for li, ln in enumerate(layers_in):
                lp = f"{p}.layers[{li}]"
                if not isinstance(ln, dict):
                    raise fail(lp, "expected a mapping with mixer, kernel, ratio, groups")
                vals = {}
                for key in LAYER_KEYS:
                    allowed = st.layer_allowed(key, li)
                    v = ln.get(key, allowed[0] if len(allowed) == 1 else None)
                    if v is None and key in ("kernel", "ratio") and ln.get("mixer") is not None:
                        v = allowed[0]  # unused by this mixer: canonicalised away below
                    if key == "groups" and v is None:
                        v = 1 if 1 in allowed else allowed[0]
                    if v not in allowed:
                        raise fail(f"{lp}.{key}", f"{v!r} not allowed; choose from {list(allowed)}")
                    vals[key] = v
                layers.append(self._canon_layer(st, vals["mixer"], vals["kernel"], vals["ratio"], vals["groups"]))
            for key in LAYER_KEYS:
                if key not in st.per_layer and len({getattr(lc, key) for lc in layers if lc.mixer != "skip"}) > 1:
                    raise fail(f"{p}.layers", f"{key} is chosen per stage in this space; all layers must agree")
            stages.append(StageChoice(depth, width, tuple(layers)))
        return Arch(self, res, stem, tuple(stages))

    def arch_from_dict(self, data: dict[str, Any], source: str = "<arch>") -> Arch:
        """Alias of make_arch (reads what Arch.to_dict writes; the 'id' and 'space_file' keys are ignored)."""
        data = {k: v for k, v in data.items() if k not in ("id", "space_file")}
        return self.make_arch(data, source)

    # ---- sampling --------------------------------------------------------------------------------
    def _sample_stage(self, st: StageSpec, rng: random.Random, depth: int | None = None,
                      width: int | None = None) -> StageChoice:
        rnd = rng.random

        def pick(choices: tuple) -> Any:
            return choices[0] if len(choices) == 1 else choices[int(rnd() * len(choices))]

        depth = pick(st.depths) if depth is None else depth
        width = pick(st.widths) if width is None else width
        per_layer = st.per_layer
        m0 = pick(st.mixer_choices(0)) if "mixer" not in per_layer else None
        k0 = pick(st.kernels) if "kernel" not in per_layer else None
        r0 = pick(st.ratios) if "ratio" not in per_layer else None
        g0 = pick(st.groups) if "groups" not in per_layer else None
        canon = self._canon_layer
        layers = []
        allowed = st.layer_allowed if st.fixed else None
        for i in range(depth):
            if allowed is not None:  # some keys are fixed per layer
                m = m0 if m0 is not None else pick(allowed("mixer", i))
                k = k0 if k0 is not None else pick(allowed("kernel", i))
                r = r0 if r0 is not None else pick(allowed("ratio", i))
                g = g0 if g0 is not None else pick(allowed("groups", i))
            else:
                m = m0 if m0 is not None else pick(st.mixer_choices(i) if i == 0 else st.mixers)
                k = k0 if k0 is not None else pick(st.kernels)
                r = r0 if r0 is not None else pick(st.ratios)
                g = g0 if g0 is not None else pick(st.groups)
            layers.append(canon(st, m, k, r, g))
        return StageChoice(depth, width, tuple(layers))

    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> Arch:
        """A uniformly random arch (each choice uniform); the same seed gives the same arch."""
        rng = rng or random.Random(seed)
        res = self.spec.resolutions[int(rng.random() * len(self.spec.resolutions))]
        stem = self.spec.stem_widths[int(rng.random() * len(self.spec.stem_widths))]
        stages = tuple(self._sample_stage(st, rng) for st in self.stages)
        return Arch(self, res, stem, stages)

    def sample_many(self, n: int, seed: int = 0) -> list[Arch]:
        """n archs from one seeded stream."""
        rng = random.Random(seed)
        return [self.sample(rng=rng) for _ in range(n)]

    def _extreme(self, largest: bool, rng: random.Random | None = None) -> Arch:
        from nas.blocks.layer import layer_cost
        from nas.space.resolve import resolve

        def stage_cost(arch: Arch, si: int) -> tuple[int, int]:
            """(MACs, params) of stage ``si``'s layers: the only part that differs between the candidates."""
            cs = [layer_cost(cfg) for cfg in resolve(arch).stages[si].layers]
            return sum(c.macs for c in cs), sum(c.params for c in cs)

        pick = max if largest else min
        stages = []
        for st in self.stages:
            kw = {k: pick(st.layer_choices(k)) for k in ("kernel", "ratio", "groups")}
            if not largest:
                kw["groups"] = max(st.groups)  # more groups: fewer MACs
            else:
                kw["groups"] = min(st.groups)
            depth = pick(st.depths)
            layers = tuple(self._canon_layer(st, st.mixer_choices(i)[0], *self._layer_kw(st, kw, i))
                           for i in range(depth))
            stages.append([depth, pick(st.widths), layers, kw])
        base = [StageChoice(d, w, ls) for d, w, ls, _ in stages]
        res, stem = pick(self.spec.resolutions), pick(self.spec.stem_widths)
        if rng is not None:  # mixers drawn uniformly (never 'skip' in the largest), numeric choices extreme
            for si, st in enumerate(self.stages):
                d, w, _, kw = stages[si]

                def draw(i: int, st: StageSpec = st) -> str:
                    ms = [m for m in st.mixer_choices(i) if not (largest and m == "skip")] or [st.mixer_choices(i)[0]]
                    return ms[int(rng.random() * len(ms))]

                shared = draw(0) if "mixer" not in st.per_layer else None
                base[si] = StageChoice(d, w, tuple(
                    self._canon_layer(st, shared or draw(i), *self._layer_kw(st, kw, i)) for i in range(d)))
            return Arch(self, res, stem, tuple(base))
        # mixers: per stage, the one with the fewest (most) MACs; 'skip' where allowed for the smallest
        for si, st in enumerate(self.stages):
            d, w, _, kw = stages[si]
            best = None
            for m in st.mixers:
                if m == "skip" and largest:
                    continue
                layers = tuple(self._canon_layer(st, m if m in st.mixer_choices(i) else st.mixer_choices(i)[0],
                                                 *self._layer_kw(st, kw, i)) for i in range(d))
                trial = list(base)
                trial[si] = StageChoice(d, w, layers)
                score = stage_cost(Arch(self, res, stem, tuple(trial)), si)
                if best is None or (score > best[0] if largest else score < best[0]):
                    best = (score, layers)
            base[si] = StageChoice(d, w, best[1])
        return Arch(self, res, stem, tuple(base))

    @staticmethod
    def _layer_kw(st: StageSpec, kw: dict, i: int) -> tuple:
        """(kernel, ratio, groups) of layer ``i`` from the stage-wide picks, fixed per-layer values first."""
        out = []
        for k in ("kernel", "ratio", "groups"):
            vals = st.fixed_values(k)
            out.append(vals[i] if vals is not None else kw[k])
        return tuple(out)

    def min(self, rng: random.Random | None = None) -> Arch:
        """The smallest arch: minimum depth, width, kernel, ratio, resolution and the cheapest mixers
        (``rng``: each layer's mixer drawn uniformly instead, for a sandwich whose mixers take turns)."""
        return self._extreme(False, rng)

    def max(self, rng: random.Random | None = None) -> Arch:
        """The largest arch: maximum of every numeric choice and the most expensive mixers
        (``rng``: each layer's mixer drawn uniformly instead, never 'skip')."""
        return self._extreme(True, rng)

    # ---- evolution -------------------------------------------------------------------------------
    def mutate(self, arch: Arch, prob: float = 0.1, seed: int | None = None,
               rng: random.Random | None = None) -> Arch:
        """Resample each choice with probability ``prob`` (at least one change when possible)."""
        rng = rng or random.Random(seed)
        for _ in range(20):
            res = rng.choice(self.spec.resolutions) if rng.random() < prob else arch.resolution
            stem = rng.choice(self.spec.stem_widths) if rng.random() < prob else arch.stem
            stages = []
            for st, ch in zip(self.stages, arch.stages):
                depth = rng.choice(st.depths) if rng.random() < prob else ch.depth
                width = rng.choice(st.widths) if rng.random() < prob else ch.width
                fresh = self._sample_stage(st, rng, depth, width)
                layers = []
                shared_flip = {k: rng.random() < prob for k in LAYER_KEYS if k not in st.per_layer}
                for i in range(depth):
                    old = ch.layers[i] if i < ch.depth else fresh.layers[i]
                    if old.mixer == "skip" and i == 0 and st.downsample == "in_block":
                        old = fresh.layers[i]
                    vals = {}
                    for k in LAYER_KEYS:
                        flip = shared_flip[k] if k in shared_flip else rng.random() < prob
                        ov = getattr(old, k)
                        if ov is None:  # a field the old mixer did not use: take the fresh draw
                            ov = getattr(fresh.layers[i], k) or st.layer_choices(k)[0]
                        vals[k] = getattr(fresh.layers[i], k) if flip else ov
                        if vals[k] is None:
                            vals[k] = st.layer_choices(k)[0]
                    if "mixer" not in st.per_layer:
                        vals["mixer"] = layers[0].mixer if layers else vals["mixer"]
                    for k in ("kernel", "ratio", "groups"):
                        if k not in st.per_layer and layers:
                            first = layers[0]
                            if getattr(first, k) is not None:
                                vals[k] = getattr(first, k)
                    layers.append(self._canon_layer(st, vals["mixer"], vals["kernel"], vals["ratio"],
                                                    vals["groups"]))
                stages.append(StageChoice(depth, width, tuple(layers)))
            child = self.make_arch(Arch(self, res, stem, tuple(stages)).to_dict())
            if child != arch or self.log10_size() == 0:
                return child
        return child

    def crossover(self, a: Arch, b: Arch, seed: int | None = None, rng: random.Random | None = None) -> Arch:
        """Uniform crossover at stage granularity (plus resolution and stem)."""
        rng = rng or random.Random(seed)
        res = (a if rng.random() < 0.5 else b).resolution
        stem = (a if rng.random() < 0.5 else b).stem
        stages = tuple((sa if rng.random() < 0.5 else sb) for sa, sb in zip(a.stages, b.stages))
        return Arch(self, res, stem, stages)

    # ---- encoding --------------------------------------------------------------------------------
    @lru_cache(maxsize=1)  # noqa: B019  (one space object, one layout)
    def _encoding_layout(self) -> list[tuple]:
        layout: list[tuple] = [("resolution",), ("stem",)]
        for si, st in enumerate(self.stages):
            layout += [("depth", si), ("width", si)]
            for li in range(st.max_depth):
                layout.append(("active", si, li))
                layout += [("mixer", si, li, m) for m in st.mixers] if len(st.mixers) > 1 else []
                for k in ("kernel", "ratio", "groups"):
                    if len(st.layer_choices(k)) > 1:
                        layout.append((k, si, li))
        return layout

    def encoding_names(self) -> list[str]:
        """Names of the columns of ``encode`` (for predictors and reports)."""
        return [":".join(str(p) for p in item) for item in self._encoding_layout()]

    def encode(self, arch: Arch) -> np.ndarray:
        """Fixed-length vector in [0, 1]: choice indices scaled to [0, 1], one-hot mixers, active flags."""
        def scaled(choices, v) -> float:
            if v is None or len(choices) < 2:
                return 0.0
            lo, hi = min(choices), max(choices)
            return (v - lo) / (hi - lo)

        out = []
        for item in self._encoding_layout():
            kind = item[0]
            if kind == "resolution":
                out.append(scaled(self.spec.resolutions, arch.resolution))
            elif kind == "stem":
                out.append(scaled(self.spec.stem_widths, arch.stem))
            else:
                st, ch = self.stages[item[1]], arch.stages[item[1]]
                if kind == "depth":
                    out.append(scaled(st.depths, ch.depth))
                elif kind == "width":
                    out.append(scaled(st.widths, ch.width))
                else:
                    li = item[2]
                    lc = ch.layers[li] if li < ch.depth else None
                    if kind == "active":
                        out.append(float(lc is not None and lc.mixer != "skip"))
                    elif kind == "mixer":
                        out.append(float(lc is not None and lc.mixer == item[3]))
                    else:
                        out.append(scaled(st.layer_choices(kind), getattr(lc, kind) if lc else None))
        import numpy as np  # here, so listing and parsing spaces need no numpy

        return np.asarray(out, dtype=np.float32)

    # ---- search parameters (the SpaceFamily protocol) -------------------------------------------------
    def search_choices(self) -> dict[str, list]:
        """One categorical search parameter per choice of the space (layer slots up to the maximum depth):
        ``resolution``, ``stem``, ``s<i>.depth``, ``s<i>.width``, ``s<i>.<key>`` (per stage) or
        ``s<i>.l<j>.<key>`` (per layer), only where there is more than one value."""
        d: dict[str, list] = {}
        if len(self.spec.resolutions) > 1:
            d["resolution"] = list(self.spec.resolutions)
        if len(self.spec.stem_widths) > 1:
            d["stem"] = list(self.spec.stem_widths)
        for si, st in enumerate(self.stages):
            if len(st.depths) > 1:
                d[f"s{si}.depth"] = list(st.depths)
            if len(st.widths) > 1:
                d[f"s{si}.width"] = list(st.widths)
            for key in LAYER_KEYS:
                if key in st.per_layer:
                    for li in range(st.max_depth):
                        ch = st.mixer_choices(li) if key == "mixer" else st.layer_choices(key)
                        if len(ch) > 1:
                            d[f"s{si}.l{li}.{key}"] = list(ch)
                else:
                    ch = st.mixer_choices(0) if key == "mixer" else st.layer_choices(key)
                    if len(ch) > 1:
                        d[f"s{si}.{key}"] = list(ch)
        return d

    def arch_from_params(self, params: dict[str, Any]) -> Arch:
        """The canonical arch of a set of search parameters (unused slots and fields are ignored)."""
        data: dict[str, Any] = {"resolution": params.get("resolution", self.spec.resolutions[0]),
                                "stem": params.get("stem", self.spec.stem_widths[0]), "stages": []}
        for si, st in enumerate(self.stages):
            depth = params.get(f"s{si}.depth", st.depths[0])
            layers = []
            for li in range(depth):
                layer = {}
                for key in LAYER_KEYS:
                    ch = st.mixer_choices(li) if key == "mixer" else st.layer_choices(key)
                    name = f"s{si}.l{li}.{key}" if key in st.per_layer else f"s{si}.{key}"
                    layer[key] = params.get(name, ch[0])
                layers.append(layer)
            data["stages"].append({"depth": depth, "width": params.get(f"s{si}.width", st.widths[0]),
                                   "layers": layers})
        return self.make_arch(data)

    def params_of(self, arch: Arch, rng: random.Random) -> dict[str, Any]:
        """Search parameters that give ``arch`` (free slots beyond the depth are drawn from ``rng``)."""
        p: dict[str, Any] = {}
        for name, choices in self.search_choices().items():
            parts = name.split(".")
            if name == "resolution":
                v = arch.resolution
            elif name == "stem":
                v = arch.stem
            else:
                si = int(parts[0][1:])
                ch = arch.stages[si]
                if parts[1] == "depth":
                    v = ch.depth
                elif parts[1] == "width":
                    v = ch.width
                else:
                    key = parts[-1]
                    if len(parts) == 3:
                        li = int(parts[1][1:])
                        v = getattr(ch.layers[li], key) if li < ch.depth else None
                    else:  # a per-stage choice: the value its layers share (skip layers carry none)
                        v = next((getattr(lc, key) for lc in ch.layers if getattr(lc, key) is not None), None)
            p[name] = v if v in choices else rng.choice(choices)
        return p

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        """One sample's input shape: (channels, *spatial) at the arch's resolution."""
        return (self.spec.in_channels, *((arch.resolution,) * self.dims))

    @property
    def classes(self) -> int:
        """Outputs of the classifier head."""
        return self.spec.head.classes

    # ---- size ------------------------------------------------------------------------------------
    def is_fixed(self) -> bool:
        """Whether the space holds exactly one arch (every choice a single value, e.g. a reference backbone)."""
        spec = self.spec
        if len(spec.resolutions) > 1 or len(spec.stem_widths) > 1:
            return False
        for st in self.stages:
            fixed = {k for k, _ in st.fixed}
            if len(st.depths) > 1 or len(st.widths) > 1:
                return False
            if any(len(st.layer_choices(k)) > 1 for k in LAYER_KEYS if k not in fixed):
                return False
        return True

    def the_arch(self, source: str = "<space>") -> Arch:
        """The one arch of a fixed space (see is_fixed); a SpaceError naming the first free choice otherwise."""
        if not self.is_fixed():
            free = self._first_choice()
            raise SpaceError(f"{source}: {free}: has several values, so the space is not one arch; "
                             f"give a single value or pass an arch file")
        return self.sample(seed=0)

    def _first_choice(self) -> str:
        spec = self.spec
        if len(spec.resolutions) > 1:
            return "input.resolution" if spec.dims == 2 else "input.length"
        if len(spec.stem_widths) > 1:
            return "stem.width"
        for si, st in enumerate(self.stages):
            fixed = {k for k, _ in st.fixed}
            for k, vals in (("depth", st.depths), ("width", st.widths),
                            *((k, st.layer_choices(k)) for k in LAYER_KEYS if k not in fixed)):
                if len(vals) > 1:
                    return f"stages[{si}].{k}"
        return "?"

    def log10_size(self) -> float:
        """log10 of the number of distinct choice combinations (before canonicalisation)."""
        total = math.log10(len(self.spec.resolutions)) + math.log10(len(self.spec.stem_widths))
        for st in self.stages:
            fixed = {k for k, _ in st.fixed}
            per_layer = math.prod(len(st.layer_choices(k)) for k in LAYER_KEYS if k in st.per_layer and k not in fixed)
            per_stage = math.prod(len(st.layer_choices(k)) for k in LAYER_KEYS if k not in st.per_layer)
            n = sum(per_layer ** d for d in st.depths) * per_stage * len(st.widths)
            total += math.log10(n)
        return total


_CACHE: dict[tuple[str, float], SearchSpace] = {}


def builtin_spaces() -> list[str]:
    """Names of the built-in spaces (YAML files under search_spaces/, plus nb201)."""
    d = builtin_dir("search_spaces")
    return sorted([p.stem for p in d.glob("*.yaml")] + ["nb201"])


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A built-in space name, a name under search_spaces/reference/, or a YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise SpaceError(f"{p}: no such space file")
        return p
    d = builtin_dir("search_spaces")
    for cand in (d / f"{name_or_path}.yaml", d / "reference" / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    names = builtin_spaces() + sorted(f"reference/{q.stem}" for q in (d / "reference").glob("*.yaml"))
    raise SpaceError(f"space '{name_or_path}': not a built-in space or a .yaml file; built-in: {', '.join(names)}")


def load_space(name_or_path: str | Path | SearchSpace) -> SearchSpace:
    """Load a space by built-in name, family name (``nb201``) or YAML path (parsed once per file version);
    a space object is returned as it is."""
    if not isinstance(name_or_path, (str, Path)):
        return name_or_path
    if isinstance(name_or_path, str) and "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")):
        from nas.space.family import get_family

        family = get_family(name_or_path)  # a family with its own folder (nb201)
        if family is not None:
            return family  # type: ignore[return-value]
    if str(name_or_path).startswith("reference/"):
        name_or_path = str(name_or_path).split("/", 1)[1]
    path = resolve_space_path(name_or_path).resolve()
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = SearchSpace(parse_space(read_yaml(path), _display(path)), path)
    return _CACHE[key]


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        try:
            return str(path.relative_to(builtin_dir("search_spaces").parent))
        except ValueError:
            return str(path)


def is_space_document(data: Any) -> bool:
    """Whether loaded YAML is a space (it has an input section), not an arch."""
    return isinstance(data, dict) and "input" in data and "stages" in data


def load_arch(path: str | Path, space: SearchSpace | str | None = None) -> Arch:
    """Read an arch YAML/JSON file; its space comes from ``space``, or the file's space/space_file keys.

    A space file whose every choice is a single value (a reference backbone) is read as its one arch.
    """
    from nas.io import read_json

    path = Path(path)
    data = read_json(path) if path.suffix == ".json" else read_yaml(path)
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: an arch file is a mapping with space, resolution, stem, stages")
    if is_space_document(data):
        return load_space(path).the_arch(str(path))
    if space is None:
        sf = data.get("space_file")
        if sf and Path(sf).is_file():
            space = load_space(sf)
        elif data.get("space"):
            space = load_space(data["space"])
        else:
            raise SpaceError(f"{path}: space: missing; name the space the arch belongs to")
    return load_space(space).arch_from_dict(data, str(path))
