"""Structural entropy: a training-free expressiveness score computed analytically from an arch.

The idea is DeepMAD's (Shen et al., CVPR 2023): see a network as an information-processing system, take
as its expressiveness the entropy of its output under random weights, and write that entropy as a closed
function of the structural parameters (widths, kernel sizes, depths, resolution). No model is built and
no data is touched; one arch costs ~25 us, ~40k archs/s (unit tables are memoised per space, like ``nas.count``).

Formula (natural logarithms)
----------------------------
A linear map whose output units each combine ``n`` inputs with free weights (its fan-in: ``c * k^d`` for
a dense k x k conv on c channels, ``k^d`` for a depthwise one, ``c`` for a 1x1 conv or a linear layer)
multiplies the variance of a random-weight signal by a factor that grows like ``n``. Along a chain of maps
the log-variances add, so the per-unit entropy of the output grows like the sum of ``log n`` over the
maps it passes through. The structural entropy of an arch is::

    H = log(N_out) * B,      B = h_stem + sum_stages (h_downsample + sum_layers h_layer)

where ``N_out = C_L * prod(S_L)`` is the number of units in the final feature map (channels times
positions; the head is not part of the backbone and is not counted), and each ``h`` is the sum, over the
maps on the unit's main (residual-branch) path, of the *mean over output units* of ``log(fan-in)``.
The mean handles maps that only touch part of the channels (identity channels have fan-in 1, log 0).
``N_out`` enters through its logarithm, as in DeepMAD: with the raw count, resolution and final width
would swamp every other choice. Norms, activations, layer scales, residual additions and element-wise
gates carry no free mixing weights and add nothing.

Per unit (``c`` channels, ``d`` spatial dims, ``k`` the layer's kernel):

==================  ======================================================================================
stem / downsample   ``log(c_in * k^d)`` (dense conv)
identity, pool      ``0`` -- no free weights; pooling mixes positions with fixed weights
dwconv              ``d log k``
dilated_reparam     ``d log k`` -- its deploy form is one dense k^d depthwise kernel
inception_dw        ``(g/c) * sum_branches log(taps_b)``, ``g = int(c * branch_ratio)`` channels per conv
                    branch (square ``s^d``, bands ``k``); the ``c - n g`` identity channels add 0
partial_conv        ``(c_p/c) * log(c_p k^d)``, ``c_p = int(c * partial_ratio)`` convolved channels
lka                 ``3 log c + d log k_dw + d log k_dil`` -- proj_1, the two stacked depthwise convs of the
                    kernel decomposition (taps, not receptive field), the 1x1 of the gate and proj_2
gnconv              ``2 log c + d log k + sum_{i<n-1} log w_i`` -- proj_in/proj_out, the depthwise conv and
                    the chain of gating 1x1s of the recursion (widths ``w_i``)
focal               ``3 log c + sum_l d log(k + 2l)`` -- the input/modulator/output 1x1s and the stacked
                    depthwise levels; the global level is a spatial mean (fixed weights, 0)
attention           ``2 log c + log M`` (+ ``log(c r^d)`` with spatial reduction r): value and output
                    projections, and the mixing over the ``M`` key/value positions. ASSUMPTION: attention
                    weights are not free parameters but functions of q.k; we count the softmax average as a
                    kernel of ``M`` taps (a global mixer covers the whole, possibly reduced, map).
mbconv              ``log(c_in/g) [expand conv, if any] + d log k + log(hidden/g)``; SE is a gate (0)
basic, bottleneck   the log fan-ins of their main-branch convs (the shortcut is a side path)

Every mixer gives its term through ``MixerDef.entropy`` in its own file (the table above says what each
computes), so a new block brings its entropy with it.
MLP / GLU           ``log c + log h`` (``h = round(ratio c)``); the GLU's gating product adds 0
==================  ======================================================================================

A metaformer/convnext layer adds its token mixer's term and its channel mixer's term; 'skip' adds 0.

Effectiveness
-------------
DeepMAD bounds the depth-to-width ratio ``rho = L / w_mean``: a network much deeper than it is wide stops
behaving like the random-feature model the entropy assumes (its output degenerates), so entropy is only a
fair expressiveness measure for ``rho <= rho0``. Here ``L`` is the number of active layers of the stages
(stem, downsamples and head excluded) and ``w_mean`` their mean output width (channels), so
``rho = L^2 / sum_layers c``. With ``L`` and the widths being plain sums over layers, ``rho <= rho0`` stays
linear-programmable (see :mod:`nas.design.programme`). DeepMAD tunes ``rho0`` per task; ``nas design``
defaults to the rho of the space's own largest arch (:func:`nas.design.default_rho`).

Equal archs score equally and the score is deterministic. It never decreases when a depth, a ratio, the
resolution or a kernel (of dwconv, dilated_reparam, mbconv, gnconv, focal, partial_conv, inception_dw;
lka by steps) grows, and it grows with every width in the built-in spaces (inception_dw and partial_conv
take ``int(c * ratio)`` channels, so without a channel mixer a width that is not a multiple of
``1/ratio`` could round their share down). skip/identity/pool layers add only their channel mixer.
The final map enters only through ``N_out``: resolutions that end on the same final map size (e.g. 196
to 224 px at stride 32) score the same unless attention sees the difference -- DeepMAD's multi-scale
variant, which weights the entropies of intermediate stages, is not used here.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

from nas.blocks.costs import numel
from nas.blocks.layer import hidden_width
from nas.blocks.registry import get_mixer
from nas.blocks.skeleton import conv_entropy, stem_entropy  # noqa: F401  (the units' own terms)
from nas.space.language import StemSpec
from nas.space.resolve import layer_cfg

if TYPE_CHECKING:
    from nas.blocks.layer import LayerCfg
    from nas.space.arch import Arch, LayerChoice
    from nas.space.language import StageSpec
    from nas.space.space import SearchSpace

_log = math.log


def mixer_entropy(
    mixer: str,
    c: int,
    kernel: int,
    spatial: tuple[int, ...],
    dims: int,
    opts: tuple[tuple[str, Any], ...] = (),
) -> float:
    """The token mixer's term (see the module docstring) for ``c`` channels at input shape ``spatial``.

    Each mixer defines its term in its own file (``MixerDef.entropy``); options default as in the registry.
    """
    if mixer == "skip":
        return 0.0
    from nas.blocks.layer import LayerCfg

    cfg = LayerCfg(mixer=mixer, cin=c, cout=c, spatial=tuple(spatial), kernel=kernel, dims=dims, opts=tuple(opts))
    return _hook(mixer)(cfg)


def _hook(mixer: str):
    defn = get_mixer(mixer)
    if defn.entropy is None:
        raise KeyError(f"structural entropy: mixer {mixer!r} defines no entropy hook (MixerDef.entropy)")
    return defn.entropy


def layer_entropy(cfg: LayerCfg) -> float:
    """Entropy term of one layer (token mixer + channel mixer, or a self-contained mbconv)."""
    if cfg.mixer == "skip":
        return 0.0
    h = _hook(cfg.mixer)(cfg)
    if get_mixer(cfg.mixer).self_contained:
        return h
    if cfg.channel_mixer != "none":
        h += _log(cfg.c) + _log(hidden_width(cfg.c, cfg.ratio))
    return h


# ------------------------------------------------------------------------------------ per-arch walk
_TABLES: weakref.WeakKeyDictionary[SearchSpace, dict] = weakref.WeakKeyDictionary()


def _table(space: SearchSpace) -> dict:
    t = _TABLES.get(space)
    if t is None:
        t = _TABLES[space] = {}
    return t


def unit_layer(
    space: SearchSpace,
    si: int,
    st: StageSpec,
    lc: LayerChoice,
    cin: int,
    width: int,
    spatial: tuple[int, ...],
    first: bool,
) -> tuple[float, int, tuple[int, ...]]:
    """(entropy, out channels, out spatial) of a layer choice at its input shape (memoised per space)."""
    table = _table(space)
    key = (si, lc, cin, spatial, first, width)
    hit = table.get(key)
    if hit is None:
        cfg = layer_cfg(st, lc, cin, width if first else cin, spatial, st.stride if first else 1, space.dims)
        hit = table[key] = (layer_entropy(cfg), cfg.cout, cfg.out_spatial)
    return hit


def stem_unit(space: SearchSpace, resolution: int, width: int | None = None) -> tuple[float, tuple[int, ...]]:
    """(entropy, out spatial) of the stem at an input resolution (a one-conv stem's term does not depend
    on the stem width; a multi-op stem's may, so pass ``width``; default the first stem width)."""
    table = _table(space)
    spec = space.spec
    width = spec.stem_widths[0] if width is None else width
    key = ("stem", resolution) if not isinstance(spec.stem, StemSpec) else ("stem", resolution, width)
    hit = table.get(key)
    if hit is None:
        hit = table[key] = stem_entropy(spec.stem, spec.in_channels, width, (resolution,) * space.dims)
    return hit


def down_unit(
    space: SearchSpace, si: int, cin: int, spatial: tuple[int, ...]
) -> tuple[float, tuple[int, ...]]:
    """(entropy, out spatial) of stage ``si``'s downsample conv (its entropy depends on ``cin`` only)."""
    table = _table(space)
    key = ("down", si, cin, spatial)
    hit = table.get(key)
    if hit is None:
        d = space.stages[si].down
        sp = d.out_spatial(spatial)
        hit = table[key] = (conv_entropy(cin, d.kernel, space.dims), sp)
    return hit


def entropy_terms(arch: Arch) -> tuple[float, int, float, int]:
    """``(B, N_out, sum of layer widths, active layers)`` of an arch: ``H = log(N_out) * B``."""
    space = arch.space
    body, sp = stem_unit(space, arch.resolution, arch.stem)
    c = arch.stem
    wsum = 0
    n_layers = 0
    for si, (st, ch) in enumerate(zip(space.stages, arch.stages)):
        if st.downsample == "conv":
            h, sp = down_unit(space, si, c, sp)
            body += h
            c = ch.width
        for i, lc in enumerate(ch.layers):
            if lc.mixer == "skip":
                continue
            h, c, sp = unit_layer(space, si, st, lc, c, ch.width, sp, i == 0 and st.downsample == "in_block")
            body += h
            wsum += c
            n_layers += 1
    return body, c * numel(sp), wsum, n_layers


def effectiveness(arch: Arch) -> float:
    """DeepMAD's depth-to-width ratio ``rho = L / mean width = L^2 / sum of layer widths`` (0 if no layer)."""
    _, _, wsum, n = entropy_terms(arch)
    return n * n / wsum if n else 0.0


def structural_entropy(arch: Arch, *, effectiveness: float | None = None) -> float:
    """The structural entropy ``H = log(N_out) * B`` of an arch (see the module docstring).

    With ``effectiveness=rho0``, an arch whose depth-to-width ratio exceeds ``rho0`` scores ``-inf``:
    it lies outside the region where entropy measures expressiveness (DeepMAD's effectiveness constraint).
    """
    body, n_out, wsum, n = entropy_terms(arch)
    if effectiveness is not None and n and n * n / wsum > effectiveness:
        return -math.inf
    return _log(n_out) * body


def entropy_score(arch: Arch) -> float:
    """The registry form: ``structural_entropy(arch)`` without an effectiveness bound."""
    return structural_entropy(arch)


ENTROPY_PROXIES = {"entropy": entropy_score}
"""Arch-based (analytic, model-free) scores: ``name -> fn(arch) -> float``, higher is better."""
