"""Device profiles on disk: ``hardware_profiles/<NAME>/`` with YAML metadata and two tables.

Layout of a profile folder::

    profile.yaml   name, description, kind (measured | imported | calibrated: a host's correction, nas.latency.calibrate), created / updated, machine
                   (machine_info), protocol (end-to-end archs) and block_protocol (block table),
                   deploy (how modules were prepared), spaces (per space: resolutions, counts,
                   seed, complete), source / licence (imports), files (table file names)
    blocks.csv     key, median_ms, p25_ms, p75_ms, n, stable, attempts     (one row per unit key)
    archs.csv      space, arch_id, arch, split, median_ms, p25_ms, p75_ms, stable
                   (arch = canonical JSON; split = calib | holdout | refine | verify)

Large imported tables are stored as ``archs.parquet`` (zstd) instead; ``files`` in profile.yaml
names the file. Every write replaces a whole file atomically (temp file + rename), so a profile
killed mid-run keeps every chunk written before the kill.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas.errors import ProfileError
from nas.io import atomic_path, atomic_write_text, read_yaml, write_yaml
from nas.paths import builtin_dir, user_dir

PROFILE_FILE = "profile.yaml"
BLOCK_COLUMNS = ("key", "median_ms", "p25_ms", "p75_ms", "n", "stable", "attempts")
ARCH_COLUMNS = ("space", "arch_id", "arch", "split", "median_ms", "p25_ms", "p75_ms", "stable")
SPLITS = ("calib", "holdout", "refine", "verify")
KINDS = ("measured", "imported", "calibrated")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_BLOCK_DTYPES = {
    "key": str,
    "median_ms": float,
    "p25_ms": float,
    "p75_ms": float,
    "n": int,
    "stable": bool,
    "attempts": int,
}
_ARCH_DTYPES = {
    "space": str,
    "arch_id": str,
    "arch": str,
    "split": str,
    "median_ms": float,
    "p25_ms": float,
    "p75_ms": float,
    "stable": bool,
}


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    """A profile name is a folder name: letters, digits, '.', '_', '-' (not starting with a dot)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ProfileError(
            f"device name {name!r}: use letters, digits, '.', '_' and '-' only (it names a folder)"
        )
    return name


def slug(text: str) -> str:
    """Lower-case words joined by '-': ``'AMD EPYC 7B13 64-Core Processor' -> 'amd-epyc-7b13-64-core-processor'``."""
    s = re.sub(r"\((r|tm|c)\)", "", str(text).lower())
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s or "unknown"


def cpu_slug(cpu_model: str) -> str:
    """Short slug of a CPU model: drop filler words (processor, cpu, @ clock, core counts)."""
    s = str(cpu_model)
    s = re.sub(r"@.*$", "", s)
    s = re.sub(r"\b\d+-core\b", "", s, flags=re.I)
    s = re.sub(r"\b(processor|cpu|with radeon graphics)\b", "", s, flags=re.I)
    return slug(s)


def default_device_name(cpu_model: str, threads: int, batch: int, backend: str = "torch-cpu") -> str:
    """Default profile name: ``cpu-<model-slug>-<threads>t-b<batch>`` (plus ``-ort`` on onnxruntime)."""
    suffix = {"torch-cpu": "", "onnxruntime": "-ort", "torch-cuda": "-cuda"}.get(backend, f"-{slug(backend)}")
    prefix = "gpu" if backend == "torch-cuda" else "cpu"
    return f"{prefix}-{cpu_slug(cpu_model)}-{threads}t-b{batch}{suffix}"


def space_file_ref(space) -> str | None:
    """How profile.yaml names a space's file: the file name for a built-in space, else its path."""
    path = getattr(space, "source_path", None)
    if path is None:
        return None
    try:
        if Path(path).resolve().parent == builtin_dir("search_spaces").resolve():
            return Path(path).name
    except OSError:
        pass
    return str(path)


# ----------------------------------------------------------------------------------------- finding


def profile_roots() -> list[Path]:
    """Where profiles are looked up, in order: ./hardware_profiles (or $NAS_HOME), the built-in folder."""
    roots = [user_dir("hardware_profiles"), builtin_dir("hardware_profiles")]
    out: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def list_profiles() -> list[Path]:
    """Every profile folder found (first root wins on equal names), sorted by name."""
    seen: dict[str, Path] = {}
    for root in profile_roots():
        if root.is_dir():
            for p in sorted(root.iterdir()):
                if (p / PROFILE_FILE).is_file() and p.name not in seen:
                    seen[p.name] = p
    return [seen[k] for k in sorted(seen)]


def find_profile(name_or_path: str | Path) -> Path:
    """The folder of a profile given by name (searched in :func:`profile_roots`) or by path."""
    p = Path(name_or_path)
    if (p / PROFILE_FILE).is_file():
        return p
    if p.name == PROFILE_FILE and p.is_file():
        return p.parent
    for root in profile_roots():
        if (root / str(name_or_path) / PROFILE_FILE).is_file():
            return root / str(name_or_path)
    names = [q.name for q in list_profiles()]
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "none"
    raise ProfileError(f"device profile '{name_or_path}': not found; available: {shown}")


def _measured_profiles() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, metadata) of every readable measured profile, in :func:`list_profiles` order."""
    for path in list_profiles():
        try:
            meta = read_yaml(path / PROFILE_FILE)
        except Exception:  # an unreadable profile is nobody's
            continue
        if isinstance(meta, dict) and meta.get("kind", "measured") == "measured":
            yield path.name, meta


def default_device(threads: int = 1, batch: int = 1, backend: str = "torch-cpu", space: str | None = None) -> str | None:
    """Name of the profile measured on this machine's CPU model (``threads``, ``batch``, ``backend``
    as given; a profile with other settings of the same CPU if there is no exact one), or None. With ``space``,
    only a profile that measured that space counts (a user's own profile of one space does not hide the
    shipped profiles of the others)."""
    from nas.profile.machine import cpu_model

    here = cpu_model()
    exact, loose = [], []
    for name, meta in _measured_profiles():
        m = meta.get("machine") or {}
        if space is not None and space not in (meta.get("spaces") or {}):
            continue
        if m.get("cpu_model") == here:
            (exact if (m.get("threads"), m.get("batch"), m.get("backend")) == (threads, batch, backend)
             else loose).append(name)
    found = exact or loose
    return found[0] if found else None


def other_cpu_profile(space: str, threads: int = 1, batch: int = 1) -> str | None:
    """A measured torch-cpu profile of another CPU model that covers ``space`` (the same ``threads`` and
    ``batch`` first), or None: where no profile of this CPU exists, this host's latency starts from it and is
    calibrated here (:mod:`nas.latency.calibrate`)."""
    exact, loose = [], []
    for name, meta in _measured_profiles():
        m = meta.get("machine") or {}
        if m.get("backend") == "torch-cpu" and space in (meta.get("spaces") or {}):
            (exact if (m.get("threads"), m.get("batch")) == (threads, batch) else loose).append(name)
    found = exact or loose
    return found[0] if found else None


# ----------------------------------------------------------------------------------------- tables


def _empty(columns: Iterable[str], dtypes: Mapping[str, type]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if dtypes[c] is str else dtypes[c]) for c in columns})


def _coerce(
    df: pd.DataFrame, columns: tuple[str, ...], dtypes: Mapping[str, type], where: str
) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ProfileError(f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    df = df[list(columns)].copy()
    for c in columns:
        t = dtypes[c]
        try:
            if t is bool:
                df[c] = df[c].map(_to_bool).astype(bool)
            elif t is str:
                df[c] = df[c].astype(str)
            else:
                df[c] = pd.to_numeric(df[c]).astype(t)
        except (TypeError, ValueError) as e:
            raise ProfileError(
                f"{where}: column '{c}' holds values that are not {t.__name__} ({e})"
            ) from None
    return df


def _to_bool(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str):
        if v.strip().lower() in ("true", "1", "yes"):
            return True
        if v.strip().lower() in ("false", "0", "no", ""):
            return False
        raise ValueError(f"{v!r} is not true/false")
    return bool(v)


def _read_table(path: Path, columns: tuple[str, ...], dtypes: Mapping[str, type]) -> pd.DataFrame:
    if not path.is_file():
        return _empty(columns, dtypes)
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(
                path, dtype={c: str for c, t in dtypes.items() if t is str}, keep_default_na=False
            )
    except Exception as e:  # malformed file: a user-facing error naming it
        raise ProfileError(f"{path}: cannot read table ({type(e).__name__}: {e})") from None
    return _coerce(df, columns, dtypes, str(path))


def _write_table(path: Path, df: pd.DataFrame) -> None:
    if path.suffix == ".parquet":
        with atomic_path(path, suffix=".parquet.tmp") as tmp:
            df.to_parquet(tmp, compression="zstd", index=False)
    else:
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


# ---------------------------------------------------------------------------------------- profile


class Profile:
    """A device profile folder: metadata (``meta``), block table (``blocks``), arch table (``archs``).

    Rows are added with :meth:`add_blocks` / :meth:`add_archs` (in memory) and written with
    :meth:`flush`, which rewrites each changed file atomically; a kill between flushes loses only
    the rows added since the last one.
    """

    def __init__(self, path: Path, meta: dict[str, Any], blocks: pd.DataFrame, archs: pd.DataFrame):
        self.path = Path(path)
        self.meta = meta
        self.blocks = blocks
        self.archs = archs
        self._pending_blocks: list[dict[str, Any]] = []
        self._pending_archs: list[dict[str, Any]] = []
        self._dirty = {"blocks": False, "archs": False, "meta": False}

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        name: str,
        *,
        kind: str = "measured",
        description: str = "",
        machine: dict[str, Any] | None = None,
        protocol: dict[str, Any] | None = None,
        archs_format: str = "csv",
        **extra: Any,
    ) -> Profile:
        """A new, empty profile at ``path`` (written on the first :meth:`flush`)."""
        check_name(name)
        if kind not in KINDS:
            raise ProfileError(f"profile kind '{kind}' unknown; choose from {', '.join(KINDS)}")
        if archs_format not in ("csv", "parquet"):
            raise ProfileError(f"archs table format '{archs_format}' unknown; choose from csv, parquet")
        t = now_utc()
        meta: dict[str, Any] = {
            "name": name,
            "description": description,
            "kind": kind,
            "created": t,
            "updated": t,
            "machine": machine or {},
            "protocol": protocol,
        }
        meta.update(extra)
        meta.setdefault("spaces", {})
        meta["files"] = {"blocks": "blocks.csv", "archs": f"archs.{archs_format}"}
        prof = cls(Path(path), meta, _empty(BLOCK_COLUMNS, _BLOCK_DTYPES), _empty(ARCH_COLUMNS, _ARCH_DTYPES))
        prof._dirty = {"blocks": True, "archs": True, "meta": True}
        return prof

    @classmethod
    def load(cls, name_or_path: str | Path) -> Profile:
        """Read a profile by name (see :func:`find_profile`) or folder path."""
        path = find_profile(name_or_path)
        meta = read_yaml(path / PROFILE_FILE)
        where = str(path / PROFILE_FILE)
        if not isinstance(meta, dict):
            raise ProfileError(f"{where}: expected a mapping with name, machine, protocol, spaces, files")
        for key in ("name", "files"):
            if key not in meta:
                raise ProfileError(f"{where}: {key}: missing (required)")
        files = meta["files"]
        if not isinstance(files, dict) or not {"blocks", "archs"} <= set(files):
            raise ProfileError(f"{where}: files: expected a mapping with blocks and archs")
        for k in ("blocks", "archs"):
            f = str(files[k])
            if Path(f).name != f or not f.endswith((".csv", ".parquet")):
                raise ProfileError(
                    f"{where}: files.{k}: '{f}' must be a .csv or .parquet file name in the folder"
                )
        meta.setdefault("spaces", {})
        blocks = _read_table(path / files["blocks"], BLOCK_COLUMNS, _BLOCK_DTYPES)
        archs = _read_table(path / files["archs"], ARCH_COLUMNS, _ARCH_DTYPES)
        bad = sorted(set(archs["split"]) - set(SPLITS))
        if bad:
            raise ProfileError(
                f"{path / files['archs']}: split '{bad[0]}' unknown; allowed: {', '.join(SPLITS)}"
            )
        return cls(path, meta, blocks, archs)

    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / PROFILE_FILE).is_file()

    # -- properties -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "measured"))

    @property
    def machine(self) -> dict[str, Any]:
        return dict(self.meta.get("machine") or {})

    def space_meta(self, space: str) -> dict[str, Any]:
        """The ``spaces.<space>`` entry of profile.yaml (created empty if absent)."""
        spaces = self.meta.setdefault("spaces", {})
        return spaces.setdefault(space, {})

    def load_space(self, space):
        """A SearchSpace given as object, built-in name, YAML path, or the name of a space this profile
        recorded with its file path (``spaces.<name>.space_file``)."""
        from nas.errors import NASError
        from nas.space import load_space

        try:
            return load_space(space)
        except NASError:
            ref = (self.meta.get("spaces", {}).get(str(space)) or {}).get("space_file")
            if ref and Path(ref).is_file():
                return load_space(ref)
            raise

    def spaces(self) -> list[str]:
        """Spaces with an entry in profile.yaml or rows in the arch table."""
        names = list(self.meta.get("spaces") or {})
        for s in self._all_archs()["space"].unique():
            if s not in names:
                names.append(str(s))
        return names

    # -- reading --------------------------------------------------------------------------------
    def _all_blocks(self) -> pd.DataFrame:
        if self._pending_blocks:
            self._merge()
        return self.blocks

    def _all_archs(self) -> pd.DataFrame:
        if self._pending_archs:
            self._merge()
        return self.archs

    def measured_keys(self) -> set[str]:
        """Keys with a row in the block table."""
        return set(self._all_blocks()["key"])

    def block_table(self, stable_only: bool = False) -> dict[str, float]:
        """``{key: median_ms}`` of the block table."""
        b = self._all_blocks()
        if stable_only:
            b = b[b["stable"]]
        return dict(zip(b["key"], b["median_ms"].astype(float)))

    def arch_rows(self, space: str | None = None, split: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Rows of the arch table, optionally of one space and split(s)."""
        a = self._all_archs()
        if space is not None:
            a = a[a["space"] == space]
        if split is not None:
            splits = [split] if isinstance(split, str) else list(split)
            bad = [s for s in splits if s not in SPLITS]
            if bad:
                raise ProfileError(f"split '{bad[0]}' unknown; allowed: {', '.join(SPLITS)}")
            a = a[a["split"].isin(splits)]
        return a

    def measured_archs(self, space: str) -> set[tuple[str, str]]:
        """``(arch_id, split)`` pairs already in the arch table for ``space``."""
        a = self.arch_rows(space)
        return set(zip(a["arch_id"], a["split"]))

    def archs_of(self, space, split: str | Iterable[str] | None = None) -> tuple[list, np.ndarray]:
        """``(archs, latencies_ms)`` of a space (a SearchSpace or a name) and split(s)."""
        sp = self.load_space(space)
        rows = self.arch_rows(sp.name, split)
        archs = []
        for i, text in enumerate(rows["arch"]):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ProfileError(f"{self.path}: archs row {i}: arch is not JSON ({e.msg})") from None
            archs.append(sp.arch_from_dict(data, source=f"{self.path}: archs row {i}"))
        return archs, rows["median_ms"].to_numpy(dtype=np.float64)

    # -- writing --------------------------------------------------------------------------------
    def add_blocks(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add (or replace, by key) block rows; written on the next :meth:`flush`."""
        for r in rows:
            self._pending_blocks.append({c: r[c] for c in BLOCK_COLUMNS})
        self._dirty["blocks"] = True

    def add_archs(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add (or replace, by space + arch_id + split) arch rows; written on the next :meth:`flush`."""
        for r in rows:
            split = r["split"]
            if split not in SPLITS:
                raise ProfileError(f"split '{split}' unknown; allowed: {', '.join(SPLITS)}")
            self._pending_archs.append({c: r[c] for c in ARCH_COLUMNS})
        self._dirty["archs"] = True

    def remove_archs(self, space: str) -> int:
        """Drop every arch row of ``space`` (written on the next :meth:`flush`); returns how many there were."""
        self._merge()
        keep = self.archs["space"] != space if len(self.archs) else None
        if keep is None or bool(keep.all()):
            return 0
        n = int((~keep).sum())
        self.archs = self.archs[keep].reset_index(drop=True)
        self._dirty["archs"] = True
        return n

    def _merge(self) -> None:
        if self._pending_blocks:
            new = _coerce(pd.DataFrame(self._pending_blocks), BLOCK_COLUMNS, _BLOCK_DTYPES, "block rows")
            frames = [f for f in (self.blocks, new) if len(f)]
            both = pd.concat(frames, ignore_index=True) if frames else new
            self.blocks = both.drop_duplicates("key", keep="last").reset_index(drop=True)
            self._pending_blocks = []
        if self._pending_archs:
            new = _coerce(pd.DataFrame(self._pending_archs), ARCH_COLUMNS, _ARCH_DTYPES, "arch rows")
            frames = [f for f in (self.archs, new) if len(f)]
            both = pd.concat(frames, ignore_index=True) if frames else new
            self.archs = both.drop_duplicates(["space", "arch_id", "split"], keep="last").reset_index(
                drop=True
            )
            self._pending_archs = []

    def touch(self) -> None:
        """Mark the metadata changed (written on the next flush)."""
        self._dirty["meta"] = True

    def flush(self) -> None:
        """Write what changed: the tables, then profile.yaml (each atomically)."""
        self._merge()
        self.path.mkdir(parents=True, exist_ok=True)
        files = self.meta["files"]
        if self._dirty["blocks"]:
            _write_table(self.path / files["blocks"], self.blocks)
        if self._dirty["archs"]:
            _write_table(self.path / files["archs"], self.archs)
        if any(self._dirty.values()):
            self.meta["updated"] = now_utc()
            self._update_counts()
            write_yaml(self.path / PROFILE_FILE, self.meta)
        self._dirty = {"blocks": False, "archs": False, "meta": False}

    def _update_counts(self) -> None:
        self.meta["blocks_measured"] = int(len(self.blocks))
        for space in self.spaces():
            rows = self.archs[self.archs["space"] == space]
            entry = self.space_meta(space)
            counts = rows["split"].value_counts()
            entry["archs_measured"] = {s: int(counts.get(s, 0)) for s in SPLITS}

    def describe(self) -> dict[str, Any]:
        """A summary for ``nas profile show`` (plain types)."""
        b = self._all_blocks()
        a = self._all_archs()
        m = self.machine
        out = {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "description": self.meta.get("description", ""),
            "machine": m.get("gpu_name") or m.get("cpu_model"),
            "backend": m.get("backend"),
            "threads": m.get("threads"),
            "batch": m.get("batch"),
            "blocks": int(len(b)),
            "blocks_unstable": int((~b["stable"]).sum()) if len(b) else 0,
            "spaces": {},
        }
        for space in self.spaces():
            rows = a[a["space"] == space]
            counts = rows["split"].value_counts()
            entry = dict(self.meta.get("spaces", {}).get(space) or {})
            out["spaces"][space] = {
                **{s: int(counts.get(s, 0)) for s in SPLITS},
                "complete": entry.get("complete"),
                "blocks_total": entry.get("blocks_total"),
            }
        return out


__all__ = [
    "ARCH_COLUMNS",
    "BLOCK_COLUMNS",
    "PROFILE_FILE",
    "SPLITS",
    "Profile",
    "check_name",
    "cpu_slug",
    "default_device",
    "default_device_name",
    "other_cpu_profile",
    "find_profile",
    "list_profiles",
    "profile_roots",
    "slug",
]
