"""Latency: featurisers, the LatencyModel every stage predicts with, fitting, and predictor files.

- :class:`LatencyModel` / :func:`load_profile_model` (``model``): archs in, milliseconds out, with provenance;
- :func:`fit_latency_model`, :func:`refit_device`, :func:`evaluate_latency_model` (``fit``);
- :func:`find_predictor`, :func:`list_predictors` (``files``);
- featurisers (``features``), unit keys and enumeration (``units``), OFA analytic features (``ofa_features``);
- the self-calibration on this host and :func:`load_latency_model` (``calibrate``; its modes in ``modes``).

Names resolve on first use, so importing a light submodule (``nas.latency.modes``) does not pull torch in.
"""

from importlib import import_module

_HOME = {"find_predictor": "files", "list_predictors": "files", "predictor_name": "files",
         "FunctionLatency": "model", "LatencyModel": "model", "load_latency_model": "calibrate", "load_profile_model": "model",
         "fit_latency_model": "fit", "refit_device": "fit", "evaluate_latency_model": "fit"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(f"nas.latency.{_HOME[name]}"), name)
    raise AttributeError(f"module 'nas.latency' has no attribute {name!r}")


__all__ = sorted(_HOME)
