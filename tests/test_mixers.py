"""Every registered token mixer: shape, exact params/MACs against the built module, checks, fusion, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.blocks.common import ConvNormAct, conv_norm_act_cost
from nas.blocks.layer import LayerCfg, check_layer, latency_key, layer_cost
from nas.blocks.mixers.dilated_reparam import branch_schedule
from nas.blocks.mixers.lka import decompose
from nas.blocks.modules.dilated_reparam import DilatedReparam
from nas.blocks.modules.layer import build_layer
from nas.blocks.registry import MIXERS, get_mixer, mixer_names
from nas.cost.reference import fvcore_macs, param_count

C = 16
SPATIAL = {1: (15,), 2: (9, 7)}
ABBREVS = {
    "identity": "id", "dwconv": "dw", "pool": "pl", "attention": "at", "mbconv": "mb",
    "inception_dw": "ic", "dilated_reparam": "dr", "partial_conv": "pc", "lka": "lk", "gnconv": "gn", "focal": "fm",
}  # fmt: skip
EXTRA_KERNELS = {"dilated_reparam": (9, 13, 21), "lka": (11, 21), "inception_dw": (11,), "focal": (9,)}
OPTION_CASES = [
    ("attention", (("head_dim", 8),)),
    ("attention", (("head_dim", 4), ("sr_ratio", 2))),
    ("inception_dw", (("square_kernel", 5), ("branch_ratio", 0.25))),
    ("partial_conv", (("partial_ratio", 0.5),)),
    ("partial_conv", (("partial_ratio", 1.0),)),
    ("gnconv", (("order", 2),)),
    ("gnconv", (("order", 4),)),
    ("gnconv", (("order", 5),)),
    ("focal", (("focal_level", 1),)),
    ("focal", (("focal_level", 3),)),
    ("mbconv", (("se_gate", "sigmoid"),)),
]


def _cases() -> list[tuple[str, int, int, tuple]]:
    mixer_names()  # registers the catalogue
    out = []
    for name, defn in sorted(MIXERS.items()):
        kernels = (3, 5, 7) + EXTRA_KERNELS.get(name, ()) if defn.uses_kernel else (3,)
        for d in defn.dims:
            out += [(name, d, k, ()) for k in kernels]
    for name, opts in OPTION_CASES:
        out += [(name, d, 5, opts) for d in get_mixer(name).dims]
    return out


CASES = _cases()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny maps: intra-op threads only add contention (tens of ms per conv on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(mixer: str, dims: int = 2, kernel: int = 3, opts: tuple = (), **kw) -> LayerCfg:
    base = dict(cin=C, cout=C, spatial=SPATIAL[dims], kernel=kernel, dims=dims, opts=opts)
    base.update(kw)
    return LayerCfg(mixer=mixer, **base)


def _out_channels_shape(cfg: LayerCfg) -> tuple[int, ...]:
    return (cfg.cout, *cfg.out_spatial)


def _assert_cost_matches(cfg: LayerCfg) -> nn.Module:
    assert check_layer(cfg) is None, check_layer(cfg)
    torch.manual_seed(0)
    model = build_layer(cfg)
    cost = layer_cost(cfg)
    assert cost.params == param_count(model), (cfg, cost.params, param_count(model))
    ref = fvcore_macs(model, (1, cfg.cin, *cfg.spatial))
    assert cost.macs == ref, (cfg, cost.macs, ref)
    assert cost.act > 0 or cfg.mixer == "identity"
    return model


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))


def _fuse_all(model: nn.Module) -> None:
    """Call every ``fuse()`` (pre-order: a parent merges its branches before its children are visited)."""
    for m in [m for m in model.modules() if hasattr(m, "fuse")]:
        m.fuse()


def _assert_fuse_parity(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Eval-mode outputs before and after fusion agree within 1e-5 (abs + rel), BN stats randomised."""
    _randomise_bn(model)
    model.eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(x)
        _fuse_all(model)
        after = model(x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in _inside_fusable_units(model))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def _inside_fusable_units(model: nn.Module) -> list[nn.Module]:
    """Modules inside fusable units (after fusion none of them may still be a BatchNorm)."""
    out = []
    for m in model.modules():
        if isinstance(m, (ConvNormAct, DilatedReparam)):
            out += list(m.modules())
    return out


# ---------------------------------------------------------------- registry


def test_catalogue_complete_and_abbreviations_unique():
    names = mixer_names()
    assert names[-1] == "skip" and set(ABBREVS) <= set(names)  # new mixers are covered by CASES automatically
    assert {n: MIXERS[n].abbrev for n in ABBREVS} == ABBREVS
    abbrevs = [m.abbrev for m in MIXERS.values()]
    assert len(set(abbrevs)) == len(abbrevs)
    assert all(len(a) == 2 for a in abbrevs)
    for defn in MIXERS.values():
        for k in defn.options:
            assert isinstance(k, str)


# ---------------------------------------------------------------- shape, params, MACs


@pytest.mark.parametrize(
    "mixer, dims, kernel, opts", CASES, ids=[f"{m}-{d}d-k{k}-{o}" for m, d, k, o in CASES]
)
def test_shape_and_exact_cost(mixer, dims, kernel, opts):
    cfg = _cfg(mixer, dims, kernel, opts)
    model = _assert_cost_matches(cfg)
    model.eval()
    x = torch.randn(2, C, *cfg.spatial)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, *_out_channels_shape(cfg))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    "mixer, dims, kernel, opts", CASES, ids=[f"{m}-{d}d-k{k}-{o}" for m, d, k, o in CASES]
)
def test_mixer_alone_cost(mixer, dims, kernel, opts):
    """The mixer's own cost equals its own module (not only the layer total)."""
    defn = get_mixer(mixer)
    cfg = _cfg(mixer, dims, kernel, opts)
    mod = defn.build(cfg)
    cost = defn.cost(cfg)
    assert cost.params == param_count(mod)
    assert cost.macs == fvcore_macs(mod, (1, C, *cfg.spatial))


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kernel, stride, cout", [(3, 2, 24), (5, 2, 16), (3, 1, 24)])
@pytest.mark.parametrize("ratio, se, groups", [(4.0, 0.0, 1), (1.0, 0.25, 1), (3.0, 0.25, 2)])
def test_mbconv_changes_shape(dims, kernel, stride, cout, ratio, se, groups):
    cfg = _cfg("mbconv", dims, kernel, cout=cout, stride=stride, ratio=ratio, se=se, groups=groups)
    model = _assert_cost_matches(cfg)
    y = model.eval()(torch.randn(1, C, *cfg.spatial))
    assert y.shape == (1, *_out_channels_shape(cfg))


@pytest.mark.parametrize("layout", ["metaformer", "convnext"])
@pytest.mark.parametrize("channel_mixer", ["mlp", "glu", "none"])
@pytest.mark.parametrize("mixer", ["dwconv", "dilated_reparam", "focal", "gnconv", "identity"])
def test_layouts_and_channel_mixers(layout, channel_mixer, mixer):
    for norm, ls in [("bn", None), ("ln", 1e-6), ("gn", None), ("none", 1e-2)]:
        cfg = _cfg(
            mixer, 2, 5, layout=layout, channel_mixer=channel_mixer, norm=norm, layer_scale=ls, ratio=2.0
        )
        model = _assert_cost_matches(cfg)
        x = torch.randn(1, C, *cfg.spatial)
        assert model.eval()(x).shape == x.shape
    assert latency_key(cfg).startswith(f"layer:{mixer}|")


# ---------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "mixer, kw, words",
    [
        ("gnconv", dict(cin=12, cout=12, opts=(("order", 4),)), "divisible"),
        ("gnconv", dict(opts=(("order", 6),)), "order"),
        ("gnconv", dict(opts=(("order", 1),)), "order"),
        ("gnconv", dict(kernel=4), "odd"),
        ("inception_dw", dict(cin=4, cout=4), "no channel"),
        ("inception_dw", dict(opts=(("branch_ratio", 0.4),)), "exceed"),
        ("inception_dw", dict(kernel=6), "odd"),
        ("inception_dw", dict(opts=(("square_kernel", 2),)), "odd"),
        ("partial_conv", dict(cin=2, cout=2), "no channel"),
        ("partial_conv", dict(opts=(("partial_ratio", 0.0),)), "partial_ratio"),
        ("partial_conv", dict(kernel=4), "odd"),
        ("dilated_reparam", dict(kernel=8), "odd"),
        ("lka", dict(kernel=6), "odd"),
        ("lka", dict(kernel=1), "at least 3"),
        ("focal", dict(opts=(("focal_level", 0),)), "focal_level"),
        ("focal", dict(kernel=4), "odd"),
        ("pool", dict(kernel=4), "odd"),
        ("attention", dict(cin=50, cout=50, opts=(("head_dim", 16),)), "heads"),
        ("attention", dict(opts=(("sr_ratio", 16),)), "sr_ratio"),
        ("mbconv", dict(cin=16, cout=16, ratio=3.0, groups=5), "groups"),
        ("dwconv", dict(cout=32), "keeps shape"),
        ("lka", dict(stride=2), "keeps shape"),
    ],
)
def test_check_rejects_with_reason(mixer, kw, words):
    reason = check_layer(_cfg(mixer, **kw))
    assert isinstance(reason, str) and "\n" not in reason
    assert words in reason, reason


def test_check_accepts_defaults():
    for mixer, dims, kernel, opts in CASES:
        assert check_layer(_cfg(mixer, dims, kernel, opts)) is None


# ---------------------------------------------------------------- rules


def test_branch_schedule_rule():
    assert branch_schedule(3) == []
    assert branch_schedule(5) == [(3, 1)]
    assert branch_schedule(7) == [(5, 1), (3, 2)]
    assert branch_schedule(13) == [(5, 1), (3, 2), (3, 4)]
    assert branch_schedule(21) == [(5, 1), (3, 2), (3, 4), (3, 8)]
    for k in range(3, 40, 2):
        assert all(d * (kb - 1) + 1 < k for kb, d in branch_schedule(k))


def test_lka_decomposition_rule():
    assert decompose(21) == (5, 7, 3)  # VAN
    for k in range(3, 40, 2):
        k_dw, k_dil, d = decompose(k)
        assert k_dw % 2 == 1 and k_dil % 2 == 1
        assert k_dw + d * (k_dil - 1) >= k


# ---------------------------------------------------------------- fusion


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5, 7, 9, 13, 21])
def test_dilated_reparam_fuse_parity(dims, kernel):
    torch.manual_seed(0)
    mod = DilatedReparam(C, kernel, dims)
    sp = (23,) if dims == 1 else (23, 19)
    _assert_fuse_parity(mod, (2, C, *sp))
    assert len(mod.branches) == 0
    assert param_count(mod) == C * kernel**dims + C  # one depthwise conv with bias
    mod.fuse()  # idempotent
    assert param_count(mod) == C * kernel**dims + C


@pytest.mark.parametrize("layout", ["metaformer", "convnext"])
def test_layer_with_dilated_reparam_fuse_parity(layout):
    cfg = _cfg("dilated_reparam", 2, 13, layout=layout)
    torch.manual_seed(0)
    model = build_layer(cfg)
    _assert_fuse_parity(model, (2, C, *cfg.spatial))
    assert param_count(model) < layer_cost(cfg).params  # fewer after merging the branches


@pytest.mark.parametrize("dims", [1, 2])
def test_conv_norm_act_fuse(dims):
    torch.manual_seed(0)
    unit = ConvNormAct(C, 24, 3, dims, stride=2, act="relu")
    assert param_count(unit) == conv_norm_act_cost(C, 24, 3, (1,) * dims).params
    _assert_fuse_parity(unit, (2, C, *SPATIAL[dims]))


@pytest.mark.parametrize("dims", [1, 2])
def test_mbconv_fuse(dims):
    cfg = _cfg("mbconv", dims, 5, ratio=4.0, se=0.25)
    torch.manual_seed(0)
    model = build_layer(cfg)
    _assert_fuse_parity(model, (2, C, *cfg.spatial))


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("mixer, dims, kernel, opts", [c for c in CASES if c[2] in (3, 5)])
def test_backward(mixer, dims, kernel, opts):
    cfg = _cfg(mixer, dims, kernel, opts, layer_scale=1.0)
    torch.manual_seed(0)
    model = build_layer(cfg).train()
    x = torch.randn(2, C, *cfg.spatial, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
