"""The shared OFA MobileNetV3 GPU latency data (see ``shared/datasets/README.md``) as arrays.

The CSV holds 5,000 sub-networks of the Once-for-All MobileNetV3 space measured end-to-end on 4 GPUs at
batch 1/32/64. :func:`load_ofa_gpu_latency` reads and validates it against the space's geometry (written
down here, with the constants the analytic features of :mod:`nas.latency.ofa_features` use).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.errors import NASError

STEM_WIDTH = 16
WIDTHS = (24, 40, 80, 112, 160)
STRIDES = (2, 2, 2, 1, 2)
SE_STAGES = (False, True, False, True, True)
HSWISH_STAGES = (False, False, True, True, True)
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
MAX_DEPTH = 4
N_STAGES = 5
FINAL_EXPAND = 960
FEATURE_MIX = 1280
N_CLASSES = 1000
BYTES_PER_ELEMENT = 4  # fp32 activations and weights

DEVICES = ("2080ti", "titan_rtx", "titan_xp", "v100")
BATCHES = (1, 32, 64)
SETTINGS = tuple(f"{d}_{b}" for d in DEVICES for b in BATCHES)

DEFAULT_CSV_NAME = "ofa_mbv3_gpu_latency.csv"


def default_csv_path() -> Path:
    """Where the shared CSV lives: ``$NAS_DATASETS`` or ``/work/shared/datasets``."""
    root = os.environ.get("NAS_DATASETS", "/work/shared/datasets")
    return Path(root) / DEFAULT_CSV_NAME


@dataclass(frozen=True)
class OFAData:
    """The OFA GPU latency table as arrays (one row per arch)."""

    resolution: np.ndarray  # (n,) int
    depths: np.ndarray  # (n, 5) int
    kernel_sizes: np.ndarray  # (n, 20) int
    expand_ratios: np.ndarray  # (n, 20) int
    latency_ms: np.ndarray  # (n, 12) float, columns in ``settings`` order
    settings: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return int(self.resolution.shape[0])

    def column(self, setting: str) -> np.ndarray:
        """Latencies (ms) of one setting, e.g. ``'v100_64'``."""
        if setting not in self.settings:
            raise NASError(f"{self.source}: setting '{setting}' unknown; allowed: {', '.join(self.settings)}")
        return self.latency_ms[:, self.settings.index(setting)]

    def subset(self, idx: np.ndarray) -> OFAData:
        """Rows ``idx`` as a new table."""
        return OFAData(
            self.resolution[idx],
            self.depths[idx],
            self.kernel_sizes[idx],
            self.expand_ratios[idx],
            self.latency_ms[idx],
            self.settings,
            self.source,
        )


def _int_lists(col, width: int, path: Path, name: str) -> np.ndarray:
    try:
        out = np.array([[int(t) for t in str(s).split()] for s in col], dtype=np.int64)
    except ValueError:
        raise NASError(f"{path}: column '{name}' must hold space-separated integers") from None
    if out.ndim != 2 or out.shape[1] != width:
        raise NASError(f"{path}: column '{name}' must hold {width} integers per row")
    return out


def load_ofa_gpu_latency(path: str | os.PathLike | None = None) -> OFAData:
    """Load the shared OFA MobileNetV3 GPU latency CSV into arrays, validating it against the space."""
    import pandas as pd

    path = Path(path) if path is not None else default_csv_path()
    if not path.is_file():
        raise NASError(f"{path}: no such file (set NAS_DATASETS to the folder holding {DEFAULT_CSV_NAME})")
    df = pd.read_csv(path)
    cols = ["resolution", "depths", "kernel_sizes", "expand_ratios"] + [f"{s}_ms" for s in SETTINGS]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise NASError(f"{path}: missing column(s) {', '.join(missing)}")
    res = df["resolution"].to_numpy(dtype=np.int64)
    depths = _int_lists(df["depths"], N_STAGES, path, "depths")
    ks = _int_lists(df["kernel_sizes"], N_STAGES * MAX_DEPTH, path, "kernel_sizes")
    es = _int_lists(df["expand_ratios"], N_STAGES * MAX_DEPTH, path, "expand_ratios")
    if depths.min() < 1 or depths.max() > MAX_DEPTH:
        raise NASError(f"{path}: column 'depths' values must be in 1..{MAX_DEPTH}")
    if not np.isin(ks, KERNELS).all():
        raise NASError(f"{path}: column 'kernel_sizes' values must be in {KERNELS}")
    if not np.isin(es, EXPANDS).all():
        raise NASError(f"{path}: column 'expand_ratios' values must be in {EXPANDS}")
    lat = df[[f"{s}_ms" for s in SETTINGS]].to_numpy(dtype=np.float64)
    if not np.isfinite(lat).all() or (lat <= 0).any():
        raise NASError(f"{path}: latency columns must be positive finite numbers (ms)")
    return OFAData(res, depths, ks, es, lat, SETTINGS, str(path))
