"""Evaluate a checkpoint: ``python -m ginr.evaluate ckpt=PATH [resolutions=[64,128]] [out=DIR] [images=8]``.

The model is rebuilt from the config stored in the checkpoint alone. Prints test PSNR at the training
resolution and at each higher resolution (against real higher-resolution ground truth where the dataset
has it), writes ``results.json`` and PNG renders (ground truth | reconstruction | 4x render) to ``out``
(default: ``<run>/eval``).
"""

import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

from ginr.api import load
from ginr.engine.build import build_dataset
from ginr.engine.checkpoint import CheckpointError
from ginr.engine.evaluation import evaluate, reconstructions

USAGE = "usage: python -m ginr.evaluate ckpt=PATH [resolutions=[64,128]] [out=DIR] [images=8] [data_dir=DIR]"
ALLOWED = {"ckpt", "resolutions", "out", "images", "data_dir", "device", "max_images"}


def run(args: dict) -> dict[str, float]:
    run = load(args["ckpt"], device=args.get("device", "auto"))
    model, cfg, path, amp, device = (
        run.model,
        run.config,
        run.checkpoint,
        run.amp,
        next(run.model.parameters()).device,
    )
    if args.get("data_dir"):
        cfg.data.dataset.root = args["data_dir"]
    resolutions = list(args.get("resolutions", cfg.data.eval_resolutions))
    test_set = build_dataset(cfg, "test")
    highres = {r: build_dataset(cfg, "test", r) for r in resolutions}
    results = evaluate(
        model, test_set, highres=highres, batch_size=cfg.data.batch_size, device=device, amp_dtype=amp,
        chunk=cfg.trainer.render_chunk, max_images=args.get("max_images"),
    )  # fmt: skip
    out = Path(args.get("out", path.parent.parent / "eval"))
    out.mkdir(parents=True, exist_ok=True)
    shown = torch.stack([test_set[i] for i in range(min(int(args.get("images", 8)), len(test_set)))])
    grid = reconstructions(model, shown.to(device), scale=4, amp_dtype=amp, chunk=cfg.trainer.render_chunk)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(out / "renders.png")
    report = {"checkpoint": str(path), "step": run.step, "resolution": cfg.data.resolution, **results}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"checkpoint {path} (step {run.step}), test split, {len(test_set)} images")
    for key, value in results.items():
        res = cfg.data.resolution if key == "psnr" else int(key.split("_")[1])
        print(f"  PSNR at {res}x{res}: {value:.2f} dB")
    print(f"renders and results in {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = OmegaConf.to_container(OmegaConf.from_cli(sys.argv[1:] if argv is None else argv))
    unknown = set(args) - ALLOWED
    if "ckpt" not in args or unknown:
        print(
            f"error: unknown argument {sorted(unknown)}; {USAGE}" if unknown else f"error: {USAGE}",
            file=sys.stderr,
        )
        return 2
    try:
        run(args)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
