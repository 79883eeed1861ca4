"""Evaluate a trained model on its test split (or val), or on any images: ``python -m ginr.evaluate
RUN_OR_CHECKPOINT [options]`` (or ``ginr-eval``).

The model is rebuilt from the config stored in the checkpoint alone (:func:`ginr.load`). Prints test
PSNR at the training resolution and at each higher resolution (against real higher-resolution ground
truth where the dataset has it) beside nearest, bicubic and Lanczos upscaling of the same input, writes
``results.json``, ``per_image.csv`` and ``renders.png`` (input | bicubic | model | truth) to ``--out``
(default: ``<run>/eval``).

With ``--inputs`` (image files or folders, searched recursively), each image is encoded instead: its
centre square, resized with Lanczos to the training resolution, rendered at every ``--sizes`` side and
scored only where the original's centre square is at least that size (downsampled with Lanczos to it);
renders, grids, ``per_image.csv`` and ``results.json`` go to ``--out`` (default: ``<run>/eval_inputs``).
Also :func:`render_images` in Python.
"""

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import Dataset

from ginr.api import Loaded, load
from ginr.data.folder import EXTENSIONS, UnreadableImage, load_image
from ginr.engine.build import build_dataset
from ginr.engine.checkpoint import CheckpointError
from ginr.engine.evaluation import evaluate, reconstructions
from ginr.engine.metrics import UPSCALERS, psnr, ssim, upscale
from ginr.engine.step import autocast

PRECISIONS = ("fp32", "train")
METRICS = ("psnr", "psnr_clamped", "ssim", *UPSCALERS, "margin")


class InputError(ValueError):
    """A bad option value or input image, found before any work: one line naming it and what is allowed."""


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


def _find_images_under(folder: Path) -> bool:
    return any(p.suffix.lower() in EXTENSIONS for p in folder.rglob("*"))


def _load(ckpt: str | Path, which: str, device: str) -> Loaded:
    """``ckpt``'s ``<which>.ckpt`` (``last`` where a run directory has no ``best``)."""
    path = Path(ckpt).expanduser()
    if path.is_dir() and which == "best" and not (path / "checkpoints" / "best.ckpt").is_file():
        which = "last"
    return load(path, device=device, which=which)


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
    trained = _load(ckpt, which, device)
    model, cfg = trained.model, trained.config
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
    resolutions = list(cfg.data.eval_resolutions if resolutions is None else resolutions)
    dataset = _split_of(cfg, split)
    highres = {r: _split_of(cfg, split, r) for r in resolutions}
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
        "split_images": len(dataset),
    }
    (out / "results.json").write_text(
        json.dumps({**report, "resolution": cfg.data.resolution, **result.means}, indent=2)
    )
    print(
        f"checkpoint {trained.checkpoint} (step {trained.step}): {result.count} of {len(dataset)} {split} "
        "images scored"
    )
    print(table(result.means, cfg.data.resolution))
    print(f"renders.png (input | bicubic | model | truth), per_image.csv and results.json in {out}")
    return result.means


def table(means: dict[str, float], resolution: int) -> str:
    """A markdown table: one row per resolution, the model's PSNR (unclamped, the protocol), clamped PSNR,
    SSIM, and the classical upscalers of the same input beside it, with the model's margin over the best."""
    head = ["resolution", "images with truth", "PSNR", "PSNR clamped", "SSIM", *UPSCALERS, "margin over best"]
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
        count = means.get(f"images{suffix}")
        lines.append(f"| {r}x{r} | {'all' if count is None else int(count)} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def _allowed_images() -> str:
    return ", ".join(sorted(e.lstrip(".") for e in EXTENSIONS))


def find_inputs(paths: str | Path | Sequence[str | Path]) -> list[tuple[Path, str]]:
    """Image files and folders (searched recursively) -> ``(file, name)`` in order, without repeats; the
    name (for output files) is a file's stem, or its path under the folder given. Raises
    :class:`InputError` for a missing path, a file that is not an image or a folder without images."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise InputError(f"no inputs given: expected image files ({_allowed_images()}) or folders of them")
    found: list[tuple[Path, str]] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
            if not files:
                raise InputError(f"no images ({_allowed_images()}) found under {path}")
            found += [(p, p.relative_to(path).with_suffix("").as_posix().replace("/", "_")) for p in files]
        elif path.is_file():
            if path.suffix.lower() not in EXTENSIONS:
                raise InputError(f"{path} is not an image: expected one of {_allowed_images()}, or a folder")
            found.append((path, path.stem))
        else:
            raise InputError(
                f"{path} does not exist: expected an image file ({_allowed_images()}) or a folder of them"
            )
    seen: set[Path] = set()
    names: set[str] = set()
    unique = []
    for path, name in found:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        stem, k = name, 1
        while name in names:
            k += 1
            name = f"{stem}-{k}"
        names.add(name)
        unique.append((path, name))
    return unique


def check_sizes(sizes: Sequence[int]) -> list[int]:
    """``sizes`` (render sides in pixels) sorted without repeats; :class:`InputError` unless each is a
    positive integer."""
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"size {size!r} is not allowed: expected a positive integer (pixels)")
    if not sizes:
        raise InputError("no sizes given: expected one or more positive integers (pixels)")
    return sorted(set(sizes))


def _original_size(path: Path) -> tuple[int, int]:
    """(width, height) as shown, after the EXIF orientation that :func:`load_image` applies."""
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


@dataclass
class Rendered:
    """What :func:`render_images` did: one row per image and size (``rows``, as in ``per_image.csv``; the
    metrics are None where there was no ground truth), the mean of each metric per size over the images
    scored at it (``means``), how many were scored there (``scored``), of ``images`` rendered (the first
    ``images`` of ``found``), ``notes`` (sizes without ground truth, inputs smaller than the model's) and
    the output folder."""

    rows: list[dict[str, Any]] = field(repr=False)
    sizes: list[int]
    means: dict[int, dict[str, float]]
    scored: dict[int, int]
    images: int
    found: int
    resolution: int
    notes: list[str]
    out: Path


def strip_ssim(pred: torch.Tensor, target: torch.Tensor, *, rows: int = 256) -> torch.Tensor:
    """:func:`~ginr.engine.metrics.ssim` computed over strips of ``rows`` rows (overlapping by the window
    less one, weighted by their valid positions): the same value, in a strip's memory rather than the
    image's many times over."""
    height, width = target.shape[-2:]
    if height <= rows + 10 or min(height, width) < 11:
        return ssim(pred, target)
    total = torch.zeros(target.shape[0], device=target.device)
    for top in range(0, height - 10, rows):
        bottom = min(top + rows + 10, height)
        total += ssim(pred[..., top:bottom, :], target[..., top:bottom, :]) * (bottom - top - 10)
    return total / (height - 10)


def _scores(
    render: torch.Tensor, truth: torch.Tensor, small: torch.Tensor, *, upscalers: bool
) -> dict[str, float]:
    """The render's PSNR (unclamped), clamped PSNR and SSIM against ``truth``; with ``upscalers``, the PSNR
    of each classical upscaler of the input ``small`` and the render's margin over the best of them."""
    scores = {
        "psnr": psnr(render, truth).item(),
        "psnr_clamped": psnr(render, truth, clamp=True).item(),
        "ssim": strip_ssim(render, truth).item(),
    }
    if upscalers:
        scores |= {m: psnr(upscale(small, *truth.shape[-2:], m), truth).item() for m in UPSCALERS}
        scores["margin"] = scores["psnr"] - max(scores[m] for m in UPSCALERS)
    return scores


def _decode_inputs(
    files: list[tuple[Path, str]], resolution: int, channels: int
) -> list[tuple[tuple[int, int], torch.Tensor]]:
    """Each file's original (width, height) and its model input, 8-bit (channels, resolution, resolution);
    :class:`InputError` for the first that cannot be decoded."""
    decoded = []
    for path, _ in files:
        try:
            image = load_image(path, size=(resolution, resolution), channels=channels, crop="center")
        except UnreadableImage as err:
            raise InputError(f"{err}: expected a readable {_allowed_images()} image") from err
        decoded.append((_original_size(path), (image * 255).round().byte()))
    return decoded


@torch.no_grad()
def render_images(
    loaded: Loaded,
    paths: str | Path | Sequence[str | Path],
    sizes: Sequence[int] | None = None,
    *,
    out: str | Path | None = None,
    precision: str = "fp32",
    max_images: int | None = None,
    progress: bool = True,
) -> Rendered:
    """Encode each image of ``paths`` (files, or folders searched recursively) with ``loaded.model`` and
    render it at each of ``sizes`` (square sides in pixels; default: the run's resolution and
    ``data.eval_resolutions``), ``trainer.render_chunk`` queries at a time.

    The input is the image's centre square resized with Lanczos to ``data.resolution``, as the
    ``image_folder`` dataset loads images. Where that square is at least a size, the original's centre
    square downsampled to the size (Lanczos) is the ground truth: PSNR (unclamped), clamped PSNR and SSIM
    of the render, and PSNR of nearest, bicubic and Lanczos upscaling of the same input; a size larger than
    the square is rendered, not scored. Writes ``<name>_<size>.png`` (the render), ``<name>_<size>_grid.png``
    (input | bicubic | model | original where there is one), ``per_image.csv`` and ``results.json`` to
    ``out`` (default: ``<run>/eval_inputs``); with ``progress``, one line per image to stderr. Every input
    is decoded before anything is written: a bad path, size or image raises :class:`InputError`."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not allowed: expected one of {', '.join(PRECISIONS)}")
    if max_images is not None and (isinstance(max_images, bool) or max_images < 1):
        raise InputError(f"max_images={max_images!r} is not allowed: expected a positive integer")
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    model, cfg = loaded.model, loaded.config
    resolution, channels, chunk = cfg.data.resolution, cfg.data.channels, cfg.trainer.render_chunk
    sizes = check_sizes([resolution, *cfg.data.eval_resolutions] if sizes is None else list(sizes))
    found = find_inputs(paths)
    files = found[:max_images]
    decoded = _decode_inputs(files, resolution, channels)
    out = Path(out) if out is not None else loaded.checkpoint.parent.parent / "eval_inputs"
    out.mkdir(parents=True, exist_ok=True)
    amp = loaded.amp if precision == "train" else None
    device = next(model.parameters()).device
    if progress and getattr(model.decoder, "mixes_queries", False):
        print(
            "note: this decoder's blocks attend over all queries of a render at once: its memory and time "
            "grow with the square of the pixel count",
            file=sys.stderr,
        )
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for n, ((path, name), ((width, height), image)) in enumerate(zip(files, decoded, strict=True), 1):
        started = time.perf_counter()
        side = min(width, height)
        original = f"{width}x{height}" + ("" if width == height else f" (its centre square {side} px)")
        if side < resolution:
            notes.append(
                f"{name}: the input is upsampled: the original is {width}x{height}, its centre square "
                f"({side} px) is smaller than the model's {resolution} px input"
            )
        small = image.float().div(255).unsqueeze(0).to(device)
        with autocast(device, amp):
            latents = model.encode(small)
        missing = []
        for size in sizes:
            with autocast(device, amp):
                render = model.render(latents, size, size, chunk=chunk).float()
            row: dict[str, Any] = {"image": str(path), "name": name, "width": width, "height": height,
                                   "size": size, "scored": side >= size, **dict.fromkeys(METRICS),
                                   "render": f"{name}_{size}.png", "grid": f"{name}_{size}_grid.png",
                                   "note": "" if side >= size else f"no ground truth: the original is {original}"}  # fmt: skip
            panels = [upscale(small, size, size, "nearest"), upscale(small, size, size, "bicubic"), render]
            if row["scored"]:
                truth = load_image(path, size=(size, size), channels=channels, crop="center")
                panels.append(truth.unsqueeze(0).to(device))
                row |= _scores(render, panels[-1], small, upscalers=size != resolution)
            else:
                missing.append(size)
            Image.fromarray(_to_uint8(render[0])).save(out / row["render"])
            Image.fromarray(np.concatenate([_to_uint8(p[0]) for p in panels], axis=1)).save(out / row["grid"])
            rows.append(row)
        if missing:
            notes.append(
                f"{name}: no ground truth at {', '.join(map(str, missing))} px: the original is {original}"
            )
        if progress:
            scored = [str(r["size"]) for r in rows[-len(sizes) :] if r["scored"]]
            print(
                f"[{n}/{len(files)}] {path} ({width}x{height}): rendered at {', '.join(map(str, sizes))} px, "
                f"scored at {', '.join(scored) or 'none (no ground truth)'} "
                f"({time.perf_counter() - started:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    scored = {s: sum(r["scored"] for r in rows if r["size"] == s) for s in sizes}
    means: dict[int, dict[str, float]] = {}
    for size in sizes:
        done = [r for r in rows if r["size"] == size and r["scored"]]
        means[size] = {
            k: sum(r[k] for r in done) / len(done) for k in METRICS if done and done[0][k] is not None
        }
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.json").write_text(
        json.dumps(
            {"checkpoint": str(loaded.checkpoint), "step": loaded.step, "inputs": [str(p) for p in paths],
             "images": len(files), "found": len(found), "resolution": resolution, "precision": precision,
             "sizes": {str(s): {"images_scored": scored[s], **means[s]} for s in sizes}, "notes": notes},
            indent=2,
        )
    )  # fmt: skip
    return Rendered(rows, sizes, means, scored, len(files), len(found), resolution, notes, out)


def sizes_table(result: Rendered) -> str:
    """A markdown table of :func:`render_images`' scores: one row per size, the images scored there, the
    model's PSNR (unclamped), clamped PSNR, SSIM, the classical upscalers and the margin over the best."""
    head = ["size", "images scored", "PSNR", "PSNR clamped", "SSIM", *UPSCALERS, "margin over best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    formats = ["{:.2f}", "{:.2f}", "{:.4f}"] + ["{:.2f}"] * len(UPSCALERS) + ["{:+.2f}"]
    for size in result.sizes:
        cells = [result.means[size].get(k) for k in METRICS]
        text = ["-" if v is None else f.format(v) for f, v in zip(formats, cells, strict=True)]
        lines.append(
            f"| {size}x{size} | {result.scored[size]} of {result.images} | " + " | ".join(text) + " |"
        )
    return "\n".join(lines)


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
    parser = _Parser(prog="python -m ginr.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint file, or a run directory (its checkpoints/best.ckpt)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument(
        "--which", choices=("best", "last"), default="best", help="a run directory's checkpoint"
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="train: its autocast")
    parser.add_argument(
        "--resolutions", type=_positive, nargs="*", help="render sides to score (default: the run's)"
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
        "--out", type=Path, help="output directory (default: <run>/eval, or <run>/eval_inputs)"
    )
    parser.add_argument("--images", type=_positive, default=8, help="images shown in renders.png")
    parser.add_argument("--max-images", type=_positive, help="score only the first N test images (or inputs)")
    parser.add_argument("--data-dir", help="where the run's dataset is cached, if not where it was trained")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    try:
        args = parser.parse_args(argv)
        if args.inputs is None and args.sizes is not None:
            raise InputError("--sizes needs --inputs: the run's dataset is scored at --resolutions")
        if args.inputs is not None and args.resolutions is not None:
            raise InputError("--resolutions is for the run's dataset: with --inputs, give --sizes")
        if args.inputs is not None:
            run_inputs(
                args.ckpt, args.inputs, sizes=args.sizes, which=args.which, out=args.out, device=args.device,
                max_images=args.max_images, precision=args.precision,
            )  # fmt: skip
        else:
            run(
                args.ckpt, split=args.split, which=args.which, resolutions=args.resolutions, out=args.out,
                images=args.images, data_dir=args.data_dir, device=args.device, max_images=args.max_images,
                precision=args.precision,
            )  # fmt: skip
    except (CheckpointError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
