"""Start-up time of the CLI: each command's wall time beside the interpreter's own (``python -c pass``).

A command should import only what it uses (issue 12: ``nas --version``, ``nas --help`` and ``nas space list``
in at most 1 s on 2 cores). Prints min / median / max over ``--runs`` runs of each, measured side by side.

    python bench/startup.py --runs 5
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "nas --version": [sys.executable, "-m", "nas.cli.main", "--version"],
    "nas --help": [sys.executable, "-m", "nas.cli.main", "--help"],
    "nas space list": [sys.executable, "-m", "nas.cli.main", "space", "list"],
    "import nas": [sys.executable, "-c", "import nas"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.runs):  # interleaved, so drift hits every command alike
        for name, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<16} {'min s':>7} {'median s':>9} {'max s':>7} {'minus python':>13}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<16} {min(ts):7.3f} {med:9.3f} {max(ts):7.3f} {med - base:13.3f}")


if __name__ == "__main__":
    main()
