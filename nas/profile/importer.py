"""Import arch-level latency tables measured elsewhere into device profiles (no timing here).

Two table formats, one profile per latency column:

* ``ofa``: Once-for-All MobileNetV3 encodings - columns ``resolution``, ``depths`` (5 integers),
  ``kernel_sizes`` and ``expand_ratios`` (20 integers each, space separated) and latency columns
  named ``<device>_<batch>_ms`` (e.g. ``v100_32_ms``); archs go through
  :func:`nas.space.ofa.from_ofa` into the ``ofa-mbv3`` space;
* ``archs``: a column ``arch`` holding an arch as JSON (what ``Arch.key`` / ``Arch.to_json`` write),
  optionally ``split``, and one or more latency columns ending in ``_ms``.

Profiles are named from the column (:func:`default_profile_name`: ``v100_32_ms`` -> ``gpu-v100-b32``,
``gold_6226_ms`` -> ``cpu-gold-6226``), or as the user maps them: ``COL=NAME:KIND``. The device's kind
(cpu, gpu, npu, mobile, other) and batch go into the profile's machine record.

Each imported profile is ``kind: imported``: it holds no block table, only end-to-end rows, split
into ``calib`` and ``holdout`` by a hash of the arch id (the same arch falls in the same split on
every device, which few-shot transfer between devices relies on). profile.yaml records the source
file and its SHA-256, the column, where the data came from and its licence.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas.errors import NASError, ParamError, ProfileError
from nas.io import sha256_file
from nas.nb201.space import parse_arch
from nas.profile.store import Profile, check_name, slug, space_file_ref
from nas.space import SearchSpace, load_space

FORMATS = ("auto", "ofa", "archs", "nb201")
OFA_COLUMNS = ("resolution", "depths", "kernel_sizes", "expand_ratios")
_LAT_RE = re.compile(r"^(?P<device>.+)_(?P<batch>\d+)_ms$")

# Known device names of the public OFA GPU table (HELP's file names -> marketing names).
GPU_NAMES = {
    "2080ti": "NVIDIA GeForce RTX 2080 Ti",
    "titan_rtx": "NVIDIA TITAN RTX",
    "titan_xp": "NVIDIA TITAN Xp",
    "v100": "NVIDIA Tesla V100",
}
# Provenance of the OFA GPU table shipped in shared/datasets (see its README).
OFA_PROVENANCE = {
    "origin": "HELP repository (HayeonLee/HELP): data/ofa/latency/*.pt and data/ofa/ofa_archs.pt, "
    "converted to CSV once (5,000 OFA MobileNetV3 sub-networks, end-to-end latency)",
    "url": "https://github.com/HayeonLee/HELP",
    "licence": "MIT",
}


@dataclass
class ImportedColumn:
    """One latency column turned into one profile."""

    column: str
    device: str
    path: Path
    rows: int
    calib: int
    holdout: int
    duplicates: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def holdout_of(arch_id: str, share: float) -> bool:
    """Whether an arch id falls in the held-out split (a hash, so every device agrees)."""
    h = int(hashlib.sha256(("holdout:" + arch_id).encode()).hexdigest()[:12], 16)
    return h / float(16**12) < share


def detect_format(df: pd.DataFrame, source: str) -> str:
    if all(c in df.columns for c in OFA_COLUMNS):
        return "ofa"
    if "arch" in df.columns:
        return "archs"
    if "arch_str" in df.columns:
        return "nb201"
    raise ProfileError(
        f"{source}: cannot tell the table format; expected columns {', '.join(OFA_COLUMNS)} (ofa), "
        f"an 'arch' column (archs) or an 'arch_str' column of NAS-Bench-201 strings (nb201), plus latency "
        f"columns ending in _ms"
    )


def _ints(text: Any, n: int, where: str) -> list[int]:
    try:
        vals = [int(v) for v in str(text).replace(",", " ").split()]
    except ValueError:
        raise ProfileError(f"{where}: {text!r} is not a list of integers") from None
    if len(vals) != n:
        raise ProfileError(f"{where}: expected {n} integers, got {len(vals)}")
    return vals


def _archs_ofa(df: pd.DataFrame, space: SearchSpace, source: str) -> list:
    from nas.space.ofa import from_ofa

    out = []
    for i, (r, d, k, e) in enumerate(
        zip(df["resolution"], df["depths"], df["kernel_sizes"], df["expand_ratios"])
    ):
        where = f"{source}: row {i + 2}"
        try:
            out.append(
                from_ofa(
                    _ints(k, 20, f"{where}: kernel_sizes"),
                    _ints(e, 20, f"{where}: expand_ratios"),
                    _ints(d, 5, f"{where}: depths"),
                    int(r),
                    space,
                )
            )
        except ProfileError:
            raise
        except Exception as ex:  # a SpaceError naming the field, or a bad number
            raise ProfileError(f"{where}: {ex}") from None
    return out


def _archs_json(df: pd.DataFrame, space: SearchSpace, source: str) -> list:
    out = []
    for i, text in enumerate(df["arch"]):
        where = f"{source}: row {i + 2}: arch"
        try:
            data = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError as e:
            raise ProfileError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: expected a JSON object")
        out.append(space.arch_from_dict(data, where))
    return out


def _archs_nb201(df: pd.DataFrame, space: Any, source: str) -> list:
    """NAS-Bench-201 cells written as the benchmark's strings (``|op~0|+|op~0|op~1|+...``)."""
    out = []
    for i, text in enumerate(df["arch_str"]):
        try:
            out.append(space.make_arch({"ops": list(parse_arch(str(text)))}))
        except NASError as e:
            raise ProfileError(f"{source}: row {i + 2}: arch_str: {e}") from None
    return out


def latency_columns(df: pd.DataFrame) -> list[str]:
    """Columns holding latencies (names ending in ``_ms``)."""
    return [c for c in df.columns if str(c).endswith("_ms")]


DEVICE_KINDS = ("cpu", "gpu", "npu", "mobile", "other")
"""What an imported latency column was measured on (``--column COL=NAME:KIND``)."""

# name fragments that tell a device's kind (matched on the lower-case column name, by token)
_KIND_HINTS: dict[str, tuple[str, ...]] = {
    "gpu": ("gpu", "cuda", "rtx", "gtx", "titan", "tesla", "quadro", "radeon", "jetson", "2080ti", "1080ti",
            "3090", "4090", "v100", "a100", "h100", "h200", "p100", "k80", "t4", "a10", "l4", "a6000",
            "mi100", "mi250", "mi300"),
    "cpu": ("cpu", "xeon", "gold", "silver", "platinum", "epyc", "ryzen", "threadripper", "core", "i3", "i5",
            "i7", "i9", "cortex", "graviton", "neoverse", "atom", "celeron", "pentium", "arm", "x86"),
    "npu": ("npu", "tpu", "edgetpu", "hexagon", "dsp", "ane", "vpu", "myriad"),
    "mobile": ("pixel", "iphone", "galaxy", "snapdragon", "android", "phone", "mobile", "exynos", "kirin"),
}
_BATCH_RE = re.compile(r"^(?P<device>.+?)_(?:b|bs|batch)_?(?P<batch>\d+)_ms$")
_KIND_PREFIX = {"other": "device"}


@dataclass(frozen=True)
class ColumnDevice:
    """What one latency column names: the device, its kind, the batch size (None: unknown)."""

    column: str
    device: str
    kind: str
    batch: int | None
    name: str | None = None  # the profile name the user gave, if any


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def infer_column(column: str) -> ColumnDevice:
    """Device, kind and batch of a latency column from its name.

    ``v100_32_ms`` is a V100 GPU at batch 32, ``gpu_b8_ms`` batch 8; a trailing number is a batch only
    when it is a power of two up to 1024 (so ``gold_6226_ms`` is the device ``gold_6226``, not batch
    6226). The kind comes from known name fragments (``xeon``, ``gold``, ``epyc`` -> cpu; ``v100``,
    ``rtx`` -> gpu; ``pixel`` -> mobile; ...), else ``other``."""
    stem = column[: -len("_ms")] if column.endswith("_ms") else column
    device, batch = stem, None
    m = _BATCH_RE.match(column)
    if m:
        device, batch = m["device"], int(m["batch"])
    else:
        m = _LAT_RE.match(column)
        if m and _power_of_two(int(m["batch"])) and int(m["batch"]) <= 1024:
            device, batch = m["device"], int(m["batch"])
    low = device.lower()
    tokens = set(re.split(r"[^a-z0-9]+", low)) | {low.replace("_", "")}
    kind = "other"
    if low in GPU_NAMES:
        kind = "gpu"
    else:
        for k, hints in _KIND_HINTS.items():
            if any(t == h or (t.startswith(h) and t[len(h):].isdigit()) for t in tokens for h in hints):
                kind = k
                break
    return ColumnDevice(column, device, kind, batch)


def parse_column_spec(spec: str) -> ColumnDevice:
    """``COL``, ``COL=NAME``, ``COL=NAME:KIND`` or ``COL=:KIND`` -> the column's :class:`ColumnDevice`
    (what is not given is inferred from the column name, :func:`infer_column`)."""
    col, sep, rest = spec.partition("=")
    col = col.strip()
    if not col:
        raise ParamError("column", f"{spec}: give COLUMN, COLUMN=NAME or COLUMN=NAME:KIND")
    inferred = infer_column(col)
    if not sep:
        return inferred
    name, _, kind = rest.partition(":")
    name, kind = name.strip(), kind.strip().lower()
    if kind and kind not in DEVICE_KINDS:
        raise ParamError("column", f"{spec}: kind '{kind}' unknown; allowed: {', '.join(DEVICE_KINDS)}")
    if name:
        check_name(name)
    return ColumnDevice(col, inferred.device, kind or inferred.kind, inferred.batch, name or None)


def default_profile_name(column: str | ColumnDevice, prefix: str | None = None) -> str:
    """``v100_32_ms -> gpu-v100-b32``, ``gold_6226_ms -> cpu-gold-6226``, ``pixel7_ms -> mobile-pixel7``;
    ``prefix`` replaces the kind in front (an unknown kind gives ``device-``)."""
    cd = column if isinstance(column, ColumnDevice) else infer_column(column)
    head = prefix if prefix is not None else _KIND_PREFIX.get(cd.kind, cd.kind)
    body = slug(cd.device) + (f"-b{cd.batch}" if cd.batch is not None else "")
    if not head or body == head or body.startswith(f"{head}-"):  # cpu_1_ms -> cpu-b1, not cpu-cpu-b1
        return body
    return f"{head}-{body}"


def _machine(cd: ColumnDevice) -> dict[str, Any]:
    label = GPU_NAMES.get(cd.device, cd.name or cd.device)
    return {
        "device_kind": cd.kind,
        "device_name": label,
        "gpu_name": label if cd.kind == "gpu" else None,
        "cpu_model": label if cd.kind == "cpu" else None,
        "backend": None,
        "threads": None,
        "batch": cd.batch,
        "dtype": None,
        "measured_here": False,
    }


def import_table(
    path: str | Path,
    space: str | SearchSpace | None = None,
    *,
    fmt: str = "auto",
    columns: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    root: Path | None = None,
    prefix: str | None = None,
    holdout_share: float = 0.2,
    source: str | None = None,
    url: str | None = None,
    licence: str | None = None,
    description: str | None = None,
    force: bool = False,
) -> list[ImportedColumn]:
    """Import every latency column of a table (or ``columns``) into profiles under ``root``.

    A column may be given as ``COL=NAME:KIND`` (:func:`parse_column_spec`: the profile name and the
    device kind, one of :data:`DEVICE_KINDS`). ``names`` gives the profile names (one per column);
    otherwise :func:`default_profile_name` (``prefix`` replaces the inferred kind in front).
    Existing profiles are refused unless ``force``. Returns one :class:`ImportedColumn` per profile.
    """
    from nas.profile.run import profiles_root

    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such file")
    if fmt not in FORMATS:
        raise ParamError("format", f"{fmt}: unknown; choose from {', '.join(FORMATS)}")
    if not 0.0 <= holdout_share < 1.0:
        raise ParamError("holdout_share", f"{holdout_share}: must be in [0, 1)")
    try:
        df = pd.read_csv(path, dtype={"depths": str, "kernel_sizes": str, "expand_ratios": str, "arch": str,
                                      "arch_str": str})
    except Exception as e:
        raise ProfileError(f"{path}: cannot read CSV ({type(e).__name__}: {e})") from None
    fmt = detect_format(df, str(path)) if fmt == "auto" else fmt
    if fmt == "ofa":
        missing = [c for c in OFA_COLUMNS if c not in df.columns]
        if missing:
            raise ProfileError(f"{path}: format ofa needs column(s) {', '.join(missing)}")
        space = load_space(space or "ofa-mbv3")
    elif fmt == "nb201":
        if "arch_str" not in df.columns:
            raise ProfileError(f"{path}: format nb201 needs an 'arch_str' column (NAS-Bench-201 strings)")
        space = load_space(space or "nb201")
    else:
        if "arch" not in df.columns:
            raise ProfileError(f"{path}: format archs needs an 'arch' column (arch JSON)")
        if space is None:
            raise ParamError("space", f": missing; {path} does not name the space of its archs")
        space = load_space(space)
    all_lat = latency_columns(df)
    specs = [parse_column_spec(c) for c in columns] if columns else [infer_column(c) for c in all_lat]
    cols = [c.column for c in specs]
    if not cols:
        raise ProfileError(f"{path}: no latency columns (names ending in _ms)")
    bad = [c for c in cols if c not in all_lat]
    if bad:
        raise ProfileError(
            f"{path}: column '{bad[0]}' is not a latency column; available: {', '.join(all_lat)}"
        )
    if names is not None and len(names) != len(cols):
        raise ProfileError(f"{len(names)} profile names for {len(cols)} latency columns; give one per column")
    if names:
        names = [check_name(n) for n in names]
    else:
        names = [c.name or default_profile_name(c, prefix) for c in specs]
    if len(set(names)) != len(names):
        raise ProfileError(f"profile names repeat: {', '.join(names)}")
    root = profiles_root(root)
    if not force:
        for n in names:
            if Profile.exists(root / n):
                raise ProfileError(f"{root / n}: profile exists; replace it with force")

    read = {"ofa": _archs_ofa, "nb201": _archs_nb201}.get(fmt, _archs_json)
    archs = read(df, space, str(path))
    ids = np.array([a.id for a in archs])
    keys = [a.key for a in archs]
    if "split" in df.columns:
        split = df["split"].astype(str).to_numpy()
        wrong = sorted(set(split) - {"calib", "holdout", "refine"})
        if wrong:
            raise ProfileError(f"{path}: column split: '{wrong[0]}' unknown; allowed: calib, holdout, refine")
    else:
        split = np.array(["holdout" if holdout_of(i, holdout_share) else "calib" for i in ids])
    digest = sha256_file(path)
    prov = dict(OFA_PROVENANCE) if fmt == "ofa" else {}
    if source:
        prov["origin"] = source
    if url:
        prov["url"] = url
    if licence:
        prov["licence"] = licence
    out = []
    for cd, name in zip(specs, names):
        col = cd.column
        lat = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        ok = np.isfinite(lat) & (lat > 0)
        frame = pd.DataFrame(
            {
                "space": space.name,
                "arch_id": ids[ok],
                "arch": [k for k, g in zip(keys, ok) if g],
                "split": split[ok],
                "median_ms": lat[ok],
                "p25_ms": np.nan,
                "p75_ms": np.nan,
                "stable": True,
            }
        )
        # the same arch measured twice: keep the median of its latencies
        dup = int(frame.duplicated(["arch_id", "split"]).sum())
        if dup:
            med = frame.groupby(["arch_id", "split"], sort=False)["median_ms"].transform("median")
            frame = frame.assign(median_ms=med).drop_duplicates(["arch_id", "split"]).reset_index(drop=True)
        machine = _machine(cd)
        batch = f"batch {cd.batch}" if cd.batch is not None else "batch not recorded"
        desc = description or (
            f"{machine['device_name']} ({cd.kind}), {batch}: end-to-end latency of {len(frame)} "
            f"{space.name} archs imported from {path.name} (column {col})"
        )
        prof = Profile.create(
            root / name,
            name,
            kind="imported",
            description=desc,
            machine=machine,
            protocol=None,
            archs_format="parquet" if len(frame) > 1000 else "csv",
            protocol_note="as published by the source: end-to-end latency in ms, protocol not recorded here",
            source={
                "file": path.name,
                "sha256": digest,
                "column": col,
                "format": fmt,
                "rows": int(len(df)),
                "rows_kept": int(ok.sum()),
                "duplicates_merged": dup,
                **{k: v for k, v in prov.items() if k != "licence"},
            },
            licence=prov.get("licence", "unknown"),
            batch=cd.batch,
        )
        prof.space_meta(space.name).update(
            {
                "space_file": space_file_ref(space),
                "holdout_share": holdout_share if "split" not in df.columns else None,
                "complete": True,
            }
        )
        prof.add_archs(frame.to_dict("records"))
        if force and (root / name).is_dir():
            for f in (root / name).iterdir():
                if f.suffix in (".csv", ".parquet") and f.name not in prof.meta["files"].values():
                    f.unlink()
        prof.flush()
        counts = frame["split"].value_counts()
        out.append(
            ImportedColumn(
                col,
                name,
                prof.path,
                int(len(frame)),
                int(counts.get("calib", 0)),
                int(counts.get("holdout", 0)),
                dup,
            )
        )
    return out


__all__ = [
    "DEVICE_KINDS",
    "FORMATS",
    "GPU_NAMES",
    "ColumnDevice",
    "ImportedColumn",
    "default_profile_name",
    "holdout_of",
    "import_table",
    "infer_column",
    "parse_column_spec",
]
