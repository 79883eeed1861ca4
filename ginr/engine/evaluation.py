"""Evaluation on a held-out split (val during training, test at its end and in ``ginr.tools.evaluate``).

At the training resolution: per-image PSNR of unclamped predictions (the GINR protocol, the headline),
clamped PSNR and SSIM beside it. At each higher resolution, against real higher-resolution ground truth:
the same for the model's render, and PSNR of the classical upscalers (nearest, bicubic, Lanczos) of the
same low-resolution input against the same truth. Means are over images.
"""

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from ginr.coords import scale_tag
from ginr.engine.metrics import UPSCALERS, margin, score, upscale
from ginr.engine.step import autocast
from ginr.files import write_atomic
from ginr.models.ginr import GINR


@dataclass
class Evaluation:
    """``means`` per metric key (``psnr``, ``psnr_clamped``, ``ssim`` at the input resolution; ``psnr_<r>``,
    ``psnr_clamped_<r>``, ``ssim_<r>`` and ``<upscaler>_<r>`` at a resolution ``r``); ``rows`` per image;
    ``grids``: tag -> picture grid of the first images, where asked for: ``reconstructions_x2``, ...
    (input | bicubic | model | truth) at every higher resolution; without any, ``reconstructions`` (input |
    reconstruction | 4x render). ``note``: what a decoder whose blocks mix queries attended over
    (:func:`attention_context`), to be said beside the scores; None for any other decoder."""

    means: dict[str, float]
    rows: list[dict[str, float]] = field(repr=False)
    grids: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    note: str | None = None

    @property
    def count(self) -> int:
        return len(self.rows)


@torch.no_grad()
def evaluate(
    model: GINR,
    dataset: Dataset,
    *,
    highres: dict[int, Dataset],
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    chunk: int,
    max_images: int | None = None,
    seed: int = 0,
    baselines: bool = True,
    pictures: int = 0,
    trained_on: int | None = None,
) -> Evaluation:
    """Score ``model`` on ``dataset`` (every image by default; with ``max_images``, the seeded sample of
    :func:`sample_indices`) and, at each resolution ``r`` of ``highres`` (the same images, same order, at
    ``r``), its renders and, with ``baselines``, the classical upscalers of the input; with the picture
    grids of the first ``pictures`` images scored. ``rows[i]["index"]`` is the image's index in ``dataset``.
    ``trained_on``: the pixels per image a training step decoded (None: all), for :attr:`Evaluation.note`."""
    was_training = model.training
    model.eval()
    rows: list[dict[str, float]] = []
    grids: dict[str, torch.Tensor] = {}
    sides = {}  # every render side, for the note
    for number, (indices, images) in enumerate(
        _batches(dataset, batch_size, sample_indices(len(dataset), max_images, seed))
    ):
        images = images.to(device)
        sides |= dict.fromkeys([images.shape[-1], *highres])
        with autocast(device, amp_dtype):
            latents = model.encode(images)
            recon = model.render(latents, *images.shape[-2:], images=images, chunk=chunk)
        scores = score(recon, images)
        shown = images[:pictures] if number == 0 else images[:0]  # the picture grids' images
        if len(shown) and not highres:
            grids["reconstructions"] = reconstructions(model, shown, amp_dtype=amp_dtype, chunk=chunk)
        for resolution, highres_set in highres.items():
            truth = torch.stack([highres_set[i] for i in indices]).to(device)
            with autocast(device, amp_dtype):
                render = model.render(latents, *truth.shape[-2:], images=images, chunk=chunk)
            scored = score(render, truth, images if baselines else None)
            if len(shown):
                size, k = truth.shape[-2:], len(shown)
                panels = [shown, upscale(shown, *size, "bicubic"), render[:k], truth[:k]]
                tag = f"reconstructions_{scale_tag(resolution, images.shape[-1])}"
                grids[tag] = reconstruction_grid(*(p.float().cpu() for p in panels))
            at_res = {f"{key}_{resolution}": value for key, value in scored.items()}
            upsampled = getattr(highres_set, "upsampled", None)  # an enlarged original is not truth
            if upsampled is not None:
                fake = torch.tensor([upsampled(i) for i in indices], device=device)
                at_res = {k: v.masked_fill(fake, float("nan")) for k, v in at_res.items()}
            scores |= at_res
        values = {key: value.tolist() for key, value in scores.items()}
        rows += [{"index": index, **{k: v[i] for k, v in values.items()}} for i, index in enumerate(indices)]
    model.train(was_training)
    keys = [k for k in (rows[0] if rows else {}) if k != "index"]
    means = {}
    for key in keys:
        scored = [r[key] for r in rows if not math.isnan(r[key])]
        means[key] = sum(scored) / len(scored) if scored else float("nan")
    for resolution in highres:  # how many images had real ground truth there
        means[f"images_{resolution}"] = sum(not math.isnan(r[f"psnr_{resolution}"]) for r in rows)
    return Evaluation(means, rows, grids, attention_context(model, list(sides), trained_on))


def sample_indices(count: int, max_images: int | None, seed: int) -> list[int]:
    """The images of a split of ``count`` that an evaluation scores, in split order: every one when
    ``max_images`` is None or covers the split; else ``max_images`` of them drawn uniformly from the whole
    split (not its first images) by a generator of its own seeded with ``seed`` (the run's): the same sample
    at every evaluation of a run and after a resume, so its curves compare like with like, and nothing drawn
    from the global RNGs that training reads. A larger ``max_images`` keeps the smaller's images."""
    if max_images is None or max_images >= count:
        return list(range(count))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:max_images].tolist())


def _batches(dataset: Dataset, batch_size: int, indices: list[int]):
    """(the dataset indices of a batch, its images), in order."""
    start = 0
    for images in DataLoader(Subset(dataset, indices), batch_size=batch_size):
        yield indices[start : start + len(images)], images
        start += len(images)


def scalar_tags(
    means: dict[str, float], resolution: int, baselines: dict[str, float] | None = None
) -> dict[str, float]:
    """Metric keys as TensorBoard tags, resolutions as scales of the input: ``psnr_64`` -> ``psnr_x2``,
    ``bicubic_64`` -> ``baseline/bicubic_x2``; plus ``margin_x2``: the model's PSNR minus the best
    classical upscaler's, from ``means`` or from ``baselines`` (the upscalers' scores of an earlier
    evaluation of the same images, which do not change)."""
    tags: dict[str, float] = {}
    upscaled = {**(baselines or {}), **means}
    for key, value in means.items():
        name, _, res = key.rpartition("_")
        if not res.isdigit():
            tags[key] = value
            continue
        scale = scale_tag(int(res), resolution)
        tags[f"baseline/{name}_{scale}" if name in UPSCALERS else f"{name}_{scale}"] = value
        lead = margin(upscaled, f"_{res}") if name == "psnr" else None
        if lead is not None:
            tags[f"margin_{scale}"] = lead
    return tags


PICTURE_PANELS = "one row per image: input | model | 4x render at the input's resolution; input | bicubic | model | truth above it"


def attention_context(model: GINR, resolutions: Sequence[int], trained_on: int | None) -> str | None:
    """What a render of a decoder whose blocks mix queries (``attn_ff``) attends over, said beside its
    scores: every pixel of the render at once (an r px render: r * r), whereas a training step's
    self-attention spans ``trained_on`` pixels per image (None: all the input's). None for a decoder
    that decodes each query alone."""
    if not model.mixes_queries:
        return None
    renders = ", ".join(f"{r * r:,} at {r} px" for r in sorted(set(resolutions)))
    trained = "every input pixel" if trained_on is None else f"{trained_on:,} pixels per image"
    return (
        f"this decoder's self-attention spans all the pixels of a render ({renders}); in training it spanned "
        f"{trained}: scores above that count measure it on more context than it was trained with"
    )


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def save_picture(image: torch.Tensor, path: str | Path) -> Path:
    """(C, H, W) in [0, 1] as an 8-bit PNG at ``path``, written atomically."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())


def reconstruction_grid(*panels: torch.Tensor) -> torch.Tensor:
    """One row per image, the panels side by side, each shown at the largest panel's size (nearest).

    panels (K, C, h_i, w_i) -> (3, K * H, len(panels) * W) in [0, 1].
    """
    size = max((p.shape[-2:] for p in panels), key=lambda s: s[0] * s[1])
    resized = [F.interpolate(p.float(), size=tuple(size), mode="nearest") for p in panels]
    rows = torch.cat(resized, dim=-1).clamp(0, 1)  # (K, C, H, n W)
    grid = torch.cat(list(rows), dim=-2)
    return grid.expand(3, -1, -1) if grid.shape[0] == 1 else grid


@torch.no_grad()
def reconstructions(
    model: GINR,
    images: torch.Tensor,
    *,
    truth: torch.Tensor | None = None,
    scale: int = 4,
    amp_dtype: torch.dtype | None,
    chunk: int,
) -> torch.Tensor:
    """A picture grid, one row per image: with higher-resolution ``truth``, input | bicubic | model |
    truth at that size; without, input | reconstruction | ``scale``x render -> (3, H', W')."""
    was_training = model.training
    model.eval()
    height, width = images.shape[-2:]
    with autocast(images.device, amp_dtype):
        latents = model.encode(images)
        if truth is not None:
            render = model.render(latents, *truth.shape[-2:], images=images, chunk=chunk)
            panels = [images, upscale(images, *truth.shape[-2:], "bicubic"), render, truth]
        else:
            recon = model.render(latents, height, width, images=images, chunk=chunk)
            panels = [
                images,
                recon,
                model.render(latents, height * scale, width * scale, images=images, chunk=chunk),
            ]
    model.train(was_training)
    return reconstruction_grid(*(p.float().cpu() for p in panels))
