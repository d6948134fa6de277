"""Weight sharing over the NAS-Bench-201 cell space (the built-in ``nb201``), one-shot style.

The NB201 network is a fixed skeleton (stem, 3 stages of 5 cells, two residual reductions, head) whose
15 cells all use the same 6-edge genotype. Here every (cell, edge, op) owns its weights: the 1x1 and
3x3 ReLU-Conv-BN of an edge are separate tensors (``<name>@<op>``); zero, skip and average pooling have
none; the skeleton is shared by every arch. ``forward`` runs the standard ``nas.build(arch)`` network
(built once per arch on the meta device) through ``functional_call`` with the bank's tensors, and
``extract`` assigns the same tensors to a fresh ``nas.build(arch)``: outputs agree exactly.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from nas.errors import NASError


def _safe(key: str) -> str:
    return key.replace(".", ":")


class NB201Supernet(nn.Module):
    """Shared weights for every NB201 arch (see the module docstring); same API as :class:`Supernet`."""

    def __init__(self, space: Any = None, seed: int = 0, init: bool = True):
        super().__init__()
        from nas.nb201.network import build as build_nb201
        from nas.nb201.space import OPS, NB201Space

        self.space = space if space is not None else NB201Space()
        self.dims = 2
        self.seed = int(seed)
        self.bank = nn.Module()
        self._templates: OrderedDict[tuple, tuple[nn.Module, list[tuple[str, str]]]] = OrderedDict()
        self._active = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for op in OPS:  # the all-`op` network holds every tensor `op` owns
                net = build_nb201((op,) * 6)
                for name, t in itertools.chain(net.named_parameters(), net.named_buffers()):
                    key = _safe(self._key(name, (op,) * 6))
                    if key in self.bank._parameters or key in self.bank._buffers:
                        continue
                    data = t.detach().clone() if init else torch.zeros_like(t)
                    if isinstance(t, nn.Parameter):
                        self.bank.register_parameter(key, nn.Parameter(data))
                    else:
                        self.bank.register_buffer(key, data)

    @staticmethod
    def _key(name: str, ops: tuple[str, ...]) -> str:
        parts = name.split(".")
        if len(parts) > 3 and parts[0] == "cells" and parts[2] == "edges":
            return f"{name}@{ops[int(parts[3])]}"
        return name

    def _own(self, arch):
        from nas.nb201.space import NB201Arch

        if isinstance(arch, NB201Arch):
            return arch
        if isinstance(arch, dict):
            return self.space.make_arch(arch)
        return NB201Arch(tuple(arch)) if not isinstance(arch, str) else NB201Arch.from_str(arch)

    def set_active(self, arch):
        self._active = self._own(arch)
        return self._active

    @property
    def active(self):
        return self._active

    def _template(self, arch) -> tuple[nn.Module, list[tuple[str, str]]]:
        from nas.nb201.network import build as build_nb201
        from nas.supernet.meta import meta_build

        key = arch.ops
        hit = self._templates.get(key)
        if hit is None:
            with meta_build():
                net = build_nb201(arch)
            names = [(n, _safe(self._key(n, arch.ops))) for n, _ in net.named_parameters()]
            names += [(n, _safe(self._key(n, arch.ops))) for n, _ in net.named_buffers()]
            hit = (net, names)
            self._templates[key] = hit
            if len(self._templates) > 256:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(key)
        return hit

    def _tensor(self, key: str) -> torch.Tensor:
        t = self.bank._parameters.get(key)
        return t if t is not None else self.bank._buffers[key]

    def forward(self, x: torch.Tensor, arch=None):
        a = self._own(arch) if arch is not None else self._active
        if a is None:
            raise NASError("supernet: no active arch; call set_active(arch) or pass arch=")
        net, names = self._template(a)
        if net.training != self.training:
            net.train(self.training)
        return functional_call(net, {n: self._tensor(k) for n, k in names}, (x,), tie_weights=False)

    def subnet_state(self, arch) -> dict[str, torch.Tensor]:
        _, names = self._template(self._own(arch))
        with torch.no_grad():
            return {n: self._tensor(k).detach().clone() for n, k in names}

    def extract(self, arch, drop_path: float | None = None) -> nn.Module:
        from nas.nb201.network import build as build_nb201
        from nas.supernet.meta import meta_build

        a = self._own(arch)
        with meta_build():
            net = build_nb201(a)
        net.load_state_dict(self.subnet_state(a), strict=True, assign=True)
        return net

    @torch.no_grad()
    def load_subnet_state(self, arch, state: dict[str, torch.Tensor]) -> None:
        _, names = self._template(self._own(arch))
        by_name = dict(names)
        for n, v in state.items():
            if n not in by_name:
                raise NASError(f"supernet: {n} is not a tensor of arch {self._own(arch).id}")
            self._tensor(by_name[n]).copy_(v)

    def reorder_channels(self, optimizer=None) -> int:
        """Nothing to re-sort: NB201 ops have no elastic width."""
        return 0

    def bank_keys(self) -> list[str]:
        return sorted(k.replace(":", ".") for k in [*self.bank._parameters, *self.bank._buffers])

    def describe(self) -> dict[str, Any]:
        return {
            "space": "nb201",
            "bank_tensors": len(self.bank._parameters) + len(self.bank._buffers),
            "bank_params": sum(p.numel() for p in self.bank.parameters()),
            "kernel_transforms": 0,
            "kernel_transform_params": 0,
        }
