"""Latency measurement protocol: warm-up, many timed repeats, robust statistics, re-measurement.

One call of :func:`measure` times one module on one input shape under one :class:`Protocol`:

1. pin the thread count (``torch.set_num_threads``; restored afterwards), put the module in eval
   mode (restored afterwards), run under ``torch.inference_mode`` with one reused input tensor;
2. warm up: at least ``warmup`` calls and at least ``warmup_min_s`` seconds;
3. time single calls (``time.perf_counter_ns`` on CPU, CUDA events + synchronize on GPU) until at
   least ``repeats`` samples and ``min_time_s`` seconds of measured time;
4. drop outliers beyond ``median + 5 * MAD``, then report median / mean / quartiles / min / std;
5. if the interquartile spread relative to the median exceeds ``max_rel_spread`` the entry is
   re-measured up to ``remeasure`` more times and the attempt with the smallest spread is kept.

The ``onnxruntime`` backend exports the module to ONNX in memory and times ``session.run`` on the
CPU execution provider with ``intra_op_num_threads = threads``, one inter-op thread, sequential
execution and all graph optimisations.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nas.errors import ProfileError
from nas.profile.protocol import BACKENDS, ONNX_DTYPES, ONNX_EXPORTERS, Protocol  # noqa: F401

if TYPE_CHECKING:
    from nas.profile.quiet import SpeedCheck, SpeedMemory

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
OUTLIER_MADS = 5.0
# MAD can be 0 for very tight, quantised timings; never cut closer than this fraction of the median.
_MAD_FLOOR = 0.01
_TOPUP_ROUNDS = 3


@dataclass
class Measurement:
    """Statistics of one latency measurement, in milliseconds, after outlier removal.

    ``n`` samples entered the statistics, ``dropped`` were removed as outliers; ``attempts`` counts
    the measurements made (1 + re-measurements); ``exporter`` names the ONNX exporter used (onnxruntime
    backend only).
    """

    median_ms: float
    mean_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    std_ms: float
    n: int
    rel_spread: float
    stable: bool
    attempts: int = 1
    dropped: int = 0
    exporter: str | None = None
    p90_ms: float | None = None  # the 90th percentile of the kept samples (a tail-latency budget's statistic)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of plain Python types."""
        return asdict(self)


# --------------------------------------------------------------------------------------- statistics


def drop_outliers(samples_ms: Sequence[float]) -> np.ndarray:
    """Samples at or below ``median + 5 * MAD`` (MAD floored at 1% of the median)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        return x
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    limit = med + OUTLIER_MADS * max(mad, _MAD_FLOOR * abs(med))
    return x[x <= limit]


def summarize(samples_ms: Sequence[float], max_rel_spread: float = 0.05) -> Measurement:
    """Robust statistics of raw per-call latencies (ms): outliers dropped, then quartiles etc."""
    raw = np.asarray(samples_ms, dtype=np.float64)
    if raw.size == 0:
        raise ProfileError("no latency samples to summarise")
    x = drop_outliers(raw)
    p25, med, p75, p90 = (float(v) for v in np.percentile(x, [25, 50, 75, 90]))
    spread = (p75 - p25) / med if med > 0 else float("inf")
    return Measurement(
        median_ms=med,
        mean_ms=float(x.mean()),
        p25_ms=p25,
        p75_ms=p75,
        min_ms=float(x.min()),
        std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        n=int(x.size),
        rel_spread=float(spread),
        stable=bool(spread <= max_rel_spread),
        dropped=int(raw.size - x.size),
        p90_ms=p90,
    )


# ------------------------------------------------------------------------------------ timing loops


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect(0)  # young objects only: cheap, and timing runs with the collector off
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _cpu_timed(fn: Callable[[], object]) -> Callable[[], float]:
    """Wrap ``fn`` so one call returns its wall time in ms (perf_counter_ns)."""
    clock = time.perf_counter_ns

    def once() -> float:
        t0 = clock()
        fn()
        return (clock() - t0) * 1e-6

    return once


def _cuda_timed(fn: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """Wrap ``fn`` so one call returns its GPU time in ms (CUDA events, synchronised per call)."""
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    stream = torch.cuda.current_stream(device)

    def once() -> float:
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))

    return once


def _sample(once: Callable[[], float], protocol: Protocol) -> Measurement:
    """One attempt: collect samples until repeats and min_time_s are met (after outlier removal)."""
    samples: list[float] = []
    total = 0.0
    want = protocol.repeats
    min_ms = protocol.min_time_s * 1e3
    with _no_gc():
        for _ in range(_TOPUP_ROUNDS + 1):
            while len(samples) < want or total < min_ms:
                t = once()
                samples.append(t)
                total += t
            kept = drop_outliers(samples).size
            if kept >= protocol.repeats:
                break
            want = len(samples) + (protocol.repeats - kept)
    return summarize(samples, protocol.max_rel_spread)


def _warm_up(once: Callable[[], float], protocol: Protocol) -> None:
    done, spent_ms = 0, 0.0
    while done < protocol.warmup or spent_ms < protocol.warmup_min_s * 1e3:
        spent_ms += once()
        done += 1


def _run_protocol(once: Callable[[], float], protocol: Protocol) -> Measurement:
    """Warm up, measure, re-measure while unstable; keep the attempt with the smallest spread."""
    _warm_up(once, protocol)
    best = _sample(once, protocol)
    attempts = 1
    while not best.stable and attempts <= protocol.remeasure:
        attempts += 1
        again = _sample(once, protocol)
        if again.rel_spread < best.rel_spread:
            best = again
    best.attempts = attempts
    return best


# ------------------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Set ``torch.set_num_threads(threads)`` for the block and restore the previous value."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _full_shape(input_shape: Sequence[int], protocol: Protocol) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ProfileError(f"input_shape must be a tuple of ints, got {input_shape!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise ProfileError(
            f"input_shape must be non-empty positive ints (without batch), got {input_shape!r}"
        )
    return (protocol.batch, *shape)


def _example(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)


def _on(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The module on ``device``/``dtype``; a deep copy if it has to move, so the caller's is untouched."""
    tensors = list(module.parameters()) + list(module.buffers())
    floats = [t for t in tensors if t.is_floating_point()]
    if all(t.device == device for t in tensors) and all(t.dtype == dtype for t in floats):
        return module
    return copy.deepcopy(module).to(device=device, dtype=dtype)


def _check_runs(fn: Callable[[], object], shape: tuple[int, ...], backend: str) -> None:
    try:
        fn()
    except Exception as e:  # a model that cannot run on this input is a user error
        raise ProfileError(
            f"backend {backend}: module failed on an input of shape {shape} "
            f"(batch + input_shape): {type(e).__name__}: {e}"
        ) from e


def _require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        others = ", ".join(b for b in BACKENDS if b != "torch-cuda")
        raise ProfileError(f"backend torch-cuda: no CUDA device here; choose from {others}")
    return torch.device("cuda", torch.cuda.current_device())


# ---------------------------------------------------------------------------------------- backends


def _measure_torch(module: torch.nn.Module, shape: tuple[int, ...], protocol: Protocol) -> Measurement:
    dtype = DTYPES[protocol.dtype]
    cuda = protocol.backend == "torch-cuda"
    device = _require_cuda() if cuda else torch.device("cpu")
    model = _on(module, device, dtype)
    x = _example(shape, dtype, device)
    with pinned_threads(protocol.threads), _eval_mode(model), torch.inference_mode():

        def call() -> object:
            return model(x)

        _check_runs(call, shape, protocol.backend)
        if cuda:
            torch.cuda.synchronize(device)
            once = _cuda_timed(call, device)
        else:
            once = _cpu_timed(call)
        result = _run_protocol(once, protocol)
        if cuda:
            torch.cuda.synchronize(device)
    return result


def export_onnx(
    module: torch.nn.Module, input_shape: Sequence[int], protocol: Protocol | None = None
) -> tuple[bytes, str]:
    """Export ``module`` for input ``(batch, *input_shape)`` to ONNX bytes; return (bytes, exporter used).

    The batch is fixed (latency is measured at one batch size). ``auto`` uses the legacy TorchScript
    exporter, which is several times faster here, and falls back to the dynamo exporter if it fails.
    """
    protocol = protocol or Protocol(backend="onnxruntime")
    shape = _full_shape(input_shape, protocol)
    model = _on(module, torch.device("cpu"), DTYPES[protocol.dtype])
    x = _example(shape, DTYPES[protocol.dtype])
    order = {"auto": ("legacy", "dynamo"), "legacy": ("legacy",), "dynamo": ("dynamo",)}[
        protocol.onnx_exporter
    ]
    from nas.models import onnx

    errors = []
    with _eval_mode(model):
        for exporter in order:
            buf = io.BytesIO()
            try:
                onnx.export(model, x, buf, exporter)
            except Exception as e:
                errors.append(f"{exporter}: {type(e).__name__}: {e}")
                continue
            data = buf.getvalue()
            if data:
                return data, exporter
            errors.append(f"{exporter}: produced no bytes")
    raise ProfileError(f"backend onnxruntime: ONNX export failed for input {shape}: " + "; ".join(errors))


def ort_session(onnx_bytes: bytes, protocol: Protocol) -> Any:
    """An onnxruntime CPU session configured by the protocol (threads, sequential, all optimisations)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ProfileError("backend onnxruntime: the onnxruntime package is not installed") from None
    from nas.models import onnx

    try:
        return onnx.session(onnx_bytes, threads=protocol.threads, sequential=True)
    except Exception as e:
        raise ProfileError(f"backend onnxruntime: cannot load the exported model: {e}") from e


def measure_session(session: Any, input_shape: Sequence[int], protocol: Protocol) -> Measurement:
    """Time ``session.run`` of an onnxruntime session on one reused input ``(batch, *input_shape)``."""
    shape = _full_shape(input_shape, protocol)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ProfileError(f"backend onnxruntime: expected a model with one input, got {len(inputs)}")
    feed = {inputs[0].name: _example(shape, DTYPES[protocol.dtype]).numpy()}

    def call() -> object:
        return session.run(None, feed)

    _check_runs(call, shape, protocol.backend)
    with pinned_threads(protocol.threads):
        return _run_protocol(_cpu_timed(call), protocol)


# -------------------------------------------------------------------------------------- public API


def measure(module: torch.nn.Module, input_shape: tuple[int, ...], protocol: Protocol) -> Measurement:
    """Measure the latency of ``module`` on an input of shape ``(protocol.batch, *input_shape)``.

    ``input_shape`` excludes the batch dimension (e.g. ``(3, 224, 224)`` or ``(64, 1024)``).
    The caller's module is left as it was (training flag restored; moved/cast copies are used when
    the protocol needs another device or dtype); the torch thread count is restored.
    """
    return Timer(protocol).measure(module, input_shape)


class Timer:
    """A protocol bound to a measurer, with an optional cache of onnxruntime sessions.

    Sessions are cached only under an explicit ``cache_key`` (a module object can change structure,
    e.g. a supernet with another active subnet, so object identity is not a safe key).
    """

    def __init__(self, protocol: Protocol | None = None) -> None:
        self.protocol = protocol or Protocol()
        self._sessions: dict[tuple[Any, tuple[int, ...]], tuple[Any, str]] = {}

    def measure(
        self, module: torch.nn.Module, input_shape: tuple[int, ...], cache_key: Any = None
    ) -> Measurement:
        """See :func:`measure`; ``cache_key`` (hashable) reuses the ORT session built for it."""
        protocol = self.protocol
        shape = _full_shape(input_shape, protocol)
        if protocol.backend != "onnxruntime":
            return _measure_torch(module, shape, protocol)
        key = (cache_key, tuple(input_shape))
        if cache_key is not None and key in self._sessions:
            session, exporter = self._sessions[key]
        else:
            data, exporter = export_onnx(module, input_shape, protocol)
            session = ort_session(data, protocol)
            if cache_key is not None:
                self._sessions[key] = (session, exporter)
        result = measure_session(session, input_shape, protocol)
        result.exporter = exporter
        return result

    def clear(self) -> None:
        """Forget cached onnxruntime sessions."""
        self._sessions.clear()


# ------------------------------------------------------------------------------------------ the sentinel


SENTINEL_VERSION = 1  # bump when the workload of cpu_sentinel changes (remembered times become void)


def cpu_sentinel(threads: int = 1, runs: int = 15) -> Callable[[], float]:
    """A fixed small reference workload (dense, depthwise and pointwise conv, a linear; about 7 MMACs, ~1 ms
    on one thread) that times itself: one call returns the median of ``runs`` runs in ms. The quiet guard's
    :class:`~nas.profile.quiet.SpeedCheck` calls it around every window to notice a slowed machine."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.Conv2d(32, 32, 3, padding=1, groups=32),
        torch.nn.Conv2d(32, 64, 1), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(64, 64)).eval()
    x = torch.randn(1, 16, 32, 32)

    def call() -> object:
        with torch.inference_mode():
            return net(x)

    once = _cpu_timed(call)

    def time_once() -> float:
        with pinned_threads(threads), _no_gc():
            once()
            once()  # warm
            return float(np.median([once() for _ in range(runs)]))

    return time_once


def speed_check(protocol: Protocol) -> SpeedCheck | None:
    """The :class:`~nas.profile.quiet.SpeedCheck` for measurements under ``protocol`` (None on a GPU, whose
    timings the CPU's speed does not set)."""
    from nas.profile.quiet import SpeedCheck

    if protocol.backend == "torch-cuda":
        return None
    return SpeedCheck(cpu_sentinel(protocol.threads), memory=speed_memory(protocol.threads))


def speed_memory(threads: int) -> SpeedMemory:
    """Where this host's full-speed sentinel time is remembered between commands: one small JSON file per host
    and thread count in the user's cache (:func:`nas.paths.cache_dir`), valid until the host reboots or torch
    changes."""
    from nas.paths import cache_dir
    from nas.profile.machine import boot_time, host_id
    from nas.profile.quiet import SpeedMemory

    host = host_id()
    key = {"host": host, "boot": boot_time(), "threads": int(threads), "torch": torch.__version__,
           "sentinel": SENTINEL_VERSION}
    return SpeedMemory(cache_dir("host-speed") / f"{host}-{int(threads)}t.json", key)
