"""Batches: resizing to an arch's resolution, augmentation, the per-epoch sample order, evaluation batches.

Data concerns shared by supernet training, standalone training and evaluation; every random choice takes
a seed or a generator so runs are reproducible and resumable.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import NASError


def resize(x: torch.Tensor, size: int, channels: int | None = None) -> torch.Tensor:
    """Resize a batch to ``size`` along every spatial axis (bilinear/linear, antialiased when shrinking)
    and repeat a single channel to ``channels`` when the space takes more."""
    if channels is not None and x.shape[1] == 1 and channels > 1:
        x = x.expand(-1, channels, *x.shape[2:])
    sp = x.shape[2:]
    if all(s == size for s in sp):
        return x
    if x.dim() == 4:
        return F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < min(sp)
        )
    return F.interpolate(x, size=size, mode="linear", align_corners=False)


def augment(x: torch.Tensor, gen: torch.Generator, shift: int = 0, flip: bool = False) -> torch.Tensor:
    """Random translations by up to ``shift`` positions (edge-replicated) and horizontal flips."""
    n = x.shape[0]
    if shift > 0:
        sp = x.shape[2:]
        pad = [shift] * (2 * len(sp))
        xp = F.pad(x, pad, mode="replicate")
        offs = torch.randint(0, 2 * shift + 1, (n, len(sp)), generator=gen)
        if len(sp) == 2:
            h, w = sp
            rows = torch.arange(h)[None] + offs[:, :1]  # (n, h)
            cols = torch.arange(w)[None] + offs[:, 1:]  # (n, w)
            bi = torch.arange(n)[:, None, None]
            x = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        else:
            (length,) = sp
            pos = torch.arange(length)[None] + offs[:, :1]
            x = torch.gather(xp, 2, pos[:, None, :].expand(-1, x.shape[1], -1))
        x = x.contiguous()
    if flip and x.dim() == 4:
        m = torch.rand(n, generator=gen) < 0.5
        x = torch.where(m.view(-1, 1, 1, 1), x.flip(-1), x)
    return x


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of an epoch (the same on every worker and after a resume)."""
    return np.random.default_rng([seed, epoch, 7919]).permutation(n)


def steps_per_epoch(n: int, global_batch: int) -> int:
    """Full global batches per epoch (the last partial one is dropped)."""
    steps = n // global_batch
    if steps < 1:
        raise NASError(f"the training split has {n} samples, fewer than one global batch of {global_batch}")
    return steps


def iterate(ds, batch_size: int, limit: int | None = None):
    """Batches in order (evaluation)."""
    n = len(ds)
    stop = n if limit is None else min(n, limit * batch_size)
    for start in range(0, stop, batch_size):
        yield ds.batch(np.arange(start, min(stop, start + batch_size)))
