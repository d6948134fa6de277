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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.cost.budget import Budget
from nas.cost.count import BYTES_PER_ELEMENT, count
from nas.design.catalogue import catalogue
from nas.design.linearise import Latency, linearise, predict_all
from nas.design.milp import SOLVER, Programme, Solution
from nas.errors import BudgetError, NASError
from nas.proxies.entropy import effectiveness, structural_entropy
from nas.reporting import Progress, Reporter, or_silent
from nas.space.arch import Arch
from nas.space.space import SearchSpace, load_space
from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params

COUNTED = "counted analytically"


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



# ---------------------------------------------------------------------------------------- checks
def _min_cost(space: SearchSpace, key: str) -> float:
    """The exact smallest params/macs/memory of any arch of the space (small programmes, smallest input)."""
    cat = catalogue(space, min(space.spec.resolutions))
    prog = Programme(space, cat, rho0=None, use_peak=key == "memory", lat=None, uniform=False)
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
            v = float(predict_all(latency, [smallest])[0])
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
    reporter: Reporter | None = None,
) -> DesignResult:
    """Design the ``top`` best archs of ``space`` under ``budget`` by integer programming (module docstring).

    ``rho``: the effectiveness bound rho0 ("default": :func:`default_rho`; None: no bound).
    ``latency``: a :class:`nas.latency.LatencyModel` (or any object with ``predict(archs)`` and
    ``provenance``), needed for a latency budget and used to report latency.
    ``uniform``: restrict every stage to one layer choice (the stage-uniform formulation).
    ``reporter`` shows a progress step for every programme solved (:mod:`nas.reporting`; default silent).
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
    d = _Designer(space, budget, rho0, latency, t0 + time_limit, uniform, max_iter, mip_gap)
    with or_silent(reporter).progress(None, f"nas design {space.name}") as bar:
        designs, skipped, bounds = d.run(top, bar, t0)
    if not designs:
        why = f" with rho <= {rho0:.4g} (rho)" if rho0 is not None else ""
        raise BudgetError(
            f"no arch of {space.name} meets {budget}{why} "
            f"(within {time_limit:.0f} s); relax the budget or the effectiveness bound"
        )
    return DesignResult(
        designs, space.name, budget, rho0, SOLVER, time.perf_counter() - t0, d.n_solved, skipped, bounds
    )


class _Designer:
    """The programmes of one design call and their solving: per (resolution, last width) one MILP, the
    latency loop of sequential linearisation, and the best-first order over their LP bounds."""

    def __init__(self, space: SearchSpace, budget: Budget, rho0: float | None, latency: Latency | None,
                 deadline: float, uniform: bool, max_iter: int, mip_gap: float):
        self.space, self.budget, self.rho0, self.latency = space, budget, rho0, latency
        self.deadline, self.uniform, self.max_iter, self.mip_gap = deadline, uniform, max_iter, mip_gap
        self.limits = {c.key: c.limit for c in budget if c.key != "latency"}
        self.lat_limit = budget.get("latency").limit if "latency" in budget else None
        self.mem_limit = self.limits.get("memory")
        self.progs: dict[tuple, Programme] = {}
        self.lin_cache: dict[tuple, tuple[dict, float]] = {}
        self.peak_cap: dict[int, float] = {}
        self.n_solved = 0

    def programme(self, res: int, ref: Arch | None) -> tuple[Programme, float]:
        """The programme at ``res`` (latency linearised around ``ref``) and its latency constant."""
        space, use_peak = self.space, self.mem_limit is not None
        cat = catalogue(space, res)
        if use_peak and res not in self.peak_cap:
            free = Programme(space, cat, rho0=None, use_peak=False, lat=None, uniform=False)
            lb = min(-free.solve(wl, {}, relax=True, objective=free.c["params"])[1] for wl in cat.widths[-1])
            self.peak_cap[res] = self.mem_limit / BYTES_PER_ELEMENT - lb
        coefs, const = None, 0.0
        if self.lat_limit is not None:
            if (res, ref.id) not in self.lin_cache:
                self.lin_cache[(res, ref.id)] = linearise(space, cat, ref, self.latency)
            coefs, const = self.lin_cache[(res, ref.id)]
        key = (res, ref.id if coefs is not None else None)
        if key not in self.progs:
            self.progs[key] = Programme(space, cat, rho0=self.rho0, use_peak=use_peak, lat=coefs,
                                        uniform=self.uniform, peak_cap=self.peak_cap.get(res, math.inf))
        return self.progs[key], const

    def ref0(self, res: int) -> Arch:
        m = self.space.min()
        return Arch(self.space, res, m.stem, m.stages)

    def solve_exact(self, sub: _Sub, ref: Arch | None, margin: float, floor: float
                    ) -> tuple[Solution | None, float]:
        """One MILP (latency linearised around ``ref`` with its limit tightened by ``margin``); only
        solutions scoring at least ``floor`` are searched for."""
        prog, const = self.programme(sub.res, ref)
        remaining = max(0.2, self.deadline - time.perf_counter())
        lat_lim = None if self.lat_limit is None else self.lat_limit - margin - const
        min_obj = floor / sub.factor - 1e-9 * abs(floor / sub.factor) if math.isfinite(floor) else -math.inf
        sol, _ = prog.solve(sub.last_width, self.limits, cuts=sub.cuts, lat_limit=lat_lim, time_limit=remaining,
                            gap=self.mip_gap, min_objective=min_obj)
        self.n_solved += 1
        return sol, const

    def solve_sub(self, sub: _Sub, floor: float = -math.inf) -> tuple[Solution | None, list[dict]]:
        """Solve one programme; with a latency budget, the sequential linearisation loop."""
        lat_limit = self.lat_limit
        if lat_limit is None:
            return self.solve_exact(sub, None, 0.0, floor)[0], []
        hist: list[dict] = []
        ref = sub.ref or self.ref0(sub.res)
        for it in range(1, self.max_iter + 1):
            sol, const = self.solve_exact(sub, ref, sub.margin, floor)
            if sol is None:
                hist.append({"iteration": it, "linear_limit_ms": lat_limit - sub.margin, "status": "infeasible"})
                return None, hist
            true = float(predict_all(self.latency, [sol.arch])[0])
            lin = const + sol.predicted["latency_linear"]
            hist.append({"iteration": it, "linear_limit_ms": lat_limit - sub.margin, "linear_ms": lin,
                         "predicted_ms": true})
            if true <= lat_limit:
                sol.predicted["latency_linear"] = lin
                return sol, hist
            sub.margin += true - lat_limit
            ref = sub.ref = sol.arch
            if time.perf_counter() > self.deadline:
                break
        return None, hist

    def bounds(self) -> tuple[list[_Sub], dict[str, float]]:
        """Every (resolution, last width) programme with its LP bound, best first."""
        subs: list[_Sub] = []
        bounds: dict[str, float] = {}
        for res in self.space.spec.resolutions:
            cat = catalogue(self.space, res)
            ref = self.ref0(res) if self.lat_limit is not None else None
            prog, const = self.programme(res, ref)
            for wl in cat.widths[-1]:
                factor = math.log(wl * cat.n_out_sp)
                _, ub = prog.solve(wl, self.limits, relax=True,
                                   lat_limit=None if self.lat_limit is None else self.lat_limit - const)
                if self.lat_limit is not None and not math.isfinite(ub):
                    ub = math.inf  # the linearisation around the smallest arch may be pessimistic: keep it
                bounds[f"r{res}/w{wl}"] = factor * ub
                subs.append(_Sub(res, wl, factor, factor * ub))
        subs.sort(key=lambda s: -s.bound)
        return subs, bounds

    def run(self, top: int, bar: Progress, t0: float) -> tuple[list[Design], int, dict[str, float]]:
        """The ``top`` best designs (best-first over the bounds, then next-best by no-good cuts); ``bar``
        advances by one for every programme solved."""
        subs, bounds = self.bounds()
        heap: list[tuple] = []
        found: list[float] = []
        skipped = 0
        tie = itertools.count()
        for sub in subs:
            kth = sorted(found, reverse=True)[top - 1] if len(found) >= top else -math.inf
            if sub.bound == -math.inf or sub.bound < kth - 1e-9 or time.perf_counter() > self.deadline:
                skipped += 1
                continue
            sol, hist = self.solve_sub(sub, kth)
            bar.advance()
            if sol is not None:
                score = sub.factor * sol.objective
                found.append(score)
                heapq.heappush(heap, (-round(score, 6), sol.predicted["macs"], next(tie), sub, sol, hist))
        designs: list[Design] = []
        while heap and len(designs) < top:
            _, _, _, sub, sol, hist = heapq.heappop(heap)
            designs.append(_finish(sol, sub, hist, self.latency, time.perf_counter() - t0))
            if len(designs) < top and time.perf_counter() < self.deadline:
                sub.cuts.append(sol.signature)
                need = top - len(designs)  # a next-best below the need-th best still queued cannot make it
                queued = sorted((-h[0] for h in heap), reverse=True)
                nxt, h2 = self.solve_sub(sub, queued[need - 1] if len(queued) >= need else -math.inf)
                if nxt is not None:
                    heapq.heappush(heap, (-round(sub.factor * nxt.objective, 6), nxt.predicted["macs"], next(tie),
                                          sub, nxt, h2))
        return designs, skipped, bounds


def _finish(
    sol: Solution, sub: _Sub, hist: list[dict], latency: Latency | None, elapsed: float
) -> Design:
    arch = sol.arch
    c = count(arch)
    lat = float(predict_all(latency, [arch])[0]) if latency is not None else None
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
