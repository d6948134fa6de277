"""MNIST-1D (Greydanus 2020) generated on this machine with the ``mnist1d`` package.

The package can also fetch a prepared pickle from the web; that path is never used here (no network, no
pickle): the samples are generated with ``mnist1d.data.make_dataset`` from the package's templates and
its default arguments (40-step sequences, 10 classes, seed 42), so the same package version gives the
same samples on every machine. Install it with ``pip install 'nas[data]'`` (or ``pip install mnist1d``).
"""

from __future__ import annotations

import random

import numpy as np

from nas.errors import NASError

INSTALL = "pip install 'nas[data]' (or pip install mnist1d)"


def generate(num_samples: int = 5000) -> dict:
    """``{"x": (N_train, 1, 40) float32, "y": (N_train,) int64, "x_test", "y_test", "source"}``."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise NASError(f"--data mnist1d: the mnist1d package is not installed; {INSTALL}") from None
    import importlib.metadata as md

    args = get_dataset_args()
    args.num_samples = int(num_samples)
    # make_dataset seeds the global random and numpy generators; keep the caller's streams untouched
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    version = md.version("mnist1d")
    return {
        "x": np.asarray(d["x"], dtype=np.float32)[:, None],
        "y": np.asarray(d["y"], dtype=np.int64),
        "x_test": np.asarray(d["x_test"], dtype=np.float32)[:, None],
        "y_test": np.asarray(d["y_test"], dtype=np.int64),
        "source": f"mnist1d {version} make_dataset (num_samples {args.num_samples}, seed {args.seed}, "
        f"length {args.final_seq_length}), generated locally",
    }
