"""Describe the machine a latency was measured on (provenance for device profiles).

:func:`machine_info` returns a plain dict of plain types (str / int / None) meant for a YAML file.
The host name is stored only as a short SHA-256 digest, so profiles can be told apart without
publishing host names.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

from nas.profile.protocol import Protocol

# Every key machine_info returns, in order. GPU keys are None unless the backend is torch-cuda.
MACHINE_KEYS = (
    "cpu_model",
    "cpu_arch",
    "cpu_cores_physical",
    "cpu_cores_logical",
    "cpus_available",
    "cpu_governor",
    "threads",
    "backend",
    "batch",
    "dtype",
    "gpu_name",
    "gpu_memory_bytes",
    "cuda_version",
    "gpu_driver_version",
    "torch_version",
    "onnxruntime_version",
    "numpy_version",
    "python_version",
    "os",
    "hostname_sha256",
    "timestamp_utc",
)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical processor (empty list where there is none)."""
    text = _read("/proc/cpuinfo")
    if not text:
        return []
    blocks: list[dict[str, str]] = []
    for chunk in text.strip().split("\n\n"):
        entry = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def cpu_model() -> str:
    """CPU model name ('AMD EPYC 7B13', 'Apple M2', ...), best effort."""
    for entry in _cpuinfo():
        for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
            if entry.get(key):
                return entry[key]
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def host_id() -> str:
    """A short stable id of this host (a digest of the host name and the CPU model; no host name is stored)."""
    return hashlib.sha256(f"{socket.gethostname()}|{cpu_model()}".encode()).hexdigest()[:8]


def boot_time() -> float | None:
    """When this host booted (epoch seconds), from /proc/stat; None where unknown."""
    text = _read("/proc/stat") or ""
    for line in text.splitlines():
        if line.startswith("btime"):
            return float(line.split()[1])
    return None


def physical_cores() -> int | None:
    """Physical core count: distinct (package, core) pairs in /proc/cpuinfo; None if unknown."""
    cores = {
        (e.get("physical id", "0"), e["core id"]) for e in _cpuinfo() if "core id" in e and "processor" in e
    }
    if cores:
        return len(cores)
    # no core ids in /proc/cpuinfo (some ARM kernels): count distinct sibling sets in sysfs
    root = "/sys/devices/system/cpu"
    try:
        cpus = [d for d in os.listdir(root) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        return None
    sets = {_read(f"{root}/{d}/topology/thread_siblings_list") for d in cpus}
    sets.discard(None)
    return len(sets) or None


def _cpus_available() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0))
        except OSError:
            return None
    return os.cpu_count()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _gpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "gpu_name": None,
        "gpu_memory_bytes": None,
        "cuda_version": None,
        "gpu_driver_version": None,
    }
    import torch

    info["cuda_version"] = torch.version.cuda
    if not torch.cuda.is_available():
        return info
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    info["gpu_name"] = str(props.name)
    info["gpu_memory_bytes"] = int(props.total_memory)
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            info["gpu_driver_version"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def machine_info(protocol: Protocol) -> dict[str, Any]:
    """Plain-typed description of this machine and the protocol's execution settings.

    Keys are :data:`MACHINE_KEYS`; values are str, int or None.
    """
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    gpu = (
        _gpu_info()
        if protocol.backend == "torch-cuda"
        else {"gpu_name": None, "gpu_memory_bytes": None, "cuda_version": None, "gpu_driver_version": None}
    )
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_arch": platform.machine() or None,
        "cpu_cores_physical": physical_cores(),
        "cpu_cores_logical": os.cpu_count(),
        "cpus_available": _cpus_available(),
        "cpu_governor": governor.strip() if governor else None,
        "threads": protocol.threads,
        "backend": protocol.backend,
        "batch": protocol.batch,
        "dtype": protocol.dtype,
        **gpu,
        "torch_version": _version("torch"),
        "onnxruntime_version": _version("onnxruntime"),
        "numpy_version": _version("numpy"),
        "python_version": platform.python_version(),
        "os": platform.platform(),
        "hostname_sha256": hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:16],
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return {key: info[key] for key in MACHINE_KEYS}
