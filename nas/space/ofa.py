"""Adapter between ofa-mbv3 archs and Once-for-All's encoding: ks (20), e (20), d (5), r.

OFA lists 4 slots per elastic stage; stage s uses its first d[s] slots. Unused slots carry no meaning:
decoding ignores them, encoding fills them with the smallest choice (3).
"""
from __future__ import annotations

from collections.abc import Sequence

from nas.errors import SpaceError
from nas.space.arch import Arch
from nas.space.space import SearchSpace, load_space

SLOTS = 4
STAGES = 5


def _space(space: SearchSpace | None) -> SearchSpace:
    space = space or load_space("ofa-mbv3")
    if len(space.stages) != STAGES + 1:
        raise SpaceError(f"space {space.name}: not an OFA MobileNetV3 layout (1 fixed + 5 elastic stages)")
    return space


def from_ofa(ks: Sequence[int], e: Sequence[int], d: Sequence[int], r: int,
             space: SearchSpace | None = None) -> Arch:
    """The arch of an OFA (ks, e, d, r) encoding."""
    space = _space(space)
    if len(ks) != STAGES * SLOTS or len(e) != STAGES * SLOTS or len(d) != STAGES:
        raise SpaceError(f"OFA encoding: expected 20 ks, 20 e, 5 d; got {len(ks)}, {len(e)}, {len(d)}")
    first = space.stages[0]
    stages = [{"depth": 1, "width": first.widths[0], "layers": [{"mixer": "mbconv"}]}]
    for s in range(STAGES):
        st = space.stages[s + 1]
        layers = [{"mixer": "mbconv", "kernel": int(ks[s * SLOTS + i]), "ratio": int(e[s * SLOTS + i])}
                  for i in range(int(d[s]))]
        stages.append({"depth": int(d[s]), "width": st.widths[0], "layers": layers})
    return space.make_arch({"resolution": int(r), "stem": space.spec.stem_widths[0], "stages": stages},
                           source="OFA encoding")


def to_ofa(arch: Arch) -> dict[str, list[int] | int]:
    """OFA's (ks, e, d, r) encoding of an ofa-mbv3 arch."""
    _space(arch.space)
    ks, e, d = [], [], []
    for st in arch.stages[1:]:
        d.append(st.depth)
        for i in range(SLOTS):
            lc = st.layers[i] if i < st.depth else None
            ks.append(int(lc.kernel) if lc else 3)
            e.append(int(lc.ratio) if lc else 3)
    return {"ks": ks, "e": e, "d": d, "r": arch.resolution}
