"""Latency predictors bound to a device profile and a space: archs in, milliseconds out.

``fit_latency_predictor(device, space, kind)`` fits one of the estimators of :mod:`nas.predictors`
on the profile's ``calib`` (+ ``refine``) rows, evaluates it on the ``holdout`` rows and saves it as
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

:func:`load_latency_predictor` returns a :class:`LatencyPredictor` with ``predict(archs)`` (ms,
vectorised: a few dict look-ups per layer, then one sparse/dense product for the batch),
``predict_interval(archs, coverage)`` and a one-line ``provenance``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import NASError, PredictorError, ProfileError
from nas.paths import builtin_dir, user_dir
from nas.profile.store import Profile
from nas.profile.units import HeadCfg, key_index, space_units
from nas.space import Arch, SearchSpace, load_space

KINDS = ("auto", "table", "calibrated", "arch")
FEATURE_SETS = ("keys", "units", "ofa")
TRAIN_SPLITS = ("calib", "refine")


# ------------------------------------------------------------------------------------------ paths


def predictor_name(device: str, space: str) -> str:
    return f"{device}-{space}.json"


def predictor_roots() -> list[Path]:
    """Where predictor files are looked up: ./predictors (or $NAS_HOME), then the built-in folder."""
    out: list[Path] = []
    for r in (user_dir("predictors"), builtin_dir("predictors")):
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def _space_name(space: str | SearchSpace) -> str:
    if isinstance(space, SearchSpace):
        return space.name
    if str(space).endswith((".yaml", ".yml")):
        return load_space(space).name
    return str(space)


def find_predictor(device: str, space: str | SearchSpace) -> Path:
    """The file of the predictor of ``device`` for ``space`` (``predictors/<device>-<space>.json``)."""
    p = Path(device)
    if p.suffix == ".json" and p.is_file():
        return p
    space = _space_name(space)
    name = predictor_name(device, space)
    for root in predictor_roots():
        if (root / name).is_file():
            return root / name
    have = sorted({q.name for r in predictor_roots() if r.is_dir() for q in r.glob("*.json")})
    shown = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "") if have else "none"
    raise PredictorError(
        f"no latency predictor {name} (looked in {', '.join(str(r) for r in predictor_roots())}); "
        f"available: {shown}; fit one with: nas predictor fit --device {device} --space {space}"
    )


def list_predictors() -> list[Path]:
    seen: dict[str, Path] = {}
    for root in predictor_roots():
        if root.is_dir():
            for p in sorted(root.glob("*.json")):
                seen.setdefault(p.name, p)
    return [seen[k] for k in sorted(seen)]


# ------------------------------------------------------------------------------------- featurisers


class KeyFeatures:
    """Archs -> their lists of unit keys (the input of the block-table predictors).

    With ``extra`` (names of columns of the unit basis, e.g. ``params_M``, ``act_M``) it also gives
    per-arch sums of those unit quantities, the ``extra`` matrix of a calibrated predictor
    (memory traffic: what makes a block slower inside a network than measured alone)."""

    name = "keys"

    def __init__(self, space: SearchSpace, extra: Sequence[str] = ()):
        self.space = space
        self.index = key_index(space)
        self.extra = tuple(extra)
        self._extra_rows: dict[str, int] | None = None

    def __call__(self, archs: Sequence[Arch]) -> list[list[str]]:
        keys = self.index.keys
        return [keys(a) for a in archs]

    def extra_matrix(self, X: Sequence[Sequence[str]]) -> np.ndarray | None:
        """Per-arch sums of the ``extra`` unit quantities over the arch's keys (None without extra)."""
        if not self.extra:
            return None
        import itertools

        rows, values = self._extra_basis()
        lens = np.fromiter(map(len, X), dtype=np.intp, count=len(X))
        flat = list(itertools.chain.from_iterable(X))
        try:
            codes = np.fromiter(map(rows.__getitem__, flat), dtype=np.intp, count=len(flat))
        except KeyError as e:
            raise PredictorError(
                f"space {self.space.name}: unit {e.args[0]} is not one the space enumerates (space file changed?)"
            ) from None
        return row_sums(np.repeat(np.arange(len(X)), lens), values[codes], len(X))

    def _extra_basis(self) -> tuple[dict[str, int], np.ndarray]:
        """(unit key -> row, rows x extra quantities) of the space's unit basis, built once."""
        if self._extra_rows is None:
            vocab, U, names = _unit_basis(self.space)
            missing = [e for e in self.extra if e not in names]
            if missing:
                raise PredictorError(f"extra feature '{missing[0]}' unknown; allowed: {', '.join(names)}")
            self._extra_rows = vocab
            self._extra_vals = np.asarray(U[:, [names.index(e) for e in self.extra]].todense())
        return self._extra_rows, self._extra_vals

    def spec(self) -> dict[str, Any]:
        return {"type": self.name, **({"extra": list(self.extra)} if self.extra else {})}

    def extra_by_code(self, index: dict[str, int], size: int) -> np.ndarray:
        """The ``extra`` unit quantities per entry of a table's key index (rows: its codes; NaN where
        the key is not a unit of the space), for summing over encoded keys."""
        rows, values = self._extra_basis()
        out = np.full((size, len(self.extra)), np.nan)
        for key, code in index.items():
            r = rows.get(key)
            if r is not None and code < size:
                out[code] = values[r]
        return out


def row_sums(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """(n x k) sums of ``values`` (one row per key occurrence) over the arch each occurrence belongs to."""
    return np.stack([np.bincount(rows, weights=values[:, j], minlength=n) for j in range(values.shape[1])],
                    axis=1)


def _unit_cost(u) -> tuple[float, float, float]:
    """(params, MACs, activation elements written) of a unit, from the cost functions of its block."""
    from nas.blocks.layer import LayerCfg, layer_cost
    from nas.cost.count import conv_unit_cost, head_cost

    cfg = u.cfg
    if isinstance(cfg, LayerCfg):
        c = layer_cost(cfg)
    elif isinstance(cfg, HeadCfg):

        class _Plan:
            head, head_cin, head_spatial, dims = cfg.head, cfg.cin, cfg.spatial, cfg.dims

        c = head_cost(_Plan)  # type: ignore[arg-type]
    else:
        c = conv_unit_cost(cfg)
    return float(c.params), float(c.macs), float(c.act)


@lru_cache(maxsize=16)
def _unit_basis(space: SearchSpace) -> tuple[dict[str, int], Any, list[str]]:
    """Vocabulary of every unit of the space and the sparse (units x features) analytic basis."""
    from scipy import sparse

    units = space_units(space)
    vocab = {k: i for i, k in enumerate(units)}
    groups = sorted({k.split("|", 1)[0] for k in units})
    gpos = {g: i for i, g in enumerate(groups)}
    per = ("n", "macs_M", "act_M", "in_M")
    names = [f"{g}:{p}" for g in groups for p in per] + ["macs_M", "params_M", "act_M"]
    rows, cols, vals = [], [], []
    tot = len(groups) * len(per)
    for k, u in units.items():
        i = vocab[k]
        params, macs, act = _unit_cost(u)
        inp = float(math.prod(u.input_shape))
        base = gpos[k.split("|", 1)[0]] * len(per)
        for j, v in enumerate((1.0, macs * 1e-6, act * 1e-6, inp * 1e-6)):
            rows.append(i)
            cols.append(base + j)
            vals.append(v)
        for j, v in enumerate((macs * 1e-6, params * 1e-6, act * 1e-6)):
            rows.append(i)
            cols.append(tot + j)
            vals.append(v)
    U = sparse.csr_matrix((vals, (rows, cols)), shape=(len(vocab), len(names)))
    return vocab, U, names


class UnitFeatures:
    """Archs -> analytic features summed over their units: per unit type (conv, head, each mixer)
    the count, MACs, activations written and input elements, plus total MACs/params/activations.

    Computed as (archs x units count matrix) @ (units x features basis): a product per batch."""

    name = "units"

    def __init__(self, space: SearchSpace):
        from nas.profile.units import KeyIndex

        self.space = space
        self.vocab, self.basis, self.names = _unit_basis(space)
        self.index = KeyIndex(space, self.vocab)

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        try:
            C = self.index.count_matrix(archs)
        except KeyError as e:
            raise PredictorError(
                f"space {self.space.name}: unit {e.args[0]} is not one the space enumerates (space file changed?)"
            ) from None
        return np.asarray((C @ self.basis).todense())

    def spec(self) -> dict[str, Any]:
        return {"type": self.name, "names": self.names}


class OFAFeatures:
    """Archs of the OFA MobileNetV3 space -> :func:`nas.predictors.ofa_data.ofa_features`."""

    name = "ofa"

    def __init__(self, space: SearchSpace, kind: str = "analytic"):
        from nas.space.ofa import STAGES

        if len(space.stages) != STAGES + 1:
            raise PredictorError(f"features 'ofa' need the OFA MobileNetV3 space; {space.name} is not")
        self.space = space
        self.kind = kind
        self._rows: dict = {}

    def _stage(self, st) -> tuple[int, ...]:
        row = self._rows.get(st)
        if row is None:
            ks = [3] * 4
            es = [3] * 4
            for j, lc in enumerate(st.layers):
                ks[j], es[j] = int(lc.kernel), int(lc.ratio)
            row = self._rows[st] = (st.depth, *ks, *es)
        return row

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        from nas.predictors.ofa_data import ofa_features

        get, stage = self._rows.get, self._stage
        rows = []
        for a in archs:
            r = [a.resolution]
            for st in a.stages[1:]:
                r.extend(get(st) or stage(st))
            rows.append(r)
        M = np.asarray(rows, dtype=np.int64).reshape(len(archs), 46)
        S = M[:, 1:].reshape(-1, 5, 9)
        d = S[:, :, 0]
        ks = S[:, :, 1:5].reshape(-1, 20)
        es = S[:, :, 5:9].reshape(-1, 20)
        X, _ = ofa_features(M[:, 0], d, ks, es, kind=self.kind)
        return X

    def spec(self) -> dict[str, Any]:
        from nas.predictors.ofa_data import ofa_features

        _, names = ofa_features(
            np.array([224]), np.full((1, 5), 2), np.full((1, 20), 3), np.full((1, 20), 3), kind=self.kind
        )
        return {"type": self.name, "kind": self.kind, "names": names}


def make_features(space: SearchSpace, spec: dict[str, Any] | str):
    """The featuriser described by ``spec`` (a feature-set name or a stored spec)."""
    if isinstance(spec, str):
        spec = {"type": spec}
    t = spec.get("type")
    if t == "keys":
        return KeyFeatures(space, spec.get("extra") or ())
    if t == "units":
        f = UnitFeatures(space)
        if spec.get("names") is not None and list(spec["names"]) != f.names:
            raise PredictorError(
                f"space {space.name}: its unit types changed since the predictor was fitted; refit it"
            )
        return f
    if t == "ofa":
        return OFAFeatures(space, spec.get("kind", "analytic"))
    raise PredictorError(f"feature set {t!r} unknown; allowed: {', '.join(FEATURE_SETS)}")


def default_arch_features(space: SearchSpace) -> str:
    """``ofa`` for the OFA MobileNetV3 space, else ``units``."""
    from nas.space.ofa import STAGES

    if len(space.stages) == STAGES + 1 and space.name.startswith("ofa"):
        return "ofa"
    return "units"


# ---------------------------------------------------------------------------------------- wrapper


def _pct(x: float | None) -> str:
    return "?" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


class LatencyPredictor:
    """A fitted latency predictor for one device and one space.

    ``predict(archs)`` -> ms (numpy), ``predict_interval(archs, coverage=0.9)`` -> (ms, low, high),
    ``provenance`` -> one line naming the predictor and its held-out error.
    """

    def __init__(self, model, space: SearchSpace, path: Path | None = None):
        self.model = model
        self.space = space
        self.path = path
        meta = model.metadata
        self.device = str(meta.get("device", "?"))
        self.kind = str(meta.get("kind_label", model.kind))
        self.features = make_features(space, meta.get("features") or {"type": "keys"})

    @property
    def metadata(self) -> dict[str, Any]:
        return self.model.metadata

    @property
    def name(self) -> str:
        return f"{self.device}-{self.space.name}"

    @property
    def held_out(self) -> dict[str, Any] | None:
        return self.metadata.get("held_out")

    @property
    def provenance(self) -> str:
        h = self.held_out
        err = (
            f"held-out MAPE {_pct(h.get('mape'))}, {_pct(h.get('within_10'))} within ±10% (n={h.get('n')})"
            if h
            else "no held-out evaluation"
        )
        return f"predicted by {self.kind} predictor {self.name}, {err}"

    def featurise(self, archs: Sequence[Arch] | Arch):
        archs = [archs] if isinstance(archs, Arch) else list(archs)
        for a in archs[:1]:
            if a.space.name != self.space.name:
                raise PredictorError(
                    f"predictor {self.name} is for space {self.space.name}, not {a.space.name}"
                )
        return self.features(archs)

    def predict_features(self, X) -> np.ndarray:
        """Latency (ms) from already featurised archs (``featurise``), e.g. for timing the model alone."""
        extra = self.features.extra_matrix(X) if isinstance(self.features, KeyFeatures) else None
        if extra is not None:
            return np.asarray(self.model.predict(X, extra=extra), dtype=np.float64)
        return np.asarray(self.model.predict(X), dtype=np.float64)

    def predict(self, archs: Sequence[Arch] | Arch) -> np.ndarray:
        """Latency in ms of each arch."""
        archs = [archs] if isinstance(archs, Arch) else list(archs)
        fast = self._predict_fast(archs)
        return fast if fast is not None else self.predict_features(self.featurise(archs))

    def _predict_fast(self, archs: list[Arch]) -> np.ndarray | None:
        """Table-based predictors: walk each arch straight to the table's value indices (no key strings).

        None (use the key path) for other predictors, other spaces, or when an arch has a unit the table
        has not resolved yet (the key path interpolates it; the next batch is fast again)."""
        from nas.predictors import BlockTablePredictor, CalibratedTablePredictor

        m = self.model
        if not isinstance(self.features, KeyFeatures) or not archs or archs[0].space.name != self.space.name:
            return None
        if isinstance(m, CalibratedTablePredictor):
            tp = m.table_predictor_
        elif isinstance(m, BlockTablePredictor):
            tp = m
        else:
            return None
        if tp is None or not m.fitted_:
            return None
        fast = getattr(self, "_fast", None)
        if fast is None or fast[0] is not tp or fast[1] is not archs[0].space:
            from nas.profile.units import KeyIndex

            fast = self._fast = (tp, archs[0].space, KeyIndex(archs[0].space, vocab=tp._index), None)
        columns = fast[2].columns
        flat: list[int] = []
        lens = []
        for a in archs:
            c = columns(a)
            flat += c
            lens.append(len(c))
        codes = np.asarray(flat, dtype=np.intp)
        if codes.size == 0 or codes.min() < 0:
            self._fast = None  # new units: the key path resolves them, then a fresh index sees them
            return None
        rows = np.repeat(np.arange(len(archs)), lens)
        extra = None
        if self.features.extra:
            ext = fast[3]
            if ext is None or ext.shape[0] != tp._values.size:
                ext = self.features.extra_by_code(tp._index, tp._values.size)
                self._fast = (*fast[:3], ext)
            vals = ext[codes]
            if np.isnan(vals).any():
                return None
            extra = row_sums(rows, vals, len(archs))
        return np.asarray(m.predict_codes(codes, rows, len(archs), extra), dtype=np.float64)

    def predict_interval(self, archs: Sequence[Arch] | Arch, coverage: float = 0.9):
        """(prediction, lower, upper) in ms; the interval holds the latency with probability ~coverage
        (split-conformal bounds from the predictor's out-of-sample residuals)."""
        from nas.predictors.base import conformal_bounds

        pred = self.predict(archs)
        lo, hi = conformal_bounds(self.model.residuals_, self.model.n_residuals_, coverage)
        return pred, pred * math.exp(lo), pred * math.exp(hi)

    def evaluate(self, archs: Sequence[Arch], y, record: bool = False) -> dict[str, float]:
        """Held-out metrics (see :func:`nas.predictors.metrics.latency_metrics`)."""
        from nas.predictors.metrics import latency_metrics

        m = latency_metrics(y, self.predict(archs))
        if record:
            self.metadata["held_out"] = m
        return m

    def save(self, path: str | Path | None = None) -> Path:
        path = (
            Path(path)
            if path is not None
            else (self.path or user_dir("predictors") / predictor_name(self.device, self.space.name))
        )
        self.model.save(path)
        self.path = Path(path)
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        from nas.predictors import load_predictor

        model = load_predictor(path)
        space_name = model.metadata.get("space")
        if not space_name:
            raise PredictorError(f"{path}: field 'metadata.space' is missing")
        try:
            space = load_space(space_name)
        except NASError as e:
            space_file = model.metadata.get("space_file")
            if not space_file or not Path(space_file).is_file():
                raise PredictorError(f"{path}: space '{space_name}' cannot be loaded ({e})") from None
            space = load_space(space_file)
        return cls(model, space, Path(path))

    def __repr__(self) -> str:
        return f"LatencyPredictor({self.name}, {self.kind}: {self.provenance})"


def load_latency_predictor(
    device: str | None = None, space: str | SearchSpace = "hybrid"
) -> LatencyPredictor:
    """The fitted predictor ``predictors/<device>-<space>.json`` (``device=None``: the shipped profile
    of this machine, see :func:`nas.profile.default_device`). ``device`` may also be a JSON path."""
    from nas.profile.store import default_device

    sp_name = _space_name(space)
    if device is None:
        device = default_device()
        if device is None:
            raise PredictorError(
                "no shipped device profile matches this machine's CPU; name a device (nas profile list) "
                "or measure one: nas profile --space " + sp_name
            )
    return LatencyPredictor.load(find_predictor(device, sp_name))


# ------------------------------------------------------------------------------------------ fitting


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


def fit_latency_predictor(
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
) -> LatencyPredictor:
    """Fit a predictor of ``kind`` on the profile's calib (+refine) rows, evaluate on holdout, save.

    ``max_train`` caps the end-to-end archs used (a seeded subset: for "how many are needed").
    ``few_shot_from`` (arch kind only): names of source devices whose arch-level predictors for this
    space are adapted with ``shots`` target archs. ``variant`` (calibrated kind): one of
    :data:`CALIBRATED_VARIANTS`, or ``auto`` = the one with the best leave-one-out error on the
    training archs (the held-out archs are not used for the choice).
    """
    if kind not in KINDS:
        raise PredictorError(f"--kind {kind}: unknown; choose from {', '.join(KINDS)}")
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
            raise ProfileError(f"profile {prof.name} has no block table; use --kind arch")
        feats = KeyFeatures(space)
        X = feats(archs)
        if kind == "table":
            model = BlockTablePredictor(**params).fit(
                table, X if len(archs) else None, y if len(archs) else None
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
            sp = LatencyPredictor.load(find_predictor(src, space.name))
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
        model = FewShotTransfer(**params).fit(feats(archs), y, {n: s.model for n, s in sources.items()})
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
        model.metadata["space_file"] = str(space.source_path)
    src = prof.meta.get("source")
    if src:
        model.metadata["data_source"] = {
            k: src.get(k) for k in ("origin", "url", "file", "column") if k in src
        }
        model.metadata["data_licence"] = prof.meta.get("licence")
    pred = LatencyPredictor(model, space)
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
            model = CalibratedTablePredictor(**{**kw, **params}).fit(X, y, table, extra=E)
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


def evaluate_latency_predictor(pred: LatencyPredictor, device: str | None = None, split: str = "holdout"):
    """Metrics of ``pred`` on a profile's rows (default: its own device's held-out archs)."""
    prof = Profile.load(device or pred.device)
    archs, y = _rows(prof, pred.space, split)
    if not len(archs):
        raise ProfileError(f"profile {prof.name} has no {split} archs of space {pred.space.name}")
    return pred.evaluate(archs, y, record=False)


def refit_device(device: str, spaces: Sequence[str | SearchSpace]) -> list[dict[str, Any]]:
    """Refit the saved predictors of ``device`` for ``spaces`` (same kind; a new calibrated/auto one
    where none exists), after new rows were added. Returns what was written."""
    from nas.predictors.metrics import format_metrics

    out = []
    for space in spaces:
        space = load_space(space)
        kind, features, path = "auto", None, None
        try:
            old = LatencyPredictor.load(find_predictor(device, space.name))
            if old.kind in ("table", "calibrated", "arch"):
                kind = old.kind
                features = (old.metadata.get("features") or {}).get("type") if kind == "arch" else None
            path = old.path
            if path is not None and not os.access(path.parent, os.W_OK):
                path = None
        except PredictorError:
            pass
        pred = fit_latency_predictor(device, space, kind, features=features, out=path)
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
    "KINDS",
    "KeyFeatures",
    "LatencyPredictor",
    "OFAFeatures",
    "UnitFeatures",
    "evaluate_latency_predictor",
    "find_predictor",
    "fit_latency_predictor",
    "list_predictors",
    "load_latency_predictor",
    "make_features",
    "refit_device",
]
