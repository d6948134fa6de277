"""The NAS-Bench-201 cell space: arch strings, validation, enumeration and seeded sampling.

A NAS-Bench-201 cell is a DAG on 4 nodes; node ``j`` sums ``op(node i)`` over the 6 edges ``i < j``.
An architecture is therefore 6 operation names, one per edge, written as

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|

where group ``j - 1`` lists the edges into node ``j`` and ``~i`` names the source node. Here an arch is
kept as a plain tuple of 6 op names in that order (edges 0->1, 0->2, 1->2, 0->3, 1->3, 2->3), wrapped
in the frozen value object :class:`NB201Arch` when an id and a dict form are wanted.

No isomorphism canonicalisation is done: two strings that describe the same function (e.g. differing
only on edges that cannot reach the output) are distinct archs here, as they are in the benchmark.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from nas.errors import SpaceError
from nas.plugins import load as load_part

#: The five candidate operations, in the benchmark's own order.
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: The 6 edges (source, target) in arch-string order.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

NUM_NODES = 4
NUM_EDGES = len(EDGES)
NUM_ARCHS = len(OPS) ** NUM_EDGES  # 15,625

Ops = tuple[str, ...]


def _check_op(op: object, where: str) -> str:
    if not isinstance(op, str) or op not in OPS:
        raise SpaceError(f"{where}: unknown op {op!r}; allowed: {', '.join(OPS)}")
    return op


def validate_ops(ops: Sequence[str]) -> Ops:
    """Check a sequence of 6 op names and return it as a tuple; errors name the edge and the op."""
    if isinstance(ops, str) or not isinstance(ops, Sequence):
        raise SpaceError(f"NB201 arch: expected a sequence of {NUM_EDGES} op names, got {type(ops).__name__}")
    if len(ops) != NUM_EDGES:
        raise SpaceError(f"NB201 arch: expected {NUM_EDGES} ops (one per edge), got {len(ops)}")
    return tuple(_check_op(op, f"NB201 arch: edge {i}->{j}") for op, (i, j) in zip(ops, EDGES))


def parse_arch(text: str) -> Ops:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into 6 op names (edge order of :data:`EDGES`).

    Raises :class:`SpaceError` naming the faulty part (node group, token, op) and what is allowed.
    """
    if not isinstance(text, str):
        raise SpaceError(f"NB201 arch string: expected str, got {type(text).__name__}")
    s = text.strip()
    groups = s.split("+")
    if len(groups) != NUM_NODES - 1:
        raise SpaceError(
            f"NB201 arch string {text!r}: expected {NUM_NODES - 1} node groups separated by '+', "
            f"got {len(groups)} (form: |op~0|+|op~0|op~1|+|op~0|op~1|op~2|)"
        )
    ops: list[str] = []
    for j, group in enumerate(groups, start=1):
        if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
            raise SpaceError(
                f"NB201 arch string {text!r}: node {j} group {group!r} must start and end with '|'"
            )
        tokens = group[1:-1].split("|")
        if len(tokens) != j:
            raise SpaceError(
                f"NB201 arch string {text!r}: node {j} needs {j} inputs (op~0 .. op~{j - 1}), "
                f"got {len(tokens)} in {group!r}"
            )
        for i, token in enumerate(tokens):
            op, sep, src = token.partition("~")
            if not sep or src != str(i):
                raise SpaceError(
                    f"NB201 arch string {text!r}: node {j} token {token!r} must be 'op~{i}' "
                    f"(inputs listed in order 0..{j - 1})"
                )
            ops.append(_check_op(op, f"NB201 arch string {text!r}: edge {i}->{j}"))
    # ops were collected per target node; that is already EDGES order
    return tuple(ops)


def format_arch(ops: Sequence[str]) -> str:
    """Format 6 op names (edge order of :data:`EDGES`) as the benchmark's arch string."""
    ops = validate_ops(ops)
    groups, k = [], 0
    for j in range(1, NUM_NODES):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


def as_ops(arch: str | Sequence[str] | NB201Arch) -> Ops:
    """Accept an arch string, a sequence of 6 op names or an :class:`NB201Arch`; return validated ops."""
    if isinstance(arch, NB201Arch):
        return arch.ops
    if isinstance(arch, str):
        return parse_arch(arch)
    return validate_ops(arch)


def index_of(arch: str | Sequence[str] | NB201Arch) -> int:
    """Position of an arch in :func:`enumerate_archs` order (base-5 digits over edges, first edge most significant)."""
    idx = 0
    for op in as_ops(arch):
        idx = idx * len(OPS) + OPS.index(op)
    return idx


def arch_at(index: int) -> Ops:
    """Inverse of :func:`index_of`."""
    if not isinstance(index, int) or not 0 <= index < NUM_ARCHS:
        raise SpaceError(f"NB201 arch index {index!r}: must be an int in [0, {NUM_ARCHS})")
    digits = []
    for _ in range(NUM_EDGES):
        index, d = divmod(index, len(OPS))
        digits.append(OPS[d])
    return tuple(reversed(digits))


def enumerate_archs() -> Iterator[Ops]:
    """All 15,625 cells, in :func:`index_of` order."""
    return itertools.product(OPS, repeat=NUM_EDGES)


def sample_archs(n: int, seed: int = 0, *, replace: bool = False) -> list[Ops]:
    """``n`` cells drawn uniformly with a seeded RNG (without replacement unless ``replace``)."""
    if not isinstance(n, int) or n < 0:
        raise SpaceError(f"NB201 sample size {n!r}: must be a non-negative int")
    rng = random.Random(seed)
    if replace:
        idx = [rng.randrange(NUM_ARCHS) for _ in range(n)]
    else:
        if n > NUM_ARCHS:
            raise SpaceError(f"NB201 sample size {n}: at most {NUM_ARCHS} without replacement")
        idx = rng.sample(range(NUM_ARCHS), n)
    return [arch_at(i) for i in idx]


@dataclass(frozen=True)
class NB201Arch:
    """A NAS-Bench-201 cell as a frozen, hashable value: 6 op names in :data:`EDGES` order."""

    ops: Ops

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", validate_ops(self.ops))

    @classmethod
    def from_str(cls, text: str) -> NB201Arch:
        return cls(parse_arch(text))

    @classmethod
    def from_dict(cls, data: dict) -> NB201Arch:
        if not isinstance(data, dict) or set(data) - {"space", "ops"} or "ops" not in data:
            raise SpaceError("NB201 arch dict: expected keys 'ops' (list of 6 op names) and optional 'space'")
        if data.get("space", "nb201") != "nb201":
            raise SpaceError(f"NB201 arch dict: space {data['space']!r} is not 'nb201'")
        return cls(tuple(data["ops"]) if isinstance(data["ops"], list) else data["ops"])

    def to_dict(self) -> dict:
        return {"space": "nb201", "ops": list(self.ops)}

    def save(self, path) -> object:  # noqa: ANN001 - a path
        """Write the arch as YAML (atomically), with its id (``nas.load_arch`` reads it back)."""
        from nas.io import write_yaml

        return write_yaml(path, {"id": self.id, **self.to_dict()})

    @property
    def key(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal archs have equal keys."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """Short stable hash of the canonical JSON form."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]

    @property
    def index(self) -> int:
        return index_of(self.ops)

    @property
    def space(self) -> NB201Space:
        """The space the arch belongs to (its family: what builds and counts it)."""
        return _SPACE

    def __str__(self) -> str:
        return format_arch(self.ops)


class NB201Space:
    """The NB201 cell space as a built-in space (``nas.load_space("nb201")``), CIFAR-10 skeleton.

    Offers what the space tools need (sample, min/max, make_arch, encode, size); ``nas.build`` and
    ``nas.count`` accept its archs. It is a benchmark space with ground truth, not an Optuna search space.
    """

    name = "nb201"
    dims = 2
    source_path = None
    num_classes = 10
    resolution = 32
    description = "NAS-Bench-201 cell space (4 nodes, 6 edges, 5 ops) on the CIFAR skeleton; ground truth in shared/"

    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> NB201Arch:
        rng = rng or random.Random(seed)
        return NB201Arch(arch_at(rng.randrange(NUM_ARCHS)))

    def sample_many(self, n: int, seed: int = 0) -> list[NB201Arch]:
        return [NB201Arch(ops) for ops in sample_archs(n, seed, replace=True)]

    def min(self, rng: random.Random | None = None) -> NB201Arch:
        """All edges 'none'; with ``rng`` a random cell (an edge's op is its only choice, so none is smaller)."""
        return self.sample(rng=rng) if rng is not None else NB201Arch(("none",) * NUM_EDGES)

    def max(self, rng: random.Random | None = None) -> NB201Arch:
        """All edges 3x3 conv; with ``rng`` a random cell (as :meth:`min`)."""
        return self.sample(rng=rng) if rng is not None else NB201Arch(("nor_conv_3x3",) * NUM_EDGES)

    def make_arch(self, data: dict, source: str = "<arch>") -> NB201Arch:
        try:
            return NB201Arch.from_dict({k: v for k, v in data.items() if k != "id"})
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None

    arch_from_dict = make_arch

    def encode(self, arch: NB201Arch):  # noqa: ANN201 - numpy array
        import numpy as np

        v = np.zeros((NUM_EDGES, len(OPS)), dtype=np.float32)
        for e, op in enumerate(arch.ops):
            v[e, OPS.index(op)] = 1.0
        return v.ravel()

    def log10_size(self) -> float:
        import math

        return math.log10(NUM_ARCHS)

    # ---- the SpaceFamily protocol: evolution and search parameters ---------------------------------------
    def encoding_names(self) -> list[str]:
        return [f"edge{i}{j}:{op}" for i, j in EDGES for op in OPS]

    def mutate(self, arch: NB201Arch, prob: float = 0.1, seed: int | None = None,
               rng: random.Random | None = None) -> NB201Arch:
        """Resample each edge's op with probability ``prob`` (at least one edge changes)."""
        rng = rng or random.Random(seed)
        ops = [rng.choice(OPS) if rng.random() < prob else op for op in arch.ops]
        if tuple(ops) == arch.ops:
            e = rng.randrange(NUM_EDGES)
            ops[e] = rng.choice([o for o in OPS if o != ops[e]])
        return NB201Arch(tuple(ops))

    def crossover(self, a: NB201Arch, b: NB201Arch, seed: int | None = None,
                  rng: random.Random | None = None) -> NB201Arch:
        """Uniform crossover over the edges."""
        rng = rng or random.Random(seed)
        return NB201Arch(tuple(x if rng.random() < 0.5 else y for x, y in zip(a.ops, b.ops)))

    def search_choices(self) -> dict[str, list]:
        """One search parameter per edge: ``e<i><j>`` over the 5 ops."""
        return {f"e{i}{j}": list(OPS) for i, j in EDGES}

    def arch_from_params(self, params: dict) -> NB201Arch:
        return NB201Arch(tuple(params.get(f"e{i}{j}", OPS[0]) for i, j in EDGES))

    def params_of(self, arch: NB201Arch, rng: random.Random) -> dict:
        return {f"e{i}{j}": op for (i, j), op in zip(EDGES, arch.ops)}

    def input_shape(self, arch: NB201Arch) -> tuple[int, ...]:
        return (3, self.resolution, self.resolution)

    @property
    def classes(self) -> int:
        return self.num_classes

    # ---- the SpaceFamily protocol: description, networks, costs, supernet -----------------------------
    family = "nb201"

    def structure(self) -> str:
        return "cell"

    def is_fixed(self) -> bool:
        return False

    def build(self, arch: NB201Arch, features_only: bool = False, out_indices: tuple[int, ...] | None = None,
              drop_path: float | None = None) -> Any:
        """The CIFAR cell network of ``arch`` (nas.nb201.network; one output, no feature pyramid)."""
        return load_part("nas.nb201.network:build")(arch, self.num_classes)

    def count(self, arch: NB201Arch) -> Any:
        """Params, MACs and memory of the cell network of ``arch`` (nas.nb201.network.count_arch)."""
        return load_part("nas.nb201.network:count_arch")(arch, self.num_classes)

    def supernet(self, seed: int = 0, init: bool = True, sharing: str = "mlp") -> Any:
        """One-shot weight sharing per edge op (nas.nb201.supernet.NB201Supernet). Every op of an edge owns its
        weights and a cell has no channel mixer around them, so both ``sharing`` modes build the same net."""
        if sharing not in ("mlp", "none"):
            raise SpaceError(f"supernet: sharing {sharing!r} unknown; choose from mlp, none")
        return load_part("nas.nb201.supernet:NB201Supernet")(self, seed=seed, init=init)

    def checkpoint_state(self) -> dict[str, Any]:
        """The family name: the cell space has nothing else to record."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"NB201Space({NUM_ARCHS} cells)"


_SPACE = NB201Space()

