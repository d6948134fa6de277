"""Print every reference backbone's counted figures beside the built model, fvcore and the published ones.

    python bench/reference_figures.py [NAME ...]     # default: every file in search_spaces/reference/

Columns: counted params (analytic), built params (the nn.Module), published params; counted MACs, fvcore
MACs (conv/linear/matmul only) and the published GMACs; per stage, the output channels x size and the
counted params. Published figures are torchvision's at 224x224 (see tests/test_references.py).
"""
from __future__ import annotations

import sys

from nas.cost.count import count
from nas.cost.reference import fvcore_macs, param_count
from nas.models.build import build
from nas.paths import builtin_dir
from nas.space import load_space
from nas.space.resolve import resolve

PUBLISHED = {
    "resnet18": (11_689_512, 1.82), "resnet50": (25_557_032, 4.09), "efficientnet_b0": (5_288_548, 0.39),
    "mobilenetv3_large": (5_483_032, 0.22), "mobilenetv3_small": (2_542_856, 0.06), "mobilenet_v2": (3_504_872, 0.30),
    "convnext_tiny": (28_589_128, 4.46),
}


def main(names: list[str]) -> int:
    names = names or sorted(p.stem for p in (builtin_dir("search_spaces") / "reference").glob("*.yaml"))
    print("| backbone | counted params | built | published | counted GMACs | fvcore GMACs | published |")
    print("|---|---|---|---|---|---|---|")
    stages = {}
    for name in names:
        sp = load_space(name)
        arch = sp.the_arch(name)
        c = count(arch)
        model = build(arch)
        res = arch.resolution
        ref = fvcore_macs(model, (1, sp.spec.in_channels, *(res,) * sp.dims))
        pub_p, pub_m = PUBLISHED.get(name, (None, None))
        print(f"| {name} | {c.params:,} | {param_count(model):,} | {f'{pub_p:,}' if pub_p else '-'} | "
              f"{c.macs / 1e9:.4f} | {ref / 1e9:.4f} | {pub_m if pub_m else '-'} |")
        plan = resolve(arch)
        stages[name] = [f"{s.channels}x{'x'.join(map(str, s.out_spatial))} ({sc.params:,})"
                        for s, sc in zip(plan.stages, c.stages)]
    print()
    for name, rows in stages.items():
        print(f"{name}: " + ", ".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
