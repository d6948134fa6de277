"""Two-stage ranking: search with a cheap estimator, then score its best archs again with a better one.

``nas search --rerank train:2:fashion-mnist --rerank-top 20``: after the search (and its verification), the
20 best distinct feasible archs by non-dominated sorting on the search's objectives (within a front, the
most spread first) are scored by the second estimator, and the reported front is chosen by that score
among them. A cheap score finds the region; the second one, which ranks trained accuracy far better (its
measured Kendall tau is printed), picks within it. Each second score is stored on the study as it arrives,
so a resumed run does not pay for it again.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.reporting import Reporter
from nas.search.config import measures
from nas.search.estimators import split_score
from nas.search.pareto import nondominated_order
from nas.search.quality import estimator_quality
from nas.search.rows import TrialRow, distinct_feasible

COLUMN = "rerank_score"
"""The TrialRow field (and front column) of the second score."""


def candidates(rows: Sequence[TrialRow], columns: Sequence[str], senses: Sequence[str], top: int) -> list[TrialRow]:
    """The ``top`` best distinct feasible scored archs (one row each) by non-dominated sorting on ``columns``."""
    cand = distinct_feasible(rows, columns)
    if not cand:
        return []
    vals = np.array([[r.value(c) for c in columns] for r in cand], dtype=float)
    return [cand[i] for i in nondominated_order(vals, senses)[:top]]


@dataclass
class StageReport:
    """What a scoring stage after the search did (this re-rank, nas.search.confirm): its estimator, how many
    archs it was to score, scored, read back from the study, in how many seconds, and which."""

    name: str
    provenance: str
    top: int
    scored: int = 0
    reused: int = 0
    eval_s: float = 0.0
    candidates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "measures": measures(self.name), "provenance": self.provenance,
                "quality": estimator_quality(self.name), "top": self.top, "scored": self.scored,
                "reused": self.reused, "eval_s": round(self.eval_s, 2), "candidates": self.candidates}


@dataclass
class RerankReport(StageReport):
    """What the re-rank did (summary.json ``rerank``)."""

    front_before: list[str] = field(default_factory=list)
    refine: Any = None  # nas.search.refine.RefineReport, when the re-rank was refined
    confirm: Any = None  # nas.search.confirm.ConfirmReport, when its best were trained again

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "front_before": self.front_before,
                **({"refine": self.refine.to_dict()} if self.refine is not None else {}),
                **({"confirm": self.confirm.to_dict()} if self.confirm is not None else {})}

    def line(self, front_after: Sequence[str]) -> str:
        kept = len(set(front_after) & set(self.front_before))
        return (f"re-ranked: the {len(self.candidates)} best archs by the search's score re-scored by {self.name} "
                f"({self.scored} scored in {self.eval_s:.0f}s, {self.reused} stored); the front has "
                f"{len(front_after)} archs, {kept} of them on the search's own front of {len(self.front_before)}"
                + (f"; {self.refine.line()}" if self.refine is not None else "")
                + (f"; {self.confirm.line()}" if self.confirm is not None else ""))


STAGES = {"rerank": ("rerank_score", "trained_accuracy"), "confirm": ("confirm_score", "confirm_accuracy")}
"""Per scoring stage after the search (this re-rank, nas.search.confirm): the TrialRow fields of its score and of
its training's validation accuracy; its scores are stored on the study as ``<stage>:<arch id>``."""


def score_rows(search: Any, evaluator: Any, rows: Sequence[TrialRow], reporter: Reporter,
               label: str, spec: str | None = None, stage: str = "rerank") -> tuple[int, int, float]:
    """Give ``rows``' archs ``stage``'s score by ``evaluator`` (``spec``, default the re-rank's
    ``search.cfg.rerank``): a score stored on the study under that spec is reused, a new one is stored as it
    arrives (a run killed meanwhile keeps what it paid for); every row of a scored arch gets it (the fields of
    :data:`STAGES`: ``rerank_score``, and ``trained_accuracy`` from a short training). Returns
    (scored, reused, seconds spent)."""
    spec, attrs = spec or search.cfg.rerank, search.study.user_attrs
    score_field, acc_field = STAGES[stage]
    scores: dict[str, float | None] = {}
    trained: dict[str, float | None] = {}  # validation accuracy of a training (train:N:DATA)
    reused = scored = 0
    secs_total = 0.0
    for r in rows:
        saved = attrs.get(f"{stage}:{r.arch_id}")
        if r.arch_id not in scores and isinstance(saved, dict) and saved.get("spec") == spec:
            scores[r.arch_id], trained[r.arch_id] = saved.get("score"), saved.get("trained_accuracy")
            reused += 1
    todo = list({r.arch_id: r.arch for r in rows if r.arch_id not in scores}.items())
    with reporter.progress(len(todo), label) as bar:
        for arch_id, value, secs, worker in evaluator.run(todo):
            scores[arch_id], trained[arch_id] = split_score(value)
            scored += 1
            secs_total += secs
            search.study.set_user_attr(f"{stage}:{arch_id}", {"spec": spec, "score": scores[arch_id], "eval_s": secs,
                                                              "worker": worker, "trained_accuracy": trained[arch_id]})
            bar.advance()
    for r in search.rows:
        if r.arch_id in scores:
            setattr(r, score_field, scores[r.arch_id])
            if trained.get(r.arch_id) is not None:
                setattr(r, acc_field, trained[r.arch_id])
    return scored, reused, secs_total


def rerank(search: Any, evaluator: Any, reporter: Reporter, front_before: Sequence[str] = ()) -> RerankReport:
    """Score ``search``'s best archs with ``evaluator`` (a second estimator) and make that score the front's:
    afterwards only re-ranked archs can be on it (``search.columns`` names :data:`COLUMN` instead of the
    accuracy column), so call it after the search has stopped asking trials."""
    spec = search.cfg.rerank
    rep = RerankReport(name=spec, provenance=evaluator.provenance, top=search.cfg.rerank_top,
                       front_before=list(front_before))
    cand = candidates(search.rows, search.columns, search.senses, search.cfg.rerank_top)
    rep.candidates = [r.arch_id for r in cand]
    rep.scored, rep.reused, rep.eval_s = score_rows(search, evaluator, cand, reporter, f"re-rank by {spec}")
    search.columns = [COLUMN if c == "accuracy" else c for c in search.columns]
    return rep
