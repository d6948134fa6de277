"""Reference MAC counts with fvcore, restricted to the operators papers count (conv, linear, matmul, attention).

fvcore also counts norms, pooling and upsampling, and counts scaled_dot_product_attention as zero; we
register a handle for attention and keep only the MAC-type operators, so the two conventions agree.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

MAC_OPERATORS = ("conv", "linear", "addmm", "matmul", "bmm", "mm", "einsum", "scaled_dot_product_attention")


def _shape(v: Any) -> list[int]:
    return list(v.type().sizes())


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle of ``aten::scaled_dot_product_attention`` (fvcore counts it as 0), the one formula: MACs of
    softmax(Q K^T) V, L*M*d for the scores plus L*M*dv for the weighted sum, per batch*head."""
    if not all(x.isCompleteTensor() for x in inputs[:3]):
        return 0
    q, k, v = (_shape(x) for x in inputs[:3])
    *batch, seq_q, d = q
    seq_k = k[-2]
    dv = v[-1]
    return math.prod(batch) * seq_q * seq_k * (d + dv)


def fvcore_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of conv/linear/matmul/attention operators as fvcore traces them on a zero input."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(input_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fca = FlopCountAnalysis(model, x)
            fca.set_op_handle("aten::scaled_dot_product_attention", sdpa_macs)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_op = fca.by_operator()
    finally:
        model.train(was_training)
    return int(sum(v for k, v in by_op.items() if k in MAC_OPERATORS))


def param_count(model: nn.Module) -> int:
    """Number of parameters of a module (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
