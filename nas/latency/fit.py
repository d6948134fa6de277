"""Fitting latency predictors on a device profile: table, calibrated variants, arch-level, few-shot transfer.

``fit_latency_model(device, space, kind)`` fits one of the estimators of :mod:`nas.predictors` on the
profile's ``calib`` (+ ``refine``) rows, evaluates it on the ``holdout`` rows and saves it as
``predictors/<device>-<space>.json`` (JSON, no pickle) with its provenance: profile, kind, feature
set, what it was fitted on and its held-out metrics. Kinds:

* ``table`` - sum of the profile's block table over the arch's unit keys (interpolating keys the
  table lacks); end-to-end samples only size the prediction interval;
* ``calibrated`` - table sum plus a correction fitted on the end-to-end samples: scale and
  per-network overhead, optionally per-block-type terms and the arch's memory traffic (unit
  parameters and activations); the variant is chosen by leave-one-out error on the training archs;
* ``arch`` - an arch-level regressor for profiles with end-to-end data only (imported tables),
  on analytic features of the arch (per unit type: count, MACs, activations; or, for the OFA
  MobileNetV3 space, the OFA analytic features); ``few_shot_from`` adapts arch-level predictors of
  source devices to this one from a few (``shots``) of its measurements.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ParamError, PredictorError, ProfileError
from nas.latency.features import KeyFeatures, default_arch_features, make_features
from nas.latency.files import find_predictor, predictor_name
from nas.latency.model import LatencyModel
from nas.paths import user_dir
from nas.profile.store import Profile
from nas.space import Arch, SearchSpace, load_space

KINDS = ("auto", "table", "calibrated", "arch")
TRAIN_SPLITS = ("calib", "refine")


def _rows(prof: Profile, space: SearchSpace, splits) -> tuple[list[Arch], np.ndarray]:
    return prof.archs_of(space, splits)


def _auto_kind(prof: Profile, space: SearchSpace) -> str:
    has_blocks = len(prof.blocks) > 0 and bool(
        prof.meta.get("spaces", {}).get(space.name, {}).get("blocks_total")
    )
    n_train = len(prof.arch_rows(space.name, TRAIN_SPLITS))
    if has_blocks:
        return "calibrated" if n_train >= 5 else "table"
    return "arch"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def fit_latency_model(
    device: str,
    space: str | SearchSpace,
    kind: str = "auto",
    *,
    features: str | None = None,
    max_train: int | None = None,
    few_shot_from: Sequence[str] | None = None,
    shots: int = 20,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    variant: str = "auto",
    out: str | Path | None = None,
    save: bool = True,
) -> LatencyModel:
    """Fit a predictor of ``kind`` on the profile's calib (+refine) rows, evaluate on holdout, save.

    ``max_train`` caps the end-to-end archs used (a seeded subset: for "how many are needed").
    ``few_shot_from`` (arch kind only): names of source devices whose arch-level predictors for this
    space are adapted with ``shots`` target archs. ``variant`` (calibrated kind): one of
    :data:`CALIBRATED_VARIANTS`, or ``auto`` = the one with the best leave-one-out error on the
    training archs (the held-out archs are not used for the choice).
    """
    if kind not in KINDS:
        raise ParamError("kind", f"{kind}: unknown; choose from {', '.join(KINDS)}")
    prof = Profile.load(device)
    space = prof.load_space(space)
    if space.name not in prof.spaces():
        raise ProfileError(
            f"profile {prof.name} has no data for space {space.name}; it has: {', '.join(prof.spaces())}"
        )
    if kind == "auto":
        kind = "arch" if few_shot_from else _auto_kind(prof, space)
    archs, y = _rows(prof, space, TRAIN_SPLITS)
    rng = np.random.default_rng(seed)
    limit = shots if few_shot_from else max_train
    if limit is not None and limit < len(archs):
        pick = np.sort(rng.choice(len(archs), size=int(limit), replace=False))
        archs, y = [archs[i] for i in pick], y[pick]
    params = dict(params or {})
    from nas.predictors import ArchLevelRegressor, BlockTablePredictor

    if kind in ("table", "calibrated"):
        table = prof.block_table()
        if not table:
            raise ProfileError(f"profile {prof.name} has no block table; use kind arch")
        feats = KeyFeatures(space)
        X = feats(archs)
        if kind == "table":
            model = BlockTablePredictor(**params).fit(
                X if len(archs) else None, y if len(archs) else None, table=table
            )
        else:
            if len(archs) < 2:
                raise ProfileError(
                    f"profile {prof.name}: calibrated needs end-to-end archs of {space.name}; has {len(archs)}"
                )
            model, feats, _ = _fit_calibrated(X, y, table, space, params, variant)
    elif few_shot_from:
        from nas.predictors import FewShotTransfer

        sources = {}
        for src in few_shot_from:
            sp = LatencyModel.load(find_predictor(src, space.name))
            if sp.kind not in ("arch",):
                raise PredictorError(
                    f"few-shot source {sp.name} is a {sp.kind} predictor; sources must be arch-level"
                )
            sources[src] = sp
        feat_spec = next(iter(sources.values())).metadata.get("features")
        for name, s in sources.items():
            if s.metadata.get("features") != feat_spec:
                raise PredictorError(f"few-shot sources use different feature sets ({name})")
        feats = make_features(space, feat_spec)
        if len(archs) < 2:
            raise ProfileError(
                f"profile {prof.name}: few-shot needs at least 2 measured archs of {space.name}"
            )
        names = (feat_spec or {}).get("names") or []
        params.setdefault("arch_columns", few_shot_arch_columns(names, len(archs)) or None)
        model = FewShotTransfer(**params).fit(feats(archs), y, sources={n: s.estimator for n, s in sources.items()})
    else:
        feats = make_features(space, features or default_arch_features(space))
        if len(archs) < 3:
            raise ProfileError(
                f"profile {prof.name}: an arch-level predictor needs end-to-end archs; has {len(archs)}"
            )
        X = feats(archs)
        names = feats.spec().get("names")
        model = ArchLevelRegressor(**params).fit(X, y, feature_names=names)
    kind_label = "few-shot" if few_shot_from else kind
    model.metadata.pop("held_out", None)
    model.metadata["loo"] = {**loo_scores(model), "n": int(model.n_residuals_)}
    model.set_provenance(
        device=prof.name,
        space=space.name,
        profile=prof.name,
        kind_label=kind_label,
        features=feats.spec(),
        created=_now(),
        profile_updated=prof.meta.get("updated"),
        trained_on_splits=list(TRAIN_SPLITS),
        seed=seed,
    )
    if few_shot_from:
        model.metadata["few_shot_from"] = list(few_shot_from)
    if space.source_path is not None and space.source_path.stem not in _builtin_names():
        model.metadata["space_file"] = str(Path(space.source_path).resolve())
    src = prof.meta.get("source")
    if src:
        model.metadata["data_source"] = {
            k: src.get(k) for k in ("origin", "url", "file", "column") if k in src
        }
        model.metadata["data_licence"] = prof.meta.get("licence")
    pred = LatencyModel(model, space)
    hold, yh = _rows(prof, space, "holdout")
    if len(hold):
        pred.evaluate(hold, yh, record=True)
    model.metadata["provenance"] = pred.provenance
    if save:
        pred.save(
            Path(out) if out is not None else user_dir("predictors") / predictor_name(prof.name, space.name)
        )
    return pred


TRAFFIC = ("params_M", "act_M")
CALIBRATED_VARIANTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "names": ({"per_name_terms": True}, ()),
    "scale": ({"per_name_terms": False}, ()),
    "names+traffic": ({"per_name_terms": True}, TRAFFIC),
    "scale+traffic": ({"per_name_terms": False}, TRAFFIC),
    "name-times": ({"per_name_terms": True, "name_terms": "time"}, ()),
    "name-times+traffic": ({"per_name_terms": True, "name_terms": "time"}, TRAFFIC),
}
"""Calibrated-predictor variants: per-block-name terms (counts, or summed table times: a scale per
block type) or a plain scale + overhead, with or without the arch's memory traffic (unit parameters
and activations, in millions) as extra terms."""


FEW_SHOT_ARCH_COLUMNS = ("macs_M", "res", *(f"blocks_s{i}" for i in range(1, 6)))
"""Columns of the OFA features the few-shot arch-only and stacked models read: MACs, resolution and
the depth of each stage (what a linear model of 20 samples can pin down)."""


def few_shot_arch_columns(names: Sequence[str], k: int) -> list[int]:
    """Indices of the few feature columns a few-shot arch-only / stacked model of ``k`` samples reads:
    MACs, resolution and depths (OFA features); total MACs, params and activations plus the layer count
    of each unit type (unit features); the op counts (NAS-Bench-201); at most ``k // 2`` of them."""
    names = list(names)
    want = [n for n in FEW_SHOT_ARCH_COLUMNS if n in names]
    if not want:
        want = [n for n in ("macs_M", "params_M", "act_M") if n in names]
        want += [n for n in names if (n.endswith(":n") and n.count(":") == 1) or n.startswith("n:")]
    return [names.index(n) for n in want][: max(0, k // 2)]


def loo_scores(model) -> dict[str, float]:
    """Leave-one-out MAPE and share within ±10% from a fitted predictor's stored residuals."""
    r = np.asarray(model.residuals_, dtype=np.float64)
    if r.size == 0:
        return {"mape": math.nan, "within_10": math.nan}
    rel = np.abs(np.exp(-r) - 1.0)
    return {"mape": float(rel.mean()), "within_10": float(np.mean(rel <= 0.1 + 1e-12))}


def _fit_calibrated(X, y, table, space, params, variant):
    from nas.predictors import CalibratedTablePredictor

    if variant != "auto" and variant not in CALIBRATED_VARIANTS:
        raise PredictorError(
            f"variant '{variant}' unknown; choose from auto, {', '.join(CALIBRATED_VARIANTS)}"
        )
    names = list(CALIBRATED_VARIANTS) if variant == "auto" else [variant]
    best = None
    scores: dict[str, dict[str, float]] = {}
    for name in names:
        kw, extra = CALIBRATED_VARIANTS[name]
        if "per_name_terms" in params:
            kw = {}
        feats = KeyFeatures(space, extra)
        E = feats.extra_matrix(X)
        try:
            model = CalibratedTablePredictor(**{**kw, **params}).fit(X, y, table=table, extra=E)
        except (PredictorError, np.linalg.LinAlgError) as e:
            scores[name] = {"error": str(e)}
            continue
        sc = loo_scores(model)
        scores[name] = sc
        rank = (-np.nan_to_num(sc["within_10"]), np.nan_to_num(sc["mape"], nan=np.inf))
        if best is None or rank < best[0]:
            best = (rank, name, model, feats)
    if best is None:
        raise PredictorError(f"calibrated predictor: no variant could be fitted ({scores})")
    _, name, model, feats = best
    model.metadata["variant"] = name
    model.metadata["variant_loo"] = scores
    return model, feats, name


def _builtin_names() -> set[str]:
    from nas.space import builtin_spaces

    return set(builtin_spaces())


LOO_SPLITS = ("calib", "refine", "verify")  # what a host calibration was fitted on (split "loo")


def _eval_rows(pred: LatencyModel, device: str | None, split: str) -> tuple[list[Arch], np.ndarray, np.ndarray]:
    """(archs, measured ms, predicted ms) of the rows ``pred`` is judged on. ``split="loo"``: every arch a host
    calibration measured here, each predicted by the correction refitted without it."""
    from nas.latency.calibrate import host_loo_predictions

    prof = Profile.load(device or pred.device)
    if split == "loo":
        archs, y = _rows(prof, pred.space, LOO_SPLITS)
        if len(archs) < 4:
            raise ProfileError(f"profile {prof.name} has {len(archs)} archs of space {pred.space.name} measured "
                               "here; leave-one-out needs at least 4")
        return archs, y, host_loo_predictions(pred, archs, y)
    archs, y = _rows(prof, pred.space, split)
    if not len(archs):
        hint = ("; it is a host calibration, fitted on every arch it measured: --split loo gives its leave-one-out "
                "error" if prof.kind == "calibrated" else "")
        raise ProfileError(f"profile {prof.name} has no {split} archs of space {pred.space.name}{hint}")
    return archs, y, pred.predict(archs)


def evaluate_latency_model(pred: LatencyModel, device: str | None = None, split: str = "holdout"):
    """Metrics of ``pred`` on a profile's rows (default: its own device's held-out archs; ``loo``: see
    :func:`_eval_rows`)."""
    from nas.predictors.metrics import latency_metrics

    _, y, p = _eval_rows(pred, device, split)
    return latency_metrics(y, p)


def evaluate_by_group(
    pred: LatencyModel, by: str, device: str | None = None, split: str = "holdout"
) -> list[dict[str, Any]]:
    """Error of ``pred`` per group of ``by`` (mixer or kernel) on a profile's rows (default: its own
    held-out archs); an arch counts in every group it contains (:func:`nas.latency.evaluate.group_errors`)."""
    from nas.latency.evaluate import group_errors

    archs, y, p = _eval_rows(pred, device, split)
    return group_errors(archs, y, p, by)


def refit_device(device: str, spaces: Sequence[str | SearchSpace]) -> list[dict[str, Any]]:
    """Refit the saved predictors of ``device`` for ``spaces`` (same kind; a new calibrated/auto one
    where none exists), after new rows were added. Returns what was written."""
    from nas.predictors.metrics import format_metrics

    out = []
    for space in spaces:
        space = load_space(space)
        kind, features, path = "auto", None, None
        try:
            old = LatencyModel.load(find_predictor(device, space.name))
            if old.kind in ("table", "calibrated", "arch"):
                kind = old.kind
                spec = old.metadata.get("features") or {}
                features = spec.get("type") if kind == "arch" else None
                if features == "units" and spec.get("position"):
                    features = "units+position"
            path = old.path
            if path is not None and not os.access(path.parent, os.W_OK):
                path = None
        except PredictorError:
            pass
        pred = fit_latency_model(device, space, kind, features=features, out=path)
        h = pred.held_out
        out.append(
            {
                "path": str(pred.path),
                "kind": pred.kind,
                "summary": format_metrics(h) if h else "no held-out archs",
            }
        )
    return out


__all__ = [
    "CALIBRATED_VARIANTS",
    "KINDS",
    "evaluate_by_group",
    "evaluate_latency_model",
    "fit_latency_model",
    "loo_scores",
    "refit_device",
]
