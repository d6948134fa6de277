"""nas.count against the built model (params, exactly) and fvcore (MACs within 1%); reference backbones."""
from __future__ import annotations

import pytest
import torch

import nas
from nas.cost.reference import fvcore_macs, param_count
from nas.profile.probe import probe_archs

SPACES = {"hybrid": 10, "hybrid-s": 10, "ofa-mbv3": 10, "seq1d": 10}  # random archs, besides the probe's


@pytest.mark.parametrize("name", list(SPACES))
def test_count_matches_built_model_and_fvcore(name):
    sp = nas.load_space(name)
    # every block type where it dominates an arch (the probe's reference archs), the extremes, random ones
    archs = [*probe_archs(sp), sp.max(), sp.min(), *sp.sample_many(SPACES[name], seed=11)]
    for arch in archs:
        c = nas.count(arch)
        model = nas.build(arch)
        assert c.params == param_count(model), str(arch)
        shape = (1, sp.spec.in_channels) + (arch.resolution,) * sp.dims
        ref = fvcore_macs(model, shape)
        assert abs(c.macs - ref) <= 0.01 * ref, f"{arch}: counted {c.macs} fvcore {ref}"


@pytest.mark.parametrize(("name", "params", "gmacs"), [
    ("convnext_tiny", 28_589_128, 4.46),
    ("mobilenet_v2", 3_504_872, 0.30),
])
def test_reference_backbones(name, params, gmacs):
    arch = nas.load_space(name).sample(seed=0)
    c = nas.count(arch)
    assert c.params == params
    assert round(c.macs / 1e9, 2) == gmacs
    model = nas.build(arch)
    assert param_count(model) == params
    assert abs(fvcore_macs(model, (1, 3, 224, 224)) - c.macs) <= 0.01 * c.macs


@pytest.mark.parametrize("name", ["hybrid", "hybrid-s", "seq1d", "ofa-mbv3"])
def test_forward_features_are_multiscale(name):
    sp = nas.load_space(name)
    arch = sp.sample(seed=2)
    model = nas.build(arch, features_only=True).eval()
    x = torch.randn(2, sp.spec.in_channels, *(arch.resolution,) * sp.dims)
    feats = model(x)
    assert len(feats) == len(sp.stages)
    assert [f.shape[1] for f in feats] == model.feature_channels
    sizes = [f.shape[-1] for f in feats]
    assert sizes == sorted(sizes, reverse=True)
    logits = nas.build(arch).eval()(x)
    assert logits.shape == (2, sp.spec.head.classes)


@pytest.mark.parametrize("name", ["hybrid", "hybrid-s", "seq1d", "ofa-mbv3"])
def test_fused_model_matches(name):
    sp = nas.load_space(name)
    for arch in sp.sample_many(3, seed=4):
        model = nas.build(arch).eval()
        for m in model.modules():  # non-trivial BN statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
        x = torch.randn(2, sp.spec.in_channels, *(arch.resolution,) * sp.dims)
        with torch.no_grad():
            ref = model(x)
            out = nas.fuse(model)(x)
        from nas.blocks.common import ConvNormAct

        assert all(isinstance(m.norm, torch.nn.Identity) for m in model.modules() if isinstance(m, ConvNormAct))
        assert torch.allclose(ref, out, atol=1e-5, rtol=1e-4), (arch, (ref - out).abs().max())


def test_memory_budget_counts_weights_and_peak_activations():
    arch = nas.load_space("mobilenet_v2").sample(seed=0)
    c = nas.count(arch)
    assert c.memory > 4 * c.params
    assert c.memory < 4 * c.params + 4 * 20 * 112 * 112 * 96
