"""The weight-sharing supernet: one parameter bank per layer slot serves every arch of a space.

Layout. A space's network has slots: ``stem``, ``s<i>.down`` (a stage's downsample conv), ``s<i>.l<j>``
(layer position j of stage i; elastic depth uses the first d positions) and ``head``. Each slot owns a
bank: one tensor per distinct tensor name of the standard modules that can sit there, with the
elementwise-maximum shape over every configuration the space allows at the slot. In a layer slot the
parts around the token mixer (norms, MLP, layer scale) are owned by ``shared`` and used by every mixer
type; each mixer type owns its own tensors (``<slot>|<mixer>|<name>``); a self-contained mixer (mbconv)
owns the whole layer. With ``sharing="none"`` each mixer type also owns the parts around it
(``<slot>|shared@<mixer>|<name>``): no mixer's layer is trained more often than another's.

Forward. For the active arch, ``resolve(arch)`` gives every unit's configuration; each unit runs as
``functional_call(template, tensors, x)`` where the template is the *standard* module of that
configuration (``build_layer(cfg)``, the stem/downsample unit, the head; built once on the meta device
and cached) and ``tensors`` are slices of the bank: first-n along channel axes (per segment where an
axis concatenates C-dependent blocks, see :mod:`nas.supernet.sharing`), centre crop along kernel axes.
Depthwise kernels smaller than the bank's largest go through Once-for-All's kernel transformation:
crop the centre of the next larger kernel, then multiply the flattened kernel by a learned matrix per
(slot tensor, kernel size), initialised to identity, chained from the largest size down.

Extraction. ``extract(arch)`` is ``nas.build(arch)`` (built on the meta device) with the very same
sliced tensors assigned, materialised: the maths is the standard module's in both cases, so outputs
agree bit for bit in eval mode (tests check ≤ 1e-5 on 100 random archs per built-in space).

Assumption (checked by those tests): a block's module structure does not depend on its input's
spatial size (only its cost does), so templates are cached per configuration without the shape.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from nas.blocks.common import DropPath
from nas.blocks.layer import LayerCfg
from nas.blocks.modules.layer import Layer, build_layer
from nas.blocks.modules.skeleton import Head, build_conv_unit
from nas.blocks.registry import get_mixer
from nas.blocks.skeleton import HeadCfg
from nas.errors import NASError
from nas.models.build import Network, build
from nas.space.arch import Arch
from nas.space.resolve import ConvUnit, layer_cfg, resolve
from nas.space.space import SearchSpace, load_space
from nas.supernet import sharing
from nas.supernet.meta import meta_build
from nas.supernet.sharing import SHARINGS, around_owner, is_shared

UNIT = "unit"


def _safe(key: str) -> str:
    """A bank key as a legal parameter name (no dots)."""
    return key.replace(".", ":")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One tensor of a standard module and the bank tensor it is read from."""

    name: str  # name inside the standard module (state_dict key)
    key: str  # bank key: slot|owner|bank name
    buffer: bool
    shape: tuple[int, ...]
    segs: tuple[tuple[int, ...] | None, ...] | None
    kdims: int  # trailing kernel axes (conv weights)


@dataclass
class _Bank:
    """Shape bookkeeping of one bank tensor while the space is enumerated."""

    key: str
    buffer: bool
    dtype: torch.dtype
    ndim: int
    kdims: int
    shape: list[int]
    segs: list[list[int] | None]
    kshapes: set[tuple[int, ...]] = field(default_factory=set)
    source: tuple[Any, str] | None = None  # (unit, tensor name) whose tensor is the largest seen
    source_numel: int = -1
    chain: tuple[tuple[int, ...], ...] = ()  # kernel shapes with learned transforms, largest first

    @property
    def full_shape(self) -> tuple[int, ...]:
        out = []
        for d in range(self.ndim):
            s = self.segs[d]
            out.append(sum(s) if s is not None else self.shape[d])
        return tuple(out)

    @property
    def kshape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.ndim - self.kdims :]) if self.kdims else ()


@dataclass(frozen=True, slots=True)
class _Step:
    """One unit of the active network: the slot it reads, how to build its template, where it sits."""

    slot: str
    kind: str  # conv | layer | head
    cfg: Any  # normalised LayerCfg / ConvUnit / (HeadSpec, cin)
    prefix: str  # state_dict prefix inside nas.build(arch)
    drop_path: float = 0.0


@dataclass
class _Template:
    module: nn.Module
    entries: tuple[_Entry, ...]
    drop_paths: tuple[DropPath, ...]


@dataclass
class _Plan:
    stem: _Step
    stages: list[list[_Step]]
    head: _Step | None
    features_only: bool
    out_indices: tuple[int, ...]


def _kdims(name: str, t: torch.Tensor, dims: int) -> int:
    return dims if (t.dim() == dims + 2 and name.endswith("weight")) else 0


def _norm_layer(cfg: LayerCfg) -> LayerCfg:
    return dataclasses.replace(cfg, spatial=(), drop_path=0.0)


def _norm_unit(u: ConvUnit) -> ConvUnit:
    return dataclasses.replace(u, spatial=())


def _offsets(sizes: Iterable[int]) -> list[int]:
    out, acc = [], 0
    for s in sizes:
        out.append(acc)
        acc += s
    return out


def _centre(t: torch.Tensor, kshape: tuple[int, ...]) -> torch.Tensor:
    nd = len(kshape)
    for i, k in enumerate(kshape):
        d = t.dim() - nd + i
        have = t.shape[d]
        if k != have:
            t = t.narrow(d, (have - k) // 2, k)
    return t


def make_supernet(space: Any, seed: int = 0, init: bool = True, sharing: str = "mlp") -> nn.Module:
    """The weight-sharing supernet of any space family (a name, a YAML path or a space): its ``supernet()``
    (``sharing``: what the mixers of a layer slot share, see :data:`nas.supernet.sharing.SHARINGS`)."""
    return load_space(space).supernet(seed=seed, init=init, sharing=sharing)


class Supernet(nn.Module):
    """Shared weights for every arch of ``space``; ``set_active(arch)`` then call, or ``extract(arch)``.

    ``seed`` makes the initial weights reproducible (the global RNG is left untouched); ``init=False``
    leaves the bank zeroed (faster, for loading a checkpoint over it).
    """

    def __init__(self, space: SearchSpace | str, seed: int = 0, init: bool = True, sharing: str = "mlp"):
        super().__init__()
        if sharing not in SHARINGS:
            raise NASError(f"supernet: sharing {sharing!r} unknown; choose from {', '.join(SHARINGS)}")
        self.sharing = sharing
        self.space = load_space(space)
        if not isinstance(self.space, SearchSpace):
            raise NASError(f"supernet: {space!r} is not a YAML search space (make_supernet serves every family)")
        self.dims = self.space.dims
        self.seed = int(seed)
        self.bank = nn.Module()
        self.kt = nn.Module()
        self._banks: dict[str, _Bank] = {}
        self._templates: dict[tuple, _Template] = {}
        self._plans: OrderedDict[str, _Plan] = OrderedDict()
        self._archs: OrderedDict[str, Arch] = OrderedDict()
        self._slot_cfgs: dict[str, dict[str, set[LayerCfg]]] = {}  # self-contained layers: slot -> mixer -> cfgs
        self._active: Arch | None = None
        self._enumerate()
        self._allocate(init)

    # ---- enumeration of every configuration a slot can take ---------------------------------------
    def _slot_units(self) -> Iterable[tuple[str, str, Any]]:
        """(slot, kind, normalised unit config) for every configuration the space allows."""
        spec = self.space.spec
        for w in spec.stem_widths:
            yield "stem", "conv", ConvUnit(spec.in_channels, w, (), spec.stem)
        prev = spec.stem_widths
        for si, st in enumerate(spec.stages):
            if st.downsample == "conv":
                for cin, w in itertools.product(prev, st.widths):
                    yield f"s{si}.down", "conv", ConvUnit(cin, w, (), st.down)
            common = self._stage_cfgs(si, first=False)
            for j in range(st.max_depth):
                first = j == 0 and st.downsample == "in_block"
                for kind, cfg in self._stage_cfgs(si, first=True, prev=prev) if first else common:
                    yield f"s{si}.l{j}", kind, cfg
            prev = st.widths
        if spec.head.type != "features":
            for c in prev:
                yield "head", "head", (spec.head, c)

    def _stage_cfgs(self, si: int, first: bool, prev: tuple[int, ...] = ()) -> list[tuple[str, LayerCfg]]:
        """Configurations of one position of stage ``si`` as ("layer" | "mixer" | "shared", cfg).

        For layouts around a mixer, the mixer's own tensors depend on (width, mixer, kernel) and the shared
        parts on (width, ratio) only, so they are enumerated apart ("mixer", "shared") to stay fast.
        """
        st = self.space.stages[si]
        out: list[tuple[str, LayerCfg]] = []
        seen: set = set()
        for w in st.widths:
            for cin in prev if first else (w,):
                for m, k, r, g in itertools.product(st.mixers, st.kernels, st.ratios, st.groups):
                    if m == "skip":
                        continue
                    lc = self.space._canon_layer(st, m, k, r, g)
                    cfg = layer_cfg(
                        st, lc, cin, w if first else cin, (), st.stride if first else 1, self.dims
                    )
                    if get_mixer(m).self_contained:
                        items = [("layer", cfg)]
                    else:
                        items = [
                            ("mixer", dataclasses.replace(cfg, ratio=0.0)),
                            (around_owner(m, self.sharing),
                             dataclasses.replace(cfg, mixer="identity", kernel=0, opts=())),
                        ]
                    for item in items:
                        if item not in seen:
                            seen.add(item)
                            out.append(item)
        return out

    def _enumerate(self) -> None:
        cache: dict[tuple, list[tuple[str, str, torch.Tensor, LayerCfg | None]]] = {}
        for slot, kind, cfg in self._slot_units():
            ck = (kind, cfg)
            if ck not in cache:
                cache[ck] = list(self._tensors_of(kind, cfg))
            if kind == "layer":
                self._slot_cfgs.setdefault(slot, {}).setdefault(cfg.mixer, set()).add(cfg)
            for owner, name, t, lcfg in cache[ck]:
                self._add(slot, owner, name, t, lcfg, (kind, cfg))
        for b in self._banks.values():
            if b.kdims and len(b.kshapes) > 1 and b.full_shape[1] == 1 and not b.buffer:
                b.chain = tuple(sorted(b.kshapes, key=lambda s: (-math.prod(s), s)))

    def _tensors_of(self, kind: str, cfg: Any) -> Iterable[tuple[str, str, torch.Tensor, LayerCfg | None]]:
        """(owner, name, meta tensor, layer cfg) of a configuration's standard module."""
        with meta_build():
            if kind == "mixer":
                mod, owner, lcfg = get_mixer(cfg.mixer).build(cfg), cfg.mixer, cfg
            elif is_shared(kind):  # the parts around a mixer; the kind names their owner
                mod, owner, lcfg = Layer(cfg), kind, cfg
            elif kind == "layer":
                mod, owner, lcfg = build_layer(cfg), cfg.mixer, cfg
            else:
                mod, owner, lcfg = self._make_template(kind, cfg), UNIT, None
        for name, t in itertools.chain(mod.named_parameters(), mod.named_buffers()):
            if is_shared(kind) and name.startswith("mixer."):
                continue
            yield owner, name, t, lcfg

    def _add(
        self, slot: str, owner: str, name: str, t: torch.Tensor, lcfg: LayerCfg | None, unit: Any
    ) -> None:
        is_buf = not isinstance(t, nn.Parameter)
        key = f"{slot}|{owner}|{sharing.bank_name(lcfg, owner, name)}"
        shape = tuple(t.shape)
        segs = sharing.segments(lcfg, owner, name, shape)
        kd = _kdims(name, t, self.dims)
        b = self._banks.get(key)
        if b is None:
            b = _Bank(
                key,
                is_buf,
                t.dtype,
                t.dim(),
                kd,
                list(shape),
                [list(s) if s else None for s in segs] if segs else [None] * t.dim(),
            )
            self._banks[key] = b
        if b.ndim != t.dim() or b.kdims != kd or b.buffer != is_buf:
            raise NASError(f"supernet: tensor {key} changes rank/kind across configurations; cannot share it")
        for d in range(t.dim()):
            b.shape[d] = max(b.shape[d], shape[d])
            sd = segs[d] if segs else None
            if (sd is None) != (b.segs[d] is None) or (sd is not None and len(sd) != len(b.segs[d])):
                raise NASError(f"supernet: tensor {key} changes its block layout across configurations")
            if sd is not None:
                b.segs[d] = [max(a, s) for a, s in zip(b.segs[d], sd)]
        if kd:
            b.kshapes.add(shape[t.dim() - kd :])
        n = t.numel()
        if n > b.source_numel:
            b.source_numel, b.source = n, (unit, name, owner)

    # ---- allocation and initialisation -----------------------------------------------------------
    @torch.no_grad()
    def _allocate(self, init: bool = True) -> None:
        """Create the bank tensors; initialise each from a real standard module of its largest configuration."""
        built: dict[tuple, nn.Module] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for key in sorted(self._banks):
                b = self._banks[key]
                t = torch.zeros(b.full_shape, dtype=b.dtype)
                if init:
                    self._init_from_source(t, b, built)
                if b.buffer:
                    self.bank.register_buffer(_safe(key), t)
                else:
                    self.bank.register_parameter(_safe(key), nn.Parameter(t))
                for s in b.chain[1:]:
                    n = math.prod(s)
                    self.kt.register_parameter(self._kt_name(key, s), nn.Parameter(torch.eye(n)))

    def _init_from_source(self, t: torch.Tensor, b: _Bank, built: dict) -> None:
        """Fill bank tensor ``t`` from the standard module of its largest configuration (so norms start
        at one, layer scales at their init, convs with their usual fan-in scaled init)."""
        (kind, cfg), name, owner = b.source
        bk = (b.key.split("|", 1)[0], kind, cfg)
        if bk not in built:
            built[bk] = self._real_module(kind, cfg)
        src = dict(itertools.chain(built[bk].named_parameters(), built[bk].named_buffers()))[name]
        if tuple(src.shape) != b.full_shape and src.is_floating_point() and src.numel():
            flat = src.flatten()  # no single configuration has the full shape: fill the rest alike
            if bool((flat == flat[0]).all()):
                t.fill_(flat[0].item())
            else:
                t.normal_(0.0, float(flat.std()) if flat.numel() > 1 else 0.02)
        lcfg = cfg if kind in ("layer", "mixer") or is_shared(kind) else None
        e = _Entry(
            name,
            b.key,
            b.buffer,
            tuple(src.shape),
            sharing.segments(lcfg, owner, name, tuple(src.shape)),
            b.kdims,
        )
        self._write(t, b, e, src)

    def _real_module(self, kind: str, cfg: Any) -> nn.Module:
        if kind == "mixer":
            return get_mixer(cfg.mixer).build(cfg)
        if is_shared(kind):
            return Layer(cfg)
        if kind == "layer":
            return build_layer(cfg)
        return self._make_template(kind, cfg)

    @staticmethod
    def _kt_name(key: str, kshape: tuple[int, ...]) -> str:
        return _safe(f"{key}|k{'x'.join(map(str, kshape))}")

    def _make_template(self, kind: str, cfg: Any) -> nn.Module:
        if kind == "conv":
            return build_conv_unit(cfg, self.dims)
        if kind == "head":
            head, cin = cfg
            return Head(HeadCfg(cin, (), self.dims, head))
        return build_layer(cfg)

    # ---- slicing -----------------------------------------------------------------------------------
    def _bank_tensor(self, key: str) -> torch.Tensor:
        sk = _safe(key)
        t = self.bank._parameters.get(sk)
        return t if t is not None else self.bank._buffers[sk]

    @staticmethod
    def _write(t: torch.Tensor, b: _Bank, e: _Entry, value: torch.Tensor) -> None:
        """Copy ``value`` (an entry's tensor) into the region of bank tensor ``t`` it is read from
        (first-n per axis or per segment, centre along kernel axes; no kernel transform)."""
        blocks = []
        for d in range(t.dim()):
            if d >= t.dim() - b.kdims:
                have, k = t.shape[d], e.shape[d]
                blocks.append([((have - k) // 2, 0, k)])
            elif b.segs[d] is not None and e.segs is not None and e.segs[d] is not None:
                blocks.append(list(zip(_offsets(b.segs[d]), _offsets(e.segs[d]), e.segs[d])))
            else:
                blocks.append([(0, 0, e.shape[d])])
        for combo in itertools.product(*blocks):
            dst = tuple(slice(bo, bo + n) for bo, _, n in combo)
            src = tuple(slice(vo, vo + n) for _, vo, n in combo)
            t[dst].copy_(value[src])

    def _slice(self, e: _Entry) -> torch.Tensor:
        """The tensor of entry ``e`` for the current bank: channel slices, then kernel crop/transform."""
        t = self._bank_tensor(e.key)
        if tuple(t.shape) == e.shape:
            return t
        b = self._banks[e.key]
        nd = t.dim()
        for d in range(nd - b.kdims):
            need = e.shape[d]
            bs = b.segs[d]
            es = e.segs[d] if e.segs is not None else None
            if bs is not None and es is not None:
                if list(es) != bs:
                    parts = [t.narrow(d, off, n) for off, n in zip(_offsets(bs), es) if n]
                    t = torch.cat(parts, d) if len(parts) > 1 else parts[0]
            elif t.shape[d] != need:
                t = t.narrow(d, 0, need)
        if b.kdims:
            ks = e.shape[nd - b.kdims :]
            if tuple(t.shape[nd - b.kdims :]) != ks:
                t = self._kernel(t, b, ks) if b.chain else _centre(t, ks)
        return t if t.is_contiguous() else t.contiguous()

    def _kernel(self, t: torch.Tensor, b: _Bank, ks: tuple[int, ...]) -> torch.Tensor:
        """Once-for-All's kernel transformation: crop the centre, apply the learned matrix, step by step."""
        lead = t.shape[: t.dim() - b.kdims]
        for s in b.chain[1:]:
            if any(a < c for a, c in zip(s, ks)):
                continue
            n = math.prod(s)
            m = self.kt._parameters[self._kt_name(b.key, s)]
            t = torch.matmul(_centre(t, s).reshape(-1, n), m).reshape(*lead, *s)
            if s == ks:
                return t
        raise NASError(f"supernet: kernel {ks} of {b.key} is not one of {sorted(b.kshapes)}")

    # ---- the active network -------------------------------------------------------------------------
    def _own(self, arch: Arch | dict) -> Arch:
        if isinstance(arch, Arch) and arch.space is self.space:
            return arch
        data = arch.to_dict() if isinstance(arch, Arch) else arch
        key = repr(sorted(data.items())) if isinstance(data, dict) else str(data)
        hit = self._archs.get(key)
        if hit is None:
            if isinstance(arch, Arch) and arch.space.name != self.space.name:
                raise NASError(
                    f"arch of space {arch.space.name!r} given to a supernet of space {self.space.name!r}"
                )
            hit = self.space.arch_from_dict(dict(data), "<arch>")
            self._archs[key] = hit
            if len(self._archs) > 4096:
                self._archs.popitem(last=False)
        return hit

    def set_active(self, arch: Arch | dict) -> Arch:
        """Make ``arch`` the subnet that ``forward`` runs (validated against the space)."""
        self._active = self._own(arch)
        return self._active

    @property
    def active(self) -> Arch | None:
        return self._active

    def _plan(self, arch: Arch) -> _Plan:
        p = self._plans.get(arch.key)
        if p is not None:
            self._plans.move_to_end(arch.key)
            return p
        plan = resolve(arch)
        stem = _Step("stem", "conv", _norm_unit(plan.stem), "stem.")
        stages = []
        for si, (sp, ch) in enumerate(zip(plan.stages, arch.stages)):
            steps, k = [], 0
            if sp.downsample is not None:
                steps.append(_Step(f"s{si}.down", "conv", _norm_unit(sp.downsample), f"stages.{si}.0."))
                k = 1
            positions = [j for j, lc in enumerate(ch.layers) if lc.mixer != "skip"]
            for j, cfg in zip(positions, sp.layers, strict=True):
                steps.append(
                    _Step(f"s{si}.l{j}", "layer", _norm_layer(cfg), f"stages.{si}.{k}.", cfg.drop_path)
                )
                k += 1
            stages.append(steps)
        h = plan.head
        feats = h.type == "features"
        head = None if feats else _Step("head", "head", (h, plan.head_cin), "head.")
        out_idx = tuple(h.out_indices or range(len(stages)))
        p = _Plan(stem, stages, head, feats, out_idx)
        self._plans[arch.key] = p
        if len(self._plans) > 1024:
            self._plans.popitem(last=False)
        return p

    def _template(self, step: _Step) -> _Template:
        tk = (step.slot, step.kind, step.cfg)
        t = self._templates.get(tk)
        if t is not None:
            return t
        with meta_build():
            mod = self._make_template(step.kind, step.cfg)
        lcfg = step.cfg if step.kind == "layer" else None
        self_contained = lcfg is not None and get_mixer(lcfg.mixer).self_contained
        entries = []
        for name, ten in itertools.chain(mod.named_parameters(), mod.named_buffers()):
            if lcfg is None:
                owner, local = UNIT, name
            elif self_contained:
                owner, local = lcfg.mixer, name
            elif name.startswith("mixer."):
                owner, local = lcfg.mixer, name[len("mixer.") :]
            else:
                owner, local = around_owner(lcfg.mixer, self.sharing), name
            key = f"{step.slot}|{owner}|{sharing.bank_name(lcfg, owner, local)}"
            b = self._banks.get(key)
            shape = tuple(ten.shape)
            if b is None or any(s > f for s, f in zip(shape, b.full_shape)):
                raise NASError(
                    f"supernet: {step.slot}: tensor {name} {shape} has no bank to read from; the "
                    f"configuration is outside the space the supernet was made for"
                )
            entries.append(
                _Entry(
                    name,
                    key,
                    not isinstance(ten, nn.Parameter),
                    shape,
                    sharing.segments(lcfg, owner, local, shape),
                    b.kdims,
                )
            )
        dps = tuple(m for m in mod.modules() if isinstance(m, DropPath))
        t = _Template(mod, tuple(entries), dps)
        self._templates[tk] = t
        return t

    def _run(self, step: _Step, x: torch.Tensor) -> torch.Tensor:
        t = self._template(step)
        if t.module.training != self.training:
            t.module.train(self.training)
        for dp in t.drop_paths:
            dp.p = step.drop_path
        tensors = {e.name: self._slice(e) for e in t.entries}
        return functional_call(t.module, tensors, (x,), tie_weights=False)

    def forward(self, x: torch.Tensor, arch: Arch | dict | None = None):
        """Run the active arch (or ``arch``) on ``x``; input size = the arch's resolution (any size works)."""
        a = self._own(arch) if arch is not None else self._active
        if a is None:
            raise NASError("supernet: no active arch; call set_active(arch) or pass arch=")
        p = self._plan(a)
        x = self._run(p.stem, x)
        feats = []
        last = max(p.out_indices) if p.features_only else len(p.stages) - 1
        for i, steps in enumerate(p.stages):
            for s in steps:
                x = self._run(s, x)
            if p.features_only:
                if i in p.out_indices:
                    feats.append(x)
                if i >= last:
                    break
        if p.features_only:
            return feats
        return self._run(p.head, x)

    # ---- extraction and write-back ---------------------------------------------------------------------
    def subnet_state(self, arch: Arch | dict) -> dict[str, torch.Tensor]:
        """The state_dict that ``nas.build(arch)`` gets from the supernet (materialised copies)."""
        a = self._own(arch)
        p = self._plan(a)
        steps = [p.stem, *itertools.chain.from_iterable(p.stages)] + ([p.head] if p.head else [])
        sd = {}
        with torch.no_grad():
            for s in steps:
                for e in self._template(s).entries:
                    sd[s.prefix + e.name] = self._slice(e).detach().clone()
        return sd

    def extract(self, arch: Arch | dict, drop_path: float | None = None) -> Network:
        """The standard module ``nas.build(arch)`` with the inherited weights (train mode, like build)."""
        a = self._own(arch)
        with meta_build():
            net = build(a, drop_path=drop_path)
        net.load_state_dict(self.subnet_state(a), strict=True, assign=True)
        left = [n for n, t in itertools.chain(net.named_parameters(), net.named_buffers()) if t.is_meta]
        if left:
            raise NASError(f"supernet: extract left tensors unset: {left[:5]}")
        return net

    @torch.no_grad()
    def load_subnet_state(self, arch: Arch | dict, state: dict[str, torch.Tensor]) -> None:
        """Write tensors of ``nas.build(arch)`` (e.g. recalibrated BN statistics) back into the bank.

        Only tensors read without a kernel transform can be written (norm statistics and affines,
        biases, channel-sliced weights); others raise.
        """
        a = self._own(arch)
        p = self._plan(a)
        steps = [p.stem, *itertools.chain.from_iterable(p.stages)] + ([p.head] if p.head else [])
        by_name = {s.prefix + e.name: e for s in steps for e in self._template(s).entries}
        for name, value in state.items():
            e = by_name.get(name)
            if e is None:
                raise NASError(f"supernet: {name} is not a tensor of arch {a.id}")
            b = self._banks[e.key]
            if b.chain and tuple(e.shape[len(e.shape) - b.kdims :]) != b.kshape:
                raise NASError(
                    f"supernet: {name} is read through a kernel transform; it cannot be written back"
                )
            self._write(self._bank_tensor(e.key), b, e, value)

    # ---- channel importance re-sorting -------------------------------------------------------------------
    def _reorder_groups(self) -> list[tuple[tuple[str, int], list[tuple[str, int]]]]:
        groups = []
        slots = sorted({k.split("|", 1)[0] for k in self._banks})
        owners = sorted({k.split("|")[1] for k in self._banks if is_shared(k.split("|")[1])})
        for slot in slots:
            for owner in owners:
                mlp = f"{slot}|{owner}|mlp.fc2.weight"
                if mlp in self._banks:
                    members = [
                        (f"{slot}|{owner}|mlp.fc1.weight", 0),
                        (f"{slot}|{owner}|mlp.fc1.bias", 0),
                        (mlp, 1),
                    ]
                    groups.append(((mlp, 1), [m for m in members if m[0] in self._banks]))
            for mixer, cfgs in sorted(self._slot_cfgs.get(slot, {}).items()):
                hook = get_mixer(mixer).reorder  # a self-contained layer's own channel groups (mbconv)
                if hook is None:
                    continue
                pre = f"{slot}|{mixer}|"
                names = [k[len(pre) :] for k, b in self._banks.items() if k.startswith(pre) and b.full_shape]
                for (ik, idim), members in hook(cfgs, names):
                    groups.append(((pre + ik, idim), [(pre + n, d) for n, d in members]))
        return groups

    @torch.no_grad()
    def reorder_channels(self, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Sort hidden channels (MLP and mbconv expansions, SE bottlenecks) by L1 importance, largest first.

        The largest arch computes the same function afterwards (each group is permuted consistently,
        BN statistics included); narrower configurations then keep the most important channels.
        ``optimizer`` state (momentum, Adam moments) is permuted alongside. Returns the groups sorted.
        """
        n = 0
        for (ikey, idim), members in self._reorder_groups():
            w = self._bank_tensor(ikey)
            dims = [d for d in range(w.dim()) if d != idim]
            imp = w.abs().sum(dim=dims) if dims else w.abs()
            perm = torch.argsort(imp, descending=True, stable=True)
            for key, dim in members:
                b = self._banks[key]
                targets = [self._bank_tensor(key)]
                if optimizer is not None and not b.buffer:
                    st = optimizer.state.get(self._bank_tensor(key), {})
                    targets += [v for v in st.values() if torch.is_tensor(v) and v.shape == targets[0].shape]
                for t in targets:
                    _permute_(t, dim, perm, b.segs[dim])
            n += 1
        return n

    # ---- conveniences -------------------------------------------------------------------------------------
    def bank_keys(self) -> list[str]:
        """Bank tensor keys (slot|owner|name), sorted."""
        return sorted(self._banks)

    def describe(self) -> dict[str, Any]:
        """Counts of the bank: tensors, parameters, and kernel transform matrices."""
        n_par = sum(p.numel() for p in self.bank.parameters())
        return {
            "space": self.space.name,
            "sharing": self.sharing,
            "bank_tensors": len(self._banks),
            "bank_params": n_par,
            "kernel_transforms": len(self.kt._parameters),
            "kernel_transform_params": sum(p.numel() for p in self.kt.parameters()),
        }

    def extra_repr(self) -> str:
        d = self.describe()
        return f"space={d['space']}, bank_tensors={d['bank_tensors']}, bank_params={d['bank_params']:,}"


def _permute_(t: torch.Tensor, dim: int, perm: torch.Tensor, segs: list[int] | None) -> None:
    """Permute ``t`` in place along ``dim`` (each segment by the same permutation when segmented)."""
    if segs is None:
        if t.shape[dim] != perm.numel():
            return
        t.copy_(t.index_select(dim, perm))
        return
    for off, n in zip(_offsets(segs), segs):
        if n == perm.numel():
            part = t.narrow(dim, off, n)
            part.copy_(part.index_select(dim, perm))
