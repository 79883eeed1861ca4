"""Before / after bars of ms per step and peak memory per decoder variant, from two or more
``python -m ginr.tools.bench`` results files (bf16, batch 64, every pixel decoded). Usage:

    python tools/plot_before_after.py BEFORE.json AFTER.json [MORE_AFTER.json ...] --out PLOT.png
"""

import argparse
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def steps(paths: list[Path]) -> dict[str, dict]:
    """name -> case, the later files' cases winning, ok training steps in bf16 without checkpointing."""
    cases = {}
    for path in paths:
        for case in json.loads(path.read_text())["cases"]:
            if case.get("status") == "ok" and case.get("precision") == "bf16" and not case.get("checkpoint"):
                cases[case["name"]] = case
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    before, after = steps([args.before]), steps(args.after)
    variants = [
        c["variant"]
        for n, c in before.items()
        if n.startswith("main/") and f"compile/{c['variant']}/bf16" in after
    ]
    bars = {
        "before (eager)": [before[f"main/{v}/bf16/ckpt-off"] for v in variants],
        "after, eager": [after[f"main/{v}/bf16/ckpt-off"] for v in variants],
        "after, compiled (default)": [after[f"compile/{v}/bf16"] for v in variants],
    }
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    for ax, key, label in zip(
        fig.subplots(1, 2), ("ms", "peak_bytes"), ("ms per step", "peak memory (GB)"), strict=True
    ):
        width = 0.8 / len(bars)
        for i, (name, cases) in enumerate(bars.items()):
            values = [c[key] / (1e9 if key == "peak_bytes" else 1) for c in cases]
            ax.bar([x + i * width for x in range(len(variants))], values, width, label=name)
        ax.set_xticks([x + width for x in range(len(variants))], variants, rotation=20, ha="right")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.axes[0].legend()
    fig.suptitle("training step, one H100, bf16, batch 64 x 1,024 queries")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
