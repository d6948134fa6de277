"""Safe persistence: atomic writes and safe loaders (YAML safe_load, JSON). No pickle anywhere."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from nas.errors import NASError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~process_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def process_umask() -> int:
    """The process umask, read without changing it (Linux /proc; 0o022 when unknown): thread-safe."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_yaml(path: str | os.PathLike, data: Any) -> Path:
    """Write plain data as YAML atomically (block style, key order kept)."""
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    """Write plain data as JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=False) + "\n")


def read_yaml(path: str | os.PathLike) -> Any:
    """Read YAML with safe_load; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise NASError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f" line {mark.line + 1}" if mark is not None else ""
        raise NASError(f"{path}:{loc} not valid YAML ({getattr(e, 'problem', e)})") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; errors name the file and position."""
    path = Path(path)
    if not path.is_file():
        raise NASError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise NASError(f"{path}: line {e.lineno} not valid JSON ({e.msg})") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
