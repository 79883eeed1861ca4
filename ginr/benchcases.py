"""Benchmark runners: a training step as ``ginr.engine.loop.Trainer.train_step`` runs it, the encoder alone,
and full-image renders; each timed (CUDA events, median) and measured (peak memory, FLOPs)."""

import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from unittest import mock

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from ginr.config import build_model
from ginr.data.coords import image_to_values, pixel_grid
from ginr.engine.evaluation import autocast
from ginr.engine.setup import amp_dtype, param_groups
from ginr.ops import backend as scan_backend


@dataclass(frozen=True)
class Case:
    """One measurement. ``group``: main | queries | batch | encoder | render | compile."""

    name: str
    group: str
    variant: str
    overrides: tuple[str, ...]
    precision: str = "bf16"
    checkpoint: bool = False
    batch: int = 64
    queries: int = 1024
    compile: bool = False
    backend: str | None = None  # encoder cases
    chunk: int | None = None  # render cases
    render_size: int | None = None  # render cases: the image side


@dataclass(frozen=True)
class Timing:
    warmup: int = 3
    repeats: int = 8
    max_case_s: float = 20.0  # fewer repeats when steps are slow, so no case runs away


@dataclass
class Measurement:
    ms: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    before_bytes: int | None = None
    flops: int | None = None


def make_inputs(batch: int, channels: int, resolution: int, queries: int, device: torch.device | str):
    """(images, coords, targets): every pixel on the shared grid as the loop does when ``queries`` is
    the pixel count, otherwise ``queries`` random coordinates in [-1, 1] per image."""
    images = torch.rand(batch, channels, resolution, resolution, device=device)
    if queries == resolution**2:
        return images, pixel_grid(resolution, resolution, device=device), image_to_values(images)
    coords = torch.rand(batch, queries, 2, device=device) * 2 - 1
    return images, coords, torch.rand(batch, queries, channels, device=device)


class TrainStep:
    """Trainer.train_step without data loading: autocast forward, float32 MSE, GradScaler, clipping,
    the finite check (a host sync, as in the loop), AdamW, zero_grad(set_to_none=True)."""

    def __init__(self, cfg: DictConfig, device: torch.device, *, compile: bool = False):
        self.device, self.clip = device, cfg.optim.grad_clip
        with torch.device(device):
            self.model = build_model(cfg)
        self.amp = amp_dtype(cfg.trainer.precision, device)
        factory = instantiate(cfg.optim.optimizer)
        self.optimizer = factory(param_groups(self.model, cfg.optim.optimizer.get("weight_decay", 0.0)))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.net = torch.compile(self.model) if compile else self.model
        self.model.train()

    def __call__(self, images: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            pred = self.net(images, coords)
        loss = F.mse_loss(pred.float(), targets)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        if bool(finite) or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[int], object], device: torch.device, timing: Timing, *, count_flops: bool = False
) -> Measurement:
    """Warm up, optionally count FLOPs on one call, then time ``fn(i)`` (i rotates the inputs)."""
    out, calls = Measurement(), 0
    started = time.perf_counter()
    for _ in range(max(1, timing.warmup)):
        tick = time.perf_counter()
        fn(calls)
        calls += 1
        _sync(device)
        step_s = time.perf_counter() - tick
    if count_flops:
        with FlopCounterMode(display=False) as counter:
            fn(calls)
            calls += 1
        out.flops = counter.get_total_flops()
    spent = time.perf_counter() - started
    left = max(timing.max_case_s - spent, 0.0)
    repeats = max(min(3, timing.repeats), min(timing.repeats, int(left / max(step_s, 1e-6))))
    if device.type == "cuda":
        gc.collect()
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        out.before_bytes = torch.cuda.memory_allocated(device)
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(repeats)
        ]
        for start, end in events:
            start.record()
            fn(calls)
            end.record()
            calls += 1
        _sync(device)
        out.ms = [start.elapsed_time(end) for start, end in events]
        out.peak_bytes = torch.cuda.max_memory_allocated(device)
    else:
        for _ in range(repeats):
            tick = time.perf_counter()
            fn(calls)
            calls += 1
            out.ms.append(1000 * (time.perf_counter() - tick))
    return out


def run_train(
    case: Case, cfg: DictConfig, device: torch.device, timing: Timing, count_flops: bool
) -> Measurement:
    step = TrainStep(cfg, device, compile=case.compile)
    sets = [
        make_inputs(case.batch, cfg.data.channels, cfg.data.resolution, case.queries, device)
        for _ in range(3)
    ]
    return measure(lambda i: step(*sets[i % len(sets)]), device, timing, count_flops=count_flops)


def run_encoder(case: Case, cfg: DictConfig, device: torch.device, timing: Timing) -> Measurement:
    """Encoder forward (autocast) + backward of a float32 loss on its latents; gradients reset each call."""
    with torch.device(device):
        encoder = instantiate(cfg.encoder).train()
    amp = amp_dtype(cfg.trainer.precision, device)
    images = [
        torch.rand(case.batch, cfg.data.channels, cfg.data.resolution, cfg.data.resolution, device=device)
        for _ in range(3)
    ]

    def call(i: int) -> None:
        with autocast(device, amp):
            latents = encoder(images[i % len(images)])
        latents.float().square().mean().backward()
        encoder.zero_grad(set_to_none=True)

    with mock.patch.dict(os.environ):  # the env var would override the backend being compared
        os.environ.pop(scan_backend.ENV_VAR, None)
        return measure(call, device, timing)


def run_render(case: Case, cfg: DictConfig, device: torch.device, timing: Timing) -> Measurement:
    """``model.render`` of a ``render_size``^2 image from one latent set, no grad, under autocast."""
    with torch.device(device):
        model = build_model(cfg).eval()
    amp = amp_dtype(cfg.trainer.precision, device)
    image = torch.rand(1, cfg.data.channels, cfg.data.resolution, cfg.data.resolution, device=device)
    with torch.no_grad(), autocast(device, amp):
        latents = model.encode(image)
    size = case.render_size

    def call(_: int) -> None:
        with autocast(device, amp):
            model.render(latents, size, size, chunk=case.chunk)

    return measure(
        call,
        device,
        Timing(warmup=1, repeats=min(timing.repeats, 3), max_case_s=timing.max_case_s),
        count_flops=False,
    )


def median_ms(m: Measurement) -> float | None:
    return statistics.median(m.ms) if m.ms else None


# Dense peak rates (FLOP/s) per GPU: bf16/fp16 tensor cores, TF32 tensor cores, FP32 without tensor cores.
PEAKS = {
    "H100 PCIe": (756e12, 378e12, 51.2e12),
    "H100 NVL": (835e12, 417.5e12, 60e12),
    "H100": (989.4e12, 494.7e12, 66.9e12),
    "H200": (989.4e12, 494.7e12, 66.9e12),
    "A100": (312e12, 156e12, 19.5e12),
}


def peak_rate(precision: str, device: torch.device, override: float | None) -> tuple[float | None, str]:
    """(peak FLOP/s, how it was chosen) for MFU."""
    if override is not None:
        return override * 1e12, f"--peak-tflops {override:g}"
    if device.type != "cuda":
        return None, "no MFU on CPU (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    key = next((k for k in PEAKS if k in name), None)
    bf16, tf32, fp32 = PEAKS[key or "H100"]
    known = f"{key} dense" if key else f"unknown GPU {name!r}: H100 SXM dense rates assumed"
    if precision in ("bf16", "fp16"):
        return bf16, f"{bf16 / 1e12:g} TFLOP/s ({known} bf16 tensor cores)"
    if torch.backends.cuda.matmul.allow_tf32:
        return tf32, f"{tf32 / 1e12:g} TFLOP/s ({known} TF32 tensor cores: TF32 matmuls are enabled)"
    return fp32, f"{fp32 / 1e12:g} TFLOP/s ({known} FP32 without tensor cores: TF32 matmuls are off)"


def model_flops(record: dict, done: list[dict]) -> int | None:
    """FLOPs of the model without recomputation. Checkpointed and compiled cases take them from the
    matching eager case without checkpointing: FlopCounterMode counts a recomputed forward too, and does
    not see compiled kernels. With no such case, a checkpointed case keeps its own count."""
    if not record["checkpoint"] and not record["compile"]:
        return record["flops_counted"]
    keys = ("variant", "precision", "batch", "queries")
    for r in done:
        if (
            r.get("flops_counted")
            and not r["checkpoint"]
            and not r["compile"]
            and all(r[k] == record[k] for k in keys)
        ):
            return r["flops_counted"]
    return None if record["compile"] else record["flops_counted"]
