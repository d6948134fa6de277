"""Featurisers: archs -> what a latency estimator reads, plus the space's unit basis and key index.

* :class:`KeyFeatures` - the unit keys of each arch (block-table estimators), optionally with per-arch
  sums of unit quantities (memory traffic) and a fast path straight to a table's key codes;
* :class:`UnitFeatures` - analytic features summed over units (arch-level estimators);
* :class:`OFAFeatures` - the OFA MobileNetV3 analytic features (:mod:`nas.latency.ofa_features`).

A featuriser is described by ``spec()`` (stored in the predictor file) and rebuilt by
:func:`make_features`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from nas.errors import PredictorError
from nas.latency.units import HeadCfg, KeyIndex, key_index, space_units
from nas.space import Arch, SearchSpace

FEATURE_SETS = ("keys", "units", "ofa")


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
        self._fast: tuple | None = None

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

    def encode(self, archs: Sequence[Arch], table) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None] | None:
        """The fast path of table estimators: ``(codes, rows, n, extra)`` over ``table``'s key codes
        (a :class:`~nas.predictors.BlockTablePredictor`), walking each arch straight to its codes with no
        key strings; None when an arch has a unit the table has not resolved yet (the key path then
        interpolates it, and the next batch is fast again)."""
        codes_of = table.key_codes()
        fast = self._fast
        if fast is None or fast[0] is not codes_of:
            fast = self._fast = (codes_of, KeyIndex(self.space, vocab=codes_of), None)
        columns = fast[1].columns
        flat: list[int] = []
        lens = []
        for a in archs:
            c = columns(a)
            flat += c
            lens.append(len(c))
        codes = np.asarray(flat, dtype=np.intp)
        if codes.size == 0 or codes.min() < 0:
            self._fast = None  # new units: a fresh index sees them once the key path has resolved them
            return None
        rows = np.repeat(np.arange(len(archs)), lens)
        extra = None
        if self.extra:
            ext = fast[2]
            if ext is None or ext.shape[0] != len(codes_of):
                ext = self.extra_by_code(codes_of, len(codes_of))
                self._fast = (*fast[:2], ext)
            vals = ext[codes]
            if np.isnan(vals).any():
                return None
            extra = row_sums(rows, vals, len(archs))
        return codes, rows, len(archs), extra

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
        from nas.latency.ofa_features import ofa_features

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
        from nas.latency.ofa_features import ofa_features

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
