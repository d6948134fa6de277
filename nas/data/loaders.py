"""Datasets for supernet training, standalone training and evaluation, without torchvision.

A data spec names the source:

- ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes; ships with the library,
  no download); a fixed stratified 80/20 train/val split; ``digits:fold=F/K`` is fold ``F`` (0-based) of
  a stratified ``K``-fold cross-validation instead (every image is in exactly one fold's val split, so
  evaluating K runs covers all 1,797 images: K times less validation noise than one split);
- ``fashion-mnist`` / ``fashion-mnist:DIR``: Zalando's Fashion-MNIST (70,000 28x28 grey images, 10 classes)
  from its four IDX files, looked for in DIR, ``$NAS_DATA/fashion-mnist`` or the Debian package
  ``dataset-fashion-mnist`` (see :mod:`nas.data.idx`); train = 60k less a seeded stratified 10% val split,
  test = the 10k t10k images;
- ``mnist1d`` / ``mnist1d:N``: MNIST-1D sequences (length 40, 10 classes) generated locally by the
  ``mnist1d`` package (``pip install 'nas[data]'``; N samples, default 5,000, 80% train / 20% test, then
  10% of train as val);
- ``cifar10:DIR`` / ``cifar100:DIR``: the CIFAR python-format folders (``cifar-10-batches-py``,
  ``cifar-100-python``), read with a restricted unpickler (see :func:`read_cifar_batch`);
- ``folder:DIR``: an image folder, ``DIR/<class>/*.png|jpg|...`` or ``DIR/train/<class>/...`` +
  ``DIR/val/<class>/...``; images are read with Pillow on demand and resized to the space's largest
  resolution;
- ``npy:X.npy,y.npy`` / ``npz:FILE.npz`` (arrays ``x`` and ``y``) / ``csv:FILE.csv`` (one sample a row,
  the label in the last column): 1D sequences (N, L) or (N, C, L) for 1D spaces (or images (N, C, H, W));
- ``synthetic`` / ``synthetic:N``: random inputs with labels that are a fixed function of them, for smoke
  tests only.

Inputs are normalised with per-channel statistics of the training split. Batches come at the data's own
size; the trainer resizes them to each arch's resolution (:func:`resize`).
"""

from __future__ import annotations

import csv
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import NASError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class Dataset(Protocol):
    """What the trainer needs of a split: its size and a batch by indices (normalised float, int64)."""

    def __len__(self) -> int: ...

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class ArrayDataset:
    """An in-memory split: ``x`` (N, C, *S) float32 already normalised, ``y`` (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return self.x.index_select(0, i), self.y.index_select(0, i)


@dataclass
class FolderDataset:
    """Image files read on demand with Pillow, resized (shorter side) and centre-cropped to ``size``."""

    paths: list[Path]
    labels: np.ndarray
    size: int
    channels: int
    mean: torch.Tensor = field(default_factory=lambda: torch.zeros(1))
    std: torch.Tensor = field(default_factory=lambda: torch.ones(1))

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im = im.convert("L" if self.channels == 1 else "RGB")
            w, h = im.size
            s = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            a = np.asarray(im, dtype=np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(a))

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([self.load(int(i)) for i in idx])
        x = (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return x, torch.as_tensor(self.labels[np.asarray(idx)], dtype=torch.long)


@dataclass
class DataSplits:
    """Train, validation and (when the source has one) test splits, plus what a checkpoint must remember
    about them. ``val`` is what training and search look at; ``test`` is held out from both (for instance
    Fashion-MNIST's 10,000 t10k images) and is ``None`` for sources without an official test set."""

    spec: str
    train: Any
    val: Any
    classes: int
    channels: int
    dims: int
    size: tuple[int, ...]
    info: dict = field(default_factory=dict)
    test: Any = None


# ---- normalisation ----------------------------------------------------------------------------------------
def _norm_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [d for d in range(x.dim()) if d != 1]
    mean = x.mean(dim=dims)
    std = x.std(dim=dims).clamp_min(1e-6)
    return mean, std


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.view(shape)) / std.view(shape)


def _arrays(
    spec: str,
    xtr: np.ndarray,
    ytr: np.ndarray,
    xva: np.ndarray,
    yva: np.ndarray,
    classes: int,
    dims: int,
    info: dict,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> DataSplits:
    """Splits from arrays, every split normalised with the training split's per-channel statistics."""
    xtr_t = torch.as_tensor(np.ascontiguousarray(xtr), dtype=torch.float32)
    mean, std = _norm_stats(xtr_t)

    def split(x: np.ndarray, y: np.ndarray) -> ArrayDataset:
        xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
        return ArrayDataset(_normalise(xt, mean, std), torch.as_tensor(y, dtype=torch.long))

    info = {**info, "mean": mean.tolist(), "std": std.tolist(), "train": int(len(ytr)), "val": int(len(yva))}
    if test is not None:
        info["test"] = int(len(test[1]))
    return DataSplits(
        spec,
        ArrayDataset(_normalise(xtr_t, mean, std), torch.as_tensor(ytr, dtype=torch.long)),
        split(xva, yva),
        classes,
        int(xtr_t.shape[1]),
        dims,
        tuple(xtr_t.shape[2:]),
        info,
        split(*test) if test is not None else None,
    )


def _split(
    n: int, val_fraction: float, seed: int, y: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded (stratified when labels are given) train/val split."""
    rng = np.random.default_rng(seed)
    if y is None:
        perm = rng.permutation(n)
        k = max(1, int(round(n * val_fraction)))
        return np.sort(perm[k:]), np.sort(perm[:k])
    tr, va = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        va.append(idx[:k])
        tr.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


# ---- sources ----------------------------------------------------------------------------------------------
def kfold_split(y: np.ndarray, fold: int, folds: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of fold ``fold`` of a seeded stratified ``folds``-fold split of labels ``y``."""
    rng = np.random.default_rng(seed)
    which = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        which[idx] = np.arange(len(idx)) % folds
    return np.flatnonzero(which != fold), np.flatnonzero(which == fold)


def parse_fold(spec: str, arg: str) -> tuple[int, int]:
    """``fold=F/K`` -> (F, K), with 2 <= K <= 50 and 0 <= F < K; a clear error otherwise."""
    try:
        key, _, val = arg.partition("=")
        f, _, k = val.partition("/")
        fold, folds = int(f), int(k)
        ok = key == "fold" and 2 <= folds <= 50 and 0 <= fold < folds
    except ValueError:
        ok = False
    if not ok:
        raise NASError(f"--data {spec}: expected digits or digits:fold=F/K (K-fold split, 2 <= K <= 50, "
                       f"0 <= F < K)")
    return fold, folds


def load_digits_data(val_fraction: float = 0.2, seed: int = 0, fold: tuple[int, int] | None = None) -> DataSplits:
    """scikit-learn's digits: 8x8 grey images scaled to [0, 1]; a stratified split, or fold (F, K)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    if fold is not None:
        tr, va = kfold_split(y, fold[0], fold[1], seed)
        split = f"stratified {fold[1]}-fold, val = fold {fold[0]}, seed {seed}"
    else:
        tr, va = _split(len(y), val_fraction, seed, y)
        split = f"stratified {1 - val_fraction:.0%}/{val_fraction:.0%}, seed {seed}"
    return _arrays(
        "digits",
        x[tr],
        y[tr],
        x[va],
        y[va],
        10,
        2,
        {
            "source": "sklearn.datasets.load_digits",
            "split": split,
        },
    )


def synthetic_data(
    channels: int, size: tuple[int, ...], classes: int, n: int = 512, seed: int = 0
) -> DataSplits:
    """Random inputs; the label is the argmax of fixed random projections of a pooled input (learnable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, *size, generator=g)
    pooled = F.adaptive_avg_pool2d(x, 2) if len(size) == 2 else F.adaptive_avg_pool1d(x, 4)
    proj = torch.randn(pooled[0].numel(), classes, generator=g)
    y = (pooled.flatten(1) @ proj).argmax(1).numpy()
    k = n // 5
    xn = x.numpy()
    return _arrays(
        f"synthetic:{n}",
        xn[k:],
        y[k:],
        xn[:k],
        y[:k],
        classes,
        len(size),
        {"source": "synthetic (smoke tests only)"},
    )


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only what CIFAR's python batches contain: numpy arrays and dtypes."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed in a CIFAR batch"
            )
        if module == "_codecs":
            import codecs

            return codecs.encode
        if module.startswith("numpy") and name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def read_cifar_batch(path: str | Path) -> dict[str, Any]:
    """Read one CIFAR python-format batch file safely.

    The files are Python pickles. They are NOT read with ``pickle.load``: a restricted unpickler admits
    only numpy's array reconstruction, ``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` (used by
    protocol-2 byte strings); any other global (``os.system``, ``builtins.eval``, ...) raises
    ``pickle.UnpicklingError``. Keys are returned as ``str``.
    """
    path = Path(path)
    if not path.is_file():
        raise NASError(f"{path}: no such CIFAR batch file")
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise NASError(f"{path}: not a CIFAR python batch ({e})") from None
    if not isinstance(obj, dict):
        raise NASError(f"{path}: not a CIFAR python batch (expected a dict)")
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def load_cifar(root: str | Path, classes: int) -> DataSplits:
    """CIFAR-10 (data_batch_1..5, test_batch) or CIFAR-100 (train, test) in the python format."""
    root = Path(root)
    if classes == 10:
        train_files = [root / f"data_batch_{i}" for i in range(1, 6)]
        test_files, key = [root / "test_batch"], "labels"
    else:
        train_files, test_files, key = [root / "train"], [root / "test"], "fine_labels"
    missing = [str(p) for p in train_files + test_files if not p.is_file()]
    if missing:
        raise NASError(
            f"cifar{classes}:{root}: missing {', '.join(missing)} (expected the python-format folder)"
        )

    def read(files):
        xs, ys = [], []
        for p in files:
            b = read_cifar_batch(p)
            if "data" not in b or key not in b:
                raise NASError(f"{p}: CIFAR batch without 'data'/'{key}'")
            xs.append(np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(b[key], dtype=np.int64))
        return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)

    xtr, ytr = read(train_files)
    xva, yva = read(test_files)
    return _arrays(
        f"cifar{classes}:{root}",
        xtr,
        ytr,
        xva,
        yva,
        classes,
        2,
        {"source": f"CIFAR-{classes} python format at {root}", "split": "official train/test"},
    )


def _class_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_folder(
    root: str | Path, size: int, channels: int, val_fraction: float = 0.1, seed: int = 0
) -> DataSplits:
    """An image folder (class subfolders; optional train/ and val/ splits)."""
    root = Path(root)
    if not root.is_dir():
        raise NASError(f"folder:{root}: no such folder")
    split = (root / "train").is_dir() and (root / "val").is_dir()
    base = root / "train" if split else root
    names = [p.name for p in _class_dirs(base)]
    if len(names) < 2:
        raise NASError(f"folder:{root}: expected at least 2 class subfolders, found {len(names)}")

    def collect(d: Path) -> tuple[list[Path], np.ndarray]:
        paths, labels = [], []
        for ci, name in enumerate(names):
            files = _images(d / name) if (d / name).is_dir() else []
            paths += files
            labels += [ci] * len(files)
        return paths, np.asarray(labels, dtype=np.int64)

    paths, labels = collect(base)
    if not paths:
        raise NASError(f"folder:{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    if split:
        vpaths, vlabels = collect(root / "val")
    else:
        tr, va = _split(len(paths), val_fraction, seed, labels)
        vpaths, vlabels = [paths[i] for i in va], labels[va]
        paths, labels = [paths[i] for i in tr], labels[tr]
    train = FolderDataset(paths, labels, size, channels)
    probe = torch.stack(
        [train.load(int(i)) for i in np.linspace(0, len(paths) - 1, min(256, len(paths))).astype(int)]
    )
    mean, std = _norm_stats(probe)
    train.mean, train.std = mean, std
    val = FolderDataset(vpaths, vlabels, size, channels, mean, std)
    info = {
        "source": f"image folder {root}",
        "classes_names": names,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "train": len(paths),
        "val": len(vpaths),
        "split": "train/ val/" if split else f"seeded {val_fraction:.0%}",
    }
    return DataSplits(f"folder:{root}", train, val, len(names), channels, 2, (size, size), info)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row:
                continue
            try:
                rows.append([float(v) for v in row])
            except ValueError:
                if i == 0:
                    continue  # a header line
                raise NASError(f"{path}: line {i + 1}: not numbers") from None
    if not rows or len({len(r) for r in rows}) != 1 or len(rows[0]) < 2:
        raise NASError(f"{path}: expected rows of equal length: the values, then the label")
    a = np.asarray(rows, dtype=np.float32)
    return a[:, :-1], a[:, -1].astype(np.int64)


def load_arrays(kind: str, arg: str, dims: int, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """Samples from NumPy files or a CSV: (N, L) / (N, C, L) sequences, or (N, C, H, W) images."""
    if kind == "csv":
        x, y = _read_csv(Path(arg))
    elif kind == "npz":
        p = Path(arg)
        if not p.is_file():
            raise NASError(f"npz:{p}: no such file")
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise NASError(f"npz:{p}: expected arrays named x and y, found {', '.join(z.files)}")
            x, y = z["x"], z["y"]
    else:
        parts = arg.split(",")
        if len(parts) != 2:
            raise NASError(f"npy:{arg}: give two files, npy:X.npy,y.npy")
        for q in parts:
            if not Path(q).is_file():
                raise NASError(f"npy:{q}: no such file")
        x, y = (np.load(q, allow_pickle=False) for q in parts)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if x.ndim == dims + 1:
        x = x[:, None]
    if x.ndim != dims + 2 or len(x) != len(y):
        raise NASError(
            f"{kind}:{arg}: x has shape {x.shape}, y {y.shape}; a {dims}D space needs x of "
            f"(N, {'C, ' if dims == 1 else 'C, H, '}{'L' if dims == 1 else 'W'}) and N labels"
        )
    if y.min() < 0:
        raise NASError(f"{kind}:{arg}: labels must be 0..K-1")
    classes = int(y.max()) + 1
    tr, va = _split(len(y), val_fraction, seed, y)
    return _arrays(
        f"{kind}:{arg}",
        x[tr],
        y[tr],
        x[va],
        y[va],
        classes,
        dims,
        {"source": f"{kind} {arg}", "split": f"stratified {val_fraction:.0%} val, seed {seed}"},
    )


def load_fashion_mnist(arg: str = "", val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Fashion-MNIST: train = the 60,000 training images less a seeded stratified ``val_fraction``
    validation split; test = the 10,000 t10k images. Grey 28x28 images scaled to [0, 1]."""
    from nas.data.idx import CLASS_NAMES, read_fashion_mnist

    a, files = read_fashion_mnist(arg)
    x = a["train_images"].astype(np.float32)[:, None] / 255.0
    y = a["train_labels"].astype(np.int64)
    tr, va = _split(len(y), val_fraction, seed, y)
    xte = a["test_images"].astype(np.float32)[:, None] / 255.0
    return _arrays(
        "fashion-mnist" + (f":{arg}" if arg else ""),
        x[tr],
        y[tr],
        x[va],
        y[va],
        len(CLASS_NAMES),
        2,
        {
            "source": f"Fashion-MNIST IDX files in {files['train_images'].parent}",
            "split": f"stratified {1 - val_fraction:.0%}/{val_fraction:.0%} of the 60k train images, seed {seed}; "
            f"test = the 10k t10k images",
            "classes_names": list(CLASS_NAMES),
        },
        (xte, a["test_labels"].astype(np.int64)),
    )


def load_mnist1d_data(arg: str = "", val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """MNIST-1D generated locally (see :mod:`nas.data.mnist1d`); ``arg``: the number of samples."""
    from nas.data.mnist1d import generate

    n = 5000
    if arg:
        try:
            n = int(arg)
        except ValueError:
            n = -1
        if n < 100:
            raise NASError(f"--data mnist1d:{arg}: expected mnist1d or mnist1d:N with N >= 100 samples")
    g = generate(n)
    tr, va = _split(len(g["y"]), val_fraction, seed, g["y"])
    return _arrays(
        "mnist1d" + (f":{arg}" if arg else ""),
        g["x"][tr],
        g["y"][tr],
        g["x"][va],
        g["y"][va],
        10,
        1,
        {
            "source": g["source"],
            "split": f"stratified {val_fraction:.0%} of the generator's train split as val, seed {seed}; "
            f"test = its test split",
        },
        (g["x_test"], g["y_test"]),
    )


DATA_KINDS = (
    "digits", "fashion-mnist", "mnist1d", "synthetic", "cifar10", "cifar100", "folder", "npy", "npz", "csv",
)


def load_data(spec: str, space, seed: int = 0) -> DataSplits:
    """The splits a data spec names (see the module docstring), checked against the space."""
    kind, _, arg = spec.partition(":")
    if kind not in DATA_KINDS:
        raise NASError(
            f"--data {spec}: unknown source; use one of digits, fashion-mnist[:DIR], mnist1d[:N], "
            f"synthetic[:N], cifar10:DIR, cifar100:DIR, folder:DIR, npy:X.npy,y.npy, npz:FILE, csv:FILE"
        )
    io = space_io(space)
    dims = io.dims
    size = (max(io.resolutions),) * dims
    if kind == "digits":
        d = load_digits_data(seed=0, fold=parse_fold(spec, arg) if arg else None)
    elif kind == "fashion-mnist":
        d = load_fashion_mnist(arg, seed=0)
    elif kind == "mnist1d":
        d = load_mnist1d_data(arg, seed=0)
    elif kind == "synthetic":
        n = int(arg) if arg else 512
        d = synthetic_data(io.in_channels, size, io.classes, n, seed)
    elif kind in ("cifar10", "cifar100"):
        if not arg:
            raise NASError(f"--data {spec}: give the folder, {kind}:DIR")
        d = load_cifar(arg, 10 if kind == "cifar10" else 100)
    elif kind == "folder":
        d = load_folder(arg, size[0], io.in_channels, seed=0)
    else:
        if not arg:
            raise NASError(f"--data {spec}: give the file(s)")
        d = load_arrays(kind, arg, dims, seed=0)
    if d.dims != dims:
        raise NASError(f"--data {spec}: {d.dims}D samples, but space {space.name} is {dims}D")
    if d.channels not in (io.in_channels, 1):
        raise NASError(f"--data {spec}: {d.channels} channels, but space {space.name} takes {io.in_channels}")
    return d


def subset(d: DataSplits, train: int = 0, val: int = 0, seed: int = 0) -> DataSplits:
    """The splits with the training (and/or validation) split cut to a seeded stratified subset of
    ``train`` (``val``) samples; 0 keeps a split whole. The test split is never cut. In-memory splits only."""

    def cut(ds: Any, n: int, salt: int) -> Any:
        if not n or n >= len(ds):
            return ds
        if not isinstance(ds, ArrayDataset):
            raise NASError(f"--data {d.spec}: only in-memory data can be subset")
        _, keep = _split(len(ds), n / len(ds), seed + salt, ds.y.numpy())
        i = torch.as_tensor(keep, dtype=torch.long)
        return ArrayDataset(ds.x.index_select(0, i), ds.y.index_select(0, i))

    tr, va = cut(d.train, train, 0), cut(d.val, val, 1)
    info = {**d.info, "train": len(tr), "val": len(va)}
    if tr is not d.train or va is not d.val:
        info["subset"] = f"stratified subset: train {len(tr)}, val {len(va)}, seed {seed}"
    return DataSplits(d.spec, tr, va, d.classes, d.channels, d.dims, d.size, info, d.test)


# ---- what a space takes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpaceIO:
    """Input channels, input sizes, classes and dims of a space (YAML spaces and the NB201 cell space)."""

    in_channels: int
    resolutions: tuple[int, ...]
    classes: int
    dims: int


def space_io(space) -> SpaceIO:
    spec = getattr(space, "spec", None)
    if spec is not None:
        return SpaceIO(spec.in_channels, tuple(spec.resolutions), spec.head.classes, spec.dims)
    return SpaceIO(
        int(getattr(space, "in_channels", 3)),
        (int(space.resolution),),
        int(space.num_classes),
        int(space.dims),
    )


def arch_resolution(arch, space=None) -> int:
    """The input size of an arch (a fixed-resolution space's archs take the space's)."""
    r = getattr(arch, "resolution", None)
    if r is None:
        r = max(space_io(space if space is not None else arch.space).resolutions)
    return int(r)
