"""Evaluate a trained model on its test split (or val), or on any images: ``python -m ginr.tools.evaluate
RUN_OR_CHECKPOINT [options]`` (or ``ginr-eval``).

The model is rebuilt from the config stored in the checkpoint alone (:func:`ginr.load`). Prints test
PSNR at the training resolution and at each higher resolution (against real higher-resolution ground
truth where the dataset has it) beside nearest, bicubic and Lanczos upscaling of the same input, writes
``results.json``, ``per_image.csv`` and ``renders.png`` (input | bicubic | model | truth) to ``--out``
(default: ``<run>/eval``).

With ``--data NAME``, another data option's split (``configs/data/NAME.yaml``) instead of the run's, at the
run's input resolution and scored at that option's ``eval_resolutions``: one model on several test sets
(``--out`` default: ``<run>/eval_NAME``).

With ``--inputs`` (image files or folders, searched recursively), each image is encoded instead: its
centre square, resized with Lanczos to the training resolution, rendered at every ``--sizes`` side and
scored only where the original's centre square is at least that size (downsampled with Lanczos to it);
renders, grids, ``per_image.csv`` and ``results.json`` go to ``--out`` (default: ``<run>/eval_inputs``).
Also :func:`ginr.tools.images.render_images` in Python.
"""

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from ginr.api import Loaded, load
from ginr.config import compose
from ginr.data.imagefiles import EXTENSIONS
from ginr.engine.build import build_dataset, keep_freed_cpu_memory
from ginr.engine.checkpoint import CheckpointError
from ginr.engine.evaluation import evaluate, reconstructions, save_picture
from ginr.engine.metrics import UPSCALERS, margin
from ginr.files import write_atomic
from ginr.tools.images import (
    PRECISIONS,
    SCORE_COLUMNS,
    InputError,
    Rendered,
    check_sizes,
    find_inputs,
    render_images,
    score_cells,
    sizes_table,
)
from ginr.tools.tables import markdown_table
from ginr.tools.variants import data_options


def _split_of(cfg: DictConfig, split: str, resolution: int | None = None) -> Dataset:
    """The run's ``split`` (at ``resolution``: ground truth there); :class:`InputError` where the dataset
    cannot provide it."""
    try:
        return build_dataset(cfg, split, resolution)
    except (InstantiationException, OSError, ValueError, RuntimeError) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        name = cfg.data.dataset._target_.rsplit(".", 1)[-1]
        if resolution is None:
            raise InputError(f"cannot load the {split} split of {name}: {cause}") from err
        raise InputError(
            f"no {resolution} px ground truth in {name} ({cause}); to render image files at any size, "
            "use --inputs IMAGES --sizes ..."
        ) from err


def with_data(cfg: DictConfig, name: str) -> DictConfig:
    """``cfg`` with the dataset and ``eval_resolutions`` of the data option ``name`` (composed on this
    machine, so its data folder is this machine's) at ``cfg``'s input resolution."""
    if name not in data_options():
        raise InputError(f"--data {name} is not a data option: one of {', '.join(data_options())}")
    other = compose([f"data={name}", f"data.resolution={cfg.data.resolution}"]).data
    cfg = cfg.copy()
    cfg.data.dataset = OmegaConf.to_container(other.dataset, resolve=True)  # replaced, not merged
    cfg.data.eval_resolutions = list(other.eval_resolutions)
    return cfg


def _find_images_under(folder: Path) -> bool:
    return any(p.suffix.lower() in EXTENSIONS for p in folder.rglob("*"))


def _load(ckpt: str | Path, which: str, device: str) -> Loaded:
    """``ckpt``'s ``<which>.ckpt`` (``last`` where a run directory has no ``best``)."""
    path = Path(ckpt).expanduser()
    if path.is_dir() and which == "best" and not (path / "checkpoints" / "best.ckpt").is_file():
        which = "last"
    trained = load(path, device=device, which=which)
    if next(trained.model.parameters()).device.type == "cpu":
        keep_freed_cpu_memory()  # rendering frees and allocates the same large buffers every chunk
    return trained


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
    data: str | None = None,
) -> dict[str, float]:
    """Evaluate ``ckpt`` (a checkpoint, or a run directory: its ``<which>.ckpt``, ``last`` where it has no
    ``best``) on ``split`` of its dataset, or of the data option ``data``; return the mean of every metric
    (see :mod:`ginr.engine.evaluation`)."""
    trained = _load(ckpt, which, device)
    model, cfg = trained.model, trained.config
    if data is not None:
        cfg = with_data(cfg, data)
    amp = trained.amp if precision == "train" else None
    device = next(model.parameters()).device
    if data_dir:
        target = cfg.data.dataset._target_.rsplit(".", 1)[-1]
        if target != "ImageFolder" and Path(data_dir).is_dir() and _find_images_under(Path(data_dir)):
            raise InputError(
                f"--data-dir {data_dir} holds images, but it is where the run's {target} is cached: "
                f"to evaluate those images use --inputs {data_dir}"
            )
        cfg.data.dataset.root = data_dir
    asked = cfg.data.eval_resolutions if resolutions is None else resolutions
    # each side once; the input's own is always scored
    resolutions = [r for r in dict.fromkeys(asked) if r != cfg.data.resolution]
    dataset = _split_of(cfg, split)
    highres = {r: _split_of(cfg, split, r) for r in resolutions}
    result = evaluate(
        model, dataset, highres=highres, batch_size=cfg.data.batch_size, device=device, amp_dtype=amp,
        chunk=cfg.trainer.render_chunk, max_images=max_images, trained_on=cfg.trainer.queries_per_image,
    )  # fmt: skip
    default = "eval" if data is None else f"eval_{data}"
    out = Path(out) if out is not None else trained.checkpoint.parent.parent / default
    out.mkdir(parents=True, exist_ok=True)
    shown = torch.stack([dataset[i] for i in range(min(images, len(dataset)))]).to(device)
    truth = torch.stack([highres[min(highres)][i] for i in range(len(shown))]).to(device) if highres else None
    grid = reconstructions(model, shown, truth=truth, amp_dtype=amp, chunk=cfg.trainer.render_chunk)
    save_picture(grid, out / "renders.png")
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows(result.rows)
    report = {
        "checkpoint": str(trained.checkpoint),
        "step": trained.step,
        "split": split,
        "images": result.count,
        "split_images": len(dataset),
    }
    write_atomic(  # ginr.tools.compare reads it beside the run's own scores
        out / "results.json",
        json.dumps({**report, "resolution": cfg.data.resolution, **result.means}, indent=2),
    )
    print(
        f"checkpoint {trained.checkpoint} (step {trained.step}): {result.count} of {len(dataset)} {split} "
        "images scored"
    )
    print(table(result.means, cfg.data.resolution))
    if result.note:
        print(f"note: {result.note}")
    print(f"renders.png (input | bicubic | model | truth), per_image.csv and results.json in {out}")
    return result.means


def table(means: dict[str, float], resolution: int) -> str:
    """A markdown table: one row per resolution, the model's PSNR (unclamped, the protocol), clamped PSNR,
    SSIM, and the classical upscalers of the same input beside it, with the model's margin over the best."""
    sizes = [resolution] + sorted(
        {int(k.rsplit("_", 1)[1]) for k in means if k.startswith("psnr_") and k[5:].isdigit()}
    )
    rows = []
    for r in sizes:
        suffix = "" if r == resolution else f"_{r}"
        scores = {m: means[f"{m}{suffix}"] for m in ("psnr", "psnr_clamped", "ssim")}
        scores |= {m: means.get(f"{m}_{r}") for m in UPSCALERS}
        count = means.get(f"images{suffix}")
        cells = score_cells([*scores.values(), margin(scores)])
        rows.append([f"{r}x{r}", "all" if count is None else int(count), *cells])
    return markdown_table(["resolution", "images with truth", *SCORE_COLUMNS], rows)


def run_inputs(
    ckpt: str | Path,
    paths: str | Path | Sequence[str | Path],
    *,
    sizes: Sequence[int] | None = None,
    which: str = "best",
    out: str | Path | None = None,
    device: str = "auto",
    max_images: int | None = None,
    precision: str = "fp32",
) -> Rendered:
    """:func:`render_images` of ``ckpt`` (its checkpoint chosen as in :func:`run`) on ``paths``, with a
    summary and :func:`sizes_table` printed. Paths and sizes are checked before the checkpoint is loaded."""
    find_inputs(paths)
    if sizes is not None:
        check_sizes(sizes)
    trained = _load(ckpt, which, device)
    result = render_images(trained, paths, sizes, out=out, precision=precision, max_images=max_images)
    images = f"{result.images} image{'s' * (result.images != 1)}"
    if result.images < result.found:
        images += f" (the first {result.images} of {result.found} found)"
    side = result.resolution
    print(
        f"checkpoint {trained.checkpoint} (step {trained.step}): {images}, each its centre square resized "
        f"(Lanczos) to {side}x{side}, rendered at {', '.join(map(str, result.sizes))} px"
    )
    print(sizes_table(result))
    for note in result.notes:
        print(note)
    print(
        "ground truth: the original's centre square downsampled (Lanczos) to each size, where it is at least "
        f"that size; renders <name>_<size>.png, grids <name>_<size>_grid.png (input | bicubic | model | "
        f"original), per_image.csv and results.json in {result.out}"
    )
    return result


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: expected a positive integer")
    return value


def _pixels(text: str) -> int:
    try:
        return check_sizes([int(text)])[0]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text} is not allowed: expected a positive integer (pixels)"
        ) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InputError(message)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m ginr.tools.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint file, or a run directory (its checkpoints/best.ckpt)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument(
        "--which", choices=("best", "last"), default="best", help="a run directory's checkpoint"
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="train: its autocast")
    parser.add_argument(
        "--resolutions",
        type=_positive,
        nargs="*",
        help="render sides to score besides the input's, which is always scored (default: the run's)",
    )
    parser.add_argument(
        "--inputs", type=Path, nargs="+", metavar="PATH",
        help="evaluate these images (files, or folders searched recursively) instead of the run's dataset: "
        "each one's centre square, resized (Lanczos) to the training resolution",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", type=_pixels, nargs="+", metavar="PX",
        help="with --inputs: square render sides in pixels (default: the run's resolution and eval_resolutions)",
    )  # fmt: skip
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: <run>/eval, <run>/eval_NAME, or <run>/eval_inputs)",
    )
    parser.add_argument("--images", type=_positive, default=8, help="images shown in renders.png")
    parser.add_argument("--max-images", type=_positive, help="score only the first N test images (or inputs)")
    parser.add_argument(
        "--data",
        metavar="NAME",
        help="another data option's split (configs/data/NAME.yaml) instead of the run's",
    )
    parser.add_argument("--data-dir", help="where the run's dataset is cached, if not where it was trained")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    try:
        args = parser.parse_args(argv)
        if args.inputs is None and args.sizes is not None:
            raise InputError("--sizes needs --inputs: the run's dataset is scored at --resolutions")
        if args.inputs is not None and args.resolutions is not None:
            raise InputError("--resolutions is for the run's dataset: with --inputs, give --sizes")
        if args.inputs is not None and args.data is not None:
            raise InputError("--data names a dataset to score; --inputs scores image files: give one of them")
        if args.data is not None and args.data not in data_options():
            raise InputError(f"--data {args.data} is not a data option: one of {', '.join(data_options())}")
        if args.inputs is not None:
            run_inputs(
                args.ckpt, args.inputs, sizes=args.sizes, which=args.which, out=args.out, device=args.device,
                max_images=args.max_images, precision=args.precision,
            )  # fmt: skip
        else:
            run(
                args.ckpt, split=args.split, which=args.which, resolutions=args.resolutions, out=args.out,
                images=args.images, data_dir=args.data_dir, device=args.device, max_images=args.max_images,
                precision=args.precision, data=args.data,
            )  # fmt: skip
    except (CheckpointError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
