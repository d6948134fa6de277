"""Confirm: the re-rank's few best archs trained again for longer, and the pick made by that.

A two-epoch training (``train:2``) ranks trained accuracy well overall (Kendall tau 0.67 on hybrid-s) but not at
the top, where it matters: it favours nets that learn fast, and shallow ones (identity layers) learn fast. After
the re-rank and the refinement have spent their evaluations, ``nas search --confirm N`` trains the ``N`` best
archs by the re-rank's score again, for :data:`EPOCHS_FACTOR` times its epochs (``train:2`` -> ``train:6``,
the ground truth's own recipe scored on the validation split), and the front is chosen among them by that score:
successive halving with one more rung. When the host can time archs, each is measured here before it is
trained, so only archs measured inside the budget are confirmed. Scores are stored on the study as they arrive
(``confirm:<arch id>``), so a resumed run does not pay for them again.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas.errors import ParamError
from nas.reporting import Reporter
from nas.search.rerank import COLUMN as RERANK
from nas.search.rerank import StageReport, score_rows
from nas.search.rows import distinct_feasible

EPOCHS_FACTOR = 3  # the confirming training runs this many times the re-rank's epochs
COLUMN = "confirm_score"
"""The TrialRow field (and front column) of the confirming score."""


def confirm_spec(rerank: str | None) -> str:
    """The confirming estimator of a re-rank by short training: ``train:E:DATA`` -> ``train:<3E>:DATA``."""
    kind, _, arg = str(rerank).partition(":")
    epochs, _, data = arg.partition(":")
    if kind != "train" or not epochs.isdigit() or not data:
        raise ParamError("confirm", f"confirming trains the re-rank's archs for longer: it needs a re-rank by short "
                                    f"training (--rerank train:EPOCHS:DATA or --data DATA), not {rerank}")
    return f"train:{EPOCHS_FACTOR * int(epochs)}:{data}"


@dataclass
class ConfirmReport(StageReport):
    """What the confirmation did (summary.json ``rerank.confirm``)."""

    measured: int = 0  # candidates timed here first
    best_before: str | None = None  # the best arch by the re-rank's score
    best_after: str | None = None  # ... and by the confirming score

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "measured": self.measured, "best_before": self.best_before,
                "best_after": self.best_after, "line": self.line()}

    def line(self) -> str:
        if not self.candidates:
            return f"confirm: no re-ranked arch inside the budget to train again by {self.name}"
        same = ("the same as the re-rank's best" if self.best_after == self.best_before
                else f"the re-rank's best was {self.best_before}")
        n = len(self.candidates)
        return (f"confirmed: the {n} best arch{'s' if n != 1 else ''} by the re-rank trained again by {self.name} "
                f"({self.scored} trained in {self.eval_s:.0f}s, {self.reused} stored); the front is chosen among "
                f"them, best {self.best_after} ({same})")


def ranked(search: Any) -> list:
    """The feasible rows with a re-rank score, one per arch, best first."""
    return sorted(distinct_feasible(search.rows, [RERANK]), key=lambda r: -r.rerank_score)


def confirm(search: Any, evaluator: Any, reporter: Reporter, n: int,
            measure: Callable[[list], bool] | None = None) -> ConfirmReport:
    """Train the ``n`` best archs by the re-rank's score again with ``evaluator`` (the :func:`confirm_spec` of the
    re-rank) and make its score the front's (``search.columns``); ``measure`` (rows -> whether it could) times
    candidates here first, and one measured over the budget gives its place to the next best."""
    spec = confirm_spec(search.cfg.rerank)
    rep = ConfirmReport(name=spec, provenance=evaluator.provenance, top=n)
    order = ranked(search)
    rep.best_before = order[0].arch_id if order else None
    chosen: list = []
    at = 0
    while len(chosen) < n and at < len(order):
        batch = order[at:at + n - len(chosen)]
        at += len(batch)
        new = [r for r in batch if r.measured_latency_ms is None]
        if measure is not None and new and measure(new):
            rep.measured += len(new)
        chosen += [r for r in batch if r.feasible]  # restated by the timing: the median plus the host's margin
    rep.candidates = [r.arch_id for r in chosen]
    if not chosen:  # nothing inside the budget to confirm: the re-rank's front stays
        return rep
    rep.scored, rep.reused, rep.eval_s = score_rows(search, evaluator, chosen, reporter, f"confirm by {spec}",
                                                    spec=spec, stage="confirm")
    search.columns = [COLUMN if c == RERANK else c for c in search.columns]
    best = max((r for r in chosen if r.confirm_score is not None), key=lambda r: r.confirm_score, default=None)
    rep.best_after = best.arch_id if best is not None else None
    return rep
