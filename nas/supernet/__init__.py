"""Weight-sharing supernet: train once over a space, extract any subnet as a standard model.

- :class:`Supernet` (``nas.supernet.supernet``): shared weights for every arch of a YAML space
  (:func:`make_supernet` gives any family's, e.g. nb201's one-shot supernet);
  ``set_active(arch)`` + ``forward``, ``extract(arch)`` (the module ``nas.build(arch)`` builds, with the
  inherited weights), ``reorder_channels()``.
- :class:`SupernetTrainer` / :class:`TrainConfig` (``train``): sandwich rule with in-place distillation,
  per-step seeded sampling, exact resume; :func:`train_with_ray` (``ray_train``) runs it data-parallel.
- :class:`SubnetEvaluator` / :func:`recalibrate_bn` (``bn``): accuracy with inherited weights after BN
  recalibration, cached per arch.
- :func:`load_supernet` / :func:`load_checkpoint` (``checkpoint``).
"""

_LAZY = {
    "SubnetEvaluator": "nas.supernet.bn",
    "recalibrate_bn": "nas.supernet.bn",
    "load_checkpoint": "nas.supernet.checkpoint",
    "load_supernet": "nas.supernet.checkpoint",
    "TrainConfig": "nas.supernet.config",
    "Supernet": "nas.supernet.supernet",
    "make_supernet": "nas.supernet.supernet",
    "SupernetTrainer": "nas.supernet.train",
    "sandwich": "nas.supernet.train",
    "train_standalone": "nas.supernet.train",
    "train_with_ray": "nas.supernet.ray_train",
}
"""Names imported on first use (torch and the model code load only when a supernet is really needed)."""


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas.supernet' has no attribute {name!r}")


__all__ = sorted(_LAZY)
