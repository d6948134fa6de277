"""The zoo folder and its ``index.yaml``: names, checksums, locking and atomic updates.

A zoo is a folder holding one sub-folder per model plus ``index.yaml``, which records for every entry
its metadata and a SHA-256 of each of its files. Every change to the index happens under an exclusive
``fcntl.flock`` on ``<zoo>/.index.lock`` and is written atomically (temp file, fsync, rename), so
concurrent exports (threads or processes) never lose or corrupt each other's entries, and readers
never see a half-written index. Readers do not lock: they always see a complete old or new index.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ZooError
from nas.io import process_umask, sha256_file, write_yaml

INDEX_FILE = "index.yaml"
LOCK_FILE = ".index.lock"
STAGING_DIR = ".staging"
INDEX_FORMAT = "nas-zoo/1"

ARCH_FILE = "arch.yaml"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
CARD_FILE = "card.md"
PLOT_FILE = "pareto.png"
ENTRY_FILES = (ARCH_FILE, WEIGHTS_FILE, ONNX_FILE, CARD_FILE, PLOT_FILE)
"""The only file names an entry may hold; an index naming anything else is rejected (no path games)."""
REQUIRED_FILES = (ARCH_FILE, ONNX_FILE, CARD_FILE)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
ZOO_ENV = "NAS_ZOO"


def default_zoo() -> Path:
    """The zoo used when none is given: ``$NAS_ZOO``, else ``./zoo``."""
    return Path(os.environ.get(ZOO_ENV) or "zoo")


def zoo_path(zoo: str | os.PathLike | None) -> Path:
    """``zoo`` as a Path (the default zoo when None)."""
    return default_zoo() if zoo is None else Path(zoo)


def check_name(name: str) -> str:
    """A valid entry name (lowercase letters, digits, '-' and '_'; at most 80), else ZooError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ZooError(
            f"model name {name!r}: use lowercase letters, digits, '-' and '_' (start with a letter "
            "or digit, at most 80 characters)"
        )
    return name


# ------------------------------------------------------------------------------------------- reading
def _empty() -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "models": {}}


def read_index(zoo: str | os.PathLike | None, must_exist: bool = False) -> dict[str, Any]:
    """The parsed index (``{"format", "models": {name: record}}``), validated; empty when absent."""
    root = zoo_path(zoo)
    path = root / INDEX_FILE
    if not path.is_file():
        if must_exist:
            if not root.is_dir():
                raise ZooError(
                    f"{root}: no such zoo folder (export a model with `nas export ... --zoo {root}`)"
                )
            raise ZooError(f"{path}: missing; {root} is not a zoo (no index)")
        return _empty()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ZooError(
            f"{path}: not valid YAML ({getattr(e, 'problem', e)}); the index is corrupted"
        ) from None
    if data is None:
        return _empty()
    if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
        raise ZooError(f"{path}: expected a mapping with 'format' and 'models'; the index is corrupted")
    if data.get("format") != INDEX_FORMAT:
        raise ZooError(f"{path}: format {data.get('format')!r} is not {INDEX_FORMAT!r}")
    models = data.get("models") or {}
    for name, rec in models.items():
        _check_record(path, name, rec)
    return {"format": INDEX_FORMAT, "models": models}


def _check_record(path: Path, name: Any, rec: Any) -> None:
    where = f"{path}: models.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ZooError(f"{where}: not a valid entry name")
    if not isinstance(rec, dict):
        raise ZooError(f"{where}: expected a mapping")
    files = rec.get("files")
    if not isinstance(files, dict) or not files:
        raise ZooError(f"{where}.files: missing; each entry lists its files with their SHA-256")
    for fname, digest in files.items():
        if fname not in ENTRY_FILES:
            raise ZooError(
                f"{where}.files: {fname!r} is not an entry file; allowed: {', '.join(ENTRY_FILES)}"
            )
        if not isinstance(digest, str) or not _SHA.match(digest):
            raise ZooError(f"{where}.files.{fname}: not a SHA-256 hex digest")
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise ZooError(f"{where}.files: missing {', '.join(missing)}")


def get_record(zoo: str | os.PathLike | None, name: str) -> dict[str, Any]:
    """The index record of ``name``; ZooError listing the known names when absent."""
    index = read_index(zoo, must_exist=True)
    models = index["models"]
    if name not in models:
        known = ", ".join(sorted(models)) or "(none)"
        raise ZooError(f"{zoo_path(zoo) / INDEX_FILE}: no model {name!r}; the zoo has: {known}")
    return models[name]


def entry_dir(zoo: str | os.PathLike | None, name: str) -> Path:
    return zoo_path(zoo) / check_name(name)


# ------------------------------------------------------------------------------------------- checksums
def file_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every entry file present in ``folder`` (in ENTRY_FILES order)."""
    return {f: sha256_file(folder / f) for f in ENTRY_FILES if (folder / f).is_file()}


def check_files(
    zoo: str | os.PathLike | None, name: str, record: dict[str, Any], files: tuple[str, ...] | None = None
) -> Path:
    """Check the named files (default: all the record lists) against their SHA-256; return the entry folder.

    Raises ZooError naming the file when it is missing (incomplete entry) or its checksum differs
    (tampered or corrupted). Checked before anything is read from the files.
    """
    folder = entry_dir(zoo, name)
    listed = record["files"]
    if not folder.is_dir():
        raise ZooError(
            f"{folder}: missing; the zoo index lists {name!r} but its folder is gone (incomplete entry)"
        )
    for fname in files if files is not None else tuple(listed):
        if fname not in listed:
            raise ZooError(f"{folder}: {fname} is not recorded in the index for {name!r} (incomplete entry)")
        p = folder / fname
        if p.is_symlink() or not p.is_file():
            raise ZooError(f"{p}: missing or not a regular file (incomplete entry); re-export {name!r}")
        digest = sha256_file(p)
        if digest != listed[fname]:
            raise ZooError(
                f"{p}: SHA-256 {digest[:12]}... does not match the index ({listed[fname][:12]}...); "
                "the file was tampered with or corrupted; re-export it"
            )
    return folder


# ------------------------------------------------------------------------------------------- locking
@contextlib.contextmanager
def locked(zoo: str | os.PathLike | None, timeout: float = 300.0) -> Iterator[Path]:
    """Hold the zoo's exclusive lock (``fcntl.flock`` on ``<zoo>/.index.lock``); yields the zoo folder."""
    root = zoo_path(zoo)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() > deadline:
                    raise ZooError(
                        f"{root / LOCK_FILE}: still locked by another export after {timeout:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield root
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def publish_permissions(path: Path) -> None:
    """Give a staged file or folder tree the usual permissions (temp files are created private)."""
    mask = process_umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def write_index(zoo: str | os.PathLike | None, index: dict[str, Any]) -> Path:
    """Write the index atomically, entries sorted by name (call under :func:`locked`)."""
    models = index.get("models", {})
    data = {"format": INDEX_FORMAT, "models": {k: models[k] for k in sorted(models)}}
    path = write_yaml(zoo_path(zoo) / INDEX_FILE, data)
    publish_permissions(path)
    return path
