"""Evaluation on a held-out split (val during training, test at its end and in ``ginr.tools.evaluate``).

At the training resolution: per-image PSNR of unclamped predictions (the GINR protocol, the headline),
clamped PSNR and SSIM beside it. At each higher resolution, against real higher-resolution ground truth:
the same for the model's render, and PSNR of the classical upscalers (nearest, bicubic, Lanczos) of the
same low-resolution input against the same truth. Means are over images.
"""

import math
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ginr.coords import scale_tag
from ginr.engine.logging import reconstruction_grid
from ginr.engine.metrics import UPSCALERS, psnr, ssim, upscale
from ginr.engine.step import autocast
from ginr.models.ginr import GINR


@dataclass
class Evaluation:
    """``means`` per metric key (``psnr``, ``psnr_clamped``, ``ssim`` at the input resolution; ``psnr_<r>``,
    ``psnr_clamped_<r>``, ``ssim_<r>`` and ``<upscaler>_<r>`` at a resolution ``r``); ``rows`` per image."""

    means: dict[str, float]
    rows: list[dict[str, float]] = field(repr=False)

    @property
    def count(self) -> int:
        return len(self.rows)


def _scores(pred: torch.Tensor, truth: torch.Tensor, suffix: str) -> dict[str, torch.Tensor]:
    return {
        f"psnr{suffix}": psnr(pred, truth),
        f"psnr_clamped{suffix}": psnr(pred, truth, clamp=True),
        f"ssim{suffix}": ssim(pred, truth),
    }


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
    baselines: bool = True,
) -> Evaluation:
    """Score ``model`` on the first ``max_images`` images of ``dataset`` (all by default) and, at each
    resolution ``r`` of ``highres`` (the same images, same order, at ``r``), its renders and, with
    ``baselines``, the classical upscalers of the input."""
    was_training = model.training
    model.eval()
    total = len(dataset) if max_images is None else min(max_images, len(dataset))
    rows: list[dict[str, float]] = []
    for start, images in _batches(dataset, batch_size, total):
        images = images.to(device)
        with autocast(device, amp_dtype):
            latents = model.encode(images)
            recon = model.render(latents, *images.shape[-2:], images=images, chunk=chunk)
        scores = _scores(recon, images, "")
        for resolution, highres_set in highres.items():
            indices = range(start, start + len(images))
            truth = torch.stack([highres_set[i] for i in indices]).to(device)
            with autocast(device, amp_dtype):
                render = model.render(latents, *truth.shape[-2:], images=images, chunk=chunk)
            at_res = _scores(render, truth, f"_{resolution}")
            if baselines:
                for method in UPSCALERS:
                    at_res[f"{method}_{resolution}"] = psnr(upscale(images, *truth.shape[-2:], method), truth)
            upsampled = getattr(highres_set, "upsampled", None)  # an enlarged original is not truth
            if upsampled is not None:
                fake = torch.tensor([upsampled(i) for i in indices], device=device)
                at_res = {k: v.masked_fill(fake, float("nan")) for k, v in at_res.items()}
            scores |= at_res
        values = {key: value.tolist() for key, value in scores.items()}
        rows += [{"index": start + i, **{k: v[i] for k, v in values.items()}} for i in range(len(images))]
    model.train(was_training)
    keys = [k for k in (rows[0] if rows else {}) if k != "index"]
    means = {}
    for key in keys:
        scored = [r[key] for r in rows if not math.isnan(r[key])]
        means[key] = sum(scored) / len(scored) if scored else float("nan")
    for resolution in highres:  # how many images had real ground truth there
        means[f"images_{resolution}"] = sum(not math.isnan(r[f"psnr_{resolution}"]) for r in rows)
    return Evaluation(means, rows)


def _batches(dataset: Dataset, batch_size: int, total: int):
    start = 0
    for images in DataLoader(Subset(dataset, range(total)), batch_size=batch_size):
        yield start, images
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
        if name == "psnr" and all(f"{m}_{res}" in upscaled for m in UPSCALERS):
            tags[f"margin_{scale}"] = value - max(upscaled[f"{m}_{res}"] for m in UPSCALERS)
    return tags


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


def picture_grids(
    model: GINR,
    dataset: Dataset,
    highres: dict[int, Dataset],
    *,
    count: int,
    input_resolution: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    chunk: int,
) -> dict[str, torch.Tensor]:
    """Tag -> picture grid of the first ``count`` images: ``reconstructions_x2``, ... (input | bicubic |
    model | truth) at every resolution of ``highres``; without any, ``reconstructions`` (input |
    reconstruction | 4x render)."""
    count = min(count, len(dataset))
    if not count:
        return {}
    shown = torch.stack([dataset[i] for i in range(count)]).to(device)
    if not highres:
        return {"reconstructions": reconstructions(model, shown, amp_dtype=amp_dtype, chunk=chunk)}
    grids = {}
    for resolution, images in highres.items():
        truth = torch.stack([images[i] for i in range(count)]).to(device)
        grid = reconstructions(model, shown, truth=truth, amp_dtype=amp_dtype, chunk=chunk)
        grids[f"reconstructions_{scale_tag(resolution, input_resolution)}"] = grid
    return grids
