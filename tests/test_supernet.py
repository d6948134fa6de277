"""The weight-sharing supernet: extract parity on every built-in space, sharing, kernel transforms, re-sorting."""

from __future__ import annotations

import pytest
import torch

import nas
from nas.blocks.layer import LayerCfg, check_layer
from nas.errors import NASError
from nas.space import builtin_spaces, load_space
from nas.supernet import Supernet, make_supernet

torch.set_num_threads(1)  # the parity loop is many small ops: threads only add contention on 2 cores

N_ARCHS = 60
TOL = 1e-5


@torch.no_grad()
def _perturb(sn: Supernet, seed: int = 0) -> None:
    """Make every bank tensor matter: random weights, BN statistics and non-identity kernel transforms."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sn.named_parameters():
        scale = 0.05 if name.startswith("kt.") else 0.2 * (float(p.std()) if p.numel() > 1 else 0.0) + 0.02
        p.add_(torch.randn(p.shape, generator=g) * scale)
    for name, b in sn.bank.named_buffers():
        if name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        elif name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)


def _io(space, arch) -> tuple[int, int, int]:
    """(input channels, the arch's input size, dims) of a YAML space or the NB201 cell space."""
    if getattr(space, "spec", None) is None:
        return 3, space.resolution, 2
    return space.spec.in_channels, arch.resolution, space.dims


def _small_size(space) -> int | None:
    """The smallest input size (a power of two) every layer choice of the space accepts, to keep tests fast.

    Modules do not depend on the input size, so parity at a small size is parity of the same modules; a few
    archs per space are also run at their own resolution.
    """
    if getattr(space, "spec", None) is None:
        return None
    start = 16 if space.dims == 2 else 64
    size = start
    while size < max(space.spec.resolutions):
        shapes = space._stage_shapes(size)
        ok = True
        for si, st in enumerate(space.stages):
            for m in st.mixers:
                if m == "skip":
                    continue
                for w in st.widths:
                    cfg = LayerCfg(
                        mixer=m,
                        cin=w,
                        cout=w,
                        spatial=shapes[si],
                        kernel=max(st.kernels),
                        dims=space.dims,
                        opts=st.options_for(m),
                    )
                    if check_layer(cfg):
                        ok = False
        if ok:
            return size
        size *= 2
    return None


@pytest.mark.parametrize("name", builtin_spaces())
def test_extract_parity_on_random_archs(name):
    """extract(arch) equals the supernet's eval-mode output for 60 random archs (+ the largest and smallest).

    nb201 (the NAS-Bench-201 cell space) gets its one-shot supernet (per-edge op weights) from its family.
    """
    space = load_space(name)
    sn = make_supernet(space, seed=1)
    _perturb(sn, seed=2)
    sn.eval()
    small = _small_size(space)
    archs = [space.max(), space.min()] + space.sample_many(N_ARCHS, seed=7)
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    for i, arch in enumerate(archs):
        ch, res, dims = _io(space, arch)
        size = res if (i < 4 or small is None) else min(small, res)
        x = torch.randn(1, ch, *([size] * dims), generator=g)
        with torch.no_grad():
            y_super = sn(x, arch)
            model = sn.extract(arch).eval()
            y_model = model(x)
        assert y_super.shape == y_model.shape
        worst = max(worst, float((y_super - y_model).abs().max()))
        if i < 2:  # the extracted module is exactly what nas.build makes: same class, names, shapes
            ref = nas.build(arch)
            assert type(model) is type(ref)
            assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [
                (k, tuple(v.shape)) for k, v in ref.state_dict().items()
            ]
    assert worst <= TOL, f"{name}: max abs difference {worst:.3e}"


def test_extract_is_independent_trainable_and_in_train_mode():
    space = load_space("tiny")
    sn = Supernet(space)
    arch = space.sample(seed=3)
    m = sn.extract(arch)
    assert m.training and all(p.requires_grad for p in m.parameters())
    assert not any(t.is_meta for t in m.state_dict().values())
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in sn.state_dict().items())


def test_train_mode_parity_and_gradients_reach_only_used_weights():
    space = load_space("tiny")  # no dropout / drop-path: train-mode outputs are deterministic
    sn = Supernet(space, seed=4)
    _perturb(sn, seed=5)
    arch = space.make_arch(
        {
            "resolution": 8,
            "stem": 8,
            "stages": [
                {"depth": 1, "width": 16, "layers": [{"mixer": "dwconv", "kernel": 3, "ratio": 2}]},
                {"depth": 1, "width": 24, "layers": [{"mixer": "attention", "ratio": 1}]},
            ],
        }
    )
    x = torch.randn(4, 1, 8, 8)
    m = sn.extract(arch).train()
    sn.train()
    y1 = sn(x, arch)
    y2 = m(x)
    assert float((y1 - y2).detach().abs().max()) <= TOL
    y1.square().sum().backward()
    grads = {n for n, p in sn.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("s0:l0|dwconv|weight" in n for n in grads)
    assert any("s1:l0|attention|qkv:weight" in n for n in grads)
    assert not any("|mbconv|" in n or "|pool|" in n or "s0:l1|" in n for n in grads)
    # the dwconv k3 at s0.l0 reads through the learned 5->3 kernel transform, so the matrix learns too
    assert any(n.startswith("kt.s0:l0|dwconv|weight") for n in grads)


def test_kernel_transform_is_learned_per_size_and_identity_at_init():
    space = load_space("tiny")
    sn = Supernet(space)

    def arch(k):
        return space.make_arch(
            {
                "resolution": 8,
                "stem": 16,
                "stages": [
                    {"depth": 1, "width": 24, "layers": [{"mixer": "dwconv", "kernel": k, "ratio": 3}]},
                    {"depth": 1, "width": 48, "layers": [{"mixer": "dwconv", "kernel": 5, "ratio": 3}]},
                ],
            }
        )

    key = "stages.0.1.mixer.weight"  # stage 0: downsample conv, then the layer
    w5 = sn.subnet_state(arch(5))[key]
    w3 = sn.subnet_state(arch(3))[key]
    assert w5.shape[-1] == 5 and w3.shape[-1] == 3
    assert torch.equal(w3, w5[..., 1:4, 1:4])  # identity transform at init: the centre crop
    kt = dict(sn.kt.named_parameters())
    name = next(n for n in kt if n.startswith("s0:l0|dwconv|weight"))
    assert kt[name].shape == (9, 9)
    with torch.no_grad():
        kt[name].copy_(torch.randn(9, 9))
    assert torch.equal(sn.subnet_state(arch(5))[key], w5)  # the largest kernel does not use it
    w3b = sn.subnet_state(arch(3))[key]
    assert not torch.equal(w3b, w3)
    assert torch.allclose(w3b.reshape(-1, 9), w5[..., 1:4, 1:4].reshape(-1, 9) @ kt[name], atol=1e-6)
    # a gradient reaches the transform through the small kernel
    sn.train()
    sn(torch.randn(2, 1, 8, 8), arch(3)).sum().backward()
    assert kt[name].grad is not None and kt[name].grad.abs().sum() > 0


def test_segmented_sharing_keeps_qkv_blocks_aligned():
    """A narrower attention reads the first c rows of each of the bank's q, k and v blocks."""
    space = load_space("tiny")
    sn = Supernet(space)
    bank = sn.bank.get_parameter("s1:l0|attention|qkv:weight")
    assert bank.shape == (3 * 48, 48)

    def arch(w):
        return space.make_arch(
            {
                "resolution": 8,
                "stem": 8,
                "stages": [
                    {"depth": 1, "width": 16, "layers": [{"mixer": "pool", "kernel": 3, "ratio": 1}]},
                    {"depth": 1, "width": w, "layers": [{"mixer": "attention", "ratio": 1}]},
                ],
            }
        )

    qkv = sn.subnet_state(arch(24))["stages.1.1.mixer.qkv.weight"]
    assert qkv.shape == (72, 24)
    for j in range(3):
        assert torch.equal(qkv[24 * j : 24 * (j + 1)], bank[48 * j : 48 * j + 24, :24])


def test_shared_parts_are_shared_across_mixers_and_mixers_own_theirs():
    space = load_space("tiny")
    sn = Supernet(space)

    def arch(mixer):
        return space.make_arch(
            {
                "resolution": 8,
                "stem": 16,
                "stages": [
                    {"depth": 1, "width": 24, "layers": [{"mixer": mixer, "kernel": 3, "ratio": 2}]},
                    {"depth": 1, "width": 48, "layers": [{"mixer": "dwconv", "kernel": 3, "ratio": 2}]},
                ],
            }
        )

    a, b = sn.subnet_state(arch("pool")), sn.subnet_state(arch("dwconv"))
    for k in ("stages.0.1.norm1.weight", "stages.0.1.mlp.fc1.weight", "stages.0.1.mlp.fc2.bias"):
        assert torch.equal(a[k], b[k])
    keys = sn.bank_keys()
    assert "s0.l0|dwconv|weight" in keys and "s0.l0|attention|qkv.weight" in keys
    assert "s0.l0|shared|mlp.fc1.weight" in keys and "s0.l0|mbconv|dw.conv.weight" in keys


def test_sharing_none_gives_every_mixer_its_own_layer_and_keeps_parity():
    """``sharing="none"``: the parts around a mixer (norms, MLP) are per mixer type, so training one mixer's
    layer leaves another's alone; extraction still equals the supernet's output, and re-sorting still keeps
    the largest arch's function."""
    space = load_space("tiny")
    sn = Supernet(space, seed=1, sharing="none")
    _perturb(sn, seed=3)
    sn.eval()
    keys = sn.bank_keys()
    assert "s0.l0|shared@pool|mlp.fc1.weight" in keys and "s0.l0|shared@dwconv|norm1.weight" in keys
    assert not any(k.split("|")[1] == "shared" for k in keys)
    assert "s0.l0|mbconv|dw.conv.weight" in keys  # a self-contained mixer owns its layer in both modes

    def arch(mixer):
        return space.make_arch({"resolution": 8, "stem": 16, "stages": [
            {"depth": 1, "width": 24, "layers": [{"mixer": mixer, "kernel": 3, "ratio": 2}]},
            {"depth": 1, "width": 48, "layers": [{"mixer": "dwconv", "kernel": 3, "ratio": 2}]}]})

    a, b = sn.subnet_state(arch("pool")), sn.subnet_state(arch("dwconv"))
    assert not torch.equal(a["stages.0.1.mlp.fc1.weight"], b["stages.0.1.mlp.fc1.weight"])
    assert torch.equal(a["stages.1.1.mlp.fc1.weight"], b["stages.1.1.mlp.fc1.weight"])  # the same mixer there
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=g)
    with torch.no_grad():
        for arch_ in [space.max(), space.min()] + space.sample_many(20, seed=4):
            assert float((sn(x, arch_) - sn.extract(arch_).eval()(x)).abs().max()) <= TOL
        before = sn(x, space.max())
        assert sn.reorder_channels() > 0
        assert float((sn(x, space.max()) - before).abs().max()) <= 1e-4
    assert Supernet(space, sharing="mlp").describe()["bank_params"] < sn.describe()["bank_params"]
    with pytest.raises(NASError, match="sharing 'all' unknown"):
        Supernet(space, sharing="all")


@pytest.mark.parametrize("name", ["tiny", "ofa-mbv3"])
def test_reorder_channels_keeps_the_largest_function(name):
    space = load_space(name)
    sn = Supernet(space, seed=3)
    _perturb(sn, seed=4)
    sn.eval()
    arch = space.max()
    size = min(arch.resolution, 32)
    x = torch.randn(2, space.spec.in_channels, size, size)
    opt = torch.optim.SGD(sn.parameters(), lr=0.1, momentum=0.9)
    sn(x, arch).sum().backward()
    opt.step()
    with torch.no_grad():
        y0 = sn(x, arch)
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    n = sn.reorder_channels(opt)
    assert n > 0
    with torch.no_grad():
        y1 = sn(x, arch)
    assert float((y0 - y1).abs().max()) <= 1e-4 * max(1.0, float(y0.abs().max()))
    changed = [k for k, v in sn.state_dict().items() if not torch.equal(before[k], v)]
    assert changed
    # hidden channels now come most important first
    key = "s0.l0|shared|mlp.fc2.weight" if name == "tiny" else "s1.l0|mbconv|project.conv.weight"
    w = sn.bank.get_parameter(key.replace(".", ":"))
    imp = w.abs().sum(dim=[d for d in range(w.dim()) if d != 1])
    assert torch.all(imp[:-1] >= imp[1:] - 1e-6)
    # the optimizer's momentum moved with its parameter: another step keeps the function consistent
    p = sn.bank.get_parameter(key.replace(".", ":"))
    mom = opt.state[p]["momentum_buffer"]
    assert mom.shape == p.shape


def test_active_arch_and_errors():
    space = load_space("tiny")
    sn = Supernet(space)
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(NASError, match="no active arch"):
        sn(x)
    a = space.sample(seed=1)
    assert sn.set_active(a) is a
    assert sn(x).shape == (1, 10)
    assert sn.set_active(a.to_dict()) == a  # plain data is validated against the space
    other = load_space("ofa-mbv3").sample(seed=1)
    with pytest.raises(NASError, match="space"):
        sn.set_active(other)
    d = sn.describe()
    assert d["bank_params"] > nas.count(space.max()).params


def test_load_subnet_state_writes_back():
    space = load_space("tiny")
    sn = Supernet(space)
    a = space.sample(seed=5)
    st = sn.subnet_state(a)
    bn_keys = [k for k in st if k.endswith("running_mean")]
    assert bn_keys
    new = {k: torch.full_like(st[k], 0.25) for k in bn_keys}
    sn.load_subnet_state(a, new)
    st2 = sn.subnet_state(a)
    assert all(torch.equal(st2[k], new[k]) for k in bn_keys)
    with pytest.raises(NASError, match="not a tensor"):
        sn.load_subnet_state(a, {"nope": torch.zeros(1)})
