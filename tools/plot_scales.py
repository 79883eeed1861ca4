"""Test PSNR against the upscaling factor for several runs, beside the classical upscalers of the same
input, from the runs' ``status.json`` files (``test/psnr_x<k>``, ``test/baseline/<upscaler>_x<k>``).
Runs given as NAME=FILE[,FILE...] are one line each; several files (seeds) draw their mean with a band
from the lowest to the highest. Usage:

    python tools/plot_scales.py "native=a.json" "ours=s0.json,s1.json" --out psnr_by_scale.png
"""

import argparse
import json
import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

UPSCALERS = ("nearest", "bicubic", "lanczos")


def scales(metrics: dict[str, float], prefix: str) -> dict[int, float]:
    """factor -> value of the keys ``<prefix>_x<factor>``."""
    found = (re.fullmatch(re.escape(prefix) + r"_x(\d+)", key) for key in metrics)
    return {int(m.group(1)): metrics[m.group(0)] for m in found if m}


def parse_run(spec: str) -> tuple[str, list[dict[str, float]]]:
    name, sep, files = spec.rpartition("=")  # the last "=": a name may hold one
    if not sep or not files:
        raise SystemExit(f"error: run {spec!r} is not NAME=FILE[,FILE...]")
    return name, [json.loads(Path(f).read_text())["metrics"] for f in files.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=STATUS.json[,STATUS.json...]")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = [parse_run(spec) for spec in args.runs]
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    baseline = runs[0][1][0]
    for upscaler, style in zip(UPSCALERS, (":", "--", "-."), strict=True):
        points = sorted(scales(baseline, f"test/baseline/{upscaler}").items())
        ax.plot(*zip(*points, strict=True), style, color="grey", label=f"{upscaler} upscaling of the input")
    for name, seeds in runs:
        per_seed = [scales(m, "test/psnr") for m in seeds]
        factors = sorted(set.intersection(*(set(s) for s in per_seed)))
        values = [[s[k] for s in per_seed] for k in factors]
        mean = [sum(v) / len(v) for v in values]
        label = name if len(seeds) == 1 else f"{name} (mean, range of {len(seeds)} seeds)"
        (line,) = ax.plot(factors, mean, "o-", label=label)
        if len(seeds) > 1:
            ax.fill_between(factors, [min(v) for v in values], [max(v) for v in values], alpha=0.25,
                            color=line.get_color())  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks([2, 4, 8], ["2x", "4x", "8x"])
    ax.set_xlabel("upscaling factor (32 px input)")
    ax.set_ylabel("test PSNR (dB), unclamped")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    FigureCanvasAgg(fig)
    fig.savefig(args.out, bbox_inches="tight", dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
