"""Fuzz the space language: seeded random mutations of valid space files.

Every mutated file must be either refused at load with one SpaceError line naming the file (the CLI
prints it and exits 2), or accepted, and then every arch drawn from it builds, runs, and counts exactly:
params equal to the built model's, each stage's output shape as the plan says, MACs within 1% of fvcore.
"""
from __future__ import annotations

import copy
import random

import pytest
import torch
import yaml

import nas
from nas.cost.reference import fvcore_macs, param_count
from nas.errors import SpaceError
from nas.paths import builtin_dir
from nas.space.language import parse_space
from nas.space.resolve import resolve
from nas.space.space import SearchSpace

SMALL = [
    {"name": "mb", "input": {"channels": 3, "resolution": [16, 24]},
     "defaults": {"downsample": "in_block", "mixer": "mbconv", "norm": "bn", "act": "relu"},
     "stem": {"width": [8, 16], "kernel": 3, "stride": 2, "act": "hswish"},
     "stages": [{"depth": [1, 2], "width": [16, 24], "kernel": [3, 5], "ratio": [1, 3], "se": 0.25,
                 "per_layer": ["kernel", "ratio"], "mixer_options": {"mbconv": {"se_gate": "sigmoid"}}},
                {"depth": 2, "width": 32, "stride": 2, "kernel": 3, "ratio": {"layers": [4, 2.5]}}],
     "head": {"classes": 7, "pre": {"width": 48, "norm": "bn", "act": "hswish"},
              "post": {"width": 64, "act": "hswish", "bias": False}}},
    {"name": "res", "input": {"channels": 3, "resolution": 32},
     "defaults": {"downsample": "in_block", "norm": "bn", "act": "relu"},
     "stem": {"width": 16, "ops": [{"kernel": 3, "stride": 2, "padding": 1},
                                   {"op": "maxpool", "kernel": 3, "stride": 2, "padding": 1}]},
     "stages": [{"depth": [1, 2], "width": [16, 32], "mixer": "basic", "kernel": 3, "ratio": 1},
                {"depth": 2, "width": 64, "stride": 2, "mixer": "bottleneck", "kernel": [3, 5], "ratio": 0.25,
                 "groups": [1, 2], "mixer_options": {"bottleneck": {"shortcut": "avgpool"}}}],
     "head": {"classes": 5}},
    {"name": "meta", "input": {"channels": 1, "resolution": [8, 12]},
     "defaults": {"layout": "metaformer", "norm": "bn", "act": "gelu", "downsample": {"type": "conv", "kernel": 3},
                  "per_layer": ["mixer", "kernel", "ratio"], "ratio": [1, 2],
                  "mixer": ["identity", "pool", "dwconv", "attention", "skip"], "kernel": [3, 5],
                  "mixer_options": {"attention": {"head_dim": 8}},
                  "channel_mixer_options": {"bias": False, "norm": "ln"}},
     "stem": {"width": [8, 16], "kernel": 3, "stride": 1},
     "stages": [{"depth": [1, 2], "width": [16, 24], "stride": 1},
                {"depth": [1, 2], "width": [24, 32], "stride": 2, "layout": "convnext", "layer_scale": 1e-6}],
     "head": {"classes": 10, "norm": "ln", "post": {"width": 16, "norm": "bn", "order": "act_norm"}}},
]
REFERENCES = ["mobilenetv3_large", "efficientnet_b0", "resnet18", "mobilenet_v2", "convnext_tiny"]

WORDS = ["bn", "ln", "none", "relu", "swish", "silu", "false", "true", "mbconv", "dwconv", "basic", "bottleneck",
         "attention", "skip", "conv", "maxpool", "in_block", "input", "expanded", "always", "map", "act_norm", ""]
NUMBERS = [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 33, 0.5, 0.25, 1.5, 2.5]


def _reference(name: str) -> dict:
    data = yaml.safe_load((builtin_dir("search_spaces") / "reference" / f"{name}.yaml").read_text())
    data["input"]["resolution"] = 32  # valid and cheap to build
    return data


def _paths(node, prefix=()):
    """Every (container, key) in a YAML tree."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((node, k))
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((node, i))
            out += _paths(v, prefix + (i,))
    return out


VOCAB = {  # plausible replacements by key: mostly allowed values, one that is not
    "mixer": ["mbconv", "dwconv", "basic", "bottleneck", "attention", "pool", "identity", "gnconv", "skip", "conv"],
    "act": ["relu", "gelu", "silu", "hswish", "none", "swish"], "se_act": ["relu", "silu", "tanh"],
    "norm": ["bn", "ln", "gn", "none", "batch"], "layout": ["metaformer", "convnext", "resnet"],
    "channel_mixer": ["mlp", "glu", "none"], "se_gate": ["hsigmoid", "sigmoid", "swish"],
    "se_from": ["input", "expanded", "output"], "expand_conv": ["auto", "always", "never"],
    "shortcut": ["conv", "avgpool", "identity"], "op": ["conv", "maxpool", "avgpool", "pool"],
    "downsample": ["conv", "in_block", "none", {"type": "conv", "kernel": 2}], "norm_at": ["pooled", "map", "pre"],
    "order": ["norm_act", "act_norm"], "bias": [True, False, "false"], "act_after_sum": [True, False, 0],
    "kernel": [1, 2, 3, 5, 7, [3, 5], [3, 4], {"layers": [3, 5]}], "stride": [1, 2, 3],
    "ratio": [1, 0.25, 0.5, 2, 2.5, 6, [1, 3], {"layers": [3, 6]}], "groups": [1, 2, 4, 3],
    "padding": [0, 1, 2, 3], "resolution": [1, 2, 4, 7, [2, 16], {"min": 3, "max": 9, "step": 3}], "se": [0, 0.25, 0.5], "depth": [1, 2, [1, 3], 0], "width": [8, 16, 24, 32, [16, 32]],
}


def _random_value(rng: random.Random, old, key=None):
    if key in VOCAB and rng.random() < 0.7:
        return copy.deepcopy(rng.choice(VOCAB[key]))
    r = rng.random()
    if isinstance(old, (int, float)) and not isinstance(old, bool) and r < 0.4:
        return rng.choice([old + 1, old - 1, old * 2, old / 2, 0, -old, int(old) + 2])
    if r < 0.55:
        return rng.choice(NUMBERS)
    if r < 0.75:
        return rng.choice(WORDS)
    if r < 0.83:
        return rng.choice([True, False, None])
    if r < 0.93:
        return rng.sample(NUMBERS[:12], rng.randint(0, 3))
    return rng.choice([{}, {"layers": [3, 5]}, {"min": 1, "max": 3}, {"kernel": 4}])


def mutate(doc: dict, rng: random.Random) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(rng.choice([1, 1, 2, 3])):
        container, key = rng.choice(_paths(doc))
        op = rng.random()
        if op < 0.15 and isinstance(container, dict):
            del container[key]
        elif op < 0.25 and isinstance(container, dict):
            container[rng.choice(["colour", "se", "padding", "groups", "mixer_options", "bias", "norm_at",
                                  "channel_mixer_options", "stride"])] = _random_value(rng, None)
        elif op < 0.3 and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
        else:
            container[key] = _random_value(rng, container[key], key)
    return doc


def check_exact(sp: SearchSpace, seed: int, macs: bool) -> None:
    archs = {a.id: a for a in (sp.min(), sp.max(), sp.sample(seed=seed))}
    for arch in archs.values():
        c = nas.count(arch)
        model = nas.build(arch).eval()
        assert c.params == param_count(model), f"params: counted {c.params} built {param_count(model)} {arch}"
        shape = (1, sp.spec.in_channels, *(arch.resolution,) * sp.dims)
        plan = resolve(arch)
        with torch.no_grad():
            model.out_indices = tuple(range(len(plan.stages)))
            feats = model.forward_features(torch.zeros(shape))
            out = model(torch.zeros(shape))
        assert [tuple(f.shape[1:]) for f in feats] == [(s.channels, *s.out_spatial) for s in plan.stages]
        if sp.spec.head.type != "features":
            assert out.shape == (1, sp.spec.head.classes)
        if macs:
            ref = fvcore_macs(model, shape)
            assert abs(ref - c.macs) <= 0.01 * max(ref, 1), f"MACs: counted {c.macs} fvcore {ref} {arch}"


N_MUTANTS = 400


def test_fuzz_mutated_spaces_are_refused_in_one_line_or_exact():
    rng = random.Random(15)
    bases = [*SMALL, *(_reference(n) for n in REFERENCES)]
    accepted = refused = 0
    for i in range(N_MUTANTS):
        doc = mutate(bases[i % len(bases)] if i % 4 else rng.choice(SMALL), rng)
        try:
            sp = SearchSpace(parse_space(copy.deepcopy(doc), "fuzz.yaml"))
        except SpaceError as e:
            msg = str(e)
            assert msg.startswith("fuzz.yaml: ") and "\n" not in msg, msg
            refused += 1
            continue
        try:
            check_exact(sp, seed=i, macs=i % 3 == 0)
        except SpaceError as e:  # an accepted file must not fail later
            pytest.fail(f"accepted, then refused: {e}\n{yaml.safe_dump(doc)}")
        except Exception as e:
            raise AssertionError(f"mutant {i}: {type(e).__name__}: {e}\n{yaml.safe_dump(doc)}") from e
        accepted += 1
    print(f"fuzz: {accepted} accepted, {refused} refused")
    assert accepted >= N_MUTANTS // 10 and refused >= N_MUTANTS // 4, (accepted, refused)


def test_fuzz_cli_refuses_with_exit_2_and_one_line(tmp_path, capsys):
    from nas.cli.main import main

    rng = random.Random(3)
    seen = 0
    for i in range(60):
        doc = mutate(rng.choice(SMALL), rng)
        try:
            SearchSpace(parse_space(copy.deepcopy(doc), "x"))
            continue
        except SpaceError:
            pass
        path = tmp_path / f"m{i}.yaml"
        path.write_text(yaml.safe_dump(doc))
        assert main(["space", "count", str(path), "--n", "2"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err, err
        seen += 1
        if seen == 8:
            break
    assert seen == 8
