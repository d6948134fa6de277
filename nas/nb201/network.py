"""NAS-Bench-201 operations, cell and CIFAR macro network, with their analytic cost.

Everything here is a plain ``nn.Module`` (no supernet machinery) and the cost functions are pure
functions of the configuration, so that ``count`` and ``build`` can be checked against each other.

Macro skeleton (NAS-Bench-201, CIFAR):
    stem: Conv3x3(3 -> C) + BN
    stage 1: N cells at C,   then ResidualReduction(C -> 2C)
    stage 2: N cells at 2C,  then ResidualReduction(2C -> 4C)
    stage 3: N cells at 4C
    head: BN-ReLU, global average pool, Linear(4C -> num_classes)
with C = 16 and N = 5.

Convention for costs: MACs count conv and linear multiply-accumulates only (no norms, activations,
pooling or additions), parameters count every tensor that is an ``nn.Parameter`` (BN affine included,
BN running statistics excluded).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.cost.count import BYTES_PER_ELEMENT, ArchCost
from nas.errors import NASError, SpaceError
from nas.nb201.space import NUM_NODES, OPS, NB201Arch, as_ops

#: Number of classes of the three NAS-Bench-201 datasets.
DATASET_CLASSES: dict[str, int] = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
#: Input side (pixels) of the three NAS-Bench-201 datasets.
DATASET_RESOLUTION: dict[str, int] = {"cifar10": 32, "cifar100": 32, "ImageNet16-120": 16}


def dataset_config(dataset: str) -> tuple[int, int]:
    """``(num_classes, input_side)`` of a NAS-Bench-201 dataset name."""
    if dataset not in DATASET_CLASSES:
        raise NASError(f"NB201 dataset {dataset!r}: allowed {', '.join(DATASET_CLASSES)}")
    return DATASET_CLASSES[dataset], DATASET_RESOLUTION[dataset]


# --------------------------------------------------------------------------------------------- ops
class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k x k, no bias) -> BN(affine). The ``nor_conv_*`` ops and the reduction convs."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=True, track_running_stats=True),
        )


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the input's shape (keeps the graph and dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _valid_counts(n: int, like: torch.Tensor) -> torch.Tensor:
    """How many of the 3 taps centred on each of ``n`` positions fall inside (padding 1)."""
    idx = torch.arange(n, device=like.device)
    return (1 + (idx > 0).to(like.dtype) + (idx < n - 1).to(like.dtype)).to(like.dtype)


class AvgPool3x3(nn.AvgPool2d):
    """``nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)`` with a faster CPU forward.

    The eager forward sums 9 shifted views and divides by the per-position count of valid taps (the
    same function up to float rounding order, several times faster than PyTorch's CPU pooling kernel
    for these small maps); under tracing/ONNX export it is the plain ``AvgPool2d`` op.
    """

    def __init__(self) -> None:
        super().__init__(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            torch.jit.is_tracing()
            or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
            or x.dim() != 4
        ):
            return super().forward(x)
        p = F.pad(x, (1, 1, 1, 1))
        rows = p[..., :-2] + p[..., 1:-1] + p[..., 2:]
        total = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
        counts = _valid_counts(x.shape[-2], x)[:, None] * _valid_counts(x.shape[-1], x)[None, :]
        return total / counts


def make_op(name: str, channels: int) -> nn.Module:
    """The module of one cell op at ``channels`` channels (stride 1, channels preserved)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return AvgPool3x3()
    raise SpaceError(f"NB201 op {name!r}: unknown; allowed: {', '.join(OPS)}")


def op_cost(name: str, channels: int, side: int) -> tuple[int, int]:
    """``(params, macs)`` of one cell op on a ``channels x side x side`` input."""
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        k = 1 if name == "nor_conv_1x1" else 3
        conv = channels * channels * k * k
        return conv + 2 * channels, conv * side * side
    if name in ("none", "skip_connect", "avg_pool_3x3"):
        return 0, 0
    raise SpaceError(f"NB201 op {name!r}: unknown; allowed: {', '.join(OPS)}")


# -------------------------------------------------------------------------------------------- cell
class NB201Cell(nn.Module):
    """A NAS-Bench-201 cell: node ``j`` = sum over ``i < j`` of ``op_ij(node i)``; output = node 3."""

    def __init__(self, arch: str | Sequence[str] | NB201Arch, channels: int) -> None:
        super().__init__()
        self.ops_names = as_ops(arch)
        self.channels = channels
        self.edges = nn.ModuleList(make_op(op, channels) for op in self.ops_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in range(1, NUM_NODES):
            acc = self.edges[k](nodes[0])
            for i in range(1, j):
                acc = acc + self.edges[k + i](nodes[i])
            k += j
            nodes.append(acc)
        return nodes[-1]


def cell_cost(arch: str | Sequence[str] | NB201Arch, channels: int, side: int) -> tuple[int, int]:
    """``(params, macs)`` of a cell on a ``channels x side x side`` input."""
    params = macs = 0
    for op in as_ops(arch):
        p, m = op_cost(op, channels, side)
        params += p
        macs += m
    return params, macs


# ------------------------------------------------------------------------------------- reduction
class ResidualReduction(nn.Module):
    """ResNet basic block that halves the resolution and changes the width.

    ``ReLU-Conv3x3(stride 2)-BN -> ReLU-Conv3x3-BN`` plus a shortcut ``AvgPool2d(2) -> Conv1x1`` (no BN,
    no bias).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, stride=1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def reduction_cost(c_in: int, c_out: int, side: int) -> tuple[int, int]:
    """``(params, macs)`` of a :class:`ResidualReduction` on a ``c_in x side x side`` input."""
    out = side // 2  # conv3x3 stride 2 pad 1 and AvgPool2d(2) agree for even sides only
    p_a, p_b, p_s = 9 * c_in * c_out + 2 * c_out, 9 * c_out * c_out + 2 * c_out, c_in * c_out
    macs = (9 * c_in * c_out + 9 * c_out * c_out + c_in * c_out) * out * out
    return p_a + p_b + p_s, macs


# ---------------------------------------------------------------------------------------- network
class NB201Network(nn.Module):
    """The NAS-Bench-201 CIFAR macro network around one cell genotype.

    ``forward_features`` returns the pre-pool feature map (after the final BN-ReLU), ``forward`` the
    logits.
    """

    def __init__(
        self,
        arch: str | Sequence[str] | NB201Arch,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.ops_names = as_ops(arch)
        self.num_classes = num_classes
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(NB201Cell(self.ops_names, c) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    @property
    def arch_str(self) -> str:
        return str(NB201Arch(self.ops_names))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.lastact(self.cells(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pool(self.forward_features(x)), 1))


def build(
    arch: str | Sequence[str] | NB201Arch,
    num_classes: int = 10,
    *,
    seed: int | None = None,
    channels: int = 16,
    cells_per_stage: int = 5,
) -> NB201Network:
    """Build the NB201 network; with ``seed`` the default PyTorch init is drawn from that seed."""
    if seed is None:
        return NB201Network(arch, num_classes, channels, cells_per_stage)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NB201Network(arch, num_classes, channels, cells_per_stage)


def count(
    arch: str | Sequence[str] | NB201Arch,
    num_classes: int = 10,
    input_side: int = 32,
    *,
    channels: int = 16,
    cells_per_stage: int = 5,
    in_channels: int = 3,
) -> dict[str, int]:
    """Analytic ``{"params", "macs"}`` of :class:`NB201Network` at ``input_side x input_side``.

    MACs: conv + linear multiply-accumulates for one image. Matches ``sum(p.numel())`` of the built
    model exactly.
    """
    ops = as_ops(arch)
    if input_side < 4 or input_side % 4:
        raise NASError(
            f"NB201 input side {input_side}: must be a positive multiple of 4 (two stride-2 reductions "
            "whose conv and average-pool shortcut must agree)"
        )
    c, side = channels, input_side
    params = in_channels * c * 9 + 2 * c
    macs = in_channels * c * 9 * side * side
    for stage in range(3):
        if stage > 0:
            p, m = reduction_cost(c, 2 * c, side)
            params, macs = params + p, macs + m
            c, side = 2 * c, side // 2
        p, m = cell_cost(ops, c, side)
        params, macs = params + cells_per_stage * p, macs + cells_per_stage * m
    params += 2 * c + c * num_classes + num_classes  # last BN, classifier
    macs += c * num_classes
    return {"params": params, "macs": macs}


def count_arch(arch: str | Sequence[str] | NB201Arch, num_classes: int = 10) -> ArchCost:
    """``nas.count`` of a cell network on the CIFAR skeleton (32x32): params, MACs and a memory estimate."""
    c = count(arch, num_classes)
    peak = 3 * 32 * 32 + 2 * 16 * 32 * 32 * 4  # input plus a cell's working set at full resolution
    return ArchCost(c["params"], c["macs"], BYTES_PER_ELEMENT * (c["params"] + peak), 0, ())
