"""Evaluate a trained model on its test split (or val): ``python -m ginr.evaluate RUN_OR_CHECKPOINT [options]``
(or ``ginr-eval``).

The model is rebuilt from the config stored in the checkpoint alone (:func:`ginr.load`). Prints test
PSNR at the training resolution and at each higher resolution (against real higher-resolution ground
truth where the dataset has it) beside nearest, bicubic and Lanczos upscaling of the same input, writes
``results.json``, ``per_image.csv`` and ``renders.png`` (input | bicubic | model | truth) to ``--out``
(default: ``<run>/eval``).
"""

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from ginr.api import load
from ginr.engine.build import build_dataset
from ginr.engine.checkpoint import CheckpointError
from ginr.engine.evaluation import evaluate, reconstructions
from ginr.engine.metrics import UPSCALERS


def run(
    ckpt: str | Path,
    *,
    split: str = "test",
    which: str = "best",
    resolutions: Sequence[int] | None = None,
    out: str | Path | None = None,
    images: int = 8,
    data_dir: str | None = None,
    device: str = "auto",
    max_images: int | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """Evaluate ``ckpt`` (a checkpoint, or a run directory: its ``<which>.ckpt``, ``last`` where it has no
    ``best``) on ``split``; return the mean of every metric (see :mod:`ginr.engine.evaluation`)."""
    path = Path(ckpt).expanduser()
    if path.is_dir() and which == "best" and not (path / "checkpoints" / "best.ckpt").is_file():
        which = "last"
    trained = load(path, device=device, which=which)
    model, cfg = trained.model, trained.config
    amp = trained.amp if precision == "train" else None
    device = next(model.parameters()).device
    if data_dir:
        cfg.data.dataset.root = data_dir
    resolutions = list(cfg.data.eval_resolutions if resolutions is None else resolutions)
    dataset = build_dataset(cfg, split)
    highres = {r: build_dataset(cfg, split, r) for r in resolutions}
    result = evaluate(
        model, dataset, highres=highres, batch_size=cfg.data.batch_size, device=device, amp_dtype=amp,
        chunk=cfg.trainer.render_chunk, max_images=max_images,
    )  # fmt: skip
    out = Path(out) if out is not None else trained.checkpoint.parent.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    shown = torch.stack([dataset[i] for i in range(min(images, len(dataset)))]).to(device)
    truth = torch.stack([highres[min(highres)][i] for i in range(len(shown))]).to(device) if highres else None
    grid = reconstructions(model, shown, truth=truth, amp_dtype=amp, chunk=cfg.trainer.render_chunk)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(out / "renders.png")
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows(result.rows)
    report = {
        "checkpoint": str(trained.checkpoint),
        "step": trained.step,
        "split": split,
        "images": result.count,
    }
    (out / "results.json").write_text(
        json.dumps({**report, "resolution": cfg.data.resolution, **result.means}, indent=2)
    )
    print(f"checkpoint {trained.checkpoint} (step {trained.step}), {split} split, {result.count} images")
    print(table(result.means, cfg.data.resolution))
    print(f"renders.png (input | bicubic | model | truth), per_image.csv and results.json in {out}")
    return result.means


def table(means: dict[str, float], resolution: int) -> str:
    """A markdown table: one row per resolution, the model's PSNR (unclamped, the protocol), clamped PSNR,
    SSIM, and the classical upscalers of the same input beside it, with the model's margin over the best."""
    head = ["resolution", "PSNR", "PSNR clamped", "SSIM", *UPSCALERS, "margin over best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sizes = [resolution] + sorted(
        {int(k.rsplit("_", 1)[1]) for k in means if k.startswith("psnr_") and k[5:].isdigit()}
    )
    for r in sizes:
        suffix = "" if r == resolution else f"_{r}"
        base = [means.get(f"{m}_{r}") for m in UPSCALERS]
        margin = means[f"psnr{suffix}"] - max(base) if all(b is not None for b in base) else None
        cells = [
            means[f"psnr{suffix}"],
            means[f"psnr_clamped{suffix}"],
            means[f"ssim{suffix}"],
            *base,
            margin,
        ]
        formats = ["{:.2f}", "{:.2f}", "{:.4f}"] + ["{:.2f}"] * len(UPSCALERS) + ["{:+.2f}"]
        text = ["-" if v is None else f.format(v) for f, v in zip(formats, cells, strict=True)]
        lines.append(f"| {r}x{r} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ginr.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint file, or a run directory (its checkpoints/best.ckpt)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument(
        "--which", choices=("best", "last"), default="best", help="a run directory's checkpoint"
    )
    parser.add_argument("--precision", choices=("fp32", "train"), default="fp32", help="train: its autocast")
    parser.add_argument(
        "--resolutions", type=_positive, nargs="*", help="render sides to score (default: the run's)"
    )
    parser.add_argument("--out", type=Path, help="output directory (default: <run>/eval)")
    parser.add_argument("--images", type=_positive, default=8, help="images shown in renders.png")
    parser.add_argument("--max-images", type=_positive, help="score only the first N test images")
    parser.add_argument("--data-dir", help="where the run's dataset is cached, if not where it was trained")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    args = parser.parse_args(argv)
    try:
        run(
            args.ckpt, split=args.split, which=args.which, resolutions=args.resolutions, out=args.out,
            images=args.images, data_dir=args.data_dir, device=args.device, max_images=args.max_images,
            precision=args.precision,
        )  # fmt: skip
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
