"""Throughput, latency, peak memory and FLOPs of the zoo's models: the measurements behind ``zoo bench``.

Per model, on synthetic L/ab batches of the requested size: inference (eval mode, no grad, decoding included),
one generator-only training step and, for models with a discriminator, one G+D step, both the real
:meth:`zoo.trainable.Trainable.step` that the training loop repeats. Each phase
runs ``warmup`` untimed iterations (more while they are still speeding up: see :func:`warm_up`), then ``iters``
timed ones (CUDA: events around each iteration, read after one synchronize; CPU: ``perf_counter`` per
iteration). Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and, on CPU, the process's peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs`` at the start of each phase) minus its RSS at that start
(after glibc's ``malloc_trim`` returns freed heap pages). Achieved FLOP/s is FLOPs per image
(:func:`zoo.harness.cost.count_flops`) times inference images/s, set against a matmul peak measured in the same run and
dtype.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import gc
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.factory import Predictor
from zoo.harness.cost import count_flops, count_parameters
from zoo.runtime import AmpMode, Runtime, amp_dtype, pick_device, synchronize, unwrap
from zoo.spec import ModelSpec, StageSpec, adapt_to_image_size
from zoo.trainable import Trainable

MATMUL_SIZE = 2048
_MIB = 2**20


@dataclass(frozen=True)
class BenchSettings:
    """What ``zoo bench`` measures with."""

    device: str = "auto"
    amp: AmpMode = "no"
    channels_last: bool = False
    compile: bool = False
    batch_size: int = 8
    image_size: int = 256
    iters: int = 10
    warmup: int = 3
    self_check: bool = False  # also time inference with torch.utils.benchmark.Timer

    def runtime(self) -> Runtime:
        """The device and autocast dtype these settings ask for."""
        device = pick_device(self.device)
        return Runtime(device, amp_dtype(self.amp, device))


# --------------------------------------------------------------------------------------------- timing


WARMUP_CAP = 4  # warm-up runs at most this many times the requested calls
WARMUP_SPEEDUP = 0.8  # a warm-up call this much faster than the one before means warm-up is still going on


def _timed_call(fn: Callable[[], object], device: torch.device) -> float:
    tick = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - tick


def warm_up(fn: Callable[[], object], device: torch.device, calls: int) -> list[float]:
    """Call ``fn`` ``calls`` times, then on while each call is still clearly faster than the one before (at most
    ``WARMUP_CAP * calls`` in all; with fewer than 2 calls there is nothing to compare); returns their seconds.

    First calls pay for lazy set-up (oneDNN kernel generation, cuDNN autotuning, allocator growth, compilation),
    which for some models lasts more calls than asked for: timing them would report a warm-up, not a speed.
    """
    seconds: list[float] = []
    while len(seconds) < calls or (
        2 <= len(seconds) < WARMUP_CAP * calls and seconds[-1] < WARMUP_SPEEDUP * seconds[-2]
    ):
        seconds.append(_timed_call(fn, device))
    return seconds


def time_iterations(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls of ``fn`` after :func:`warm_up` with ``warmup`` calls.

    On CUDA each call sits between two events, read after a single synchronize at the end, so the queue is
    never drained between calls; elsewhere each call is timed with ``perf_counter`` and a synchronize.
    """
    warm_up(fn, device, warmup)
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) / 1e3 for start, end in events]
    return [_timed_call(fn, device) for _ in range(iters)]


@dataclass(frozen=True)
class Timing:
    """Per-iteration seconds of one phase at one batch size."""

    seconds: list[float]
    batch_size: int

    @property
    def images_per_s(self) -> float:
        """Images over total time: ``batch * iters / sum(seconds)``."""
        return self.batch_size * len(self.seconds) / sum(self.seconds)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.seconds)) * 1e3

    @property
    def p90_ms(self) -> float:
        """90th percentile (linear interpolation, as ``numpy.percentile``)."""
        return float(np.percentile(self.seconds, 90)) * 1e3


def timer_median(fn: Callable[[], object], iters: int) -> float:
    """Median seconds per call of ``fn`` by ``torch.utils.benchmark.Timer`` (same thread count as torch's)."""
    from torch.utils.benchmark import Timer  # imported here: it logs about CUDA at import on CPU-only machines

    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(iters).median


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = MATMUL_SIZE, iters: int = 3) -> float:
    """Measured matmul FLOP/s of ``device`` in ``dtype``: the best of ``iters`` (size x size) @ (size x size)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    seconds = time_iterations(lambda: torch.mm(a, b), device, warmup=1, iters=iters)
    return 2 * size**3 / min(seconds)


# --------------------------------------------------------------------------------------------- memory

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"no {field} in {_STATUS}")
    return int(match.group(1))


def memory_method(device: torch.device) -> str | None:
    """How :func:`peak_memory` measures on ``device``, or None where it cannot."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated minus the allocation at the start of the phase"
    if device.type == "cpu" and _CLEAR_REFS.exists() and _STATUS.exists():
        return "process peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS at the start of the phase"
    return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


@dataclass
class PeakMemory:
    """What :func:`peak_memory` found: bytes above the start of the phase, or None if not measurable."""

    bytes: int | None = None

    @property
    def mib(self) -> float | None:
        return None if self.bytes is None else self.bytes / _MIB


@contextmanager
def peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    """Measure the peak memory of the block above what was in use when it started (see :func:`memory_method`)."""
    found = PeakMemory()
    method = memory_method(device)
    if method is None:
        yield found
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield found
        torch.cuda.synchronize(device)
        found.bytes = torch.cuda.max_memory_allocated(device) - start
        return
    gc.collect()
    if (trim := _malloc_trim()) is not None:
        trim(0)  # hand freed heap back to the OS, so that RSS at the start counts live memory only
    _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
    start = _status_kib("VmRSS")
    yield found
    found.bytes = max(0, _status_kib("VmHWM") - start) * 1024


# --------------------------------------------------------------------------------------------- one model


def _generator_stage(spec: ModelSpec) -> StageSpec:
    """The stage the generator-only step uses: the first without a discriminator, else the first as plain L1."""
    for stage in spec.stages:
        if not stage.uses_discriminator:
            return stage
    return dataclasses.replace(spec.stages[0], loss={"l1": 1.0})


def _discriminator_stage(spec: ModelSpec) -> StageSpec | None:
    return next((stage for stage in spec.stages if stage.uses_discriminator), None)


class Workload:
    """A model on a synthetic batch, with one callable per measured phase.

    The training steps are :meth:`zoo.trainable.Trainable.step` itself, with the settings' device, autocast
    dtype, channels_last and compile, and Adam optimisers of the model's own stages.
    """

    def __init__(self, spec: ModelSpec, settings: BenchSettings, runtime: Runtime, batch: int) -> None:
        self.model = Trainable(spec, runtime, channels_last=settings.channels_last, compile=settings.compile)
        self.spec, self.runtime, self.batch = spec, runtime, batch
        generator = torch.Generator().manual_seed(0)
        size = settings.image_size
        L = torch.rand(batch, 1, size, size, generator=generator) * 2 - 1
        ab = (torch.rand(batch, 2, size, size, generator=generator) * 2 - 1) * 0.5  # values do not change the cost
        memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.L, self.ab = (x.to(runtime.device).contiguous(memory_format=memory_format) for x in (L, ab))
        self.g_stage = _generator_stage(spec)
        self.g_loss, self.g_optimizers = self.model.stage_loss(self.g_stage), self.model.optimizers(self.g_stage)
        self.gan_stage = _discriminator_stage(spec)
        if self.gan_stage is not None:
            self.gan_loss = self.model.stage_loss(self.gan_stage)
            self.gan_optimizers = self.model.optimizers(self.gan_stage)

    @property
    def generator(self) -> nn.Module:
        return self.model.generator

    def infer(self) -> None:
        """One inference batch: eval mode, no grad, under the autocast dtype, decoded to ab."""
        if self.generator.training:
            self.generator.eval()
        with torch.inference_mode():
            self.model.predict(self.L)

    def train_g(self) -> None:
        """One generator-only training step."""
        if not self.generator.training:
            self.generator.train()
        self.model.step(self.g_loss, self.L, self.ab, self.g_optimizers)

    def train_gd(self) -> None:
        """One step of the first stage with a discriminator: discriminator, then generator."""
        if self.gan_stage is None:
            raise ValueError(f"{self.spec.name} has no stage with a discriminator")
        if not self.generator.training:
            self.generator.train()
        self.model.step(self.gan_loss, self.L, self.ab, self.gan_optimizers)


def _timed(
    fn: Callable[[], object], settings: BenchSettings, device: torch.device, batch: int
) -> tuple[Timing, float | None]:
    """Timing and peak memory (MiB) of one phase."""
    with peak_memory(device) as memory:
        timing = Timing(time_iterations(fn, device, settings.warmup, settings.iters), batch)
    return timing, memory.mib


def measure(spec: ModelSpec, settings: BenchSettings, runtime: Runtime, batch: int) -> dict[str, Any]:
    """Every figure of one model at one batch size (see :mod:`zoo.harness.results` for the fields); OOM
    propagates."""
    device = runtime.device
    work = Workload(spec, settings, runtime, batch)
    discriminator = work.model.discriminator
    row: dict[str, Any] = {
        "params": count_parameters(work.generator),
        "d_params": None if discriminator is None else count_parameters(discriminator),
        # what inference runs: the predictor with the model's settings (a flip-averaged model runs two passes)
        "gflops": count_flops(Predictor.of(spec, unwrap(work.generator), work.model.decode),
                              (1, 1, settings.image_size, settings.image_size)) / 1e9,
    }
    inference, memory = _timed(work.infer, settings, device, batch)
    row |= {"infer_img_s": inference.images_per_s, "latency_ms_median": inference.median_ms,
            "latency_ms_p90": inference.p90_ms, "peak_mem_infer_mib": memory}
    if settings.self_check:
        row["timer_ratio"] = inference.median_ms / 1e3 / timer_median(work.infer, settings.iters)
    g_step, memory = _timed(work.train_g, settings, device, batch)
    row |= {"train_g_img_s": g_step.images_per_s, "peak_mem_train_mib": memory, "train_gd_img_s": None}
    if work.gan_stage is not None:
        gd_step, gd_memory = _timed(work.train_gd, settings, device, batch)
        row["train_gd_img_s"] = gd_step.images_per_s
        if memory is not None and gd_memory is not None:
            row["peak_mem_train_mib"] = max(memory, gd_memory)
    return row


def _release(device: torch.device) -> None:
    """Give back what a failed attempt held (it is unreachable once its exception is gone)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_model(spec: ModelSpec, settings: BenchSettings, runtime: Runtime, peak_flops: float | None) -> dict[str, Any]:
    """The results row of ``spec``: its figures, or its error; out of memory halves the batch and retries."""
    row: dict[str, Any] = {"model": spec.name, "error": None, "batch_size": settings.batch_size, "oom_retries": 0}
    try:
        spec, note = adapt_to_image_size(spec, settings.image_size)
        row |= {"generator": spec.generator.arch, "note": note}
        batch = settings.batch_size
        while True:
            out_of_memory = False
            try:
                row |= measure(spec, settings, runtime, batch)
            except torch.OutOfMemoryError:
                out_of_memory = True
            if not out_of_memory:
                break
            _release(runtime.device)
            if batch == 1:
                raise torch.OutOfMemoryError(f"out of memory even at batch size 1 ({row['oom_retries']} retries)")
            batch //= 2
            row["oom_retries"] += 1
            row["batch_size"] = batch
    except Exception as exc:  # noqa: BLE001 (one model failing is a row with its error; the others still run)
        row["error"] = f"{type(exc).__name__}: {exc}"
        _release(runtime.device)
        return row
    achieved = row["gflops"] * 1e9 * row["infer_img_s"]
    row["achieved_gflops_s"] = achieved / 1e9
    row["peak_fraction"] = None if not peak_flops else achieved / peak_flops
    return row


def bench_models(
    specs: Sequence[ModelSpec], settings: BenchSettings, echo: Callable[[str], None] = print
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for ``specs`` and the settings actually used (device, dtype, matmul peak, memory method ...)."""
    runtime = settings.runtime()
    dtype = runtime.amp_dtype or torch.float32  # what the models compute in
    echo(f"measuring the {dtype} matmul peak on {runtime.device} ({MATMUL_SIZE}x{MATMUL_SIZE}) ...")
    peak = matmul_peak(runtime.device, dtype, size=MATMUL_SIZE)
    used = dataclasses.asdict(settings) | {
        "device": str(runtime.device),
        "dtype": str(dtype).removeprefix("torch."),
        "matmul_peak_gflops_s": peak / 1e9,
        "matmul_size": MATMUL_SIZE,
        "memory_method": memory_method(runtime.device),
        "timing": ("CUDA events around each call, one synchronize after the timed loop" if runtime.device.type == "cuda"
                   else "perf_counter around each call (and a device synchronize)"),
        "warmup_rule": f"--warmup calls, then more while each is over {1 - WARMUP_SPEEDUP:.0%} faster than the one"
                       f" before (at most {WARMUP_CAP}x --warmup calls)",
    }
    rows = []
    for spec in specs:
        echo(f"benchmarking {spec.name} ...")
        rows.append(bench_model(spec, settings, runtime, peak))
    return rows, used
