"""Sequential linearisation of predicted latency around a reference arch, for the design programme.

Latency predictors are not linear in the choices; around a reference arch each stage's choices get
the latency change they cause, so the programme can carry one linear latency row; the design loop
re-linearises around each new solution and tightens the limit by the violation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas.design.catalogue import Catalogue, stage_combos
from nas.latency.model import FunctionLatency, LatencyModel
from nas.space.arch import Arch, LayerChoice, StageChoice
from nas.space.space import SearchSpace

Latency = LatencyModel | FunctionLatency
"""What the design predicts latency with: a device's LatencyModel, or a plain function (tests, benches)."""


def predict_all(model: Latency, archs: Sequence[Arch], chunk: int = 4096) -> np.ndarray:
    """Predicted ms of many archs, in chunks the predictor handles at once."""
    if not archs:
        return np.zeros(0)
    return np.concatenate([model.predict(archs[i : i + chunk]) for i in range(0, len(archs), chunk)])


# ------------------------------------------------------------------------------- linearised latency
def with_stage(arch: Arch, si: int, stage: StageChoice) -> Arch:
    stages = list(arch.stages)
    stages[si] = stage
    return Arch(arch.space, arch.resolution, arch.stem, tuple(stages))


def linearise(space: SearchSpace, cat: Catalogue, ref: Arch, model: Latency) -> tuple[dict, float]:
    """Per-unit latency coefficients around ``ref`` (see the module docstring) and the constant term.

    Returns ``(coefs, const)`` with ``const + sum(coefs of the arch's units) == predict(ref)`` at ``ref``.
    """
    archs: list[Arch] = [ref]
    plan: list[tuple] = []
    for si, st in enumerate(space.stages):
        ib = st.downsample == "in_block"
        depths = sorted({min(st.depths), max(st.depths)})
        ref_first = ref.stages[si].layers[0]
        first_ok = set(stage_combos(space, si, True))
        for w in cat.widths[si + 1]:
            for lc, _ in cat.rests[(si, w)]:
                for d in depths:
                    if ib and lc not in first_ok:
                        layers = (ref_first,) + (lc,) * (d - 1)
                    else:
                        layers = (lc,) * d
                    plan.append((si, w, lc, d))
                    archs.append(with_stage(ref, si, StageChoice(d, w, layers)))
    preds = predict_all(model, archs)
    base = float(preds[0])
    got: dict[tuple, float] = {p: float(v) for p, v in zip(plan, preds[1:])}
    coefs: dict[tuple, float] = {}
    for si, st in enumerate(space.stages):
        ib = st.downsample == "in_block"
        d1, d2 = min(st.depths), max(st.depths)
        first_ok = set(stage_combos(space, si, True))
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
    total = sum(arch_lat_terms(ref, coefs))
    return coefs, base - total


def arch_lat_terms(arch: Arch, coefs: dict) -> list[float]:
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
