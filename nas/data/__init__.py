"""Data: where samples come from (data specs), how they are split, and how batches are made.

- :func:`load_data` (``loaders``): the splits a data spec names, checked against a space; sources are
  ``digits``, ``fashion-mnist[:DIR]`` (IDX files, :mod:`nas.data.idx`), ``mnist1d[:N]`` (generated
  locally, :mod:`nas.data.mnist1d`), ``cifar10:DIR`` / ``cifar100:DIR``, ``folder:DIR``, ``npy``/``npz``/
  ``csv`` arrays and ``synthetic[:N]``. :class:`DataSplits` holds train, val and (optional) test splits.
- :func:`space_io` / :func:`arch_resolution`: what a space or arch takes as input.
- ``batches``: :func:`resize`, :func:`augment`, :func:`epoch_order`, :func:`steps_per_epoch`, :func:`iterate`.

This package knows nothing of models, supernets or search.
"""

from nas.data.batches import augment, epoch_order, iterate, resize, steps_per_epoch
from nas.data.idx import read_fashion_mnist, read_idx
from nas.data.loaders import (
    DATA_KINDS,
    ArrayDataset,
    DataSplits,
    FolderDataset,
    SpaceIO,
    arch_resolution,
    kfold_split,
    load_data,
    read_cifar_batch,
    space_io,
    subset,
)

__all__ = [
    "DATA_KINDS",
    "ArrayDataset",
    "DataSplits",
    "FolderDataset",
    "SpaceIO",
    "arch_resolution",
    "augment",
    "epoch_order",
    "iterate",
    "kfold_split",
    "load_data",
    "read_cifar_batch",
    "read_fashion_mnist",
    "read_idx",
    "resize",
    "space_io",
    "steps_per_epoch",
    "subset",
]
