"""Where accuracy estimates run: in this process, or on Ray actors that keep the estimator resident.

Both take batches of (key, arch) and yield (key, score, seconds, worker) as each finishes. On Ray, an
actor that dies is restarted and its arch re-submitted once, so a lost worker costs one retried trial.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nas.errors import NASError
from nas.search.estimators import make_estimator
from nas.space import Arch, SearchSpace, load_space

_BUILT = {"estimators": 0}  # estimators built in this process: a supernet's checkpoint and data load once each


def _build(spec: str, space: SearchSpace) -> Any:
    """The estimator of ``spec``, counted, so a worker can show it built its estimator once, not per trial."""
    estimator = make_estimator(spec, space)
    _BUILT["estimators"] += 1
    return estimator


def _stats(estimator: Any, scored: int, worker: str) -> dict[str, Any]:
    """What a worker did: archs scored, estimators built in its process, BN recalibrations (supernet)."""
    ev = getattr(estimator, "_ev", None)
    return {"worker": worker, "scored": scored, "estimators_built": _BUILT["estimators"],
            "bn_calibrations": getattr(ev, "calibrations", None)}


def _absolute(spec: str) -> str:
    """``supernet:CKPT`` / ``predictor:FILE`` with an absolute path: workers need not share the caller's cwd."""
    kind, sep, arg = spec.partition(":")
    if kind in ("supernet", "predictor") and arg and Path(arg).exists():
        return f"{kind}:{Path(arg).resolve()}"
    return spec


class LocalEvaluator:
    """Evaluate in the calling process, one arch after another."""

    workers = 1

    def __init__(self, spec: str, space: SearchSpace, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.estimator = _build(spec, space)
        self.provenance = self.estimator.provenance
        self.scored = 0

    def run(self, batch: list[tuple[Any, Arch]]) -> Iterator[tuple[Any, float, float, str]]:
        for key, arch in batch:
            t0 = time.perf_counter()
            score = self.estimator.evaluate(arch)
            self.scored += 1
            yield key, score, time.perf_counter() - t0, f"local:{os.getpid()}"

    def worker_stats(self) -> list[dict[str, Any]]:
        """One row: this process's archs scored, estimators built and BN recalibrations."""
        return [_stats(self.estimator, self.scored, f"local:{os.getpid()}")]

    def close(self) -> None:
        pass


def _space_ref(space: SearchSpace) -> str:
    return str(Path(space.source_path).resolve()) if space.source_path is not None else space.name


class _EvalActor:
    """Ray actor body: builds the estimator once and scores arch dicts."""

    def __init__(self, spec: str, space_ref: str, threads: int):
        import torch

        torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS in workers; pin torch explicitly
        self.space = load_space(space_ref)
        self.estimator = _build(spec, self.space)
        self.scored = 0

    def provenance(self) -> str:
        return self.estimator.provenance

    def stats(self) -> dict[str, Any]:
        return _stats(self.estimator, self.scored, f"ray:{os.getpid()}")

    def evaluate(self, arch_dict: dict) -> tuple[float, float, str]:
        arch = self.space.arch_from_dict(arch_dict)
        t0 = time.perf_counter()
        score = self.estimator.evaluate(arch)
        self.scored += 1
        return score, time.perf_counter() - t0, f"ray:{os.getpid()}"


def _wait_restarted(actor: Any, timeout_s: float = 300.0) -> None:
    """Ray restarts a dead actor (max_restarts=-1); wait until it answers before giving it work."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(actor.provenance.remote(), timeout=timeout_s)
            return
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            if time.monotonic() > deadline:
                raise NASError("an evaluator worker died and did not come back within 5 minutes") from None
            time.sleep(0.5)


def init_ray(address: str | None, num_cpus: int) -> None:
    """Start embedded Ray (files kept under the temp dir, no dashboard) or join a cluster."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        ray.init(address=address, **kw)
    else:
        tmp = Path(tempfile.gettempdir()) / f"nas-ray-{os.getuid()}"
        ray.init(num_cpus=num_cpus, _temp_dir=str(tmp), **kw)


class RayEvaluator:
    """Evaluate on N Ray actors (embedded local Ray by default, or a cluster at ``address``)."""

    def __init__(self, spec: str, space: SearchSpace, workers: int, address: str | None = None,
                 threads: int = 1, max_retries: int = 1):
        import ray

        init_ray(address, workers * threads)
        self.workers = workers
        self.max_retries = max_retries
        remote = ray.remote(num_cpus=threads, max_restarts=-1, max_task_retries=0)(_EvalActor)
        self._actors = [remote.remote(_absolute(spec), _space_ref(space), threads) for _ in range(workers)]
        try:
            self.provenance = ray.get(self._actors[0].provenance.remote())
        except ray.exceptions.RayActorError as e:
            raise NASError(f"evaluator workers failed to start: {e}") from None
        self.retried = 0

    def run(self, batch: list[tuple[Any, Arch]]) -> Iterator[tuple[Any, float, float, str]]:
        import ray

        queue = [(key, arch.to_dict(), 0) for key, arch in batch]
        idle = list(self._actors)
        inflight: dict[Any, tuple[Any, dict, int, Any]] = {}
        while queue or inflight:
            while queue and idle:
                key, data, tries = queue.pop(0)
                actor = idle.pop(0)
                inflight[actor.evaluate.remote(data)] = (key, data, tries, actor)
            done, _ = ray.wait(list(inflight), num_returns=1)
            ref = done[0]
            key, data, tries, actor = inflight.pop(ref)
            try:
                score, secs, worker = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                if tries >= self.max_retries:
                    raise NASError(f"trial {key}: its evaluator worker died {tries + 1} times ({e})") from None
                self.retried += 1
                queue.insert(0, (key, data, tries + 1))
                _wait_restarted(actor)
                idle.append(actor)
                continue
            idle.append(actor)
            yield key, score, secs, worker

    def worker_stats(self) -> list[dict[str, Any]]:
        """Per actor: archs scored, estimators built in its process (1: built once, kept resident), BN
        recalibrations."""
        import ray

        return ray.get([a.stats.remote() for a in self._actors])

    def close(self) -> None:
        import ray

        for a in self._actors:
            ray.kill(a)
        self._actors = []
