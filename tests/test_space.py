"""The search-space language, Arch values, sampling, mutation, encoding and the OFA adapter."""
from __future__ import annotations

import copy
import random

import pytest
import yaml

import nas
from nas.errors import SpaceError
from nas.space.language import parse_space
from nas.space.space import SearchSpace

BUILTIN = ["hybrid", "hybrid-s", "ofa-mbv3", "seq1d"]

MINIMAL = {
    "name": "mini",
    "input": {"channels": 3, "resolution": [32, 64]},
    "stem": {"width": [8, 16], "kernel": 3, "stride": 2},
    "stages": [
        {"depth": [1, 2], "width": [16, 24], "stride": 2, "mixer": ["dwconv", "pool", "skip"], "kernel": [3, 5],
         "per_layer": ["mixer", "kernel"]},
        {"depth": [1, 2], "width": [32], "stride": 2, "mixer": ["mbconv"], "ratio": [3, 6], "downsample": "in_block"},
    ],
    "head": {"classes": 10},
}


def space_of(data: dict) -> SearchSpace:
    return SearchSpace(parse_space(data, "mini.yaml"))


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_spaces_load_and_sample(name):
    sp = nas.load_space(name)
    archs = sp.sample_many(20, seed=1)
    assert len({a.id for a in archs}) > 10
    for a in archs:
        assert sp.make_arch(a.to_dict()) == a


@pytest.mark.parametrize(("mutation", "message"), [
    (lambda d: d["stages"][0].__setitem__("mixer", ["dwconv", "gconv"]),
     "mini.yaml: stages[0].mixer[1]: 'gconv' is not a mixer; choose from identity, dwconv"),
    (lambda d: d["stages"][1].__setitem__("depth", [0, 1]), "mini.yaml: stages[1].depth[0]: 0 out of range"),
    (lambda d: d["stages"][0].__setitem__("colour", 3), "mini.yaml: stages[0].colour: unknown key; allowed:"),
    (lambda d: d.__delitem__("stem"), "mini.yaml: stem: missing (required)"),
    (lambda d: d["stages"][0].__setitem__("norm", "batch"), "mini.yaml: stages[0].norm: 'batch' is not a norm"),
    (lambda d: d["stages"][0].__setitem__("per_layer", ["colour"]), "stages[0].per_layer[0]: 'colour' is not"),
    (lambda d: d["input"].__setitem__("length", [10]), "input.length: a 2D space takes input.resolution"),
    (lambda d: d["stages"][0].__setitem__("downsample", "in_block"), "stages[0].downsample: in_block needs"),
    (lambda d: d["stages"][0].update(mixer=["attention"], mixer_options={"attention": {"heads": 2}}),
     "stages[0].mixer_options.attention.heads: unknown key; allowed: head_dim, sr_ratio"),
    (lambda d: (d["stages"][0].pop("kernel"),  # attention takes no kernel: a kernel here is refused
                d["stages"][0].update(mixer=["attention"], mixer_options={"attention": {"head_dim": 5}})),
     "not divisible into"),
])
def test_space_errors_name_file_key_and_allowed(mutation, message):
    data = copy.deepcopy(MINIMAL)
    mutation(data)
    with pytest.raises(SpaceError) as err:
        space_of(data)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_load_space_unknown_name_lists_builtins():
    with pytest.raises(SpaceError, match="built-in: .*hybrid.*ofa-mbv3"):
        nas.load_space("nope")


def test_cli_reports_bad_space_in_one_line(tmp_path, capsys):
    from nas.cli.main import main

    data = copy.deepcopy(MINIMAL)
    data["stages"][0]["mixer"] = ["gconv"]
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["space", "show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stages[0].mixer" in err and "'gconv' is not a mixer" in err


def test_arch_roundtrip_yaml_json_and_id_stability(tmp_path):
    sp = space_of(MINIMAL)
    arch = sp.sample(seed=3)
    p = arch.save(tmp_path / "a.yaml")
    back = nas.load_arch(p, space=sp)
    assert back == arch and back.id == arch.id and str(back) == str(arch)
    import json

    assert sp.arch_from_dict(json.loads(arch.to_json())) == arch
    assert len(arch.id) == 12 and arch.id == sp.make_arch(arch.to_dict()).id


def test_builtin_arch_file_loads_without_space_argument(tmp_path):
    arch = nas.load_space("hybrid").sample(seed=5)
    assert nas.load_arch(arch.save(tmp_path / "h.yaml")) == arch


def test_arch_is_immutable_and_hashable():
    a = space_of(MINIMAL).sample(seed=0)
    with pytest.raises(AttributeError):
        a.resolution = 5
    assert len({a, space_of(MINIMAL).make_arch(a.to_dict())}) == 1


def test_sampling_is_seeded():
    sp = nas.load_space("hybrid")
    assert [a.id for a in sp.sample_many(5, 7)] == [a.id for a in sp.sample_many(5, 7)]
    assert sp.sample(seed=1) != sp.sample(seed=2)


def test_canonical_form_drops_unused_fields():
    sp = space_of(MINIMAL)
    d = sp.sample(seed=0).to_dict()
    d["stages"][0]["depth"] = 1
    d["stages"][0]["layers"] = [{"mixer": "skip", "kernel": 5, "ratio": 4, "groups": 1}]
    a = sp.make_arch(d)
    assert a.stages[0].layers[0].kernel is None
    d["stages"][0]["layers"] = [{"mixer": "skip", "kernel": 3, "ratio": 4, "groups": 1}]
    assert sp.make_arch(d) == a


def test_arch_validation_errors_name_the_field():
    sp = space_of(MINIMAL)
    d = sp.sample(seed=0).to_dict()
    d["stages"][1]["layers"][0]["ratio"] = 5
    with pytest.raises(SpaceError, match=r"stages\[1\]\.layers\[0\]\.ratio: 5 not allowed; choose from \[3, 6\]"):
        sp.make_arch(d, "a.yaml")
    d = sp.sample(seed=0).to_dict()
    d["resolution"] = 48
    with pytest.raises(SpaceError, match=r"resolution: 48 not allowed"):
        sp.make_arch(d)


def test_per_stage_choices_must_agree_across_layers():
    sp = space_of(MINIMAL)
    d = sp.sample(seed=0).to_dict()
    d["stages"][1]["depth"] = 2
    d["stages"][1]["layers"] = [{"mixer": "mbconv", "kernel": 3, "ratio": 3}, {"mixer": "mbconv", "kernel": 3,
                                                                               "ratio": 6}]
    with pytest.raises(SpaceError, match="ratio is chosen per stage"):
        sp.make_arch(d)


@pytest.mark.parametrize("name", BUILTIN)
def test_min_max_bound_random_archs(name):
    sp = nas.load_space(name)
    lo, hi = nas.count(sp.min()), nas.count(sp.max())
    for a in sp.sample_many(30, seed=0):
        c = nas.count(a)
        assert lo.macs <= c.macs <= hi.macs
        assert lo.params <= c.params <= hi.params


@pytest.mark.parametrize("name", BUILTIN)
def test_mutation_and_crossover_stay_in_space(name):
    sp = nas.load_space(name)
    rng = random.Random(0)
    a, b = sp.sample(rng=rng), sp.sample(rng=rng)
    for _ in range(20):
        m = sp.mutate(a, prob=0.3, rng=rng)
        assert m != a
        assert sp.make_arch(m.to_dict()) == m
        c = sp.crossover(a, m, rng=rng)
        assert sp.make_arch(c.to_dict()) == c
        a = c if rng.random() < 0.5 else b


@pytest.mark.parametrize("name", BUILTIN)
def test_encoding_is_fixed_length_and_distinguishes(name):
    sp = nas.load_space(name)
    vecs = [sp.encode(a) for a in sp.sample_many(10, seed=0)]
    assert len({v.shape for v in vecs}) == 1 and vecs[0].shape[0] == len(sp.encoding_names())
    assert all(0.0 <= float(v.min()) and float(v.max()) <= 1.0 for v in vecs)
    assert len({v.tobytes() for v in vecs}) == 10


def test_ofa_adapter_roundtrip_on_shared_data(shared_datasets):
    import pandas as pd

    from nas.space.ofa import from_ofa, to_ofa

    df = pd.read_csv(shared_datasets / "ofa_mbv3_gpu_latency.csv", nrows=50)
    for _, row in df.iterrows():
        ks = [int(x) for x in row.kernel_sizes.split()]
        e = [int(x) for x in row.expand_ratios.split()]
        d = [int(x) for x in row.depths.split()]
        arch = from_ofa(ks, e, d, int(row.resolution))
        enc = to_ofa(arch)
        assert enc["d"] == d and enc["r"] == row.resolution
        for s in range(5):
            used = slice(4 * s, 4 * s + d[s])
            assert enc["ks"][used] == ks[used] and enc["e"][used] == e[used]
        assert from_ofa(enc["ks"], enc["e"], enc["d"], enc["r"]) == arch


def test_ofa_largest_subnet_matches_published_size():
    from nas.space.ofa import from_ofa

    arch = from_ofa([7] * 20, [6] * 20, [4] * 5, 224)
    assert arch == nas.load_space("ofa-mbv3").max()
    assert abs(nas.count(arch).params - 7.7e6) / 7.7e6 < 0.01  # OFA reports 7.7M for its largest w1.0 subnet


def test_seq1d_is_one_dimensional():
    sp = nas.load_space("seq1d")
    a = sp.sample(seed=0)
    assert sp.dims == 1 and str(a).startswith("l")


def test_nb201_is_a_builtin_space_with_known_cell_sizes():
    from nas.cost.reference import param_count

    sp = nas.load_space("nb201")
    assert "nb201" in nas.space.builtin_spaces()
    assert nas.count(sp.max()).params == 1_531_546 == param_count(nas.build(sp.max()))  # all conv3x3
    assert nas.count(sp.min()).params == 73_306  # all none
    a = sp.sample(seed=3)
    assert sp.make_arch(a.to_dict()) == a and sp.encode(a).sum() == 6
