"""The model zoo: exported archs as standard PyTorch models with weights, ONNX and a model card.

A zoo is a folder (``--zoo DIR``; default ``$NAS_ZOO`` or ``./zoo``) with one sub-folder per model:
``arch.yaml`` (the arch and its space's definition), ``model.safetensors`` (absent for
architecture-only entries), ``model.onnx`` (the fused deploy model, dynamic batch, checked against
onnxruntime), ``card.md`` and, for run exports, ``pareto.png``; ``index.yaml`` lists every model with
its metrics, provenance and the SHA-256 of each file.

Python::

    from nas.zoo import create_model, list_models
    model = create_model("hybrid-cpu1t-lat5ms-a", zoo="zoo")   # nn.Module with its weights, eval mode

Loading never executes code from an entry and checks checksums first (see :mod:`nas.zoo.load`).
"""

from nas.zoo.export import export
from nas.zoo.index import default_zoo, read_index
from nas.zoo.load import create_model, list_models, load_arch, model_info, verify
from nas.zoo.onnx_export import export_onnx
from nas.zoo.timm_compat import register_timm

__all__ = [
    "create_model",
    "default_zoo",
    "export",
    "export_onnx",
    "list_models",
    "load_arch",
    "model_info",
    "read_index",
    "register_timm",
    "verify",
]
