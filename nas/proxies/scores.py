"""Training-free ("zero-cost") scores of an untrained classification network.

Every score has the signature

    score(model, input_shape, *, seed=0, batch_size=..., num_classes=None, **options) -> float

where ``input_shape`` is one sample's shape without the batch dimension (``(3, 32, 32)``, or
``(C, L)`` for sequence models) and the model's ``forward`` returns logits ``(batch, classes)``.
Higher is better for all of them.

Side effects: none that outlive the call. Instead of deep-copying the model (slow for models with
many small modules) a score snapshots every parameter and buffer, each module's train/eval flag and
each parameter's ``requires_grad``, and restores them bit for bit on exit (also on errors); ``.grad``
fields are never written (gradients are taken with ``torch.autograd.grad`` or on substituted
tensors). All random draws happen under ``torch.manual_seed(seed)`` inside a forked RNG, so the
caller's RNG state is untouched and a score is a deterministic function of (weights, seed, options).
Not thread-safe with respect to other users of the same model object during the call.

Scores (own implementations of the published definitions):

``synflow``   Tanaka et al. 2020 / Abdelfattah et al. 2021. Parameters replaced by their absolute
              values (float64), normalisation layers reduced to their affine map ``x * |g| + |b|``,
              eval mode, an all-ones input; ``R = sum(logits)`` (averaged over the batch), score
              ``sum |theta * dR/dtheta|``. With ReLU-like activations the network is then linear in
              each layer's weights, so the score is a product over layers.
``grad_norm`` Sum over conv/linear layers of the L2 norm of the weight gradient of the cross-entropy
              loss on a random batch with uniformly random labels (train mode).
``nwot``      Mellor et al. 2021 ("NAS without training"): binary codes ``x > 0`` of the inputs of all
              activation modules over a batch, kernel ``K_ab = #units where a and b agree``, score
              ``log|det K|`` (``-inf`` when ``K`` is singular, e.g. all codes equal).
``zen``       Lin et al. 2021 (Zen-NAS): weights re-drawn from N(0, 1) (norm layers weight 1, bias 0),
              ``log E_batch sum|f(x) - f(x + 0.01 eps)|`` of the pre-global-pool feature map ``f``
              plus ``sum log sqrt(mean batch variance)`` over the BN layers (variance correction).
``params``    Number of parameters (shared tensors counted once).
``macs``      Multiply-accumulates of one sample counted by fvcore, conv/linear/matmul/einsum/attention
              only (no norms, activations or pooling: the project's MAC convention).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from numbers import Number
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from nas.errors import NASError

FeaturesFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
ScoreFn = Callable[..., float]

#: Activation modules whose inputs give the ``nwot`` binary codes (code = input > 0).
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Softplus,
)
#: Normalisation modules (reduced to their affine map by ``synflow``, reset to 1/0 by ``zen``).
NORMS: tuple[type[nn.Module], ...] = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, _InstanceNorm)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

#: Kinds of synthetic input batches (``data=``) for the data-dependent scores.
DATA_KINDS = ("gaussian", "smooth")
Data = str | torch.Tensor


# ------------------------------------------------------------------------------------------ helpers
def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise NASError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return model


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise NASError(
            f"input_shape {input_shape!r}: expected a sequence of positive ints, e.g. (3, 32, 32)"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise NASError(
            f"input_shape {input_shape!r}: expected positive sizes without the batch dim, e.g. (3, 32, 32)"
        )
    return shape


def _check_batch(batch_size: int, least: int = 1) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < least:
        raise NASError(f"batch_size {batch_size!r}: must be an int >= {least}")
    return batch_size


def _device(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _float_dtype(model: nn.Module) -> torch.dtype:
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run under ``torch.manual_seed(seed)`` without disturbing the caller's RNG state."""
    devices = (
        [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _preserved(model: nn.Module, *, train: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train/eval mode; on exit restore values, modes and ``requires_grad`` exactly."""
    _check_model(model)
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    saved = [t.detach().clone() for t in tensors]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(train)
        yield model
    finally:
        with torch.no_grad():
            for t, v in zip(tensors, saved):
                t.copy_(v)
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, flag in modes:
            m.training = flag


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    raise NASError(f"model output: expected a logits tensor, got {type(out).__name__}")


def _to_float(value: torch.Tensor | float) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def random_inputs(
    batch_size: int,
    input_shape: Sequence[int],
    *,
    kind: str = "gaussian",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A synthetic input batch drawn from the current torch RNG.

    ``gaussian``: i.i.d. N(0, 1). ``smooth``: the same noise box-blurred twice (width 5, circular)
    along the spatial/sequence dims of a ``(C, H, W)`` or ``(C, L)`` shape, then standardised to mean
    0 and std 1 -- spatially correlated, closer to the statistics of natural images than white noise.
    """
    shape = _check_shape(input_shape)
    _check_batch(batch_size)
    x = torch.randn((batch_size, *shape), dtype=torch.float32)
    if kind == "smooth":
        if len(shape) not in (2, 3):
            raise NASError(f"data='smooth' needs an input_shape (C, L) or (C, H, W), got {shape}")
        pool = F.avg_pool1d if len(shape) == 2 else F.avg_pool2d
        k = min(5, *shape[1:])
        k -= 1 - k % 2  # odd width keeps the size
        if k > 1:
            for _ in range(2):
                x = pool(F.pad(x, [k // 2] * (2 * (len(shape) - 1)), mode="circular"), k, stride=1)
        x = (x - x.mean()) / x.std().clamp_min(1e-12)
    elif kind != "gaussian":
        raise NASError(f"data {kind!r}: unknown kind; allowed: {', '.join(DATA_KINDS)} or a tensor batch")
    return x.to(device=device, dtype=dtype)


def _batch_of(data: Data, batch_size: int, shape: tuple[int, ...], like: nn.Module) -> torch.Tensor:
    """The input batch of a data-dependent score: a given tensor, or a synthetic batch of ``data`` kind."""
    dev, dtype = _device(like), _float_dtype(like)
    if isinstance(data, torch.Tensor):
        if tuple(data.shape[1:]) != shape:
            raise NASError(f"data: tensor of shape {tuple(data.shape)} does not match input_shape {shape}")
        return data.detach().to(device=dev, dtype=dtype)
    return random_inputs(batch_size, shape, kind=data, dtype=dtype, device=dev)


# ------------------------------------------------------------------------------------------ synflow
def _affine_only_hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> torch.Tensor:
    """Forward hook replacing a norm layer's output by its affine map of the input."""
    x = inputs[0]
    w, b = getattr(mod, "weight", None), getattr(mod, "bias", None)
    if isinstance(mod, nn.LayerNorm):  # affine over the trailing normalised dims
        view = None
    else:  # per channel, channels in dim 1
        view = (1, -1, *([1] * (x.dim() - 2)))
    if w is not None:
        x = x * (w if view is None else w.view(view))
    if b is not None:
        x = x + (b if view is None else b.view(view))
    return x


def synflow(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 1,
    num_classes: int | None = None,
) -> float:
    """Synaptic flow of the sign-linearised network (float64, all-ones input).

    Independent of ``seed`` (the input is constant) and of ``batch_size`` (``R`` is averaged over the
    batch); ``num_classes`` is unused. Normalisation layers act as ``x * |gamma| + |beta|`` so that BN
    neither zeroes the constant input (batch statistics) nor rescales it by stale running statistics.
    The abs/float64 parameters are substituted with ``torch.func.functional_call``: the model's own
    tensors are only read. Returns ``inf`` when the linearised network overflows float64 (it can for
    deep nets with multiplicative gates or attention, whose products square magnitudes).
    """
    shape = _check_shape(input_shape)
    _check_batch(batch_size)
    with _preserved(model, train=False):
        abs_params = {n: p.detach().abs().double().requires_grad_(True) for n, p in model.named_parameters()}
        buffers = {n: (b.double() if b.is_floating_point() else b.clone()) for n, b in model.named_buffers()}
        hooks = [m.register_forward_hook(_affine_only_hook) for m in model.modules() if isinstance(m, NORMS)]
        try:
            with _seeded(seed):
                x = torch.ones((batch_size, *shape), dtype=torch.float64, device=_device(model))
                out = _logits(torch.func.functional_call(model, (abs_params, buffers), (x,)))
                r = out.sum() / batch_size
                tensors = list(abs_params.values())
                grads = torch.autograd.grad(r, tensors, allow_unused=True)
        finally:
            for h in hooks:
                h.remove()
    total = 0.0
    with torch.no_grad():
        for p, g in zip(tensors, grads):
            if g is not None:
                total += _to_float((p * g).abs().sum())
    # float64 overflow (very deep or multiplicatively gated nets: attention, gating) gives inf or
    # inf - inf = nan; the true value is then beyond float64 either way, reported as inf
    return total if math.isfinite(total) else math.inf


# ---------------------------------------------------------------------------------------- grad_norm
def grad_norm(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 8,
    num_classes: int | None = None,
    data: Data = "gaussian",
) -> float:
    """Sum over conv/linear layers of ``||dL/dW||_2`` for cross-entropy on a random batch and labels.

    Inputs come from ``data`` (see :func:`random_inputs`, or a tensor batch, which overrides
    ``batch_size``), labels are uniform in ``[0, num_classes)`` (``num_classes`` defaults to the width
    of the logits). The model runs in train mode (BN uses batch statistics), as at initialisation.
    """
    shape = _check_shape(input_shape)
    _check_batch(batch_size)
    with _preserved(model, train=True):
        weights = [m.weight for m in model.modules() if isinstance(m, _WEIGHTED)]
        if not weights:
            raise NASError("grad_norm: the model has no Conv/Linear layers")
        for w in weights:
            w.requires_grad_(True)
        with _seeded(seed):
            x = _batch_of(data, batch_size, shape, model)
            out = _logits(model(x))
            n_cls = out.shape[-1] if num_classes is None else int(num_classes)
            if not 1 <= n_cls <= out.shape[-1]:
                raise NASError(
                    f"num_classes {num_classes}: must be in [1, {out.shape[-1]}] (width of the logits)"
                )
            y = torch.randint(0, n_cls, (x.shape[0],), device=x.device)
            grads = torch.autograd.grad(F.cross_entropy(out, y), weights, allow_unused=True)
    return sum(_to_float(g.norm()) for g in grads if g is not None)


# --------------------------------------------------------------------------------------------- nwot
def nwot(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 32,
    num_classes: int | None = None,
    data: Data = "gaussian",
) -> float:
    """``log|det K|`` of the activation-pattern kernel over an input batch (train mode).

    The batch comes from ``data``: ``"gaussian"``, ``"smooth"`` (image-like, see
    :func:`random_inputs`) or a tensor (which overrides ``batch_size``). ``K[a, b]`` counts the units
    (inputs of :data:`ACTIVATIONS` modules) where samples ``a`` and ``b`` are on the same side of zero.
    Returns ``-inf`` when ``K`` is singular. Needs activation *modules* (functional activations are
    invisible to hooks); raises :class:`NASError` when there are none. ``num_classes`` is unused.
    """
    shape = _check_shape(input_shape)
    _check_batch(batch_size, 2)
    acts = [mod for mod in _check_model(model).modules() if isinstance(mod, ACTIVATIONS)]
    if not acts:
        raise NASError(
            "nwot: the model has no activation modules to hook "
            f"(looked for {', '.join(a.__name__ for a in ACTIVATIONS)})"
        )
    with _preserved(model, train=True):
        with _seeded(seed):
            x = _batch_of(data, batch_size, shape, model)
        n = x.shape[0]
        if n < 2:
            raise NASError(f"nwot: needs a batch of at least 2 inputs, got {n}")
        kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)

        def hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            # +-1 codes: s_a . s_b = agree - disagree, so agree = (units + s_a . s_b) / 2. float32 is
            # exact here (integer partial sums below 2**24 per layer); the layer sum is in float64.
            t = inputs[0].detach().reshape(n, -1)
            signs = (t > 0).to(torch.float32).mul_(2.0).sub_(1.0)
            kernel.add_(((signs @ signs.T).to(torch.float64) + t.shape[1]) / 2)

        handles = [a.register_forward_pre_hook(hook) for a in acts]
        try:
            with _seeded(seed), torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
    return _to_float(torch.linalg.slogdet(kernel).logabsdet)


# ---------------------------------------------------------------------------------------------- zen
def _gaussian_init(model: nn.Module) -> None:
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, _WEIGHTED):
                nn.init.normal_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, NORMS):
                if getattr(mod, "weight", None) is not None:
                    nn.init.ones_(mod.weight)
                if getattr(mod, "bias", None) is not None:
                    nn.init.zeros_(mod.bias)


def _leaf_feature_module(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last leaf module (execution order) whose output still has > 1 spatial/sequence position."""
    order: list[tuple[nn.Module, torch.Size]] = []

    def record(mod: nn.Module, _inputs: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            order.append((mod, out.shape))

    handles = [m.register_forward_hook(record) for m in model.modules() if next(m.children(), None) is None]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    found = [mod for mod, s in order if len(s) >= 3 and math.prod(s[2:]) > 1]
    if not found:
        raise NASError(
            "zen: found no module with a spatial output to take as pre-pool features; "
            "pass features_fn=lambda model, x: ... or give the model a forward_features method"
        )
    return found[-1]


def _features_getter(model: nn.Module, x: torch.Tensor, features_fn: FeaturesFn | None) -> FeaturesFn:
    if features_fn is not None:
        return features_fn
    method = getattr(model, "forward_features", None)
    if callable(method) and isinstance(method(x), torch.Tensor):
        return lambda mod, inp: mod.forward_features(inp)
    # no forward_features, or one returning several maps (features_only style): hook the last module
    target = _leaf_feature_module(model, x)

    def via_hook(mod: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        box: list[torch.Tensor] = []
        h = target.register_forward_hook(lambda _m, _i, out: box.append(out))
        try:
            mod(inp)
        finally:
            h.remove()
        return box[-1]

    return via_hook


def zen(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 8,
    num_classes: int | None = None,
    features_fn: FeaturesFn | None = None,
    mixup_gamma: float = 1e-2,
    repeat: int = 1,
) -> float:
    """Zen-score: ``log E sum|f(x) - f(x + gamma * eps)| + sum_BN log sqrt(mean batch variance)``.

    ``f`` is the pre-global-pool feature map: ``features_fn(model, x)`` when given, else
    ``model.forward_features(x)`` when the model has it and it returns one tensor, else the output of
    the last leaf module (execution order) that still has more than one spatial position. Conv/linear weights are re-drawn from N(0, 1) and norm
    layers set to weight 1 / bias 0 under ``seed`` (then restored), so the score does not depend on
    the model's current weights. BN uses batch statistics; the BN correction uses each BN layer's
    batch variance on the clean input. ``repeat`` averages over that many independent draws.
    ``num_classes`` is unused. ``-inf`` when the features do not depend on the input.
    """
    shape = _check_shape(input_shape)
    _check_batch(batch_size, 2)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise NASError(f"zen: repeat {repeat!r} must be an int >= 1")
    with _preserved(model, train=True):
        dev, dtype = _device(model), _float_dtype(model)
        bns = [mod for mod in model.modules() if isinstance(mod, _BatchNorm)]
        scores = []
        with _seeded(seed), torch.no_grad():
            get = None
            for _ in range(repeat):
                _gaussian_init(model)
                x = torch.randn((batch_size, *shape), device=dev, dtype=dtype)
                eps = torch.randn((batch_size, *shape), device=dev, dtype=dtype)
                if get is None:
                    get = _features_getter(model, x, features_fn)
                log_sigma: list[torch.Tensor] = []

                def bn_hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...], log_sigma=log_sigma) -> None:
                    t = inputs[0]
                    dims = [d for d in range(t.dim()) if d != 1]
                    log_sigma.append(0.5 * torch.log(t.var(dim=dims).mean().double()))

                handles = [bn.register_forward_pre_hook(bn_hook) for bn in bns]
                try:
                    f_clean = get(model, x)
                finally:
                    for h in handles:
                        h.remove()
                f_mix = get(model, x + mixup_gamma * eps)
                delta = (f_clean.double() - f_mix.double()).abs().reshape(batch_size, -1).sum(dim=1).mean()
                scores.append(_to_float(torch.log(delta)) + sum(_to_float(s) for s in log_sigma))
    return sum(scores) / len(scores)


# ------------------------------------------------------------------------------------ params / macs
def params(
    model: nn.Module,
    input_shape: Sequence[int] = (),
    *,
    seed: int = 0,
    batch_size: int = 1,
    num_classes: int | None = None,
) -> float:
    """Number of parameters (each shared tensor once). The other arguments are unused."""
    return float(sum(p.numel() for p in _check_model(model).parameters()))


def _mac_handles() -> dict[str, Callable[..., Number]]:
    from fvcore.nn import jit_handles as jh

    from nas.cost.reference import sdpa_macs

    return {
        "aten::_convolution": jh.conv_flop_jit,
        "aten::addmm": jh.addmm_flop_jit,
        "aten::linear": jh.linear_flop_jit,
        "aten::bmm": jh.bmm_flop_jit,
        "aten::mm": jh.matmul_flop_jit,
        "aten::matmul": jh.matmul_flop_jit,
        "aten::einsum": jh.einsum_flop_jit,
        "aten::scaled_dot_product_attention": sdpa_macs,
    }


def macs(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 1,
    num_classes: int | None = None,
) -> float:
    """MACs of one sample (fvcore trace in eval mode; conv, linear, matmul, einsum, attention only).

    fvcore counts one fused multiply-add as one "flop", i.e. these are MACs. Norms, activations,
    pooling and element-wise ops are deliberately not counted.
    """
    from fvcore.nn.jit_analysis import JitModelAnalysis

    shape = _check_shape(input_shape)
    _check_batch(batch_size)
    with _preserved(model, train=False):
        x = torch.zeros((batch_size, *shape), device=_device(model), dtype=_float_dtype(model))
        analysis = JitModelAnalysis(model, (x,)).set_op_handle(**_mac_handles())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with torch.no_grad():
            total = analysis.total()
    return float(total) / batch_size


# --------------------------------------------------------------------------------------- registry
PROXIES: dict[str, ScoreFn] = {
    "synflow": synflow,
    "grad_norm": grad_norm,
    "nwot": nwot,
    "zen": zen,
    "params": params,
    "macs": macs,
}


def compute(name: str, model: nn.Module, input_shape: Sequence[int], **kw: Any) -> float:
    """Run the score registered as ``name`` (see :data:`PROXIES`); keyword options are passed on."""
    if name not in PROXIES:
        raise NASError(f"proxy {name!r}: unknown; allowed: {', '.join(PROXIES)}")
    return PROXIES[name](model, input_shape, **kw)
