"""`nas design`: the DeepMAD-style mathematical programme over a space's structural choices.

What is optimised
-----------------
maximise the structural entropy ``H = log(N_out) * B`` (:mod:`nas.proxies.entropy`) subject to every budget
(params, MACs, memory counted exactly as ``nas.count`` does; latency through a device's predictor) and the
effectiveness bound ``rho = L^2 / sum(widths) <= rho0``.

Formulation (one integer programme per resolution r and last-stage width w_L)
------------------------------------------------------------------------------
``N_out`` depends only on (r, w_L), so fixing both makes the objective ``log(N_out) * B`` linear (B is a
sum of per-unit terms); the programmes of all (r, w_L) are solved and the best kept -- an exact
treatment of the one global (bilinear) term, not an approximation. Variables:

* ``p[s, w', w]`` (binary) -- stage s has width w and its input width is w' (the stem width for s = 0).
  Flow constraints ``sum_w' p[s, w', w] = sum_w'' p[s+1, w, w'']`` make the widths a path through the
  stages, so the downsample conv (which costs ``w' * w * k^d``), the stem (on ``p[0, .]``) and the head
  (on the last stage's ``p``) are costed *exactly* on the pair, not approximately on each width.
* ``f[s, w', w, c]`` (binary) -- the first layer of an ``in_block`` stage (it changes channels w' -> w and
  carries the stride, so its cost depends on the pair): ``sum_c f[s, w', w, c] = p[s, w', w]``.
* ``x[s, w, c]`` (integer, 0..T_s) -- how many of the stage's other layers use choice c = (mixer, kernel,
  ratio, groups). They all see the same input shape, so their cost and entropy do not depend on their
  position: a stage is an order-free multiset of layer choices, and counts represent it without loss and
  without the symmetric copies a per-slot formulation has (which made HiGHS 10-30x slower here). This
  solves the per-layer space exactly; ``uniform=True`` (``--uniform``) restricts each stage to one choice
  (the coarser stage-uniform formulation). ``sum_c x[s, w, c] <= T_s * sum_w' p[s, w', w]`` ties layers
  to the chosen width; a one-hot ``delta[s, d]`` over the allowed depths fixes their number. Keys chosen
  per stage (not in ``per_layer``) get a one-hot ``u[s, K]`` that every layer's choice must match.
* effectiveness: ``L^2 <= rho0 * W`` (L active layers, W the sum of their widths) is, for integer L,
  exactly the set of its tangents at the integers, ``2 m L - m^2 <= rho0 W`` for m = 1..L_max: linear
  rows and no extra variables.
* memory = 4 bytes * (params + peak working set): a continuous ``P`` above the chosen stem/downsample
  pair and first layer of every stage (one row per stage: exactly one is chosen) and above
  ``peak(c) * b[s, w, c]`` with a binary ``b >= x / T_s`` per layer choice whose peak can exceed the
  stem's: an exact linearisation of the max. Units whose working set alone cannot fit are left out.
* latency (a black box): first-order decomposition around a reference arch -- each stage is replaced in
  the reference by uniform stages of every (width, choice) at two depths and the predictor's answers give
  a per-layer slope and a per-width intercept (anchored so the linear model equals the predictor at the
  reference). The solution is checked with the real predictor; if it exceeds the budget, the programme is
  re-linearised around it and the limit tightened by the violation (sequential linearisation, at most
  ``max_iter`` rounds, each reported). Exact in one round for predictors additive over layers.

Choices that are dominated at a (stage, width) -- no more entropy but more of every cost the budget
limits -- are dropped before solving (exact for the best design; the top-k are the best designs built
from non-dominated choices). The (r, w_L) programmes are taken in decreasing order of their LP bound;
one whose bound cannot beat the k-th best design found is skipped, and the others get the incumbent as a
lower limit on the objective (HiGHS then prunes what cannot beat it). Top-k: the optima go into a heap;
each time one is taken, its programme is re-solved with a no-good cut excluding exactly that design
(binaries flipped, or a count moved off its value through one extra binary per positive count) -- a
lazy, exact k-best enumeration.

Solver: ``scipy.optimize.milp`` (HiGHS branch-and-cut). Why: the decisions are discrete (a width or a
mixer cannot be 0.4 of itself), so a continuous relaxation would need rounding that breaks budgets or
loses optimality, and there is no gradient to follow through a one-hot choice; with the pair/count
encoding every cost is linear and each programme is a small integer programme (a few hundred variables)
that HiGHS solves to proven optimality (gap reported) in a fraction of a second -- memory budgets, whose
max makes the relaxation weaker, take longest (~0.5 s each on hybrid). The whole ``nas design`` stays
within its time limit (default 25 s): past it, the best designs found so far are returned with their gap.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from nas.blocks.common import conv_spatial, numel
from nas.blocks.layer import check_layer, layer_cost
from nas.cost.budget import Budget
from nas.cost.count import BYTES_PER_ELEMENT, conv_unit_cost, count, head_cost
from nas.errors import BudgetError, NASError
from nas.latency.model import FunctionLatency, LatencyModel
from nas.proxies.entropy import conv_entropy, effectiveness, layer_entropy, stem_unit, structural_entropy
from nas.space.arch import Arch, LayerChoice, StageChoice
from nas.space.language import LAYER_KEYS
from nas.space.resolve import ConvUnit, NetPlan, layer_cfg
from nas.space.space import SearchSpace, load_space
from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params

Latency = LatencyModel | FunctionLatency
"""What the programme predicts latency with: a device's LatencyModel, or a plain function (tests, benches)."""

SOLVER = "scipy.optimize.milp (HiGHS)"
COUNTED = "counted analytically"


def _predict(model: Latency, archs: Sequence[Arch], chunk: int = 4096) -> np.ndarray:
    if not archs:
        return np.zeros(0)
    return np.concatenate([model.predict(archs[i : i + chunk]) for i in range(0, len(archs), chunk)])


# ------------------------------------------------------------------------------------------ results
@dataclass
class Design:
    """One designed arch with its score, counted costs, predicted latency and how it was found."""

    arch: Arch
    score: float
    rho: float
    params: int
    macs: int
    memory: int
    latency: float | None
    latency_source: str | None
    predicted: dict[str, float]
    solver: str
    time_s: float
    gap: float
    iterations: list[dict[str, float]] = field(default_factory=list)

    def costs(self) -> dict[str, float]:
        out: dict[str, float] = {"params": self.params, "macs": self.macs, "memory": self.memory}
        if self.latency is not None:
            out["latency"] = self.latency
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.arch.id,
            "arch": str(self.arch),
            "score": self.score,
            "rho": self.rho,
            "params": self.params,
            "macs": self.macs,
            "memory": self.memory,
            "latency_ms": self.latency,
            "cost_provenance": COUNTED,
            "latency_provenance": self.latency_source,
            "programme_prediction": self.predicted,
            "solver": self.solver,
            "time_s": self.time_s,
            "mip_gap": self.gap,
            "latency_iterations": self.iterations,
            "spec": self.arch.to_dict(),
        }


@dataclass
class DesignResult:
    """The designs (best first) and how the programmes went."""

    designs: list[Design]
    space: str
    budget: Budget
    rho0: float | None
    solver: str
    time_s: float
    programmes: int
    skipped: int
    lp_bounds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "budget": self.budget.texts,
            "rho0": self.rho0,
            "solver": self.solver,
            "time_s": self.time_s,
            "milps_solved": self.programmes,
            "programmes_skipped_by_bound": self.skipped,
            "designs": [d.to_dict() for d in self.designs],
        }


def default_rho(space: SearchSpace) -> float:
    """Default effectiveness bound: rho of the space's largest arch (or of its smallest, if higher).

    Our choice, not DeepMAD's (which tunes rho0 per task): a design may not be deeper for its width
    than the space's own largest network, so the entropy's preference for depth cannot produce deep
    and narrow designs the space's author did not intend; the smallest arch always stays allowed.
    """
    return max(effectiveness(space.max()), effectiveness(space.min()))


# ------------------------------------------------------------------------------------- catalogue
@dataclass
class _Unit:
    entropy: float
    params: int
    macs: int
    peak: int
    width: int = 0
    active: int = 0


_ZERO = _Unit(0.0, 0, 0, 0)


@dataclass
class _Catalogue:
    """Every unit of a space at one resolution, costed by the same functions nas.count uses."""

    res: int
    widths: list[tuple[int, ...]]  # W_{-1} (stem) .. W_{S-1}
    pairs: dict[tuple, _Unit]  # (s, w', w) -> downsample (+ stem at s=0, + head at s=S-1)
    firsts: dict[tuple, list[tuple[LayerChoice, _Unit]]]  # (s, w', w) -> in_block first-layer choices
    rests: dict[tuple, list[tuple[LayerChoice, _Unit]]]  # (s, w) -> choices of the other layers
    rest_slots: list[int]  # T_s
    n_out_sp: int  # positions of the final feature map


def _stage_combos(space: SearchSpace, si: int, first: bool) -> list[LayerChoice]:
    st = space.stages[si]
    mixers = st.mixer_choices(0) if first else st.mixers
    out: dict[LayerChoice, None] = {}
    for m, k, r, g in itertools.product(mixers, st.kernels, st.ratios, st.groups):
        out[space._canon_layer(st, m, k, r, g)] = None
    return list(out)


def _catalogue(space: SearchSpace, res: int) -> _Catalogue:
    cache = _CATS.get(space)
    if cache is None:
        cache = _CATS[space] = {}
    if res in cache:
        return cache[res]
    spec, dims = space.spec, space.dims
    in_sp = (res,) * dims
    stem_u = ConvUnit(spec.in_channels, spec.stem_widths[0], in_sp, spec.stem)
    sp = stem_u.out_spatial
    stem_h = stem_unit(space, res)[0]  # the stem's own term (a multi-op stem's, at the first stem width)
    widths = [tuple(spec.stem_widths)] + [tuple(st.widths) for st in space.stages]
    pairs: dict[tuple, _Unit] = {}
    firsts: dict[tuple, list] = {}
    rests: dict[tuple, list] = {}
    slots = []
    n_st = len(space.stages)
    for si, st in enumerate(space.stages):
        sp_in = sp
        if st.downsample == "conv":
            sp = conv_spatial(sp, st.down.kernel, st.down.stride, padding=st.down.padding)
        elif st.downsample == "in_block":
            sp = tuple((s + st.stride - 1) // st.stride for s in sp)
        for pw, w in itertools.product(widths[si], widths[si + 1]):
            u = _Unit(0.0, 0, 0, 0)
            if si == 0:
                su = ConvUnit(spec.in_channels, pw, in_sp, spec.stem)
                sc = conv_unit_cost(su)
                u = _Unit(stem_h, sc.params, sc.macs, spec.in_channels * numel(in_sp) + sc.act)
            if st.downsample == "conv":
                du = ConvUnit(pw, w, sp_in, st.down)
                dc = conv_unit_cost(du)
                u = _Unit(
                    u.entropy + conv_entropy(pw, st.down.kernel, dims),
                    u.params + dc.params,
                    u.macs + dc.macs,
                    max(u.peak, pw * numel(sp_in) + dc.act),
                )
            if st.downsample == "in_block":
                lst = []
                for lc in _stage_combos(space, si, True):
                    cfg = layer_cfg(st, lc, pw, w, sp_in, st.stride, dims)
                    if check_layer(cfg):
                        continue
                    lcost = layer_cost(cfg)
                    lst.append(
                        (
                            lc,
                            _Unit(
                                layer_entropy(cfg),
                                lcost.params,
                                lcost.macs,
                                pw * numel(sp_in) + lcost.act,
                                w,
                                1,
                            ),
                        )
                    )
                firsts[(si, pw, w)] = lst
            pairs[(si, pw, w)] = u
        for w in widths[si + 1]:
            lst = []
            for lc in _stage_combos(space, si, False):
                if lc.mixer == "skip":
                    lst.append((lc, _ZERO))
                    continue
                cfg = layer_cfg(st, lc, w, w, sp, 1, dims)
                lcost = layer_cost(cfg)
                lst.append(
                    (lc, _Unit(layer_entropy(cfg), lcost.params, lcost.macs, w * numel(sp) + lcost.act, w, 1))
                )
            rests[(si, w)] = lst
        slots.append(max(st.depths) - (1 if st.downsample == "in_block" else 0))
    # the head, on the last stage's pairs
    for (si, pw, w), u in pairs.items():
        if si == n_st - 1:
            plan = NetPlan(dims, spec.in_channels, in_sp, stem_u, (), spec.head, w, sp)
            hc = head_cost(plan)
            pairs[(si, pw, w)] = _Unit(u.entropy, u.params + hc.params, u.macs + hc.macs, u.peak)
    cat = _Catalogue(res, widths, pairs, firsts, rests, slots, numel(sp))
    cache[res] = cat
    return cat


_CATS: weakref.WeakKeyDictionary[SearchSpace, dict[int, _Catalogue]] = weakref.WeakKeyDictionary()


def _pareto(
    items: list[tuple[LayerChoice, _Unit]],
    lat: list[float] | None,
    use_peak: bool,
    group: Callable[[LayerChoice], Any],
) -> list[int]:
    """Indices of the choices not dominated (more entropy or less of some limited cost); ties keep the first."""
    idx = [i for i, (lc, _) in enumerate(items) if lc.mixer != "skip"]
    keep = [i for i, (lc, _) in enumerate(items) if lc.mixer == "skip"]
    if not idx:
        return keep
    cols = [[-items[i][1].entropy, items[i][1].params, items[i][1].macs] for i in idx]
    if use_peak:
        for row, i in zip(cols, idx):
            row.append(items[i][1].peak)
    if lat is not None:
        for row, i in zip(cols, idx):
            row.append(lat[i])
    m = np.asarray(cols, dtype=np.float64)
    m = np.round(m, 9)
    groups = [group(items[i][0]) for i in idx]
    same = np.array([[a == b for b in groups] for a in groups])
    le = np.all(m[None, :, :] <= m[:, None, :], axis=2)  # le[i, j]: j <= i everywhere
    lt = np.any(m[None, :, :] < m[:, None, :], axis=2)
    eq = le & ~lt
    n = len(idx)
    earlier = np.tri(n, n, -1, dtype=bool)  # earlier[i, j]: j < i
    dominated = np.any(same & ((le & lt) | (eq & earlier)), axis=1)
    keep += [i for i, d in zip(idx, dominated) if not d]
    return sorted(keep)


# --------------------------------------------------------------------------------------- the MILP
@dataclass
class _Solution:
    arch: Arch
    objective: float  # B (body entropy) from the programme
    signature: dict  # structural variables with their nonzero values (for no-good cuts)
    predicted: dict[str, float]
    gap: float


class _Programme:
    """The integer programme of one resolution (the last width is fixed per solve by variable bounds)."""

    def __init__(
        self,
        space: SearchSpace,
        cat: _Catalogue,
        *,
        rho0: float | None,
        use_peak: bool,
        lat: dict | None,
        uniform: bool,
        peak_cap: float = math.inf,
    ):
        """``peak_cap``: units whose working set alone exceeds it cannot fit the memory budget: left out."""
        self.space, self.cat = space, cat
        self.rho0 = rho0
        keys: list[tuple] = []
        ub: list[float] = []
        cols: dict[str, list[float]] = {
            k: [] for k in ("e", "params", "macs", "peak", "width", "active", "lat")
        }

        def add(key: tuple, u: _Unit, la: float = 0.0, upper: float = 1.0) -> int:
            keys.append(key)
            ub.append(upper)
            cols["e"].append(u.entropy)
            cols["params"].append(u.params)
            cols["macs"].append(u.macs)
            cols["peak"].append(u.peak)
            cols["width"].append(u.width)
            cols["active"].append(u.active)
            cols["lat"].append(la)
            self.index[key] = len(keys) - 1
            return len(keys) - 1

        lat = lat or {}
        self.index: dict[tuple, int] = {}
        stages = space.stages
        n_st = len(stages)
        for (si, pw, w), u in cat.pairs.items():
            add(("p", si, pw, w), u, lat.get(("p", si, pw, w), 0.0), 0.0 if u.peak > peak_cap else 1.0)
        self.groups: list[Callable[[LayerChoice], Any]] = []
        for st in stages:
            gkeys = (
                list(LAYER_KEYS)
                if uniform
                else [k for k in LAYER_KEYS if k not in st.per_layer and len(st.layer_choices(k)) > 1]
            )
            self.groups.append(lambda lc, g=tuple(gkeys): tuple(getattr(lc, k) for k in g))
        for (si, pw, w), items in cat.firsts.items():
            la = [lat.get(("f", si, pw, w, lc), 0.0) for lc, _ in items]
            for i in _pareto(items, la if lat else None, use_peak, self.groups[si]):
                if items[i][1].peak <= peak_cap:
                    add(("f", si, pw, w, items[i][0]), items[i][1], la[i])
        for (si, w), items in cat.rests.items():
            la = [lat.get(("x", si, w, lc), 0.0) for lc, _ in items]
            if cat.rest_slots[si] == 0:
                continue
            for i in _pareto(items, la if lat else None, use_peak, self.groups[si]):
                if items[i][1].peak <= peak_cap:
                    add(("x", si, w, items[i][0]), items[i][1], la[i], float(cat.rest_slots[si]))
        for si, st in enumerate(stages):
            if len(st.depths) > 1:
                for d in st.depths:
                    add(("d", si, d), _ZERO)
        self.stage_groups: list[list] = []
        for si in range(n_st):
            gs = {
                self.groups[si](k[-1])
                for k in self.index
                if k[0] in ("x", "f") and k[1] == si and k[-1].mixer != "skip"
            }
            gs_sorted = sorted(gs, key=repr)
            self.stage_groups.append(gs_sorted if len(gs_sorted) > 1 else [])
            for g in self.stage_groups[si]:
                add(("u", si, g), _ZERO)
        self.max_layers = sum(max(st.depths) for st in stages)
        # memory: the peak working set P >= every chosen unit's; the stem's smallest is always paid
        self.peak_floor = min(u.peak for (si, _, _), u in cat.pairs.items() if si == 0)
        if use_peak:
            for k in [k for k in self.index if k[0] == "x"]:
                if cols["peak"][self.index[k]] > self.peak_floor:
                    add(("b",) + k[1:], _ZERO)
        self.peak_var = add(("P",), _ZERO, upper=np.inf) if use_peak else None
        self.keys = keys
        self.ub = np.asarray(ub, dtype=np.float64)
        self.c = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
        self.n = len(keys)
        self._rows(stages)

    # rows independent of the limits ---------------------------------------------------------------
    def _rows(self, stages) -> None:
        r: list[int] = []
        cidx: list[int] = []
        val: list[float] = []
        lo: list[float] = []
        hi: list[float] = []

        def add_row(items: list[tuple[int, float]], lb: float, ub: float) -> None:
            row = len(lo)
            for j, v in items:
                r.append(row)
                cidx.append(j)
                val.append(v)
            lo.append(lb)
            hi.append(ub)

        ix = self.index
        cat = self.cat
        n_st = len(stages)
        pairs: dict[int, list[tuple]] = {}
        firsts: dict[int, list[tuple]] = {}
        xs: dict[tuple, list[tuple]] = {}
        for k in ix:
            if k[0] == "p":
                pairs.setdefault(k[1], []).append(k)
            elif k[0] == "f":
                firsts.setdefault(k[1], []).append(k)
            elif k[0] == "x":
                xs.setdefault((k[1], k[2]), []).append(k)
        add_row([(ix[k], 1.0) for k in pairs[0]], 1, 1)
        for si in range(n_st - 1):
            for w in cat.widths[si + 1]:
                items = [(ix[k], 1.0) for k in pairs[si] if k[3] == w]
                items += [(ix[k], -1.0) for k in pairs[si + 1] if k[2] == w]
                add_row(items, 0, 0)
        for si, st in enumerate(stages):
            ib = st.downsample == "in_block"
            if ib:
                for pk in pairs[si]:
                    add_row(
                        [(ix[k], 1.0) for k in firsts.get(si, []) if k[2:4] == pk[2:4]] + [(ix[pk], -1.0)],
                        0,
                        0,
                    )
            count_items: list[tuple[int, float]] = []
            t_s = float(cat.rest_slots[si])
            for w in cat.widths[si + 1]:
                klist = xs.get((si, w), [])
                if klist:
                    p_w = [(ix[k], -t_s) for k in pairs[si] if k[3] == w]
                    add_row([(ix[k], 1.0) for k in klist] + p_w, -np.inf, 0)
                count_items += [(ix[k], 1.0) for k in klist]
            first = 1.0 if ib else 0.0
            if len(st.depths) > 1:
                add_row([(ix[("d", si, d)], 1.0) for d in st.depths], 1, 1)
                add_row(count_items + [(ix[("d", si, d)], -float(d)) for d in st.depths], -first, -first)
            else:
                d = st.depths[0] - first
                add_row(count_items, d, d)
            if self.stage_groups[si]:
                add_row([(ix[("u", si, g)], 1.0) for g in self.stage_groups[si]], 1, 1)
                grp = self.groups[si]
                for k in firsts.get(si, []) + [k for w in cat.widths[si + 1] for k in xs.get((si, w), [])]:
                    if k[-1].mixer == "skip":
                        continue
                    big = 1.0 if k[0] == "f" else t_s
                    add_row([(ix[k], 1.0), (ix[("u", si, grp(k[-1]))], -big)], -np.inf, 0)
        if self.rho0 is not None:
            # L^2 <= rho0 W for an integer L = sum(active) is exactly the set of its tangents at the
            # integers: 2 m L - m^2 <= rho0 W for m = 1..max_layers (the convex hull, no extra variables)
            act = np.nonzero(self.c["active"])[0]
            for m in range(1, self.max_layers + 1):
                add_row(
                    [(int(j), 2.0 * m * self.c["active"][j] - self.rho0 * self.c["width"][j]) for j in act],
                    -np.inf,
                    float(m * m),
                )
        if self.peak_var is not None:
            pk, peak = self.peak_var, self.c["peak"]
            for group in list(pairs.values()) + list(firsts.values()):  # exactly one chosen per stage
                add_row([(ix[k], float(peak[ix[k]])) for k in group] + [(pk, -1.0)], -np.inf, 0)
            for k, j in ix.items():
                if k[0] == "b":
                    x = ix[("x",) + k[1:]]
                    add_row([(x, 1.0), (j, -float(self.ub[x]))], -np.inf, 0)
                    add_row([(j, float(peak[x])), (pk, -1.0)], -np.inf, 0)
            add_row([(pk, 1.0)], self.peak_floor, np.inf)
        self._base = (r, cidx, val, lo, hi)

    # solving -------------------------------------------------------------------------------------
    def _assemble(
        self,
        limits: dict[str, float],
        cuts: Sequence[dict],
        lat_limit: float | None,
        min_objective: float = -math.inf,
    ):
        """Objective, integrality, bounds and constraints; each cut may add binary columns."""
        r, cidx, val, lo, hi = (list(x) for x in self._base)
        n = self.n
        extra_ub: list[float] = []

        def dense_row(coef: np.ndarray, lb: float, ub: float) -> None:
            row = len(lo)
            nz = np.nonzero(coef)[0]
            r.extend([row] * len(nz))
            cidx.extend(nz.tolist())
            val.extend(coef[nz].tolist())
            lo.append(lb)
            hi.append(ub)

        for key in ("params", "macs"):
            if key in limits:
                dense_row(self.c[key], -np.inf, limits[key])
        if "memory" in limits and self.peak_var is not None:
            coef = BYTES_PER_ELEMENT * self.c["params"].copy()
            coef[self.peak_var] = BYTES_PER_ELEMENT
            dense_row(coef, -np.inf, limits["memory"])
        if lat_limit is not None:
            dense_row(self.c["lat"], -np.inf, lat_limit)
        if math.isfinite(min_objective):  # only solutions that beat the incumbents are of interest
            dense_row(self.c["e"], min_objective, np.inf)
        # no-good cuts: sum over binaries of |v - v*| + sum of counts that were 0 + one binary z per count
        # that was positive (z = 1 only if that count dropped below its value) >= 1
        for sig in cuts:
            if any(k not in self.index for k in sig):
                continue  # uses a choice this programme does not have: cannot recur
            terms: dict[int, float] = {}
            rhs = 1.0
            for k, j in self.index.items():
                if k[0] in ("p", "f", "d"):
                    if k in sig:
                        terms[j] = -1.0
                        rhs -= 1.0
                    else:
                        terms[j] = 1.0
                elif k[0] == "x":
                    if k in sig:
                        z = n + len(extra_ub)
                        extra_ub.append(1.0)
                        v, big = sig[k], self.ub[j]
                        row = len(lo)
                        r.extend([row, row])
                        cidx.extend([j, z])
                        val.extend([1.0, big])
                        lo.append(-np.inf)
                        hi.append(v - 1.0 + big)
                        terms[z] = 1.0
                    else:
                        terms[j] = 1.0
            row = len(lo)
            r.extend([row] * len(terms))
            cidx.extend(terms)
            val.extend(terms.values())
            lo.append(rhs)
            hi.append(np.inf)
        m = n + len(extra_ub)
        a = coo_array(
            (
                np.asarray(val, dtype=np.float64),
                (np.asarray(r, dtype=np.int64), np.asarray(cidx, dtype=np.int64)),
            ),
            shape=(len(lo), m),
        ).tocsr()
        cons = LinearConstraint(a, np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
        integrality = np.ones(m)
        if self.peak_var is not None:
            integrality[self.peak_var] = 0
        ub = np.concatenate([self.ub, np.asarray(extra_ub)])
        return m, cons, integrality, ub

    def solve(
        self,
        last_width: int,
        limits: dict[str, float],
        *,
        cuts: Sequence[dict] = (),
        lat_limit: float | None = None,
        relax: bool = False,
        time_limit: float = 10.0,
        gap: float = 1e-6,
        objective: np.ndarray | None = None,
        min_objective: float = -math.inf,
    ) -> tuple[_Solution | None, float]:
        """Solve (or relax) with the last width fixed; returns (solution or None, objective bound).

        ``min_objective``: a lower limit on the entropy body (an incumbent to beat): the solver prunes
        every branch that cannot reach it, and reports None when nothing can.
        """
        m, cons, integrality, ub = self._assemble(limits, cuts, lat_limit, min_objective)
        last = len(self.space.stages) - 1
        for k, j in self.index.items():
            if k[0] == "p" and k[1] == last and k[3] != last_width:
                ub[j] = 0.0
        c = np.zeros(m)
        c[: self.n] = -self.c["e"] if objective is None else objective
        if relax:
            integrality[:] = 0
        res = milp(
            c,
            integrality=integrality,
            bounds=Bounds(np.zeros(m), ub),
            constraints=cons,
            options={"time_limit": max(0.05, time_limit), "mip_rel_gap": gap, "disp": False},
        )
        if res.x is None or res.status not in (0, 1):
            return None, -math.inf
        if relax:
            return None, -res.fun
        bound = getattr(res, "mip_dual_bound", None)
        bound = -res.fun if bound is None or not math.isfinite(bound) else -bound
        sol_gap = float(getattr(res, "mip_gap", 0.0) or 0.0)
        return self._decode(np.round(res.x[: self.n]).astype(int), sol_gap), bound

    def _decode(self, x: np.ndarray, gap: float) -> _Solution:
        space, cat = self.space, self.cat
        widths: dict[int, int] = {}
        stem = None
        firsts: dict[int, LayerChoice] = {}
        counts: dict[int, dict[LayerChoice, int]] = {}
        sig: dict[tuple, int] = {}
        for j in np.nonzero(x)[0]:
            k = self.keys[j]
            if k[0] == "p":
                widths[k[1]] = k[3]
                if k[1] == 0:
                    stem = k[2]
            elif k[0] == "f":
                firsts[k[1]] = k[4]
            elif k[0] == "x":
                counts.setdefault(k[1], {})[k[3]] = int(x[j])
            if k[0] in ("p", "f", "x", "d"):
                sig[k] = int(x[j])
        stages = []
        for si in range(len(space.stages)):
            order = {lc: i for i, (lc, _) in enumerate(cat.rests[(si, widths[si])])}
            layers = [firsts[si]] if si in firsts else []
            for lc, n in sorted(
                counts.get(si, {}).items(), key=lambda kv: (kv[0].mixer == "skip", order[kv[0]])
            ):
                layers += [lc] * n
            stages.append(StageChoice(len(layers), widths[si], tuple(layers)))
        arch = space.make_arch(Arch(space, cat.res, stem, tuple(stages)).to_dict(), "<design>")
        xs = x.astype(np.float64)
        pred = {
            "entropy_body": float(self.c["e"] @ xs),
            "params": float(self.c["params"] @ xs),
            "macs": float(self.c["macs"] @ xs),
        }
        used = [j for j in np.nonzero(x)[0] if self.keys[j][0] in ("p", "f", "x")]
        peak = max(float(self.c["peak"][j]) for j in used)
        pred["memory"] = BYTES_PER_ELEMENT * (pred["params"] + peak)
        pred["latency_linear"] = float(self.c["lat"] @ xs)
        return _Solution(arch, pred["entropy_body"], sig, pred, gap)


# ------------------------------------------------------------------------------- linearised latency
def _with_stage(arch: Arch, si: int, stage: StageChoice) -> Arch:
    stages = list(arch.stages)
    stages[si] = stage
    return Arch(arch.space, arch.resolution, arch.stem, tuple(stages))


def _linearise(space: SearchSpace, cat: _Catalogue, ref: Arch, model: Latency) -> tuple[dict, float]:
    """Per-unit latency coefficients around ``ref`` (see the module docstring) and the constant term.

    Returns ``(coefs, const)`` with ``const + sum(coefs of the arch's units) == predict(ref)`` at ``ref``.
    """
    archs: list[Arch] = [ref]
    plan: list[tuple] = []
    for si, st in enumerate(space.stages):
        ib = st.downsample == "in_block"
        depths = sorted({min(st.depths), max(st.depths)})
        ref_first = ref.stages[si].layers[0]
        first_ok = set(_stage_combos(space, si, True))
        for w in cat.widths[si + 1]:
            for lc, _ in cat.rests[(si, w)]:
                for d in depths:
                    if ib and lc not in first_ok:
                        layers = (ref_first,) + (lc,) * (d - 1)
                    else:
                        layers = (lc,) * d
                    plan.append((si, w, lc, d))
                    archs.append(_with_stage(ref, si, StageChoice(d, w, layers)))
    preds = _predict(model, archs)
    base = float(preds[0])
    got: dict[tuple, float] = {p: float(v) for p, v in zip(plan, preds[1:])}
    coefs: dict[tuple, float] = {}
    for si, st in enumerate(space.stages):
        ib = st.downsample == "in_block"
        d1, d2 = min(st.depths), max(st.depths)
        first_ok = set(_stage_combos(space, si, True))
        for w in cat.widths[si + 1]:
            slope: dict[LayerChoice, float] = {}
            inter: dict[LayerChoice, float] = {}
            for lc, _ in cat.rests[(si, w)]:
                p1, p2 = got[(si, w, lc, d1)], got[(si, w, lc, d2)]
                if d2 > d1:
                    slope[lc] = (p2 - p1) / (d2 - d1)
                    inter[lc] = p1 - d1 * slope[lc] - base
                else:
                    slope[lc] = (p1 - base) / d1
                    inter[lc] = 0.0
            for lc in slope:
                coefs[("x", si, w, lc)] = slope[lc]
            if ib:
                for pw in cat.widths[si]:
                    for lc, _ in cat.firsts.get((si, pw, w), []):
                        if lc in slope and lc in first_ok:
                            coefs[("f", si, pw, w, lc)] = slope[lc] + inter[lc]
            else:
                beta = float(np.median([inter[lc] for lc in inter if lc.mixer != "skip"] or [0.0]))
                for pw in cat.widths[si]:
                    coefs[("p", si, pw, w)] = coefs.get(("p", si, pw, w), 0.0) + beta
    total = sum(_arch_lat_terms(ref, coefs))
    return coefs, base - total


def _arch_lat_terms(arch: Arch, coefs: dict) -> list[float]:
    space = arch.space
    out = []
    prev = arch.stem
    for si, (st, ch) in enumerate(zip(space.stages, arch.stages)):
        out.append(coefs.get(("p", si, prev, ch.width), 0.0))
        layers = ch.layers
        if st.downsample == "in_block":
            out.append(coefs.get(("f", si, prev, ch.width, layers[0]), 0.0))
            layers = layers[1:]
        out += [coefs.get(("x", si, ch.width, lc), 0.0) for lc in layers]
        prev = ch.width
    return out


# ---------------------------------------------------------------------------------------- checks
def _min_cost(space: SearchSpace, key: str) -> float:
    """The exact smallest params/macs/memory of any arch of the space (small programmes, smallest input)."""
    cat = _catalogue(space, min(space.spec.resolutions))
    prog = _Programme(space, cat, rho0=None, use_peak=key == "memory", lat=None, uniform=False)
    obj = prog.c["macs" if key == "macs" else "params"].copy()
    if key == "memory":
        obj = BYTES_PER_ELEMENT * obj
        obj[prog.peak_var] = BYTES_PER_ELEMENT
    best = math.inf
    for wl in cat.widths[-1]:
        sol, _ = prog.solve(wl, {}, objective=obj, time_limit=5.0)
        if sol is not None:
            best = min(best, sol.predicted[key])
    return best


_FMT = {"params": fmt_params, "macs": fmt_macs, "memory": fmt_bytes, "latency": fmt_ms}


def check_budget(space: SearchSpace, budget: Budget, latency: Latency | None = None) -> None:
    """Raise BudgetError when a limit is below what the space's smallest arch needs (before any solving)."""
    if "latency" in budget and latency is None:
        raise BudgetError(
            f"budget {budget.get('latency')}: a latency budget needs a device "
            f"with a latency predictor"
        )
    smallest = space.min()
    have = count(smallest).as_dict()
    for c in budget:
        if c.key == "latency":
            v = float(_predict(latency, [smallest])[0])
            if v > c.limit:
                raise BudgetError(
                    f"budget '{c.text}': impossible in space {space.name}: its smallest arch "
                    f"(space.min() {smallest.id}) is predicted at {fmt_ms(v)} "
                    f"({latency.provenance})"
                )
            continue
        if have[c.key] <= c.limit:
            continue
        exact = min(have[c.key], _min_cost(space, c.key))
        if exact > c.limit:
            raise BudgetError(
                f"budget '{c.text}': impossible in space {space.name}: the smallest achievable "
                f"{c.key} is {_FMT[c.key](exact)} (space.min() {smallest.id} has "
                f"{_FMT[c.key](have[c.key])}, {COUNTED})"
            )


# ------------------------------------------------------------------------------------------ design
@dataclass
class _Sub:
    """One (resolution, last width) programme and its state across solves."""

    res: int
    last_width: int
    factor: float
    bound: float
    cuts: list[dict] = field(default_factory=list)
    margin: float = 0.0
    ref: Arch | None = None


def design(
    space: SearchSpace | str,
    budget: Budget | str | Sequence[str] | None = None,
    *,
    top: int = 1,
    rho: float | None | str = "default",
    latency: Latency | None = None,
    time_limit: float = 25.0,
    uniform: bool = False,
    max_iter: int = 6,
    mip_gap: float = 1e-6,
    progress: Callable[[str], None] | None = None,
) -> DesignResult:
    """Design the ``top`` best archs of ``space`` under ``budget`` by integer programming (module docstring).

    ``rho``: the effectiveness bound rho0 ("default": :func:`default_rho`; None: no bound).
    ``latency``: a :class:`nas.latency.LatencyModel` (or any object with ``predict(archs)`` and
    ``provenance``), needed for a latency budget and used to report latency.
    ``uniform``: restrict every stage to one layer choice (the stage-uniform formulation).
    """
    t0 = time.perf_counter()
    space = load_space(space)
    budget = Budget.parse(budget)
    if top < 1:
        raise NASError(f"top {top}: must be at least 1")
    rho0 = default_rho(space) if rho == "default" else (None if rho is None else float(rho))
    if rho0 is not None and rho0 <= 0:
        raise NASError(f"rho {rho0}: the effectiveness bound must be positive")
    check_budget(space, budget, latency)
    limits = {c.key: c.limit for c in budget if c.key != "latency"}
    lat_limit = budget.get("latency").limit if "latency" in budget else None
    mem_limit = limits.get("memory")
    use_peak = mem_limit is not None
    deadline = t0 + time_limit

    progs: dict[tuple, _Programme] = {}
    lin_cache: dict[tuple, tuple[dict, float]] = {}
    peak_cap: dict[int, float] = {}
    n_solved = 0

    def programme(res: int, ref: Arch | None) -> tuple[_Programme, float]:
        cat = _catalogue(space, res)
        if use_peak and res not in peak_cap:
            free = _Programme(space, cat, rho0=None, use_peak=False, lat=None, uniform=False)
            lb = min(-free.solve(wl, {}, relax=True, objective=free.c["params"])[1] for wl in cat.widths[-1])
            peak_cap[res] = mem_limit / BYTES_PER_ELEMENT - lb
        coefs, const = None, 0.0
        if lat_limit is not None:
            if (res, ref.id) not in lin_cache:
                lin_cache[(res, ref.id)] = _linearise(space, cat, ref, latency)
            coefs, const = lin_cache[(res, ref.id)]
        key = (res, ref.id if coefs is not None else None)
        if key not in progs:
            progs[key] = _Programme(
                space,
                cat,
                rho0=rho0,
                use_peak=use_peak,
                lat=coefs,
                uniform=uniform,
                peak_cap=peak_cap.get(res, math.inf),
            )
        return progs[key], const

    def ref0(res: int) -> Arch:
        m = space.min()
        return Arch(space, res, m.stem, m.stages)

    def solve_exact(
        sub: _Sub, ref: Arch | None, margin: float, floor: float
    ) -> tuple[_Solution | None, float]:
        """One MILP (latency linearised around ``ref`` with its limit tightened by ``margin``); only
        solutions scoring at least ``floor`` are searched for."""
        nonlocal n_solved
        prog, const = programme(sub.res, ref)
        remaining = max(0.2, deadline - time.perf_counter())
        lat_lim = None if lat_limit is None else lat_limit - margin - const
        min_obj = floor / sub.factor - 1e-9 * abs(floor / sub.factor) if math.isfinite(floor) else -math.inf
        sol, _ = prog.solve(
            sub.last_width,
            limits,
            cuts=sub.cuts,
            lat_limit=lat_lim,
            time_limit=remaining,
            gap=mip_gap,
            min_objective=min_obj,
        )
        n_solved += 1
        return sol, const

    def solve_sub(sub: _Sub, floor: float = -math.inf) -> tuple[_Solution | None, list[dict]]:
        """Solve one programme; with a latency budget, the sequential linearisation loop."""
        if lat_limit is None:
            return solve_exact(sub, None, 0.0, floor)[0], []
        hist: list[dict] = []
        ref = sub.ref or ref0(sub.res)
        for it in range(1, max_iter + 1):
            sol, const = solve_exact(sub, ref, sub.margin, floor)
            if sol is None:
                hist.append(
                    {"iteration": it, "linear_limit_ms": lat_limit - sub.margin, "status": "infeasible"}
                )
                return None, hist
            true = float(_predict(latency, [sol.arch])[0])
            lin = const + sol.predicted["latency_linear"]
            hist.append(
                {
                    "iteration": it,
                    "linear_limit_ms": lat_limit - sub.margin,
                    "linear_ms": lin,
                    "predicted_ms": true,
                }
            )
            if true <= lat_limit:
                sol.predicted["latency_linear"] = lin
                return sol, hist
            sub.margin += true - lat_limit
            ref = sub.ref = sol.arch
            if time.perf_counter() > deadline:
                break
        return None, hist

    # every (resolution, last width) programme, with its LP bound
    subs: list[_Sub] = []
    bounds: dict[str, float] = {}
    for res in space.spec.resolutions:
        cat = _catalogue(space, res)
        ref = ref0(res) if lat_limit is not None else None
        prog, const = programme(res, ref)
        for wl in cat.widths[-1]:
            factor = math.log(wl * cat.n_out_sp)
            _, ub = prog.solve(
                wl, limits, relax=True, lat_limit=None if lat_limit is None else lat_limit - const
            )
            if lat_limit is not None and not math.isfinite(ub):
                ub = math.inf  # the linearisation around the smallest arch may be pessimistic: keep it
            bounds[f"r{res}/w{wl}"] = factor * ub
            subs.append(_Sub(res, wl, factor, factor * ub))
    subs.sort(key=lambda s: -s.bound)

    heap: list[tuple] = []
    found: list[float] = []
    skipped = 0
    tie = itertools.count()
    for sub in subs:
        kth = sorted(found, reverse=True)[top - 1] if len(found) >= top else -math.inf
        if sub.bound == -math.inf or sub.bound < kth - 1e-9 or time.perf_counter() > deadline:
            skipped += 1
            continue
        sol, hist = solve_sub(sub, kth)
        if progress:
            progress(
                f"r{sub.res}/w{sub.last_width}: "
                + (f"{sub.factor * sol.objective:.2f}" if sol else "infeasible or below the incumbents")
            )
        if sol is not None:
            score = sub.factor * sol.objective
            found.append(score)
            heapq.heappush(heap, (-round(score, 6), sol.predicted["macs"], next(tie), sub, sol, hist))
    if not heap:
        why = f" with rho <= {rho0:.4g} (rho)" if rho0 is not None else ""
        raise BudgetError(
            f"no arch of {space.name} meets {budget}{why} "
            f"(within {time_limit:.0f} s); relax the budget or the effectiveness bound"
        )

    designs: list[Design] = []
    while heap and len(designs) < top:
        _, _, _, sub, sol, hist = heapq.heappop(heap)
        designs.append(_finish(sol, sub, hist, latency, time.perf_counter() - t0))
        if len(designs) < top and time.perf_counter() < deadline:
            sub.cuts.append(sol.signature)
            need = top - len(designs)  # a next-best below the need-th best still queued cannot make it
            queued = sorted((-h[0] for h in heap), reverse=True)
            nxt, h2 = solve_sub(sub, queued[need - 1] if len(queued) >= need else -math.inf)
            if nxt is not None:
                heapq.heappush(
                    heap,
                    (-round(sub.factor * nxt.objective, 6), nxt.predicted["macs"], next(tie), sub, nxt, h2),
                )
    return DesignResult(
        designs, space.name, budget, rho0, SOLVER, time.perf_counter() - t0, n_solved, skipped, bounds
    )


def _finish(
    sol: _Solution, sub: _Sub, hist: list[dict], latency: Latency | None, elapsed: float
) -> Design:
    arch = sol.arch
    c = count(arch)
    lat = float(_predict(latency, [arch])[0]) if latency is not None else None
    pred = dict(sol.predicted)
    pred["score"] = sub.factor * sol.objective
    return Design(
        arch,
        structural_entropy(arch),
        effectiveness(arch),
        c.params,
        c.macs,
        c.memory,
        lat,
        latency.provenance if latency is not None else None,
        pred,
        SOLVER,
        elapsed,
        sol.gap,
        hist,
    )
