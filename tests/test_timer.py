"""Latency-measurement protocol (nas.profile.timer) and machine provenance (nas.profile.machine)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from nas.errors import NASError, ProfileError
from nas.profile import MACHINE_KEYS, Measurement, Protocol, Timer, machine_info, measure, summarize

FAST = dict(warmup=3, warmup_min_s=0.005, repeats=12, min_time_s=0.01)


def tiny_net(channels: int = 16) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, channels, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(channels, channels, 3, padding=1),
    )


def check_stats(m: Measurement, protocol: Protocol) -> None:
    assert m.median_ms > 0
    assert m.min_ms <= m.p25_ms <= m.median_ms <= m.p75_ms
    assert m.mean_ms > 0 and m.std_ms >= 0
    assert m.n >= protocol.repeats
    assert m.rel_spread == pytest.approx((m.p75_ms - m.p25_ms) / m.median_ms)
    assert m.stable == (m.rel_spread <= protocol.max_rel_spread)
    assert 1 <= m.attempts <= protocol.remeasure + 1


@pytest.mark.parametrize("backend", ["torch-cpu", "onnxruntime"])
def test_measure_stats_and_ordering(backend: str) -> None:
    protocol = Protocol(backend=backend, **FAST)
    net = tiny_net(32)
    # same network, 4x the pixels: 4x the MACs with the same number of ops. At 32 channels and 24 px the convs
    # take ~0.2 ms, so the per-call overhead (and a slowed attempt on a loaded CI core) cannot hide the ratio.
    small = measure(net, (32, 24, 24), protocol)
    big = measure(net, (32, 48, 48), protocol)
    check_stats(small, protocol)
    check_stats(big, protocol)
    assert big.median_ms > 1.5 * small.median_ms, (small, big)
    assert (small.exporter is not None) == (backend == "onnxruntime")
    json.dumps(big.to_dict())


def test_threads_and_training_flag_restored() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = tiny_net(4).train()
        measure(net, (4, 8, 8), Protocol(threads=1, **FAST))
        assert torch.get_num_threads() == 2
        assert net.training and all(m.training for m in net.modules())
    finally:
        torch.set_num_threads(before)


def test_unstable_entries_are_remeasured() -> None:
    protocol = Protocol(max_rel_spread=0.0, remeasure=2, **FAST)
    m = measure(tiny_net(4), (4, 8, 8), protocol)
    assert m.attempts == 3 or (m.stable and m.rel_spread == 0.0)


def test_outliers_dropped() -> None:
    m = summarize([1.0, 1.01, 0.99, 1.02, 0.98] * 6 + [50.0, 80.0])
    assert m.dropped == 2 and m.n == 30
    assert m.median_ms == pytest.approx(1.0)
    assert m.std_ms < 0.05 and m.stable


def test_timer_caches_ort_sessions() -> None:
    timer = Timer(Protocol(backend="onnxruntime", **FAST))
    net = tiny_net(4)
    a = timer.measure(net, (4, 8, 8), cache_key="net")
    b = timer.measure(net, (4, 8, 8), cache_key="net")
    assert len(timer._sessions) == 1 and a.median_ms > 0 and b.median_ms > 0


def test_errors() -> None:
    with pytest.raises(ProfileError, match="backend 'tpu' unknown; choose from torch-cpu, onnxruntime"):
        Protocol(backend="tpu")
    with pytest.raises(ProfileError, match="threads"):
        Protocol(threads=0)
    with pytest.raises(ProfileError, match="unknown field"):
        Protocol.from_dict({"backend": "torch-cpu", "wramup": 3})
    with pytest.raises(ProfileError, match="input of shape"):
        measure(tiny_net(4), (3, 8, 8), Protocol(**FAST))  # wrong channel count
    assert issubclass(ProfileError, NASError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_gpu() -> None:
    with pytest.raises(
        ProfileError, match="backend torch-cuda: no CUDA device here; choose from torch-cpu, onnxruntime"
    ):
        measure(tiny_net(4), (4, 8, 8), Protocol(backend="torch-cuda", **FAST))


def test_protocol_round_trip() -> None:
    p = Protocol(backend="onnxruntime", threads=2, batch=4, repeats=50, max_rel_spread=0.1)
    d = p.to_dict()
    assert Protocol.from_dict(d) == p
    assert Protocol.from_dict(yaml.safe_load(yaml.safe_dump(d))) == p
    assert Protocol.from_dict({}) == Protocol()


def test_machine_info_keys() -> None:
    info = machine_info(Protocol(threads=1))
    assert tuple(info) == MACHINE_KEYS
    assert info["threads"] == 1 and info["backend"] == "torch-cpu"
    assert info["cpu_cores_logical"] >= 1 and info["torch_version"]
    assert info["gpu_name"] is None
    assert len(info["hostname_sha256"]) == 16
    assert info["timestamp_utc"].endswith("+00:00")
    assert yaml.safe_load(yaml.safe_dump(info)) == info  # plain types only
