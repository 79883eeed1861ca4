"""Benchmark the model family: training-step time, memory and MFU per decoder variant, query and batch
scaling, encoder scan backends, full-image renders.

    python -m ginr.bench [--preset reference|quick|cpu] [--out DIR] [--only NAME...] [--compile]
                         [--peak-tflops X]

Writes results.json, results.md, memory_vs_queries.png and ms_per_step.png to --out and prints the
markdown. ``--only`` keeps the cases whose name contains one of the given strings (or matches one as a
glob), e.g. ``--only main/ff_ff queries/``. A case that runs out of GPU memory is recorded as OOM.
"""

import argparse
import datetime
import fnmatch
import functools
import gc
import json
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ginr.benchcases import (
    Case,
    Timing,
    median_ms,
    model_flops,
    peak_rate,
    run_encoder,
    run_render,
    run_train,
)
from ginr.benchreport import markdown, plot_memory_vs_queries, plot_ms_per_step
from ginr.compose import compose_config
from ginr.config import prepare
from ginr.ops import backend as scan_backend

VARIANTS = {
    "resblock": ("experiment=mamba_ginr",),
    "attn_ff": ("experiment=scent_attn", "decoder.attn_impl=sdpa"),
    "attn_ff_naive": ("experiment=scent_attn", "decoder.attn_impl=naive"),
    "ff_ff": ("experiment=scent_ff",),
    "xattn_ff": ("experiment=scent_xattn",),
    "scent": ("experiment=scent",),
}
SWEEP_VARIANTS = ("ff_ff", "xattn_ff", "resblock", "attn_ff")
RENDER_VARIANTS = ("ff_ff", "resblock", "xattn_ff", "scent")  # attn_ff mixes queries: no chunking
CHECKPOINTING = ("decoder.checkpoint=true", "encoder.checkpoint=true")
CPU_SIZES = (
    "encoder.dim=32", "encoder.depth=1", "encoder.mlp_dim=64", "encoder.patch_size=4", "encoder.num_latents=16",
    "encoder.d_state=4", "encoder.heads=2", "encoder.dim_head=8", "decoder.hidden_dim=32", "decoder.num_layers=2",
    "decoder.heads=2", "decoder.dim_head=8", "decoder.num_fourier=8", "data.resolution=8",
)  # fmt: skip


@dataclass(frozen=True)
class Preset:
    sizes: tuple[str, ...]
    batch: int
    queries: int  # the main table decodes every pixel
    sweep: tuple[int, ...]
    sweep_batch: int
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    groups: tuple[str, ...]
    render_size: int
    chunks: tuple[int, ...]
    timing: Timing
    budget_s: float | None  # cases left when it is spent are recorded as skipped
    lean_chunks: tuple[int, ...] = (64, 256)  # trainer.checkpoint_queries of the memory-lean cases


ALL_GROUPS = ("main", "lean", "queries", "batch", "encoder", "render")
PRESETS = {
    # sweep batch 4: the 16x point (16384 queries) fits on an 80 GB GPU for every block type
    "reference": Preset((), 64, 1024, (1024, 4096, 16384, 65536), 4, (16, 64), ("bf16", "fp32"), ALL_GROUPS,
                        1024, (65536, 16384), Timing(3, 8, 20.0), 330.0),
    "quick": Preset((), 64, 1024, (1024, 4096, 16384), 4, (), ("bf16",), ("main", "queries"),
                    1024, (), Timing(2, 5, 10.0), 240.0),
    "cpu": Preset(CPU_SIZES, 2, 64, (16, 64, 256), 2, (2, 4), ("bf16", "fp32"), ALL_GROUPS,
                  16, (64, 16), Timing(1, 2, 2.0), None, (16,)),
}  # fmt: skip


def build_cases(preset: Preset, *, compile: bool) -> list[Case]:
    """Every case of ``preset``, in the order they run: bf16 first, fp32 last (the slowest)."""
    main = lambda v, p, ck: Case(
        f"main/{v}/{p}/ckpt-{'on' if ck else 'off'}", "main", v, VARIANTS[v] + (CHECKPOINTING if ck else ()),
        precision=p, checkpoint=ck, batch=preset.batch, queries=preset.queries,
    )  # fmt: skip
    cases = [main(v, "bf16", ck) for ck in (False, True) for v in VARIANTS] if "main" in preset.groups else []
    if "queries" in preset.groups:
        cases += [
            Case(f"queries/{v}/{q}", "queries", v, VARIANTS[v], batch=preset.sweep_batch, queries=q)
            for v in SWEEP_VARIANTS for q in preset.sweep
        ]  # fmt: skip
    if "batch" in preset.groups:
        cases += [
            Case(f"batch/ff_ff/{b}", "batch", "ff_ff", VARIANTS["ff_ff"], batch=b, queries=preset.queries)
            for b in preset.batches
        ]
    if "encoder" in preset.groups:
        cases += [
            Case(
                f"encoder/{b}", "encoder", "encoder", (f"encoder.backend={b}",), batch=preset.batch, backend=b
            )
            for b in ("cuda", "torch")
        ]
    if "render" in preset.groups:
        cases += [
            Case(f"render/{v}/chunk{c}", "render", v, VARIANTS[v], batch=1, queries=preset.render_size**2,
                 chunk=c, render_size=preset.render_size)
            for v in RENDER_VARIANTS for c in preset.chunks
        ]  # fmt: skip
    if "main" in preset.groups:
        cases += [
            main(v, p, ck) for p in preset.precisions if p != "bf16" for ck in (False, True) for v in VARIANTS
        ]
    if "lean" in preset.groups:  # memory-lean mode: checkpointed query chunks + encoder checkpointing
        cases += [
            Case(f"lean/{v}/chunk{c}", "lean", v, VARIANTS[v] + (f"trainer.checkpoint_queries={c}", CHECKPOINTING[1]),
                 checkpoint=True, batch=preset.batch, queries=preset.queries)
            for v in ("ff_ff", "xattn_ff") for c in preset.lean_chunks
        ]  # fmt: skip
    if compile:
        cases += [
            Case(f"compile/ff_ff/{p}", "compile", "ff_ff", VARIANTS["ff_ff"], precision=p, batch=preset.batch, queries=preset.queries, compile=True)
            for p in preset.precisions if p == "bf16"
        ]  # fmt: skip
    return cases


def selected(name: str, only: list[str] | None) -> bool:
    return not only or any(
        fnmatch.fnmatch(name, p) if any(c in p for c in "*?[") else p in name for p in only
    )


@functools.lru_cache(maxsize=16)
def _composed(groups: tuple[str, ...]) -> DictConfig:
    return compose_config(list(groups))


def case_config(overrides: tuple[str, ...]) -> DictConfig:
    """The prepared config: config-group choices composed by Hydra once, values merged on top."""
    groups = tuple(o for o in overrides if "." not in o.split("=", 1)[0])
    values = [o for o in overrides if o not in groups]
    return prepare(OmegaConf.merge(_composed(groups), OmegaConf.from_dotlist(values)))


def run_case(case: Case, preset: Preset, device: torch.device, args, done: list[dict]) -> dict:
    record = {**asdict(case), "status": "ok"}
    overrides = [*preset.sizes, *case.overrides, f"trainer.precision={case.precision}",
                 f"data.batch_size={case.batch}", "trainer.cpu_overrides=[]"]  # fmt: skip
    record["overrides"] = overrides
    if (
        case.group == "encoder"
        and case.backend == "cuda"
        and (device.type != "cuda" or scan_backend.selective_scan_cuda is None)
    ):
        record["status"] = "skipped: needs CUDA and the mamba_ssm kernels"
        return record
    cfg = case_config(tuple(overrides))
    record["config"] = OmegaConf.to_container(cfg, resolve=True)
    failure = None
    try:
        if case.group == "encoder":
            m = run_encoder(case, cfg, device, preset.timing)
        elif case.group == "render":
            m = run_render(case, cfg, device, preset.timing)
        else:
            m = run_train(case, cfg, device, preset.timing, count_flops=not case.compile)
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
    record |= {"ms": ms, "ms_all": m.ms, "peak_bytes": m.peak_bytes, "before_bytes": m.before_bytes}
    record["images_per_s"] = case.batch / (ms / 1000) if case.group != "render" else None
    record["activation_bytes"] = m.peak_bytes - m.before_bytes if m.peak_bytes is not None else None
    record["flops_counted"] = m.flops
    if case.group in ("main", "lean", "queries", "batch", "compile"):
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
    if r.get("images_per_s"):
        parts.append(f"{r['images_per_s']:.0f} img/s")
    if r["peak_bytes"] is not None:
        parts.append(f"peak {r['peak_bytes'] / 1e9:.2f} GB, activations {r['activation_bytes'] / 1e9:.2f} GB")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ginr.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="reference")
    parser.add_argument("--out", type=Path, default=Path("experiments/benchmarks"))
    parser.add_argument("--only", nargs="+", metavar="NAME")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd ff_ff steps")
    parser.add_argument("--peak-tflops", type=float, help="peak rate for MFU, in TFLOP/s, for every case")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cases = [c for c in build_cases(preset, compile=args.compile) if selected(c.name, args.only)]
    if not cases:
        parser.error(f"--only {' '.join(args.only)} matches no case")
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "command": " ".join(["python -m ginr.bench", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "preset": args.preset,
        "timing": asdict(preset.timing), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "scan_kernels": scan_backend.KERNEL_STATUS,
    }  # fmt: skip
    print(f"ginr.bench: {len(cases)} cases on {meta['device']}, torch {meta['torch']}", flush=True)
    threads = torch.get_num_threads()
    if device.type == "cpu":  # tiny ops on a busy machine: more threads only add barrier waits
        torch.set_num_threads(1)
    try:
        results = run_all(cases, preset, device, args)
    finally:
        torch.set_num_threads(threads)
    meta["wall_s"] = round(sum(r.get("wall_s", 0.0) for r in results), 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "cases": results}, indent=2))
    text = markdown(meta, results, preset)
    (args.out / "results.md").write_text(text)
    plot_memory_vs_queries(results, args.out / "memory_vs_queries.png")
    plot_ms_per_step(results, args.out / "ms_per_step.png")
    print(text)
    print(f"wrote {args.out}/results.json, results.md, memory_vs_queries.png, ms_per_step.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
