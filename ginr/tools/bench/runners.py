"""Running benchmark cases: a training step exactly as training runs it (:mod:`ginr.engine.step`), the
encoder alone and full-image renders; each timed (CUDA events, median) and measured (peak memory, FLOPs)."""

import gc
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ginr.config import decoding
from ginr.engine.build import (
    amp_dtype,
    build_model,
    build_queries,
    build_train_step,
    encoder_tokens,
    synthetic_batch,
)
from ginr.engine.step import autocast, flop_counter
from ginr.ops import backend as scan_backend
from ginr.tools.bench.cases import Case, Preset, Timing, case_config, case_overrides


@dataclass
class Measurement:
    ms: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    before_bytes: int | None = None
    reserved_bytes: int | None = None  # the allocator's peak reservation: holds CUDA graphs' private pools
    flops: int | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[int], object], device: torch.device, timing: Timing, *, count_flops: bool = False
) -> Measurement:
    """Warm up, optionally count FLOPs on one call, then time ``fn(i)`` (i rotates the inputs). The case's
    time budget starts after the first call, so compilation does not cut the number of timed calls."""
    out, calls = Measurement(), 0
    for _ in range(max(1, timing.warmup)):
        tick = time.perf_counter()
        fn(calls)
        calls += 1
        _sync(device)
        step_s = time.perf_counter() - tick
        if calls == 1:
            started = time.perf_counter()
    if count_flops:
        with flop_counter() as counter:
            fn(calls)
            calls += 1
        out.flops = counter.get_total_flops()
    spent = time.perf_counter() - started
    left = max(timing.max_case_s - spent, 0.0)
    repeats = max(min(3, timing.repeats), min(timing.repeats, int(left / max(step_s, 1e-6))))
    if device.type == "cuda":
        gc.collect()
        _sync(device)
        torch.cuda.empty_cache()  # the reserved peak then counts what the timed calls hold
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
        out.reserved_bytes = torch.cuda.max_memory_reserved(device)
    else:
        for _ in range(repeats):
            tick = time.perf_counter()
            fn(calls)
            calls += 1
            out.ms.append(1000 * (time.perf_counter() - tick))
    return out


def run_train(
    cfg: DictConfig, device: torch.device, timing: Timing, count_flops: bool, profile: Path | None = None
) -> tuple[Measurement, dict]:
    """The training step of ``cfg`` on the inputs the trainer gives it: random images in the loader's
    shapes, each call with its step's query pixels and targets (drawn inside the timed call, as in
    training). Also returns what ran: batch, input resolution, pixels decoded per image."""
    step = build_train_step(cfg, device)
    queries = build_queries(cfg, step.model, device)
    batches = [synthetic_batch(cfg, device) for _ in range(3)]
    call = lambda i: step(*queries.inputs(i, batches[i % len(batches)]))
    images, coords, _ = queries.inputs(0, batches[0])
    ran = {"batch": images.shape[0], "resolution": images.shape[-1], "queries": coords.shape[-2]}
    measured = measure(call, device, timing, count_flops=count_flops)
    if profile is not None:
        write_profile(call, device, profile)
    return measured, ran


def write_profile(fn: Callable[[int], object], device: torch.device, path: Path, steps: int = 3) -> None:
    """The ops and kernels of ``steps`` calls of ``fn`` by total device time (torch.profiler), as a text
    table; on a GPU a second table by host time, which shows where a launch-bound step spends it."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for i in range(steps):
            fn(i)
        _sync(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    events = prof.key_averages()
    sorts = ("cuda_time_total", "self_cpu_time_total") if device.type == "cuda" else ("cpu_time_total",)
    tables = [f"by {k}:\n" + events.table(sort_by=k, row_limit=80, max_name_column_width=140) for k in sorts]
    path.write_text(f"{steps} steps\n" + "\n".join(tables) + "\n")


def run_encoder(
    case: Case, cfg: DictConfig, device: torch.device, timing: Timing, count_flops: bool = False,
    profile: Path | None = None,
) -> Measurement:  # fmt: skip
    """Encoder forward (autocast) + backward of a float32 loss on its latents; gradients reset each call."""
    with torch.device(device):
        encoder = instantiate(cfg.encoder).train()
    forward = torch.compile(encoder) if case.compile else encoder
    amp = amp_dtype(cfg.trainer.precision, device)
    images = [torch.rand(cfg.data.batch_size, cfg.data.channels, *2 * [cfg.data.resolution], device=device)
              for _ in range(3)]  # fmt: skip

    def call(i: int) -> None:
        with autocast(device, amp):
            latents = forward(images[i % len(images)])
        latents.float().square().mean().backward()
        encoder.zero_grad(set_to_none=True)

    measured = measure(call, device, timing, count_flops=count_flops)
    if profile is not None:
        write_profile(call, device, profile)
    return measured


def run_render(case: Case, cfg: DictConfig, device: torch.device, timing: Timing) -> Measurement:
    """``model.render`` of a ``render_size``^2 image from one latent set, no grad, under autocast, in chunks
    of ``case.chunk`` queries (None: the config's ``trainer.render_chunk``)."""
    with torch.device(device):
        model = build_model(cfg).eval()
    amp = amp_dtype(cfg.trainer.precision, device)
    image = torch.rand(1, cfg.data.channels, cfg.data.resolution, cfg.data.resolution, device=device)
    with torch.no_grad(), autocast(device, amp):
        latents = model.encode(image)
    size, chunk = case.render_size, case.chunk or cfg.trainer.render_chunk  # as run_case records

    def call(_: int) -> None:
        with autocast(device, amp):
            model.render(latents, size, size, images=image, chunk=chunk)

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
    keys = ("variant", "precision", "batch", "queries", "resolution")
    for r in done:
        if (
            r.get("flops_counted")
            and not r["checkpoint"]
            and not r["compile"]
            and all(r[k] == record[k] for k in keys)
        ):
            return r["flops_counted"]
    return None if record["compile"] else record["flops_counted"]


def run_case(case: Case, preset: Preset, device: torch.device, args, done: list[dict]) -> dict:
    record = {**asdict(case), "status": "ok"}
    overrides = case_overrides(case, preset)

    kernel = {
        "cuda": (scan_backend.selective_scan_cuda, "mamba_ssm"),
        "triton": (scan_backend.selective_scan_triton, "Triton"),
    }
    if (
        case.group == "encoder"
        and case.backend in kernel
        and (device.type != "cuda" or kernel[case.backend][0] is None)
    ):
        record["status"] = f"skipped: needs CUDA and the {kernel[case.backend][1]} kernels"
        return record
    cfg = case_config(overrides, case.queries, tuple(args.overrides))
    record["config"] = OmegaConf.to_container(cfg, resolve=True)
    record["batch"], record["resolution"] = cfg.data.batch_size, cfg.data.resolution
    record["tokens"] = encoder_tokens(cfg)
    if case.group == "render":
        record["chunk"] = case.chunk or cfg.trainer.render_chunk
    decoded = decoding(case.queries, cfg.data.resolution) if case.queries is not None else []
    record["overrides"] = [*overrides, *decoded, *args.overrides]  # what composes this config, in order
    failure = None
    try:
        profile = args.out / "profile" / f"{case.name.replace('/', '_')}.txt" if args.profile else None
        if case.group in ("encoder", "lengths"):
            m = run_encoder(
                case, cfg, device, preset.timing, count_flops=case.group == "lengths" and not case.compile,
                profile=profile,
            )  # fmt: skip
        elif case.group == "render":
            m = run_render(case, cfg, device, preset.timing)
        else:
            m, ran = run_train(cfg, device, preset.timing, count_flops=not case.compile, profile=profile)
            record |= ran  # what the step decoded, whatever the case asked
    except Exception as err:  # one failing case must not cost the others
        out_of_memory = isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()
        first_line = (str(err).strip().splitlines() or [""])[0]
        failure = "OOM" if out_of_memory else f"error: {type(err).__name__}: {first_line}"
        if not out_of_memory:
            traceback.print_exc()
    if failure is not None:  # outside the except block, so the traceback's frames (and tensors) are gone
        record["status"] = failure
        return record
    ms = median_ms(m)
    record |= {"ms": ms, "ms_all": m.ms, "peak_bytes": m.peak_bytes, "before_bytes": m.before_bytes,
               "reserved_bytes": m.reserved_bytes}  # fmt: skip
    record["images_per_s"] = record["batch"] / (ms / 1000) if case.group != "render" else None
    record["activation_bytes"] = m.peak_bytes - m.before_bytes if m.peak_bytes is not None else None
    record["flops_counted"] = m.flops
    if case.group == "lengths":
        record["tokens_per_s"] = record["batch"] * record["tokens"] / (ms / 1000)
    if case.group in ("main", "lean", "queries", "batch", "compile", "inputs", "lengths", "steps"):
        record["model_flops"] = model_flops(record, done)
        rate, record["peak_flops_note"] = peak_rate(case.precision, device, args.peak_tflops)
        record["peak_flops"] = rate
        if rate and record["model_flops"]:
            record["mfu"] = record["model_flops"] / (ms / 1000) / rate
    return record


def progress(i: int, total: int, started: float, r: dict) -> str:
    head = f"[{i:>3}/{total} {time.perf_counter() - started:6.0f}s] {r['name']}: "
    if r["status"] != "ok":
        return head + r["status"]
    parts = [f"{r['ms']:.1f} ms"]
    if r["group"] != "render":  # what ran, whatever the case asked
        decoded = f" x {r['queries']} queries" if r.get("queries") else ""
        parts.insert(0, f"batch {r['batch']}{decoded} at {r['resolution']} px")
    if r.get("images_per_s"):
        parts.append(f"{r['images_per_s']:.0f} img/s")
    if r["peak_bytes"] is not None:
        parts.append(f"peak {r['peak_bytes'] / 1e9:.2f} GB, activations {r['activation_bytes'] / 1e9:.2f} GB")
    if r.get("reserved_bytes") is not None:
        parts.append(f"reserved {r['reserved_bytes'] / 1e9:.2f} GB")
    if r.get("mfu") is not None:
        parts.append(f"MFU {100 * r['mfu']:.1f}%")
    return head + ", ".join(parts)


def run_all(cases: list[Case], preset: Preset, device: torch.device, args) -> list[dict]:
    started, results = time.perf_counter(), []
    for i, case in enumerate(cases, 1):
        tick = time.perf_counter()
        if preset.budget_s is not None and tick - started > preset.budget_s:
            record = {**asdict(case), "status": "skipped: time budget spent"}
        else:
            record = run_case(case, preset, device, args, results)
            if device.type == "cuda":  # free what the case (or its OOM) left behind
                gc.collect()
                torch.cuda.empty_cache()
            if case.compile:
                torch._dynamo.reset()
        record["wall_s"] = round(time.perf_counter() - tick, 2)
        results.append(record)
        print(progress(i, len(cases), started, record), flush=True)
    return results
