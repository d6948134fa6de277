"""Resolve an arch into its network plan: the concrete configuration of every unit at its input shape.

Both ``nas.build`` (modules) and ``nas.count`` (costs) read the same plan, so they cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.blocks.layer import LayerCfg
from nas.blocks.skeleton import ConvUnit, HeadCfg
from nas.space.arch import Arch, LayerChoice
from nas.space.language import HeadSpec, StageSpec


@dataclass(frozen=True, slots=True)
class StagePlan:
    downsample: ConvUnit | None
    layers: tuple[LayerCfg, ...]
    channels: int
    out_spatial: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NetPlan:
    """Everything needed to build or count a network."""

    dims: int
    in_channels: int
    input_spatial: tuple[int, ...]
    stem: ConvUnit
    stages: tuple[StagePlan, ...]
    head: HeadSpec
    head_cin: int
    head_spatial: tuple[int, ...]

    @property
    def head_unit(self) -> HeadCfg:
        """The head at its input (what its cost, key and module are made from)."""
        return HeadCfg(self.head_cin, self.head_spatial, self.dims, self.head)


def layer_cfg(st: StageSpec, lc: LayerChoice, cin: int, cout: int, spatial: tuple[int, ...], stride: int,
              dims: int, drop_path: float = 0.0) -> LayerCfg:
    """The LayerCfg of one active layer choice at its input shape (the one place this mapping lives)."""
    return LayerCfg(
        mixer=lc.mixer, cin=cin, cout=cout, spatial=spatial,
        kernel=lc.kernel if lc.kernel is not None else 0,
        ratio=float(lc.ratio) if lc.ratio is not None else 0.0, groups=lc.groups,
        stride=stride, dims=dims, norm=st.norm, act=st.act, layout=st.layout,
        channel_mixer=st.channel_mixer, se=st.se, layer_scale=st.layer_scale, opts=st.options_for(lc.mixer),
        drop_path=drop_path, cm_opts=st.cm_options,
    )


def resolve(arch: Arch, drop_path: float | None = None) -> NetPlan:
    """The network plan of an arch; drop-path rates rise linearly over layers to the space's maximum."""
    spec = arch.space.spec
    dims = spec.dims
    sp = (arch.resolution,) * dims
    stem = ConvUnit(spec.in_channels, arch.stem, sp, spec.stem)
    sp = stem.out_spatial
    c = arch.stem
    dp_max = spec.drop_path if drop_path is None else drop_path
    n_layers = max(1, sum(1 for s in arch.stages for lc in s.layers if lc.mixer != "skip"))
    li = 0
    stages = []
    for st, ch in zip(spec.stages, arch.stages):
        down = None
        if st.downsample == "conv":
            down = ConvUnit(c, ch.width, sp, st.down)
            sp = down.out_spatial
            c = ch.width
        layers = []
        for i, lc in enumerate(ch.layers):
            if lc.mixer == "skip":
                continue
            first = i == 0 and st.downsample == "in_block"
            cfg = layer_cfg(st, lc, c, ch.width if first else c, sp, st.stride if first else 1, dims,
                            dp_max * li / max(1, n_layers - 1))
            layers.append(cfg)
            li += 1
            c, sp = cfg.cout, cfg.out_spatial
        if st.downsample == "in_block" and not layers:
            c = ch.width  # unreachable: the first layer of an in_block stage cannot be skipped
        stages.append(StagePlan(down, tuple(layers), c, sp))
    return NetPlan(dims, spec.in_channels, (arch.resolution,) * dims, stem, tuple(stages), spec.head, c, sp)
