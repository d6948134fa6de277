"""ProfileSettings: what a profiling run measures and how (plain data, no heavy imports).

The ``nas profile`` flags are made from these fields (``nas.cli.flags``), so a setting is declared once,
here, with its help text; :mod:`nas.profile.run` measures what they say.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.profile.protocol import BACKENDS, DTYPE_NAMES, Protocol
from nas.profile.quiet import DEFAULT_LIMIT

if TYPE_CHECKING:
    from nas.space import SearchSpace


def _f(default: Any, help: str = "", **meta: Any) -> Any:  # noqa: A002 - the flag's help
    if default is MISSING:
        return field(metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


# The block table has thousands of entries: fewer repeats and less time per entry than end-to-end
# archs (which get the full default Protocol). Both are recorded in profile.yaml.
BLOCK_PROTOCOL = {
    "warmup": 3,
    "warmup_min_s": 0.01,
    "repeats": 10,
    "min_time_s": 0.03,
    "max_rel_spread": 0.1,
    "remeasure": 1,
}
# End-to-end archs (tens of ms each on one thread): >= 20 timed runs and >= 0.2 s after 5 warm-up runs;
# entries whose interquartile spread exceeds 5% of the median are re-measured (Protocol defaults).
ARCH_PROTOCOL: dict[str, Any] = {"warmup": 5, "repeats": 20}


@dataclass
class ProfileSettings:
    """What to profile and how (everything a re-run must repeat to resume)."""

    spaces: Sequence[str | SearchSpace] = _f(
        MISSING, "space(s) to profile (repeatable)", flag="--space", action="append", metavar="SPACE",
        show_default=False)
    device: str | None = _f(
        None, "profile name (default: cpu-<model>-<threads>t-b<batch> of this machine)", show_default=False)
    backend: str = _f("torch-cpu", choices=BACKENDS, show_default=False)
    threads: int = _f(1, "threads, pinned")
    batch: int = _f(1, show_default=False)
    dtype: str = _f("float32", choices=tuple(DTYPE_NAMES), show_default=False)
    resolutions: Sequence[int] | None = _f(
        None, "only these input resolutions/lengths", flag="--resolution", type=int, nargs="+", metavar="R",
        show_default=False)
    n_calib: int = _f(100, "end-to-end archs for calibration", flag="--calib")
    n_holdout: int = _f(100, "held-out end-to-end archs", flag="--holdout")
    calib_spread: str = _f(
        "log_macs", "calibration archs evenly spaced in log-MACs (default: as many small archs as large ones) "
        "or uniform samples; held-out archs are always uniform", choices=("log_macs", "uniform"),
        show_default=False)
    seed: int = _f(0, show_default=False)
    max_minutes: float | None = _f(
        None, "stop cleanly after this long; re-run to continue", type=float, show_default=False)
    root: Path | None = _f(None, "profiles folder (default ./hardware_profiles)", type=Path, show_default=False)
    description: str = _f("", show_default=False)
    block_protocol: dict[str, Any] = field(default_factory=lambda: dict(BLOCK_PROTOCOL), metadata={"cli": False})
    arch_protocol: dict[str, Any] = field(default_factory=lambda: dict(ARCH_PROTOCOL), metadata={"cli": False})
    flush_s: float = field(default=10.0, metadata={"cli": False})
    flush_every: int = field(default=50, metadata={"cli": False})
    recheck: bool = _f(True, "do not re-measure unstable entries at the end", flag="--no-recheck")
    other_load_limit: float | None = field(default=DEFAULT_LIMIT, metadata={"cli": False})
    """CPUs other processes may use while measuring (None: no guard); its flag takes 'off' too."""

    def protocols(self) -> tuple[Protocol, Protocol]:
        """(end-to-end protocol, block protocol)."""
        base = dict(backend=self.backend, threads=self.threads, batch=self.batch, dtype=self.dtype)
        return Protocol(**base, **self.arch_protocol), Protocol(**base, **self.block_protocol)
