"""Featurisers: archs -> what a latency estimator reads, plus the space's unit basis and key index.

* :class:`KeyFeatures` - the unit keys of each arch (block-table estimators), optionally with per-arch
  sums of unit quantities (memory traffic) and a fast path straight to a table's key codes;
* :class:`UnitFeatures` - analytic features summed over units (arch-level estimators);
* :class:`OFAFeatures` - the OFA MobileNetV3 analytic features (:mod:`nas.latency.ofa_features`);
* :class:`NB201Features` - NAS-Bench-201 cells: one-hot of the 6 edge ops plus the count of each op.

A featuriser is described by ``spec()`` (stored in the predictor file) and rebuilt by
:func:`make_features`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from nas.blocks.layer import latency_key
from nas.errors import PredictorError
from nas.profile.units import HeadCfg, conv_key, head_key, space_units
from nas.space import Arch, SearchSpace
from nas.space.arch import LayerChoice
from nas.space.resolve import ConvUnit, layer_cfg

FEATURE_SETS = ("keys", "units", "units+position", "ofa", "nb201")


# ------------------------------------------------------------------------------------ the key index


class KeyIndex:
    """Fast arch -> keys, and archs -> sparse count matrix over a key vocabulary, for one space.

    A stage's units depend only on (stage, incoming channels, incoming spatial, width) and its
    layer choices, so per such context the index keeps the downsample key and two small maps
    (first layer, later layers) from LayerChoice to key and column; featurising an arch is then a
    dict look-up per stage and per layer. With a ``vocab`` the columns are the keys' numbers in it
    (-1: not in the vocabulary). ``keys(arch)`` equals ``arch_keys(arch)``.
    """

    _SKIP = -2

    def __init__(self, space: SearchSpace, vocab: dict[str, int] | None = None):
        self.space = space
        self.vocab = vocab
        self._stem: dict[tuple[int, int], tuple[str, int, tuple[int, ...]]] = {}
        self._ctx: dict[tuple, _StageCtx] = {}
        self._head: dict[tuple[int, tuple[int, ...]], tuple[tuple[str, ...], tuple[int, ...]]] = {}
        self._features = space.spec.head.type == "features"

    def _col(self, key: str) -> int:
        return -1 if self.vocab is None else self.vocab.get(key, -1)

    def _stem_key(self, r: int, sw: int) -> tuple[str, int, tuple[int, ...]]:
        hit = self._stem.get((r, sw))
        if hit is None:
            spec = self.space.spec
            u = ConvUnit(spec.in_channels, sw, (r,) * self.space.dims, spec.stem)
            k = conv_key(u)
            hit = self._stem[(r, sw)] = (k, self._col(k), u.out_spatial)
        return hit

    def _context(self, si: int, c: int, sp: tuple[int, ...], width: int) -> _StageCtx:
        st = self.space.stages[si]
        down = None
        if st.downsample == "conv":
            u = ConvUnit(c, width, sp, st.down)
            k = conv_key(u)
            down = (k, self._col(k))
            sp, c = u.out_spatial, width
        return _StageCtx(self, si, c, width, sp, down)

    def _head_keys(self, c: int, sp: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        h = self._head.get((c, sp))
        if h is None:
            if self._features:
                h = ((), ())
            else:
                k = head_key(HeadCfg(c, sp, self.space.dims, self.space.spec.head))
                h = ((k,), (self._col(k),))
            self._head[(c, sp)] = h
        return h

    def _walk(self, arch: Arch, want_keys: bool) -> list:
        j = 0 if want_keys else 1
        stem = self._stem.get((arch.resolution, arch.stem)) or self._stem_key(arch.resolution, arch.stem)
        out: list = [stem[j]]
        append = out.append
        sp = stem[2]
        c = arch.stem
        ctxs = self._ctx
        for si, ch in enumerate(arch.stages):
            ck = (si, c, sp, ch.width)
            ctx = ctxs.get(ck)
            if ctx is None:
                ctx = self._context(si, c, sp, ch.width)
                ctxs[ck] = ctx
            if ctx.down is not None:
                append(ctx.down[j])
            layers = ch.layers
            if ctx.in_block and layers:
                got = ctx.first.get(layers[0]) or ctx._make(layers[0], True)
                append(got[j])
                layers = layers[1:]
            later = ctx.later
            for lc in layers:
                got = later.get(lc)
                if got is None:
                    if lc.mixer == "skip":
                        continue
                    got = ctx._make(lc, False)
                append(got[j])
            c, sp = ctx.c_out, ctx.sp_out
        out.extend(self._head_keys(c, sp)[j])
        return out

    def keys(self, arch: Arch) -> list[str]:
        """The unit keys of ``arch`` in order (same as :func:`arch_keys`, much faster)."""
        return self._walk(arch, True)

    def columns(self, arch: Arch) -> list[int]:
        """Column numbers of the arch's units in the vocabulary (-1 for keys outside it), in order."""
        return self._walk(arch, False)

    def count_matrix(self, archs: Sequence[Arch], missing: str = "error"):
        """Sparse CSR matrix (len(archs), len(vocab)) of unit counts per arch (needs a ``vocab``).

        Keys outside the vocabulary: ``missing='error'`` raises KeyError naming the first one;
        ``'ignore'`` drops them; ``'collect'`` returns ``(matrix, [(row, key), ...])`` with those left out.
        """
        from scipy import sparse

        if self.vocab is None:
            raise ValueError("KeyIndex.count_matrix needs a vocabulary")
        cols: list[int] = []
        indptr = [0]
        columns = self.columns
        for arch in archs:
            cols.extend(columns(arch))
            indptr.append(len(cols))
        idx = np.asarray(cols, dtype=np.int64)
        ptr = np.asarray(indptr, dtype=np.int64)
        left_out: list[tuple[int, str]] = []
        bad = idx < 0
        if bad.any():
            rows = np.repeat(np.arange(len(archs)), np.diff(ptr))
            first = int(np.flatnonzero(bad)[0])
            if missing == "error":
                raise KeyError(self.keys(archs[rows[first]])[first - ptr[rows[first]]])
            if missing == "collect":
                for r in np.unique(rows[bad]):
                    ks = self.keys(archs[r])
                    cs = idx[ptr[r] : ptr[r + 1]]
                    left_out += [(int(r), ks[i]) for i in np.flatnonzero(cs < 0)]
            keep = ~bad
            idx = idx[keep]
            ptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(archs)))])
        m = sparse.csr_matrix((np.ones(idx.size), idx, ptr), shape=(len(archs), len(self.vocab)))
        m.sum_duplicates()
        return (m, left_out) if missing == "collect" else m


class _StageCtx:
    """Units of one stage in one context (incoming channels/spatial, width): downsample + layer maps."""

    __slots__ = (
        "index",
        "si",
        "c",
        "width",
        "sp",
        "down",
        "first",
        "later",
        "c_out",
        "sp_out",
        "in_block",
        "stride",
    )

    def __init__(
        self, index: KeyIndex, si: int, c: int, width: int, sp: tuple[int, ...], down: tuple[str, int] | None
    ):
        st = index.space.stages[si]
        self.index, self.si, self.c, self.width, self.sp, self.down = index, si, c, width, sp, down
        self.in_block = st.downsample == "in_block"
        self.stride = st.stride
        self.first: dict[LayerChoice, tuple[str, int]] = {}
        self.later: dict[LayerChoice, tuple[str, int]] = {}
        if self.in_block:
            self.c_out, self.sp_out = width, tuple((s + st.stride - 1) // st.stride for s in sp)
        else:
            self.c_out, self.sp_out = c, sp

    def _make(self, lc: LayerChoice, first: bool) -> tuple[str, int]:
        ix = self.index
        if first:
            cfg = layer_cfg(ix.space.stages[self.si], lc, self.c, self.width, self.sp, self.stride, ix.space.dims)
        elif self.in_block:
            cfg = layer_cfg(ix.space.stages[self.si], lc, self.width, self.width, self.sp_out, 1, ix.space.dims)
        else:
            cfg = layer_cfg(ix.space.stages[self.si], lc, self.c, self.c, self.sp, 1, ix.space.dims)
        k = latency_key(cfg)
        got = (k, ix._col(k))
        (self.first if first else self.later)[lc] = got
        return got


_INDEX: dict[int, KeyIndex] = {}


def key_index(space: SearchSpace) -> KeyIndex:
    """The (cached) KeyIndex of a space object."""
    idx = _INDEX.get(id(space))
    if idx is None or idx.space is not space:
        idx = _INDEX[id(space)] = KeyIndex(space)
    return idx



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
    from nas.blocks.skeleton import unit_cost

    c = unit_cost(u.cfg)
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

    With ``position`` the features also say where each block sits: per stage, the number of layers
    of each (mixer, kernel) choice. Summed costs alone cannot tell a 13-kernel gnConv in stage 3 from
    the same MACs spread elsewhere; a device whose cost of a block depends on its stage needs them.

    Computed as (archs x units count matrix) @ (units x features basis): a product per batch; the
    position counts are one look-up per layer."""

    name = "units"

    def __init__(self, space: SearchSpace, position: bool = False):
        self.space = space
        self.vocab, self.basis, base_names = _unit_basis(space)
        self.index = KeyIndex(space, self.vocab)
        self.position = bool(position)
        self._pos_col: dict[tuple[int, str, int | None], int] = {}
        names = list(base_names)
        if self.position:
            for si, st in enumerate(space.stages):
                for m in st.mixers:
                    for k in (*st.kernels, None):
                        self._pos_col[(si, m, k)] = len(self._pos_col)
                        names.append(f"s{si + 1}:{m}:k{k}:n" if k is not None else f"s{si + 1}:{m}:n")
        self.names = names
        self._layer_cols: list[dict[LayerChoice, int]] = [{} for _ in space.stages]

    def _layer_col(self, si: int, lc: LayerChoice) -> int:
        if lc.mixer == "skip":
            c = -1
        else:
            c = self._pos_col.get((si, lc.mixer, None if lc.kernel is None else int(lc.kernel)), -2)
            if c == -2:
                raise PredictorError(
                    f"space {self.space.name}: stage {si + 1} layer {lc.mixer}/k{lc.kernel} is not a choice of "
                    "the space (space file changed?)"
                )
        self._layer_cols[si][lc] = c
        return c

    def _positions(self, archs: Sequence[Arch]) -> np.ndarray:
        """(archs x position columns) counts: one dict look-up per layer, one bincount per batch."""
        P = len(self._pos_col)
        maps, make = self._layer_cols, self._layer_col
        flat: list[int] = []
        for i, a in enumerate(archs):
            base = i * P
            for si, st in enumerate(a.stages):
                m = maps[si]
                for lc in st.layers:
                    c = m.get(lc)
                    if c is None:
                        c = make(si, lc)
                    if c >= 0:
                        flat.append(base + c)
        counts = np.bincount(np.asarray(flat, dtype=np.intp), minlength=len(archs) * P)
        return counts.reshape(len(archs), P).astype(np.float64)

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        try:
            C = self.index.count_matrix(archs)
        except KeyError as e:
            raise PredictorError(
                f"space {self.space.name}: unit {e.args[0]} is not one the space enumerates (space file changed?)"
            ) from None
        X = np.asarray((C @ self.basis).todense())
        return np.hstack([X, self._positions(archs)]) if self.position else X

    def spec(self) -> dict[str, Any]:
        return {"type": self.name, **({"position": True} if self.position else {}), "names": self.names}


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


class NB201Features:
    """NAS-Bench-201 cells -> one-hot of the op on each of the 6 edges, then the count of each op.

    Every edge of the cell is computed whatever the other edges are, so a cell's latency is close
    to additive over its edges: the one-hot columns carry where each op sits, the counts what it costs
    wherever it sits (what a few samples can pin down first)."""

    name = "nb201"

    def __init__(self, space: Any):
        from nas.nb201.space import EDGES, OPS

        if getattr(space, "name", None) != "nb201":
            raise PredictorError(f"features 'nb201' need the NAS-Bench-201 space; {space.name} is not")
        self.space = space
        self._op = {op: i for i, op in enumerate(OPS)}
        self._n_ops = len(OPS)
        self.names = [f"e{i}{j}:{op}" for i, j in EDGES for op in OPS] + [f"n:{op}" for op in OPS]

    def __call__(self, archs: Sequence[Any]) -> np.ndarray:
        op = self._op
        try:
            codes = np.asarray([[op[o] for o in a.ops] for a in archs], dtype=np.intp).reshape(len(archs), -1)
        except (AttributeError, KeyError):
            raise PredictorError("features 'nb201': archs must be NAS-Bench-201 cells (6 edge ops)") from None
        n, e = codes.shape
        k = self._n_ops
        X = np.zeros((n, e * k + k))
        rows = np.repeat(np.arange(n), e)
        X[rows, (np.arange(e) * k)[None, :].repeat(n, 0).ravel() + codes.ravel()] = 1.0
        X[:, e * k :] = X[:, : e * k].reshape(n, e, k).sum(1)
        return X

    def spec(self) -> dict[str, Any]:
        return {"type": self.name, "names": self.names}


def make_features(space: SearchSpace, spec: dict[str, Any] | str):
    """The featuriser described by ``spec`` (a feature-set name or a stored spec)."""
    if isinstance(spec, str):
        spec = {"type": spec}
    t = spec.get("type")
    if t == "keys":
        return KeyFeatures(space, spec.get("extra") or ())
    if t in ("units", "units+position"):
        f = UnitFeatures(space, position=t == "units+position" or bool(spec.get("position")))
        if spec.get("names") is not None and list(spec["names"]) != f.names:
            raise PredictorError(
                f"space {space.name}: its unit types changed since the predictor was fitted; refit it"
            )
        return f
    if t == "ofa":
        return OFAFeatures(space, spec.get("kind", "analytic"))
    if t == "nb201":
        return NB201Features(space)
    raise PredictorError(f"feature set {t!r} unknown; allowed: {', '.join(FEATURE_SETS)}")


def default_arch_features(space: SearchSpace) -> str:
    """``ofa`` for the OFA MobileNetV3 space, ``nb201`` for the NAS-Bench-201 cells, else ``units``."""
    from nas.space.ofa import STAGES

    if not hasattr(space, "stages"):
        if space.name == "nb201":
            return "nb201"
        raise PredictorError(f"space {space.name}: no arch-level feature set for it; allowed: {', '.join(FEATURE_SETS)}")

    if len(space.stages) == STAGES + 1 and space.name.startswith("ofa"):
        return "ofa"
    return "units"
