"""Training-free scores: determinism, no side effects, and the invariances each score must obey."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nas.errors import NASError
from nas.nb201.network import NB201Network, count
from nas.proxies import (
    PROXIES,
    compute,
    grad_norm,
    macs,
    nwot,
    params,
    random_inputs,
    rank_ensemble,
    ranks,
    synflow,
    zen,
)

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
SHAPE = (3, 8, 8)
FAST = {"synflow": {}, "grad_norm": {"batch_size": 4}, "nwot": {"batch_size": 8}, "zen": {"batch_size": 4}}


def tiny_nb201(arch: str = ARCH, seed: int = 0, num_classes: int = 10) -> NB201Network:
    torch.manual_seed(seed)
    return NB201Network(arch, num_classes, channels=4, cells_per_stage=1)


def mlp(d_in: int = 12, hidden: int = 32, out: int = 5, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, out))


class Plain(nn.Module):
    """A CNN without forward_features, BN running in whatever mode it is left in."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.pool(self.body(x)).flatten(1))


def _state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list(PROXIES))
def test_deterministic_finite_and_side_effect_free(name):
    model = tiny_nb201()
    model.eval()
    model.cells[0].training = True  # a mixed mode that must survive
    next(model.parameters()).requires_grad_(False)
    before, modes = _state(model), [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    rng = torch.random.get_rng_state()
    kw = FAST.get(name, {})
    a = compute(name, model, SHAPE, seed=3, **kw)
    b = compute(name, model, SHAPE, seed=3, **kw)
    assert isinstance(a, float) and math.isfinite(a) and a == b
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_unknown_proxy_lists_allowed():
    with pytest.raises(NASError) as e:
        compute("snipp", mlp(), (12,))
    assert all(n in str(e.value) for n in PROXIES)
    with pytest.raises(NASError):
        synflow(mlp(), (0, 3))
    with pytest.raises(NASError):
        nwot(mlp(), (12,), batch_size=1)


# ------------------------------------------------------------------------------------------ synflow
def test_synflow_closed_form_two_layer_product():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
    w1, w2 = net[0].weight.detach().double().abs(), net[2].weight.detach().double().abs()
    r = (w2 @ w1).sum().item()  # R = 1^T |W2| |W1| 1
    # each layer contributes sum theta * dR/dtheta = R (R is linear in each layer)
    assert synflow(net, (6,)) == pytest.approx(2 * r, rel=1e-12)


def test_synflow_independent_of_input_values_seed_and_batch():
    model = tiny_nb201()
    s = synflow(model, SHAPE)
    assert synflow(model, SHAPE, seed=123) == s
    assert synflow(model, SHAPE, batch_size=3) == pytest.approx(s, rel=1e-12)


def test_synflow_scales_with_classifier():
    model = tiny_nb201()
    s = synflow(model, SHAPE)
    with torch.no_grad():  # a power of two keeps the float32 weights exact
        model.classifier.weight.mul_(4.0)
        model.classifier.bias.mul_(4.0)
    assert synflow(model, SHAPE) == pytest.approx(4.0 * s, rel=1e-12)
    with torch.no_grad():  # scaling only the weight leaves the bias term sum|b| unscaled
        model.classifier.weight.mul_(0.5)
    b = model.classifier.bias.detach().double().abs().sum().item()
    assert synflow(model, SHAPE) == pytest.approx(0.5 * (4.0 * s - b) + b, rel=1e-12)


def test_synflow_bn_handling():
    model = tiny_nb201()
    s = synflow(model, SHAPE)
    assert s > 0
    model.train()  # batch statistics of an all-ones input would zero every BN output
    assert synflow(model, SHAPE) == s
    for m in model.modules():  # nor may stale running statistics rescale the signal
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.fill_(100.0)
            m.running_mean.fill_(5.0)
    assert synflow(model, SHAPE) == s


def test_synflow_zero_cell_keeps_only_skeleton():
    # an all-none cell cuts the path from input to output inside every stage: only the parameters
    # after the last cell (final BN, classifier) still get a gradient
    dead = tiny_nb201("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert synflow(dead, SHAPE) < synflow(tiny_nb201(), SHAPE)


# ---------------------------------------------------------------------------------------- grad_norm
def test_grad_norm_matches_direct_computation():
    model = mlp()
    torch.manual_seed(7)
    x = torch.randn(4, 12)
    y = torch.randint(0, 5, (4,))
    loss = nn.functional.cross_entropy(model(x), y)
    gs = torch.autograd.grad(loss, [model[1].weight, model[3].weight])
    direct = sum(g.norm().item() for g in gs)
    assert grad_norm(model, (12,), seed=7, batch_size=4) == pytest.approx(direct, rel=1e-6)
    assert grad_norm(model, (12,), seed=8, batch_size=4) != pytest.approx(direct, rel=1e-6)


def test_grad_norm_zero_when_output_ignores_input():
    dead = tiny_nb201("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert grad_norm(dead, SHAPE, batch_size=4) == 0.0


# --------------------------------------------------------------------------------------------- nwot
def test_nwot_matches_binary_code_definition():
    model = mlp(d_in=6, hidden=40)
    torch.manual_seed(1)
    x = torch.randn(10, 6)
    with torch.no_grad():
        c = (model[1](x) > 0).double()
    k = c @ c.T + (1 - c) @ (1 - c).T
    want = torch.linalg.slogdet(k).logabsdet.item()
    assert nwot(model, (6,), data=x) == pytest.approx(want, rel=1e-12)


def test_nwot_identical_codes_score_lower_than_diverse():
    diverse = mlp(d_in=6, hidden=64)
    same = mlp(d_in=6, hidden=64)
    with torch.no_grad():  # every ReLU input > 0 for any input: all codes identical
        same[1].weight.zero_()
        same[1].bias.fill_(1.0)
    lo, hi = nwot(same, (6,), batch_size=16), nwot(diverse, (6,), batch_size=16)
    assert lo < hi and math.isfinite(hi)
    assert lo == -math.inf  # K = n * ones: singular


def test_nwot_needs_activation_modules():
    with pytest.raises(NASError, match="activation"):
        nwot(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (4,))


# ---------------------------------------------------------------------------------------------- zen
def test_zen_ignores_current_weights_and_is_stable_across_seeds():
    model = tiny_nb201()
    a = zen(model, SHAPE, seed=0, batch_size=8)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-7.0).add_(0.3)
    assert zen(model, SHAPE, seed=0, batch_size=8) == pytest.approx(a, abs=1e-9)  # weights are re-drawn
    others = [zen(model, SHAPE, seed=s, batch_size=8) for s in (1, 2, 3)]
    assert all(o != a for o in others)  # it is a random estimate ...
    # ... of one quantity: seed-to-seed spread is a few % of the log-score here (~1% at full size)
    assert max(abs(o - a) for o in others) < 0.1 * abs(a)


def test_zen_feature_sources_agree():
    model = Plain()
    hooked = zen(model, SHAPE, seed=0, batch_size=4)  # last module with a spatial output: the ReLU
    explicit = zen(model, SHAPE, seed=0, batch_size=4, features_fn=lambda m, x: m.body(x))
    assert hooked == pytest.approx(explicit, abs=1e-9)
    nb = tiny_nb201()
    via_method = zen(nb, SHAPE, seed=0, batch_size=4)
    assert via_method == pytest.approx(
        zen(nb, SHAPE, seed=0, batch_size=4, features_fn=lambda m, x: m.lastact(m.cells(m.stem(x)))), abs=1e-9
    )


def test_zen_forward_features_list_falls_back_to_hooks():
    class Pyramid(Plain):
        def forward_features(self, x):  # features_only style: several maps
            return [x, self.body(x)]

    model = Pyramid()
    assert zen(model, SHAPE, batch_size=4) == pytest.approx(
        zen(model, SHAPE, batch_size=4, features_fn=lambda m, x: m.body(x)), abs=1e-9
    )


def test_synflow_overflow_reports_inf():
    deep = nn.Sequential(*[nn.Linear(16, 16, bias=False) for _ in range(150)])
    with torch.no_grad():
        for layer in deep:
            layer.weight.fill_(10.0)  # x160 per layer: beyond float64 after ~140 layers
    assert synflow(deep, (16,)) == math.inf


def test_zen_ranks_width():
    # wider networks have a larger Zen-score (expressivity grows with width)
    torch.manual_seed(0)
    narrow = NB201Network(ARCH, 10, channels=4, cells_per_stage=1)
    wide = NB201Network(ARCH, 10, channels=16, cells_per_stage=1)
    assert zen(wide, SHAPE, batch_size=4) > zen(narrow, SHAPE, batch_size=4)


# ------------------------------------------------------------------------------------ params / macs
def test_params_and_macs_equal_direct_counts():
    model = Plain()
    assert params(model) == sum(p.numel() for p in model.parameters()) == 3 * 8 * 9 + 8 + 16 + 8 * 4 + 4
    # conv 3->8 3x3 at 8x8 + linear 8->4; BN, ReLU and pooling are not MACs
    assert macs(model, SHAPE) == 8 * 3 * 9 * 64 + 8 * 4
    assert macs(model, SHAPE, batch_size=3) == macs(model, SHAPE)
    nb = tiny_nb201()
    c = count(ARCH, 10, 8, channels=4, cells_per_stage=1)
    assert params(nb) == c["params"] and macs(nb, SHAPE) == c["macs"]


def test_macs_counts_matmul_and_attention():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24, bias=False)

        def forward(self, x):  # x: (B, L=5, 8)
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            a = nn.functional.scaled_dot_product_attention(q, k, v)
            return (a @ torch.ones(8, 2)).mean(1)

    # qkv: 5*8*24; attention: 2 * 5*5*8; final matmul: 5*8*2
    assert macs(Attn(), (5, 8)) == 5 * 8 * 24 + 2 * 5 * 5 * 8 + 5 * 8 * 2


# ----------------------------------------------------------------------------------------- ensemble
def test_rank_ensemble():
    table = {"a": [1.0, 2.0, 3.0], "b": [30.0, 10.0, 20.0], "c": [float("nan"), 0.0, -math.inf]}
    assert ranks(table["a"]).tolist() == [0.0, 0.5, 1.0]
    assert rank_ensemble(table, ["a", "b"]) == pytest.approx([0.5, 0.25, 0.75])
    assert rank_ensemble(table, ["a"]) == pytest.approx([0.0, 0.5, 1.0])
    assert rank_ensemble(table, ["c"]) == pytest.approx([0.25, 1.0, 0.25])  # nan ties with -inf, lowest
    assert rank_ensemble(table, ["a", "b"], weights=[1, 0]) == pytest.approx([0.0, 0.5, 1.0])
    with pytest.raises(NASError, match="available: a, b, c"):
        rank_ensemble(table, ["a", "zz"])
    with pytest.raises(NASError, match="lengths"):
        rank_ensemble({"a": [1, 2], "b": [1]}, ["a", "b"])


def test_random_inputs():
    torch.manual_seed(0)
    g = random_inputs(4, SHAPE)
    torch.manual_seed(0)
    s = random_inputs(4, SHAPE, kind="smooth")
    assert g.shape == s.shape == (4, *SHAPE)
    assert abs(s.mean().item()) < 1e-5 and abs(s.std().item() - 1) < 1e-5

    # neighbouring pixels are correlated in the smooth kind, not in the gaussian one
    def corr(x):
        return torch.corrcoef(torch.stack([x[..., :-1].flatten(), x[..., 1:].flatten()]))[0, 1].item()

    assert corr(s) > 0.5 and abs(corr(g)) < 0.2
    assert random_inputs(2, (4, 16), kind="smooth").shape == (2, 4, 16)
    with pytest.raises(NASError, match="gaussian, smooth"):
        random_inputs(2, SHAPE, kind="uniform")
