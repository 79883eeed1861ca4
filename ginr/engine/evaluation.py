"""Test-set evaluation: PSNR at the training resolution and, against real higher-resolution ground truth,
at larger renders; reconstruction grids. Shared by training and ``python -m ginr.evaluate``."""

import torch
from torch.utils.data import DataLoader, Dataset

from ginr.engine.logging import reconstruction_grid
from ginr.engine.metrics import psnr
from ginr.engine.step import autocast
from ginr.models.ginr import GINR


@torch.no_grad()
def evaluate(
    model: GINR,
    test_set: Dataset,
    *,
    highres: dict[int, Dataset],
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    chunk: int,
    max_images: int | None = None,
) -> dict[str, float]:
    """Mean per-image PSNR (dB, predictions clamped to [0, 1]): ``psnr`` at the input resolution and
    ``psnr_<r>`` for renders at each resolution ``r`` of ``highres`` (same images, same order)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for start, images in _batches(test_set, batch_size, max_images):
        images = images.to(device)
        height, width = images.shape[-2:]
        with autocast(device, amp_dtype):
            latents = model.encode(images)
            results = {"psnr": psnr(model.render(latents, height, width, chunk=chunk), images)}
            for resolution, dataset in highres.items():
                truth = torch.stack([dataset[i] for i in range(start, start + len(images))]).to(device)
                render = model.render(latents, *truth.shape[-2:], chunk=chunk)
                results[f"psnr_{resolution}"] = psnr(render, truth)
        for key, values in results.items():
            sums[key] = sums.get(key, 0.0) + values.sum().item()
        count += len(images)
    model.train(was_training)
    return {key: total / count for key, total in sums.items()}


def _batches(dataset: Dataset, batch_size: int, max_images: int | None):
    total = len(dataset) if max_images is None else min(max_images, len(dataset))
    loader = DataLoader(torch.utils.data.Subset(dataset, range(total)), batch_size=batch_size)
    start = 0
    for images in loader:
        yield start, images
        start += len(images)


@torch.no_grad()
def reconstructions(
    model: GINR, images: torch.Tensor, *, scale: int, amp_dtype: torch.dtype | None, chunk: int
) -> torch.Tensor:
    """Ground truth | reconstruction | ``scale``x render for each image -> (3, H', W') grid."""
    was_training = model.training
    model.eval()
    height, width = images.shape[-2:]
    with autocast(images.device, amp_dtype):
        latents = model.encode(images)
        recon = model.render(latents, height, width, chunk=chunk)
        zoom = model.render(latents, height * scale, width * scale, chunk=chunk)
    model.train(was_training)
    return reconstruction_grid(images.cpu(), recon.float().cpu(), zoom.float().cpu())
