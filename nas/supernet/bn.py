"""BatchNorm recalibration: the statistics a subnet's BNs should have, computed on training data.

While the supernet trains, each BN's running statistics mix every subnet that passed through it, so
they fit none. Before a subnet is evaluated its BN statistics are recomputed: the standard module is
extracted, its BNs are reset and run in training mode (cumulative average, ``momentum=None``) over a
fixed set of calibration batches, everything else in eval mode (no dropout / drop-path). The results
are cached per arch (and written back into the supernet's bank, so the supernet's own eval-mode
forward of that arch agrees with the extracted model).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.data import arch_resolution, iterate, resize, space_io
from nas.space.arch import Arch

STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Recompute every BN's running statistics of ``model`` over ``batches``; returns the new statistics.

    ``model`` is left in eval mode. BNs without tracked statistics are left alone.
    """
    bns = [m for m in bn_modules(model) if m.track_running_stats]
    model.eval()
    if not bns:
        return {}
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    seen = 0
    for x in batches:
        model(x)
        seen += 1
    for m, mom in zip(bns, saved):
        m.momentum = mom
        m.eval()
    if seen == 0:
        raise ValueError("BN recalibration got no batches")
    return {n: t.detach().clone() for n, t in model.named_buffers() if n.rsplit(".", 1)[-1] in STAT_SUFFIXES}


class SubnetEvaluator:
    """Accuracy of subnets with inherited weights, each after BN recalibration (cached per arch).

    ``calib`` is the training split (its first ``calib_batches`` batches of a fixed seeded order are used,
    without augmentation); ``val`` the split accuracy is measured on. Call :meth:`clear` after the
    supernet's weights change. With ``write_back`` the statistics are also written into the supernet's
    bank, so its own eval-mode forward of that arch matches the extracted model.
    """

    def __init__(
        self,
        supernet,
        calib,
        val,
        calib_batches: int = 20,
        batch_size: int = 128,
        seed: int = 0,
        device: torch.device | str = "cpu",
        cache_size: int = 4096,
        write_back: bool = True,
    ):
        self.supernet = supernet
        self.calib, self.val = calib, val
        self.calib_batches = int(calib_batches)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        n = len(calib)
        order = np.random.default_rng([seed, 104729]).permutation(n)
        self._calib_idx = [
            order[i : i + self.batch_size]
            for i in range(0, min(n, self.calib_batches * self.batch_size), self.batch_size)
        ]
        self._stats: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self.cache_size = cache_size
        self.write_back = write_back
        self._in_ch = space_io(supernet.space).in_channels
        self.calibrations = 0

    def clear(self) -> None:
        """Forget cached statistics (the supernet's weights changed)."""
        self._stats.clear()

    def _input(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return resize(x.to(self.device), arch_resolution(arch, self.supernet.space), self._in_ch)

    def model(self, arch: Arch) -> nn.Module:
        """The extracted standard module of ``arch`` with recalibrated BN statistics, in eval mode."""
        net = self.supernet.extract(arch)
        key = getattr(arch, "key", None) or arch.id
        stats = self._stats.get(key)
        if stats is None:
            batches = (self._input(self.calib.batch(i)[0], arch) for i in self._calib_idx)
            stats = recalibrate_bn(net, batches)
            self.calibrations += 1
            self._stats[key] = stats
            if len(self._stats) > self.cache_size:
                self._stats.popitem(last=False)
        else:
            net.load_state_dict(stats, strict=False)
            self._stats.move_to_end(key)
        if stats and self.write_back:
            self.supernet.load_subnet_state(arch, stats)
        return net.eval()

    @torch.no_grad()
    def evaluate(
        self,
        arch: Arch,
        limit_batches: int | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """Top-1 accuracy and mean cross-entropy on the validation split."""
        net = self.model(arch)
        correct = total = 0
        loss = 0.0
        for x, y in iterate(self.val, self.batch_size, limit_batches):
            x = self._input(x, arch)
            if transform is not None:
                x = transform(x)
            y = y.to(self.device)
            out = net(x)
            loss += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            total += int(y.numel())
        return {"accuracy": correct / max(1, total), "loss": loss / max(1, total), "samples": total}
