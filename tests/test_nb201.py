"""NAS-Bench-201 space and network: strings, enumeration, parameter/MAC counts against NASLib's CSV."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas.errors import NASError, SpaceError
from nas.nb201.network import (
    AvgPool3x3,
    NB201Cell,
    NB201Network,
    build,
    count,
    dataset_config,
    make_op,
)
from nas.nb201.space import (
    NUM_ARCHS,
    OPS,
    NB201Arch,
    arch_at,
    enumerate_archs,
    format_arch,
    index_of,
    parse_arch,
    sample_archs,
)
from nas.proxies import macs, params

CSV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nb201_zero_cost_naslib.csv"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
MIXED = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|"


def _rows() -> list[dict]:
    if not CSV.is_file():
        pytest.skip(f"{CSV} not available")
    with CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------ space
def test_parse_format_round_trip_and_edge_order():
    ops = parse_arch(MIXED)
    assert ops == ("avg_pool_3x3", "nor_conv_1x1", "skip_connect", "nor_conv_3x3", "none", "avg_pool_3x3")
    assert format_arch(ops) == MIXED
    for ops in sample_archs(50, seed=3):
        assert parse_arch(format_arch(ops)) == ops


def test_csv_strings_round_trip():
    for row in _rows():
        assert format_arch(parse_arch(row["arch_str"])) == row["arch_str"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'conv_5x5'"),
        ("|none~0|+|none~0|none~1|", "3 node groups"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "needs 2 inputs"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "'op~0'"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "'op~0'"),
    ],
)
def test_bad_strings_raise_space_error(text, needle):
    with pytest.raises(SpaceError) as e:
        parse_arch(text)
    assert needle in str(e.value)
    assert isinstance(e.value, NASError)


def test_bad_op_lists_allowed_ops():
    with pytest.raises(SpaceError) as e:
        parse_arch("|none~0|+|none~0|max_pool~1|+|none~0|none~1|none~2|")
    msg = str(e.value)
    assert "max_pool" in msg and "edge 1->2" in msg
    assert all(op in msg for op in OPS)
    with pytest.raises(SpaceError, match="6 ops"):
        format_arch(("none",) * 5)
    with pytest.raises(SpaceError, match="allowed"):
        NB201Arch(("none",) * 5 + ("sep_conv",))


def test_enumeration_and_index():
    archs = list(enumerate_archs())
    assert len(archs) == NUM_ARCHS == 15_625
    assert len(set(archs)) == NUM_ARCHS
    assert archs[0] == ("none",) * 6 and archs[-1] == ("avg_pool_3x3",) * 6
    for i in (0, 1, 4, 5, 777, 15_624):
        assert arch_at(i) == archs[i] and index_of(archs[i]) == i
    with pytest.raises(SpaceError):
        arch_at(NUM_ARCHS)


def test_sampling_is_seeded():
    a, b, c = sample_archs(20, seed=1), sample_archs(20, seed=1), sample_archs(20, seed=2)
    assert a == b and a != c
    assert len(set(a)) == 20
    assert len(sample_archs(5, seed=0, replace=True)) == 5
    with pytest.raises(SpaceError):
        sample_archs(NUM_ARCHS + 1)


def test_arch_value_object():
    a = NB201Arch.from_str(MIXED)
    assert (
        str(a) == MIXED and a == NB201Arch(parse_arch(MIXED)) and hash(a) == hash(NB201Arch.from_str(MIXED))
    )
    assert NB201Arch.from_dict(a.to_dict()) == a
    assert (
        len(a.id) == 12 and a.id == NB201Arch.from_str(MIXED).id and a.id != NB201Arch.from_str(ALL_NONE).id
    )
    assert a.index == index_of(MIXED)
    with pytest.raises(SpaceError):
        NB201Arch.from_dict({"space": "ofa", "ops": list(a.ops)})


# ---------------------------------------------------------------------------------------- network
def test_known_cells_parameter_counts():
    # stem 3*16*9 + 32; reductions 14,464 and 57,600 (convs + BN affine + 1x1 shortcut);
    # last BN 128; classifier 64*10 + 10: 73,306 with no parametric op.
    assert count(ALL_NONE)["params"] == 73_306
    # + 6 ReLU-Conv3x3-BN per cell: 6 * 5 * (9C^2 + 2C) over C = 16, 32, 64
    assert (
        count(ALL_CONV3)["params"] == 73_306 + 30 * sum(9 * c * c + 2 * c for c in (16, 32, 64)) == 1_531_546
    )
    assert _n_params(build(ALL_CONV3)) == 1_531_546
    assert _n_params(build(ALL_NONE)) == 73_306
    # classifier width: 100 and 120 classes
    assert count(ALL_CONV3, 100)["params"] == 1_531_546 + 64 * 90 + 90


def test_analytic_params_match_naslib_csv_all_rows():
    rows = _rows()
    assert len(rows) > 2000
    for row in rows:
        num_classes, side = dataset_config(row["dataset"])
        got = count(row["arch_str"], num_classes, side)["params"]
        assert f"{got / 1e6:.6f}" == f"{float(row['params']):.6f}", row["arch_str"]


def test_built_params_match_csv_sample():
    rows = [r for r in _rows() if r["dataset"] == "cifar10"]
    for row in random.Random(0).sample(rows, 20):
        model = build(row["arch_str"], 10)
        n = _n_params(model)
        assert n == count(row["arch_str"], 10)["params"]
        assert f"{n / 1e6:.6f}" == f"{float(row['params']):.6f}"


def test_analytic_macs_equal_fvcore():
    # full size for the arch with every op type, at both input sides
    for num_classes, side in ((10, 32), (120, 16)):
        model = build(MIXED, num_classes, seed=0)
        assert macs(model, (3, side, side)) == count(MIXED, num_classes, side)["macs"]
        assert params(model) == count(MIXED, num_classes, side)["params"]
    # reduced width/depth for the extremes
    for arch in (ALL_CONV3, ALL_NONE, MIXED):
        for side in (12, 8):
            small = NB201Network(arch, 7, channels=4, cells_per_stage=2)
            c = count(arch, 7, side, channels=4, cells_per_stage=2)
            assert macs(small, (3, side, side)) == c["macs"] and _n_params(small) == c["params"]


def test_known_macs():
    # all conv3x3 at 32x32: 15 cells * 6 * 9 C^2 HW (C^2 HW = 16^2*32^2 in every stage), stem, reductions, fc
    cells = 15 * 6 * 9 * 16 * 16 * 32 * 32
    stem = 3 * 16 * 9 * 32 * 32
    red = 2 * (9 * 16 * 32 * 16 * 16 + 9 * 32 * 32 * 16 * 16 + 16 * 32 * 16 * 16)
    assert count(ALL_CONV3)["macs"] == cells + stem + red + 640 == 220_119_680


def test_forward_shapes_and_features():
    for dataset in ("cifar10", "ImageNet16-120"):
        num_classes, side = dataset_config(dataset)
        model = build(MIXED, num_classes, seed=0).eval()
        x = torch.randn(2, 3, side, side)
        assert model(x).shape == (2, num_classes)
        assert model.forward_features(x).shape == (2, 64, side // 4, side // 4)
    with pytest.raises(NASError, match="cifar10"):
        dataset_config("imagenet")
    with pytest.raises(NASError, match="multiple of 4"):
        count(MIXED, 10, 30)


def test_build_seed_is_deterministic_and_local():
    state = torch.random.get_rng_state()
    a, b = build(MIXED, seed=5), build(MIXED, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_cell_semantics():
    x = torch.randn(2, 4, 5, 5)
    skip = NB201Cell(("skip_connect",) * 6, 4)
    # node1 = x, node2 = x + x, node3 = x + x + 2x
    assert torch.allclose(skip(x), 4 * x)
    assert torch.count_nonzero(NB201Cell(("none",) * 6, 4)(x)) == 0
    # only the 0->3 edge carries signal
    one = NB201Cell(("none", "none", "none", "avg_pool_3x3", "none", "none"), 4)
    assert torch.allclose(one(x), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), atol=1e-6)
    with pytest.raises(SpaceError, match="allowed: none, skip_connect"):
        make_op("sep_conv_3x3", 4)


def test_avgpool3x3_equals_reference():
    pool = AvgPool3x3()
    assert isinstance(pool, torch.nn.AvgPool2d) and pool.count_include_pad is False
    for shape in ((2, 3, 1, 1), (1, 2, 2, 7), (3, 4, 9, 6)):
        x = torch.randn(shape, dtype=torch.float64)
        assert torch.allclose(pool(x), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), atol=1e-12)
    traced = torch.jit.trace(pool, torch.randn(1, 2, 4, 4))
    assert "avg_pool2d" in str(traced.graph)


def test_nb201_is_a_space_family_and_nas_search_runs_on_it(tmp_path, capsys):
    import json

    from nas.cli import main as cli
    from nas.space import load_space
    from nas.space.family import SpaceFamily

    sp = load_space("nb201")
    assert isinstance(sp, SpaceFamily) and isinstance(load_space("tiny"), SpaceFamily)
    a = sp.sample(seed=3)
    assert sp.arch_from_params(sp.params_of(a, None)) == a and set(sp.search_choices()) == {
        "e01", "e02", "e12", "e03", "e13", "e23"}
    code = cli.main(["--json", "search", "--space", "nb201", "--budget", "params:1M", "--trials", "50",
                     "--runs", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["trials"] == 50 and out["objectives"] == ["accuracy", "params"]
    assert out["estimator"]["name"] == "proxy:nwot" and out["pareto"]
    assert all(e["metrics"]["params"] <= 1e6 for e in out["pareto"])
    from nas.space import load_arch

    back = load_arch(tmp_path / "nb201-nsga2-s0" / out["pareto"][0]["arch_file"])
    assert back.id == out["pareto"][0]["id"]


def test_nb201_latency_table_imports_as_profiles(tmp_path):
    import pandas as pd

    from nas.nb201.space import format_arch, sample_archs
    from nas.profile.importer import import_table
    from nas.profile.store import Profile

    cells = sample_archs(30, seed=5)
    rows = [{"arch_str": format_arch(ops), "gold_6226_ms": 1.0 + 0.1 * i, "pixel3_ms": 5.0 + 0.2 * i}
            for i, ops in enumerate(cells)]
    csv = tmp_path / "nb201_latency.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    done = import_table(csv, root=tmp_path / "profiles", names=["cpu-gold-6226", "mobile-pixel3"])
    assert [d.device for d in done] == ["cpu-gold-6226", "mobile-pixel3"] and all(d.rows == 30 for d in done)
    prof = Profile.load(tmp_path / "profiles" / "cpu-gold-6226")
    archs, y = prof.archs_of("nb201")
    assert len(archs) == 30 and np.allclose(sorted(y.tolist()), sorted(r["gold_6226_ms"] for r in rows))
    from nas.space import load_space

    assert {a.id for a in archs} == {a.id for a in (load_space("nb201").make_arch({"ops": list(c)}) for c in cells)}
