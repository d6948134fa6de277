"""The mixed-integer programme of analytical design: maximise structural entropy under budgets (HiGHS).

One :class:`Programme` per (resolution, last width): binary choice variables per stage and layer slot
over the catalogue (:mod:`nas.design.catalogue`), linear cost rows, the effectiveness bound, and
(optionally) a linearised latency row (:mod:`nas.design.linearise`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from nas.cost.count import BYTES_PER_ELEMENT
from nas.design.catalogue import ZERO_UNIT, Catalogue, CatUnit, pareto_choices
from nas.space.arch import Arch, LayerChoice, StageChoice
from nas.space.language import LAYER_KEYS
from nas.space.space import SearchSpace

SOLVER = "scipy.optimize.milp (HiGHS)"


# --------------------------------------------------------------------------------------- the MILP
@dataclass
class Solution:
    arch: Arch
    objective: float  # B (body entropy) from the programme
    signature: dict  # structural variables with their nonzero values (for no-good cuts)
    predicted: dict[str, float]
    gap: float


class Programme:
    """The integer programme of one resolution (the last width is fixed per solve by variable bounds)."""

    def __init__(
        self,
        space: SearchSpace,
        cat: Catalogue,
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

        def add(key: tuple, u: CatUnit, la: float = 0.0, upper: float = 1.0) -> int:
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
            for i in pareto_choices(items, la if lat else None, use_peak, self.groups[si]):
                if items[i][1].peak <= peak_cap:
                    add(("f", si, pw, w, items[i][0]), items[i][1], la[i])
        for (si, w), items in cat.rests.items():
            la = [lat.get(("x", si, w, lc), 0.0) for lc, _ in items]
            if cat.rest_slots[si] == 0:
                continue
            for i in pareto_choices(items, la if lat else None, use_peak, self.groups[si]):
                if items[i][1].peak <= peak_cap:
                    add(("x", si, w, items[i][0]), items[i][1], la[i], float(cat.rest_slots[si]))
        for si, st in enumerate(stages):
            if len(st.depths) > 1:
                for d in st.depths:
                    add(("d", si, d), ZERO_UNIT)
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
                add(("u", si, g), ZERO_UNIT)
        self.max_layers = sum(max(st.depths) for st in stages)
        # memory: the peak working set P >= every chosen unit's; the stem's smallest is always paid
        self.peak_floor = min(u.peak for (si, _, _), u in cat.pairs.items() if si == 0)
        if use_peak:
            for k in [k for k in self.index if k[0] == "x"]:
                if cols["peak"][self.index[k]] > self.peak_floor:
                    add(("b",) + k[1:], ZERO_UNIT)
        self.peak_var = add(("P",), ZERO_UNIT, upper=np.inf) if use_peak else None
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
    ) -> tuple[Solution | None, float]:
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

    def _decode(self, x: np.ndarray, gap: float) -> Solution:
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
        return Solution(arch, pred["entropy_body"], sig, pred, gap)
