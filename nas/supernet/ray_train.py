"""Data-parallel supernet training on Ray Train (``TorchTrainer``), on this machine or a cluster.

Each of N workers runs :class:`nas.supernet.train.SupernetTrainer` with its rank: it reads its shard of
every global batch, trains the same sandwich of subnets (the archs are seeded by ``(seed, step)``, so
workers agree without communicating) and the gradients are averaged with one all-reduce per step
(gloo on CPU, NCCL on GPU; Ray Train sets the process group up). Rank 0 writes the checkpoint,
metrics and evaluations into the run folder; a resume reloads that folder on every worker. On a
cluster the run folder (``--out``) and file-based data must be on storage every node can read.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from nas.errors import NASError, ParamError
from nas.supernet.config import TrainConfig


def _worker_loop(config: dict[str, Any]) -> None:
    import ray.train

    from nas.supernet.train import SupernetTrainer

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config.get("threads") or 1))
    cfg = TrainConfig.from_dict(config["cfg"])
    device = "cpu"
    if config.get("use_gpu"):
        import ray.train.torch

        device = str(ray.train.torch.get_device())
    trainer = SupernetTrainer(
        cfg, config["out"], resume=config["resume"], rank=rank, world=world, device=device, quiet=True
    )

    def report(metrics: dict[str, Any]) -> None:
        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    summary = trainer.fit(report=report)
    report({"step": summary["steps"], "finished": float(summary["finished"]), "done": 1.0})


def train_with_ray(
    cfg: TrainConfig,
    out: str | os.PathLike,
    workers: int,
    resume: bool = False,
    ray_address: str | None = None,
    use_gpu: bool | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Run the training on ``workers`` Ray Train workers; returns the last reported metrics."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise ParamError("workers", f": more than one needs Ray Train ({e})") from None
    if workers < 1:
        raise ParamError("workers", f"{workers}: must be at least 1")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not resume and (out / "checkpoint.safetensors").exists():
        raise NASError(
            f"{out}/checkpoint.safetensors: a run is already there; resume it, or choose another output folder"
        )
    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    started = False
    if not ray.is_initialized():
        ray.init(
            address=ray_address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        )
        started = True
    try:
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={
                "cfg": dataclasses.asdict(cfg),
                "out": str(out),
                "resume": resume,
                "use_gpu": use_gpu,
                "threads": threads,
            },
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": threads}
            ),
            run_config=RunConfig(name=f"supernet-{out.name}", storage_path=str(out / "ray")),
        )
        result = trainer.fit()
    finally:
        if started:
            ray.shutdown()
    if result.error is not None:
        raise NASError(f"Ray Train run failed: {type(result.error).__name__}: {result.error}")
    from nas.io import read_json

    state = read_json(out / "state.json")  # written by rank 0 with the last checkpoint
    return {
        "steps": state["step"],
        "total_steps": state["total_steps"],
        "finished": state["step"] >= state["total_steps"],
        "workers": state.get("workers"),
        "last": state.get("history", {}).get("last"),
        "eval": state.get("history", {}).get("eval"),
        "checkpoint": str(out / "checkpoint.safetensors"),
    }
