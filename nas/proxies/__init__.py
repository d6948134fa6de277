"""Training-free (zero-cost) architecture scores and accuracy-free ensembles of them."""

from nas.proxies.ensemble import rank_ensemble, ranks
from nas.proxies.scores import (
    ACTIVATIONS,
    DATA_KINDS,
    NORMS,
    PROXIES,
    compute,
    grad_norm,
    macs,
    nwot,
    params,
    random_inputs,
    synflow,
    zen,
)

__all__ = [
    "ACTIVATIONS",
    "DATA_KINDS",
    "NORMS",
    "PROXIES",
    "compute",
    "grad_norm",
    "macs",
    "nwot",
    "params",
    "random_inputs",
    "rank_ensemble",
    "ranks",
    "synflow",
    "zen",
]
