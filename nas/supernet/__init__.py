"""Weight-sharing supernet: train once over a space, extract any subnet as a standard model.

- :class:`Supernet` (``nas.supernet.supernet``): shared weights for every arch of a space;
  ``set_active(arch)`` + ``forward``, ``extract(arch)`` (the module ``nas.build(arch)`` builds, with the
  inherited weights), ``reorder_channels()``.
- :class:`SupernetTrainer` / :class:`TrainConfig` (``train``): sandwich rule with in-place distillation,
  per-step seeded sampling, exact resume; :func:`train_with_ray` (``ray_train``) runs it data-parallel.
- :class:`SubnetEvaluator` / :func:`recalibrate_bn` (``bn``): accuracy with inherited weights after BN
  recalibration, cached per arch.
- :func:`load_supernet` / :func:`load_checkpoint` (``checkpoint``).
"""

from nas.supernet.bn import SubnetEvaluator, recalibrate_bn
from nas.supernet.checkpoint import load_checkpoint, load_supernet
from nas.supernet.supernet import Supernet
from nas.supernet.train import SupernetTrainer, TrainConfig, sandwich, train_standalone


def train_with_ray(*args, **kwargs):
    """Data-parallel training on Ray Train (see :func:`nas.supernet.ray_train.train_with_ray`)."""
    from nas.supernet.ray_train import train_with_ray as run

    return run(*args, **kwargs)


__all__ = [
    "SubnetEvaluator",
    "Supernet",
    "SupernetTrainer",
    "TrainConfig",
    "load_checkpoint",
    "load_supernet",
    "recalibrate_bn",
    "sandwich",
    "train_standalone",
    "train_with_ray",
]
