"""Latency: featurisers, the LatencyModel every stage predicts with, fitting, and predictor files.

- :class:`LatencyModel` / :func:`load_latency_model` (``model``): archs in, milliseconds out, with provenance;
- :func:`fit_latency_model`, :func:`refit_device`, :func:`evaluate_latency_model` (``fit``);
- :func:`find_predictor`, :func:`list_predictors` (``files``);
- featurisers (``features``), unit keys and enumeration (``units``), OFA analytic features (``ofa_features``).
"""

from nas.latency.files import find_predictor, list_predictors, predictor_name
from nas.latency.model import FunctionLatency, LatencyModel, load_latency_model


def __getattr__(name: str):
    if name in ("fit_latency_model", "refit_device", "evaluate_latency_model"):
        from nas.latency import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'nas.latency' has no attribute {name!r}")


__all__ = ["FunctionLatency", "LatencyModel", "evaluate_latency_model", "find_predictor", "fit_latency_model",
           "list_predictors", "load_latency_model", "predictor_name", "refit_device"]
