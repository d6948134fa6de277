"""Language features of issue 15 (dense residual blocks, stems of several ops, padding, SE rules, MLP and
head options, per-layer fixed values, the expand conv at ratio 1), the refusals, and files that travel."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

import nas
from nas.cli.main import main
from nas.cost.reference import fvcore_macs, param_count
from nas.errors import SpaceError
from nas.models.build import fuse
from nas.space.language import parse_space
from nas.space.space import SearchSpace


def space_of(data: dict, name: str = "t.yaml") -> SearchSpace:
    return SearchSpace(parse_space(copy.deepcopy(data), name))


def exact(arch, check_macs: bool = True) -> None:
    """count = built model (params) and fvcore (MACs within 1%), and the forward runs."""
    sp = arch.space
    c = nas.count(arch)
    model = nas.build(arch).eval()
    assert c.params == param_count(model), str(arch)
    shape = (1, sp.spec.in_channels, *(arch.resolution,) * sp.dims)
    if check_macs:
        ref = fvcore_macs(model, shape)
        assert abs(c.macs - ref) <= 0.01 * ref, f"{arch}: counted {c.macs}, fvcore {ref}"
    with torch.no_grad():
        assert model(torch.randn(*shape)).shape == (1, sp.spec.head.classes)


RESNETISH = {
    "name": "resnetish",
    "input": {"channels": 3, "resolution": [32, 40]},
    "defaults": {"downsample": "in_block", "norm": "bn", "act": "relu"},
    "stem": {"width": [16, 24], "ops": [{"kernel": 3, "stride": 2}, {"op": "maxpool", "kernel": 3, "stride": 2}]},
    "stages": [
        {"depth": [1, 2], "width": [16, 32], "mixer": ["basic"], "kernel": [3, 5], "ratio": [0.5, 1],
         "per_layer": ["kernel", "ratio"]},
        {"depth": [1, 2, 3], "width": [48, 64], "stride": 2, "mixer": ["bottleneck", "basic"], "kernel": [3, 5],
         "ratio": [0.25, 0.5], "groups": [1, 4], "per_layer": ["mixer", "kernel"],
         "mixer_options": {"bottleneck": {"shortcut": "avgpool"}, "basic": {"act_after_sum": False}}},
    ],
    "head": {"classes": 10},
}


def test_resnet_style_space_counts_exactly():
    sp = space_of(RESNETISH)
    archs = [sp.min(), sp.max()] + sp.sample_many(12, seed=3)
    assert {m for a in archs for m in (lc.mixer for lc in a.layers)} == {"basic", "bottleneck"}
    for a in archs:
        exact(a)


def test_resnet_blocks_projection_only_when_shape_changes():
    arch = nas.load_space("resnet50").the_arch()
    model = nas.build(arch)
    with_proj = [(si, li) for si, st in enumerate(model.stages) for li, b in enumerate(st) if b.shortcut is not None]
    assert with_proj == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert model.stages[1][0].body[1].conv.stride == (2, 2)  # v1.5: the stride is on the 3x3
    assert model.stages[1][0].body[0].conv.stride == (1, 1)


def test_resnet_supernet_extract_parity():
    from nas.supernet.supernet import Supernet

    sp = space_of(RESNETISH)
    sn = Supernet(sp, seed=1).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sn.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for arch in [sp.max(), sp.min()] + sp.sample_many(8, seed=5):
            x = torch.randn(1, 3, arch.resolution, arch.resolution, generator=g)
            model = sn.extract(arch).eval()
            ref = nas.build(arch)
            assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [
                (k, tuple(v.shape)) for k, v in ref.state_dict().items()]
            assert torch.allclose(sn(x, arch), model(x), atol=1e-4)


def test_new_blocks_have_units_keys_and_entropy():
    from nas.profile.units import arch_keys, space_units
    from nas.proxies.entropy import structural_entropy

    sp = space_of(RESNETISH)
    units = space_units(sp)
    kinds = {k.split("|")[0] for k in units}
    assert {"stem", "layer:basic", "layer:bottleneck", "head"} <= kinds
    for a in sp.sample_many(20, seed=1):
        assert set(arch_keys(a)) <= set(units)
        assert structural_entropy(a) > 0
    stem_unit = next(u for k, u in units.items() if k.startswith("stem|"))
    assert "ops=conv:k3s2p1:w-:bn:relu,maxpool:k3s2p1" in stem_unit.key
    m = stem_unit.build()
    assert m(torch.zeros(1, *stem_unit.input_shape)).shape[-1] == 8
    small, big = sp.min(), sp.max()
    assert structural_entropy(big) > structural_entropy(small)


def test_stem_ops_widths_and_explicit_padding():
    data = copy.deepcopy(RESNETISH)
    data["stem"] = {"width": 24, "ops": [{"kernel": 3, "stride": 2, "width": 12, "act": "gelu"},
                                         {"kernel": 3, "stride": 1, "padding": 0}]}
    sp = space_of(data)
    a = sp.sample(seed=0)
    model = nas.build(a)
    assert model.stem[0].conv.out_channels == 12 and model.stem[1].conv.padding == (0, 0)
    exact(a)
    data["stem"]["ops"][1]["width"] = 8
    with pytest.raises(SpaceError, match=r"stem.ops\[1\].width: the last conv outputs the stem width"):
        space_of(data)


def test_mbconv_se_rules_and_expand_conv():
    base = {"name": "mb", "input": {"channels": 3, "resolution": 32},
            "stem": {"width": 16, "kernel": 3, "stride": 2},
            "stages": [{"depth": 2, "width": 24, "mixer": "mbconv", "kernel": 3, "ratio": 1, "se": 0.25,
                        "downsample": "in_block"}], "head": {"classes": 10}}
    plain = space_of(base).sample(seed=0)
    blk = nas.build(plain).stages[0][0]
    assert blk.expand is None and blk.se.reduce.out_channels == 8  # make_divisible(16 * 0.25, 8)
    data = copy.deepcopy(base)
    data["stages"][0]["mixer_options"] = {"mbconv": {"expand_conv": "always", "se_from": "input", "se_divisor": 1,
                                                     "se_act": "silu", "se_gate": "sigmoid"}}
    arch = space_of(data).sample(seed=0)
    blk = nas.build(arch).stages[0][0]
    assert blk.expand is not None and blk.expand.conv.out_channels == 16
    assert blk.se.reduce.out_channels == 4 and isinstance(blk.se.act, torch.nn.SiLU)
    assert isinstance(blk.se.gate, torch.nn.Sigmoid)
    exact(arch)
    from nas.profile.units import arch_keys

    keys = arch_keys(arch)
    assert any("expand_conv=always" in k and "se_from=input" in k for k in keys)
    assert not any("se_from" in k for k in arch_keys(plain))  # defaults add nothing to keys


def test_mlp_options_and_fuse():
    data = {"name": "m", "input": {"channels": 3, "resolution": 16}, "stem": {"width": 16, "kernel": 3, "stride": 2},
            "stages": [{"depth": 2, "width": 16, "mixer": "dwconv", "kernel": 3, "ratio": 2, "downsample": "none",
                        "channel_mixer_options": {"bias": False, "norm": "bn", "act": "relu"}}],
            "head": {"classes": 10}}
    arch = space_of(data).sample(seed=0)
    model = nas.build(arch).eval()
    mlp = model.stages[0][0].mlp
    assert mlp.fc1.bias is None and isinstance(mlp.norm, torch.nn.BatchNorm2d) and isinstance(mlp.act, torch.nn.ReLU)
    exact(arch)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
        assert torch.allclose(fuse(model)(x), y, atol=1e-4)
    data["stages"][0]["channel_mixer"] = "none"
    del data["stages"][0]["ratio"]
    with pytest.raises(SpaceError, match=r"stages\[0\].channel_mixer_options: this stage has no channel mixer"):
        space_of(data)


def test_head_orders():
    data = {"name": "h", "input": {"channels": 3, "resolution": 16}, "stem": {"width": 16, "kernel": 3, "stride": 2},
            "stages": [{"depth": 1, "width": 16, "mixer": "dwconv", "kernel": 3, "downsample": "none"}],
            "head": {"classes": 10, "norm": "bn", "norm_at": "map",
                     "post": {"width": 32, "act": "gelu", "norm": "ln", "order": "act_norm", "bias": False}}}
    arch = space_of(data).sample(seed=0)
    head = nas.build(arch).head
    assert isinstance(head.map_norm, torch.nn.BatchNorm2d)
    assert [type(m).__name__ for m in head.post] == ["Linear", "GELU", "LayerNorm"] and head.post[0].bias is None
    exact(arch)
    from nas.profile.units import arch_keys

    assert "norm_at=map" in arch_keys(arch)[-1] and "post_norm=ln,act_norm" in arch_keys(arch)[-1]


def test_per_layer_fixed_values():
    data = {"name": "f", "input": {"channels": 3, "resolution": 32}, "stem": {"width": 16, "kernel": 3, "stride": 2},
            "stages": [{"depth": [2, 3], "width": [24, 32], "mixer": "mbconv", "downsample": "in_block", "stride": 2,
                        "kernel": {"layers": [3, 5, 3]}, "ratio": {"layers": [4, 3, 2.5]}}],
            "head": {"classes": 10}}
    sp = space_of(data)
    assert not sp.is_fixed() and abs(sp.log10_size() - 0.602) < 0.01  # 2 depths x 2 widths
    archs = sp.sample_many(10, seed=0) + [sp.min(), sp.max()]
    archs += [sp.mutate(a, prob=0.5, seed=i) for i, a in enumerate(archs)]
    for a in archs:
        assert [(lc.kernel, lc.ratio) for lc in a.stages[0].layers] == [(3, 4), (5, 3), (3, 2.5)][:a.stages[0].depth]
    exact(archs[0])
    bad = archs[0].to_dict()
    bad["stages"][0]["layers"][1]["ratio"] = 4
    with pytest.raises(SpaceError, match=r"stages\[0\].layers\[1\].ratio: 4 not allowed; choose from \[3\]"):
        sp.make_arch(bad)
    data["stages"][0]["ratio"] = {"layers": [4, 3]}
    with pytest.raises(SpaceError, match=r"stages\[0\].ratio.layers: gives 2 values; the stage's largest depth is 3"):
        space_of(data)


# ---- refusals ------------------------------------------------------------------------------------------
MINI = {"name": "mini", "input": {"channels": 3, "resolution": 32}, "stem": {"width": 16, "kernel": 3, "stride": 2},
        "stages": [{"depth": 1, "width": 16, "mixer": "mbconv", "kernel": 3, "downsample": "in_block"}],
        "head": {"classes": 10}}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["stages"][0].update(mixer="dwconv", downsample="none", kernel=[3, 4]),
     "mini.yaml: stages[0].kernel: dwconv builds only odd kernels ('same' padding); 4 is even"),
    (lambda d: d["stages"][0].update(kernel=2), "stages[0].kernel: mbconv builds only odd kernels"),
    (lambda d: d["stages"][0].update(mixer_options={"mbconv": {"se_gate": "swish"}}),
     "stages[0].mixer_options.mbconv.se_gate: 'swish' is not a se_gate of mbconv; choose from hsigmoid, sigmoid"),
    (lambda d: d["head"].update(post={"width": 32, "bias": "false"}), "head.post.bias: 'false' is not true/false"),
    (lambda d: d["stages"][0].update(mixer="dwconv", downsample="none", se=0.25),
     "stages[0].se: no mixer of this stage has squeeze-excite (dwconv); se applies to: mbconv"),
    (lambda d: d["stages"][0].update(mixer_options={"attention": {"head_dim": 8}}),
     "stages[0].mixer_options.attention: mixer attention is not used in this stage (mixers: mbconv)"),
    (lambda d: d.update(defaults={"mixer_options": {"gnconv": {"order": 2}}}),
     "defaults.mixer_options.gnconv: mixer gnconv is used by no stage"),
    (lambda d: d["stages"][0].update(mixer_options={"mbconv": {"expand_conv": True}}),
     "stages[0].mixer_options.mbconv.expand_conv: True is not a expand_conv of mbconv; choose from auto, always"),
    (lambda d: d["stages"][0].update(mixer="basic", mixer_options={"basic": {"act_after_sum": "no"}}),
     "stages[0].mixer_options.basic.act_after_sum: 'no' is not true/false"),
    (lambda d: d["stem"].update(padding=3), "stem.padding: 3 out of range; must be in [0, 2]"),
    (lambda d: d["stem"].update(ops=[{"op": "maxpool", "kernel": 3}]), "stem.kernel: a stem with ops takes only width and ops"),
    (lambda d: d.update(stem={"width": 8, "ops": [{"op": "maxpool", "kernel": 3}]}),
     "stem.ops[0].op: a stem starts with a conv"),
    (lambda d: d["head"].update(norm_at="map"), "head.norm_at: head.norm is none"),
    (lambda d: d["stages"][0].update(mixer="attention", downsample="none", kernel=3),
     "stages[0].kernel: no mixer of this stage takes a kernel (attention)"),
    (lambda d: d["stages"][0].update(mixer="dwconv", downsample="none", groups=[1, 2]),
     "stages[0].groups: groups apply to self-contained mixers (mbconv, basic, bottleneck); this stage has dwconv"),
    (lambda d: d["stages"][0].update(mixer="dwconv", downsample="none", channel_mixer="none", ratio=2),
     "stages[0].ratio: this stage has no channel mixer"),
    (lambda d: (d["stem"].update(kernel=7, padding=0), d["input"].update(resolution=[4, 32])),
     "input.resolution: 4 is too small; the feature map vanishes at stem"),
])
def test_refusals_name_file_field_and_allowed(edit, message):
    data = copy.deepcopy(MINI)
    edit(data)
    with pytest.raises(SpaceError) as err:
        space_of(data, "mini.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_refusal_is_one_line_and_exit_2(tmp_path, capsys):
    data = copy.deepcopy(MINI)
    data["stages"][0].update(mixer="dwconv", downsample="none", kernel=4)
    path = tmp_path / "even.yaml"
    path.write_text(yaml.safe_dump(data))
    for argv in (["space", "count", str(path)], ["build", str(path)], ["space", "show", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "stages[0].kernel" in err


def test_se_from_defaults_applies_where_it_can():
    data = copy.deepcopy(MINI)
    data["defaults"] = {"se": 0.25}
    data["stages"].append({"depth": 1, "width": 16, "mixer": "dwconv", "kernel": 3, "downsample": "none"})
    sp = space_of(data)
    assert [st.se for st in sp.stages] == [0.25, 0.0]
    data["stages"] = data["stages"][1:]
    with pytest.raises(SpaceError, match="defaults.se: no stage has a mixer with squeeze-excite"):
        space_of(data)


# ---- files that travel ---------------------------------------------------------------------------------
def test_fixed_space_is_an_arch_for_build_count_and_load(capsys):
    from nas.paths import builtin_dir

    path = builtin_dir("search_spaces") / "reference" / "mobilenet_v2.yaml"
    arch = nas.load_arch(path)
    assert nas.count(arch).params == 3_504_872
    assert main(["--json", "space", "count", str(path)]) == 0
    assert '"params": 3504872' in capsys.readouterr().out
    assert main(["build", str(path)]) == 0
    with pytest.raises(SpaceError, match=r"hybrid.yaml: input.resolution: has several values"):
        nas.load_arch(builtin_dir("search_spaces") / "hybrid.yaml")


def test_export_takes_a_reference_space_file(tmp_path):
    pytest.importorskip("onnx")
    from nas.paths import builtin_dir

    path = builtin_dir("search_spaces") / "reference" / "mobilenet_v2.yaml"
    assert main(["export", str(path), "--zoo", str(tmp_path / "zoo"), "--name", "mbv2"]) == 0
    assert (tmp_path / "zoo" / "mbv2" / "arch.yaml").is_file()


def test_new_blocks_export_to_onnx(tmp_path, capsys):
    """basic/bottleneck (avg-pool shortcut), a conv + max-pool stem: ONNX matches the torch model."""
    pytest.importorskip("onnx")
    import json

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(RESNETISH))
    arch = nas.load_space(tmp_path / "s.yaml").max()
    arch.save(tmp_path / "a.yaml")
    assert main(["--json", "export", str(tmp_path / "a.yaml"), "--zoo", str(tmp_path / "zoo"), "--name", "r"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["id"] == arch.id and max(rec["onnx"]["max_abs_diff"].values()) < 1e-4


def test_sampled_arch_files_reload_anywhere(tmp_path, monkeypatch):
    space_file = tmp_path / "spaces" / "resnetish.yaml"
    space_file.parent.mkdir()
    space_file.write_text(yaml.safe_dump(RESNETISH))
    out = tmp_path / "archs"
    monkeypatch.chdir(tmp_path)
    assert main(["space", "sample", "spaces/resnetish.yaml", "--n", "3", "--seed", "1", "--out", "archs"]) == 0
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 3
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sp = nas.load_space(space_file)
    expect = {a.id for a in sp.sample_many(3, seed=1)}
    for f in files:
        data = yaml.safe_load(f.read_text())
        assert Path(data["space_file"]).is_absolute()
        arch = nas.load_arch(f)  # no --space: the file says where its space is
        assert arch.id == data["id"] == f.stem and arch.id in expect
        assert main(["build", str(f)]) == 0


def test_build_verify_exit_code(monkeypatch, capsys):
    from nas.paths import builtin_dir

    path = str(builtin_dir("search_spaces") / "reference" / "mobilenet_v2.yaml")
    assert main(["build", path, "--verify"]) == 0
    import importlib

    cc = importlib.import_module("nas.cost.count")  # the command reads count_plan from here when it runs

    real = cc.count_plan

    def off_by_one(plan):
        c = real(plan)
        return type(c)(c.params + 1, c.macs, c.memory, c.activations, c.stages)

    monkeypatch.setattr(cc, "count_plan", off_by_one)
    assert main(["build", path, "--verify"]) == 1
    assert "verify failed" in capsys.readouterr().err
    monkeypatch.setattr(cc, "count_plan", real)
    monkeypatch.setattr("nas.cost.reference.fvcore_macs", lambda model, shape: 1)
    assert main(["build", path, "--verify"]) == 1


def test_unchanged_keys_of_shipped_spaces():
    """Existing spaces keep their latency keys: no key of ofa-mbv3 or hybrid names a new option."""
    from nas.profile.units import arch_keys

    for name in ("ofa-mbv3", "hybrid"):
        for a in nas.load_space(name).sample_many(5, seed=0):
            for k in arch_keys(a):
                assert not any(w in k for w in ("expand_conv", "se_from", "mlp.", "norm_at", "post_norm", "stem|"))
