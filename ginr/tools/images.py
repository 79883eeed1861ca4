"""Any images at any size: a trained model's renders of image files, scored only against real ground
truth. Each image's centre square, resized with Lanczos to the training resolution, is encoded and rendered
at every requested side in chunks of ``trainer.render_chunk`` queries; a side is scored where the original's
centre square is at least that large (downsampled with Lanczos to it), beside nearest, bicubic and Lanczos
upscaling of the same input. ``python -m ginr.tools.evaluate RUN --inputs ... --sizes ...`` runs it."""

import csv
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ginr.api import Loaded
from ginr.data.imagefiles import EXTENSIONS, UnreadableImage, load_image
from ginr.engine.evaluation import save_picture
from ginr.engine.metrics import UPSCALERS, margin, score, upscale
from ginr.engine.step import autocast
from ginr.files import write_atomic
from ginr.tools.tables import markdown_table

PRECISIONS = ("fp32", "train")
METRICS = ("psnr", "psnr_clamped", "ssim", *UPSCALERS, "margin")
SCORE_COLUMNS = ("PSNR", "PSNR clamped", "SSIM", *UPSCALERS, "margin over best")  # METRICS in a table


class InputError(ValueError):
    """A bad option value or input image, found before any work: one line naming it and what is allowed."""


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
            with measured(device) as cost, autocast(device, amp):
                render = model.render(latents, size, size, images=small, chunk=chunk).float()
            row: dict[str, Any] = {"image": str(path), "name": name, "width": width, "height": height,
                                   "size": size, "scored": side >= size, **dict.fromkeys(METRICS), **cost,
                                   "render": f"{name}_{size}.png", "grid": f"{name}_{size}_grid.png",
                                   "note": "" if side >= size else f"no ground truth: the original is {original}"}  # fmt: skip
            panels = [upscale(small, size, size, "nearest"), upscale(small, size, size, "bicubic"), render]
            if row["scored"]:
                truth = load_image(path, size=(size, size), channels=channels, crop="center")
                panels.append(truth.unsqueeze(0).to(device))
                upscaled = size != resolution  # at the input's own size, upscaling is no comparison
                scores = {
                    k: v.item() for k, v in score(render, panels[-1], small if upscaled else None).items()
                }
                row |= scores | ({"margin": margin(scores)} if upscaled else {})
            else:
                missing.append(size)
            save_picture(render[0], out / row["render"])
            save_picture(torch.cat([p[0] for p in panels], dim=-1), out / row["grid"])
            rows.append(row)
        if missing:
            notes.append(
                f"{name}: no ground truth at {', '.join(map(str, missing))} px: the original is {original}"
            )
        if progress:
            scored = [str(r["size"]) for r in rows[-len(sizes) :] if r["scored"]]
            rendered = ", ".join(
                f"{r['size']} ({r['render_s']:.2f} s"
                + ("" if r["peak_gb"] is None else f", {r['peak_gb']:.2f} GB")
                + ")"
                for r in rows[-len(sizes) :]
            )
            print(
                f"[{n}/{len(files)}] {path} ({width}x{height}): rendered at {rendered} px, "
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
    costs = {size: _costs([r for r in rows if r["size"] == size]) for size in sizes}
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_atomic(
        out / "results.json",
        json.dumps(
            {"checkpoint": str(loaded.checkpoint), "step": loaded.step, "inputs": [str(p) for p in paths],
             "images": len(files), "found": len(found), "resolution": resolution, "precision": precision,
             "sizes": {str(s): {"images_scored": scored[s], **means[s], **costs[s]} for s in sizes}, "notes": notes},
            indent=2,
        )
    )  # fmt: skip
    return Rendered(rows, sizes, means, scored, len(files), len(found), resolution, notes, out)


@contextmanager
def measured(device: torch.device) -> Iterator[dict[str, float | None]]:
    """Seconds (synchronised) and, on CUDA, peak GPU memory in GB of the work in the block: the dict
    yielded is filled as it ends (``render_s``, ``peak_gb``)."""
    cost: dict[str, float | None] = {"render_s": None, "peak_gb": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    yield cost
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        cost["peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    cost["render_s"] = round(time.perf_counter() - started, 4)


def _costs(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean render seconds and the highest peak memory of one size's renders."""
    peaks = [r["peak_gb"] for r in rows if r["peak_gb"] is not None]
    return {"render_s": sum(r["render_s"] for r in rows) / len(rows), "peak_gb": max(peaks, default=None)}


def score_cells(values: Sequence[float | None]) -> list[str]:
    """Table cells of the :data:`METRICS` ``values`` (under :data:`SCORE_COLUMNS`); "-" for None."""
    formats = ["{:.2f}", "{:.2f}", "{:.4f}"] + ["{:.2f}"] * len(UPSCALERS) + ["{:+.2f}"]
    return ["-" if v is None else f.format(v) for f, v in zip(formats, values, strict=True)]


def sizes_table(result: Rendered) -> str:
    """A markdown table of :func:`render_images`' scores: one row per size, the images scored there, the
    model's PSNR (unclamped), clamped PSNR, SSIM, the classical upscalers and the margin over the best."""
    rows = [
        [f"{size}x{size}", f"{result.scored[size]} of {result.images}",
         *score_cells([result.means[size].get(k) for k in METRICS])]
        for size in result.sizes
    ]  # fmt: skip
    return markdown_table(["size", "images scored", *SCORE_COLUMNS], rows)
