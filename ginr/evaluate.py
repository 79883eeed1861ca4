"""Evaluate a trained model on its test split: ``python -m ginr.evaluate RUN_OR_CHECKPOINT [options]``
(or ``ginr-eval``).

The model is rebuilt from the config stored in the checkpoint alone (:func:`ginr.load`). Prints test
PSNR at the training resolution and at each higher resolution (against real higher-resolution ground
truth where the dataset has it), writes ``results.json`` and PNG renders (ground truth | reconstruction
| 4x render) to ``--out`` (default: ``<run>/eval``).
"""

import argparse
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


def run(
    ckpt: str | Path,
    *,
    resolutions: Sequence[int] | None = None,
    out: str | Path | None = None,
    images: int = 8,
    data_dir: str | None = None,
    device: str = "auto",
    max_images: int | None = None,
) -> dict[str, float]:
    """Evaluate ``ckpt`` (a checkpoint or a run directory); return mean PSNR per resolution."""
    trained = load(ckpt, device=device)
    model, cfg, amp = trained.model, trained.config, trained.amp
    device = next(model.parameters()).device
    if data_dir:
        cfg.data.dataset.root = data_dir
    resolutions = list(cfg.data.eval_resolutions if resolutions is None else resolutions)
    test_set = build_dataset(cfg, "test")
    highres = {r: build_dataset(cfg, "test", r) for r in resolutions}
    results = evaluate(
        model, test_set, highres=highres, batch_size=cfg.data.batch_size, device=device, amp_dtype=amp,
        chunk=cfg.trainer.render_chunk, max_images=max_images,
    )  # fmt: skip
    out = Path(out) if out is not None else trained.checkpoint.parent.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    shown = torch.stack([test_set[i] for i in range(min(images, len(test_set)))])
    grid = reconstructions(model, shown.to(device), scale=4, amp_dtype=amp, chunk=cfg.trainer.render_chunk)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(out / "renders.png")
    report = {"checkpoint": str(trained.checkpoint), "step": trained.step, "resolution": cfg.data.resolution}
    (out / "results.json").write_text(json.dumps({**report, **results}, indent=2))
    print(f"checkpoint {trained.checkpoint} (step {trained.step}), test split, {len(test_set)} images")
    for key, value in results.items():
        res = cfg.data.resolution if key == "psnr" else int(key.split("_")[1])
        print(f"  PSNR at {res}x{res}: {value:.2f} dB")
    print(f"renders and results in {out}")
    return results


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ginr.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint file, or a run directory (its checkpoints/last.ckpt)")
    parser.add_argument("--resolutions", type=_positive, nargs="*", help="render sides to score (default: the run's)")
    parser.add_argument("--out", type=Path, help="output directory (default: <run>/eval)")
    parser.add_argument("--images", type=_positive, default=8, help="images shown in renders.png")
    parser.add_argument("--max-images", type=_positive, help="score only the first N test images")
    parser.add_argument("--data-dir", help="where the run's dataset is cached, if not where it was trained")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    args = parser.parse_args(argv)
    try:
        run(
            args.ckpt, resolutions=args.resolutions, out=args.out, images=args.images, data_dir=args.data_dir,
            device=args.device, max_images=args.max_images,
        )  # fmt: skip
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
