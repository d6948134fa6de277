"""Fashion-MNIST from its IDX files, read and validated here (no torchvision, no download).

The IDX format (LeCun's MNIST format, which Fashion-MNIST reuses): a 4-byte magic number ``0 0 T D``
where ``T`` is the element type (0x08 = unsigned byte, ...) and ``D`` the number of dimensions, then
``D`` big-endian 32-bit sizes, then the elements in C order. Files may be gzip-compressed (``.gz``).

Where the files are looked for, in order: the folder of the data spec (``fashion-mnist:DIR``, which
may hold the files or a ``fashion-mnist/`` folder with them), ``$NAS_DATA/fashion-mnist``, and the
Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``). Only one of the
first two is looked at when given; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from nas.errors import NASError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
# IDX element type code -> numpy dtype (big-endian where it matters)
_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
HOW_TO_GET = ("install them with `apt-get install dataset-fashion-mnist`, or set NAS_DATA to a folder "
              "holding fashion-mnist/ with the four IDX files")


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """The array in an IDX file (gzip or raw), with magic number, dimensions and length checked.

    ``ndim``: the number of dimensions the caller expects (1 for labels, 3 for images); any mismatch,
    a truncated or corrupt file raises one :class:`NASError` naming the file.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise NASError(f"{path}: no such IDX file") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise NASError(f"{path}: corrupt or truncated gzip stream ({e})") from None
    if len(raw) < 4:
        raise NASError(f"{path}: not an IDX file ({len(raw)} bytes, shorter than the 4-byte magic number)")
    z0, z1, code, dims = raw[0], raw[1], raw[2], raw[3]
    if z0 or z1 or code not in _TYPES or dims == 0:
        raise NASError(f"{path}: not an IDX file (magic number {raw[:4].hex()}; expected 0000 + a type "
                       f"code in {', '.join(f'{c:02x}' for c in _TYPES)} + a dimension count)")
    if ndim is not None and dims != ndim:
        raise NASError(f"{path}: IDX file with {dims} dimensions; expected {ndim}")
    head = 4 + 4 * dims
    if len(raw) < head:
        raise NASError(f"{path}: truncated IDX header ({len(raw)} bytes, the header needs {head})")
    shape = struct.unpack(f">{dims}I", raw[4:head])
    dtype = _TYPES[code]
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - head
    if got != want:
        what = "truncated" if got < want else "has trailing bytes"
        raise NASError(f"{path}: IDX data {what}: {got} bytes for shape {tuple(shape)}, expected {want}")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def _candidates(arg: str) -> list[Path]:
    if arg:
        d = Path(arg).expanduser()
        return [d, d / "fashion-mnist"]
    out = []
    env = os.environ.get("NAS_DATA")
    if env:
        out.append(Path(env).expanduser() / "fashion-mnist")
    out.append(DEBIAN_DIR)
    return out


def _file_in(d: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (d / name).is_file():
            return d / name
    return None


def find_fashion_mnist(arg: str = "") -> dict[str, Path]:
    """The four IDX files: from ``arg`` (a folder) if given, else ``$NAS_DATA/fashion-mnist``, else the
    Debian location. Missing files: one line saying where it looked and how to get them."""
    looked = _candidates(arg)
    for d in looked:
        files = {k: _file_in(d, stem) for k, stem in FILES.items()}
        if all(files.values()):
            return files  # type: ignore[return-value]
    where = ", ".join(str(d) for d in looked)
    raise NASError(f"fashion-mnist: the IDX files ({FILES['train_images']}[.gz], ...) are not in {where}; "
                   f"{HOW_TO_GET}")


def read_fashion_mnist(arg: str = "") -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """``{"train_images": (60000, 28, 28) uint8, "train_labels": (60000,) uint8, "test_...": 10000}``,
    with images and labels checked against each other (counts, 28x28, labels 0..9)."""
    files = find_fashion_mnist(arg)
    a = {k: read_idx(p, 3 if k.endswith("images") else 1) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = a[f"{split}_images"], a[f"{split}_labels"]
        if len(x) != len(y):
            raise NASError(f"{files[split + '_images']}: {len(x)} images but {files[split + '_labels']} has "
                           f"{len(y)} labels")
        if x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise NASError(f"{files[split + '_images']}: images of {x.shape[1:]} {x.dtype}; Fashion-MNIST's are "
                           f"28x28 uint8")
        if len(y) and int(y.max()) >= len(CLASS_NAMES):
            raise NASError(f"{files[split + '_labels']}: label {int(y.max())}; Fashion-MNIST's are 0..9")
    return a, files
