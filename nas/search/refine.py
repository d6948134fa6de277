"""Refine: after the re-rank, more archs chosen for the second estimator and scored by it, near the budget's edge.

A training-free score ranks trained accuracy weakly (Kendall tau 0.15 for entropy on hybrid-s), so the archs it
hands the re-rank are little better than random ones, spread over the whole front. Under a budget the user
wants the best arch that fits, and the second estimator (``train:2``: tau 0.67) is the one that can tell, so
``nas search --refine N`` spends ``N`` more of its evaluations where they can pay:

1. **mixer sweep** (YAML spaces): one arch per token-mixer type, every layer of that type where its stage
   allows it, the one using the most of the budget among :data:`SWEEP_DRAWS` draws so converted (half of them
   uniform over the archs inside the budget, half over the whole space). When the host can time archs, each
   mixer gets a ladder of :data:`SWEEP_RUNGS` such archs, each using at least :data:`SWEEP_STEP` less of the
   budget than the one before, all timed here, and the largest measured inside is the one scored: a prediction
   at the budget's very edge is over it about half the time. It finds which block suits the data at this cost
   before the details are tuned.
2. **local search**: mutations of the best archs by the second score (:data:`PARENTS` of them), kept when
   inside the budget and using at least :data:`EDGE` of it (for latency: the prediction times the
   verification's factor), those using the most of it first, scored in batches until ``N`` evaluations are
   spent. When a batch timed here has nothing inside, the next aims :data:`SWEEP_STEP` lower (a predictor that is
   optimistic at the edge would otherwise starve the search); a batch all inside lets it aim half a step higher.

Each new arch is a trial of the study (source ``sweep`` / ``refine``) with its costs and the first score,
so the trials table and the resume work as for any other; its second score is stored as it arrives.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.errors import SpaceError
from nas.reporting import Reporter
from nas.search.feasible import batch_costs, feasible_mask, sample_feasible
from nas.search.proposals import Proposal
from nas.search.rerank import score_rows
from nas.space import Arch, SearchSpace

EDGE = 0.85  # a refined arch uses at least this share of the budget's tightest limit (when any mutant does)
SWEEP_DRAWS = 400  # uniform draws converted to each mixer; the one using the most of the budget is kept
SWEEP_RUNGS = 3  # with a timer: per mixer, this many archs stepping down from the budget's edge are timed
SWEEP_STEP = 0.06  # each rung uses at least this share of the budget less than the rung above it (and the local
#                   search's aim steps down by it after a batch timed all over the budget)
PARENTS = 2  # local search mutates the best this many archs by the second score
MUTATION = 0.12  # each choice of a parent is drawn again with this probability
TRIES = 400  # mutants drawn per batch at most, looking for ones inside the budget near its edge
OVERDRAW = 2  # with a timer, twice the batch's mutants are asked and measured; the first inside are scored
ROUNDS_PER_EVAL = 3  # batches at most per evaluation asked (each must find a mutant measured inside the budget)


@dataclass
class RefineReport:
    """What the refinement did (summary.json ``rerank.refine``)."""

    asked: int
    sweep: dict[str, str] = field(default_factory=dict)  # arch id -> its mixers (most used first)
    local: list[str] = field(default_factory=list)
    scored: int = 0
    reused: int = 0
    eval_s: float = 0.0
    best_before: float | None = None
    best_after: float | None = None
    best_mixer: str | None = None
    measured: int = 0  # new archs timed on this host before any was scored
    ceiling: float = 1.0  # the share of the budget the local search aimed at last (predicted)

    def to_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "sweep": self.sweep, "local": self.local, "scored": self.scored,
                "reused": self.reused, "eval_s": round(self.eval_s, 2), "edge": EDGE, "measured": self.measured,
                "ceiling": round(self.ceiling, 3),
                "best_before": self.best_before, "best_after": self.best_after, "best_mixer": self.best_mixer}

    def line(self) -> str:
        best = ("n/a" if self.best_after is None else
                f"{self.best_before:.4g} -> {self.best_after:.4g}" if self.best_before is not None
                else f"{self.best_after:.4g}")
        sweep = (f"a mixer sweep of {len(self.sweep)} archs (best: {self.best_mixer}), " if self.sweep else "")
        timed = f", {self.measured} timed here first" if self.measured else ""
        return (f"refined: {sweep}{len(self.local)} local-search archs inside the budget using >= {EDGE:.0%} of "
                f"it ({self.scored} scored in {self.eval_s:.0f}s, {self.reused} stored{timed}); best second score "
                f"{best}")


def fill(budget: Any, costs: dict[str, np.ndarray]) -> np.ndarray:
    """How much of the budget each arch uses: its largest value/limit over the budget's keys (1 = at the limit)."""
    n = len(next(iter(costs.values())))
    out = np.zeros(n)
    for con in budget:
        v = costs.get(con.key)
        if v is not None:
            out = np.maximum(out, np.asarray(v, dtype=float) / con.limit)
    return out


def _costs(search: Any, archs: list[Arch]) -> dict[str, np.ndarray]:
    """Counted costs and the latency the budget is tested on for an unmeasured arch (prediction x factor)."""
    return batch_costs(archs, search.tested_latency())


def with_mixer(space: SearchSpace, arch: Arch, mixer: str) -> Arch | None:
    """``arch`` with every layer's mixer set to ``mixer`` where the layer's stage offers it (None if no stage
    does, or the result is not an arch of the space)."""
    d = arch.to_dict()
    hit = False
    for st, sd in zip(space.stages, d["stages"]):
        if mixer not in st.mixers:
            continue
        for layer in sd["layers"]:
            layer["mixer"] = mixer
            for k in ("kernel", "ratio", "groups"):
                if layer.get(k) is None and st.layer_choices(k):
                    layer[k] = st.layer_choices(k)[0]
            hit = True
    if not hit:
        return None
    try:
        return space.make_arch(d)
    except SpaceError:
        return None


def sweep(search: Any, rng: random.Random, seen: set[str], rungs: int = 1) -> list[list[Proposal]]:
    """Per mixer type of the space (see the module docstring), a ladder of up to ``rungs`` archs inside the
    budget: the one using the most of it first, then each using at least :data:`SWEEP_STEP` less."""
    space = search.space
    mixers = sorted({m for st in space.stages for m in st.mixers if m not in ("skip", "identity")})
    base = sample_feasible(space, search.budget, SWEEP_DRAWS // 2, rng, search.tested_latency(), max_draws=20_000)
    base += [space.sample(rng=rng) for _ in range(SWEEP_DRAWS - len(base))]  # and some beyond it
    out = []
    for m in mixers:
        archs = list({a.id: a for a in (with_mixer(space, b, m) for b in base)
                      if a is not None and a.id not in seen}.values())
        if not archs:
            continue
        costs = _costs(search, archs)
        ok = feasible_mask(search.budget, costs)
        used = fill(search.budget, costs)
        ladder: list[Proposal] = []
        top = np.inf
        for i in sorted(np.flatnonzero(ok), key=lambda i: -used[i]):
            if len(ladder) == rungs:
                break
            if used[i] <= top - SWEEP_STEP:
                ladder.append(Proposal(archs[i], "sweep"))
                top = used[i]
        seen.update(p.arch.id for p in ladder)
        if ladder:
            out.append(ladder)
    return out


def mutants(search: Any, parents: list[Arch], n: int, rng: random.Random, seen: set[str],
            ceiling: float = 1.0) -> list[Proposal]:
    """Up to ``n`` distinct unseen mutations of ``parents`` (in turn) inside the budget, using at most ``ceiling``
    of it, those using the most first (at one cost, more capacity trains better: the hand-designed ladders' largest
    rung inside the budget wins)."""
    space = search.space
    drawn: list[Arch] = []
    ids = set(seen)
    for i in range(TRIES):
        a = space.mutate(parents[i % len(parents)], prob=MUTATION, rng=rng)
        if a.id not in ids:
            ids.add(a.id)
            drawn.append(a)
    if not drawn:
        return []
    costs = _costs(search, drawn)
    ok = feasible_mask(search.budget, costs)
    used = fill(search.budget, costs)
    inside = sorted((i for i in range(len(drawn)) if ok[i] and used[i] <= ceiling), key=lambda i: -used[i])
    near = [drawn[i] for i in inside if used[i] >= EDGE]
    rest = [drawn[i] for i in inside if used[i] < EDGE]
    picked = (near + rest)[:n]
    seen.update(a.id for a in picked)
    return [Proposal(a, "refine") for a in picked]


def refine(search: Any, first: Any, second: Any, reporter: Reporter, n: int,
           measure: Callable[[list], bool] | None = None) -> RefineReport:
    """Spend ``n`` evaluations of the second estimator (``second``) on a mixer sweep and a local search (module
    docstring); ``first`` scores the new trials with the search's own estimator. ``measure`` (rows -> whether it
    could) times new archs on this host first, so only those measured inside the budget are scored: a timing
    costs well under a second, a short training tens. Resumes: archs of an earlier, interrupted refinement
    (their trials and second scores are on the study) count against ``n``."""
    rep = RefineReport(asked=n)
    rep.best_before = next((r.rerank_score for r in _ranked(search)), None)
    attrs = search.study.user_attrs  # an earlier run's refined archs: those it scored (the second score is stored)
    done = [r for r in search.rows if r.source in ("sweep", "refine") and r.feasible
            and isinstance(attrs.get(f"rerank:{r.arch_id}"), dict)]
    seen = {r.arch_id for r in search.rows}
    rng = random.Random(search.cfg.seed * 7 + 104729 + len(done))
    batch = max(1, getattr(second, "workers", 1))

    def ask(props: list[Proposal]) -> list:
        """Ask the proposals as trials and measure them (when it can): the rows, in the proposals' order."""
        rows = search.step(first, len(props), proposals=props) if props else []
        if measure is not None and rows:
            rep.measured += len(rows) if measure(rows) else 0
        return rows

    def score(inside: list) -> list:
        tally(score_rows(search, second, inside, reporter, f"refine by {search.cfg.rerank}"))
        return inside

    def tally(counts: tuple[int, int, float]) -> None:
        rep.scored, rep.reused, rep.eval_s = rep.scored + counts[0], rep.reused + counts[1], rep.eval_s + counts[2]

    if done:  # a resumed run: their second scores are read back from the study
        score(done)
    if isinstance(search.space, SearchSpace) and not any(r.source == "sweep" for r in search.rows):
        ladders = sweep(search, rng, seen, SWEEP_RUNGS if measure is not None else 1)
        rows = {r.arch_id: r for r in ask([p for lad in ladders for p in lad])}
        tops = [next((rows[p.arch.id] for p in lad if p.arch.id in rows and rows[p.arch.id].feasible), None)
                for lad in ladders]  # per mixer: the rung using the most of the budget that is inside it
        done += score([r for r in tops if r is not None][:max(0, n - len(done))])
    over = 1 if measure is None else OVERDRAW  # measured first: draw more, as some will time over the budget
    ceiling = 1.0  # the share of the budget the local search's mutants may use at most (as predicted)
    for _ in range(ROUNDS_PER_EVAL * n):
        if len(done) >= n:
            break
        ranked = _ranked(search)
        if not ranked:
            break
        want = min(batch * 4, n - len(done))
        props = mutants(search, [r.arch for r in ranked[:PARENTS]], over * want, rng, seen, ceiling)
        if not props:
            break
        rows = ask(props)
        inside = [r for r in rows if r.feasible]
        if measure is not None:  # predicted near the edge but timed over it: aim lower; all inside: higher again
            ceiling = (ceiling - SWEEP_STEP if not inside else
                       min(1.0, ceiling + SWEEP_STEP / 2) if len(inside) == len(rows) else ceiling)
        done += score(inside[:want])
    rep.ceiling = ceiling
    rep.sweep = {r.arch_id: _mixers(r.arch) for r in done if r.source == "sweep"}
    rep.local = [r.arch_id for r in done if r.source == "refine"]
    rep.best_after = next((r.rerank_score for r in _ranked(search)), None)
    swept = [r for r in done if r.source == "sweep" and r.rerank_score is not None]
    rep.best_mixer = _mixers(max(swept, key=lambda r: r.rerank_score).arch) if swept else None
    return rep


def _ranked(search: Any) -> list:
    """The feasible rows with a second score, best first."""
    return sorted((r for r in search.rows if r.rerank_score is not None and r.feasible), key=lambda r: -r.rerank_score)


def _mixers(arch: Arch) -> str:
    """The mixer types of an arch's layers, most used first (a sweep arch has one, bar stages without it)."""
    counts: dict[str, int] = {}
    for st in arch.stages:
        for layer in st.layers:
            counts[layer.mixer] = counts.get(layer.mixer, 0) + 1
    return "+".join(sorted(counts, key=lambda m: (-counts[m], m)))
