"""Benchmark the model family: training-step time, memory and MFU per decoder variant, query and batch
scaling, encoder scan backends, full-image renders.

    python -m ginr.tools.bench [--preset reference|quick|cpu|inputs|encoders] [--out DIR] [--only NAME...] [--compile]
                         [--peak-tflops X] [--set KEY=VALUE...]

Writes results.json, results.md, memory_vs_queries.png and ms_per_step.png to --out and prints the
markdown. ``--only`` keeps the cases whose name contains one of the given strings (or matches one as a
glob), e.g. ``--only main/scent_ff queries/``. A case that runs out of GPU memory is recorded as OOM.
"""

import argparse
import dataclasses
import datetime
import json
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from hydra.errors import HydraException

from ginr.config import ConfigError
from ginr.ops import backend as scan_backend
from ginr.tools.bench.cases import PRESETS, build_cases, case_config, case_overrides, selected
from ginr.tools.bench.report import markdown, plot_encoder_lengths, plot_memory_vs_queries, plot_ms_per_step
from ginr.tools.bench.runners import run_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ginr.tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="reference")
    parser.add_argument("--out", type=Path, default=Path("experiments/benchmarks"))
    parser.add_argument("--only", nargs="+", metavar="NAME")
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile'd steps of the default experiment"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also write each timed step's kernel table to OUT/profile/"
    )
    parser.add_argument(
        "--budget-s", type=float, help="start no case after this many seconds (default: the preset's)"
    )
    parser.add_argument("--peak-tflops", type=float, help="peak rate for MFU, in TFLOP/s, for every case")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
        help="config overrides added to every case, after the case's own (e.g. trainer.compile_mode=...)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.budget_s is not None:
        preset = dataclasses.replace(preset, budget_s=args.budget_s)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cases = [c for c in build_cases(preset, compile=args.compile) if selected(c.name, args.only)]
    if not cases:
        parser.error(f"--only {' '.join(args.only)} matches no case")
    try:  # every case's config, before any case runs
        for case in cases:
            case_config(case_overrides(case, preset), case.queries, tuple(args.overrides))
    except (ConfigError, HydraException) as err:
        print(f"error: {(str(err).strip().splitlines() or [type(err).__name__])[0]}", file=sys.stderr)
        return 2
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "command": " ".join(["python -m ginr.tools.bench", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "preset": args.preset,
        "timing": asdict(preset.timing), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "scan_kernels": scan_backend.KERNEL_STATUS,
        "ssd_kernel": scan_backend.SSD_STATUS,  # Mamba-2's scan
    }  # fmt: skip
    print(f"ginr.tools.bench: {len(cases)} cases on {meta['device']}, torch {meta['torch']}", flush=True)
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
    plots = "memory_vs_queries.png, ms_per_step.png"
    if any(r["group"] == "lengths" for r in results):
        plot_encoder_lengths(results, args.out / "encoder_lengths.png")
        plots += ", encoder_lengths.png"
    print(text)
    print(f"wrote {args.out}/results.json, results.md, {plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
