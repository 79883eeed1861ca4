"""Metrics and the evaluation protocol on constructed cases: unclamped vs clamped PSNR, SSIM, the
classical upscalers, and their tags."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ginr.engine.evaluation import scalar_tags
from ginr.engine.metrics import UPSCALERS, psnr, ssim, upscale


def test_psnr_is_unclamped_by_default():
    target = torch.zeros(2, 3, 4, 4)
    pred = torch.full_like(target, -0.1)  # out of range: clamping would hide the error
    pred[1] = 0.1
    assert psnr(pred, target).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    clamped = psnr(pred, target, clamp=True)
    assert clamped[0] == pytest.approx(100.0) and clamped[1] == pytest.approx(20.0, abs=1e-4)


def test_psnr_is_per_image_then_averaged_by_the_caller():
    target = torch.zeros(2, 1, 2, 2)
    pred = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 0.01)])
    per_image = psnr(pred, target)
    assert per_image.tolist() == pytest.approx([20.0, 40.0], abs=1e-3)
    pooled = -10 * math.log10((0.1**2 + 0.01**2) / 2)  # the mean over images differs from pooled MSE
    assert per_image.mean().item() != pytest.approx(pooled, abs=0.1)


def test_psnr_hand_computed_on_uneven_errors_outside_the_range():
    target = torch.zeros(2, 3, 2, 2)
    target[1] = 1.0
    pred = target.clone()
    pred[0, 0, 0, 0] = 0.6  # one value of 12 off by 0.6: MSE 0.36 / 12 = 0.03
    pred[1, 2] = 1.2  # a whole channel 0.2 above 1: MSE 4 * 0.04 / 12 = 0.04 / 3
    expected = [10 * math.log10(1 / 0.03), 10 * math.log10(3 / 0.04)]  # 15.229 and 18.751 dB
    assert psnr(pred, target).tolist() == pytest.approx(expected, abs=1e-4)
    assert psnr(pred, target, clamp=True).tolist() == pytest.approx([expected[0], 100.0], abs=1e-4)
    assert psnr(pred.double(), target).dtype == torch.float32


def _pattern(height: int, width: int, channels: int, phase: float = 0.0) -> torch.Tensor:
    """A deterministic structured image (C, H, W) in [0, 1] (no RNG, so the references below stay valid)."""
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    return torch.stack(
        [0.5 + 0.3 * torch.sin(0.7 * x + 0.3 * (k + 1) * y + phase) * torch.cos(0.45 * y - 0.2 * k * x)
         + 0.15 * torch.sin(1.9 * x * y / width + k) for k in range(channels)]
    ).clamp(0, 1)  # fmt: skip


def _ssim_cases() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(pred, target): two 3-channel 24 x 20 images, distorted differently; one grey 7 x 7 image."""
    target = _pattern(24, 20, 3)
    pred = torch.stack([0.8 * target + 0.1 + 0.05 * _pattern(24, 20, 3, phase=2.0), target.roll(1, dims=-1)])
    small = _pattern(7, 7, 1)[None]
    return (pred, target.expand(2, -1, -1, -1)), (
        0.6 * small + 0.3 * _pattern(7, 7, 1, phase=1.0)[None],
        small,
    )


# Reference values from an independent implementation: scikit-image 0.26.0,
# skimage.metrics.structural_similarity(pred_hwc, target_hwc, gaussian_weights=True, sigma=1.5,
# use_sample_covariance=False, data_range=1.0, channel_axis=-1), per image on the float64 copies of the
# images of _ssim_cases(), computed once offline (scikit-image is not a dependency). That is Wang et al.'s
# SSIM as ginr implements it: an 11 x 11 Gaussian window of sigma 1.5 (skimage's truncate=3.5 gives 11
# taps), K1 = 0.01, K2 = 0.03, population (co)variances, the mean over the positions where the window fits
# (skimage filters with reflection, then crops the (11 - 1) / 2 border: the same positions), channels
# averaged. ginr's documented deviation: on an image smaller than 11 px the window shrinks to its side with
# sigma 1.5 * side / 11; the 7 x 7 reference is skimage's with sigma=1.5 * 7 / 11 (a 7-tap window).
SSIM_REFERENCE = [0.97383751, 0.64025535]
SSIM_REFERENCE_7PX = [0.94210752]


def test_ssim_matches_an_independent_implementation():
    (pred, target), (small_pred, small_target) = _ssim_cases()
    assert ssim(pred, target).tolist() == pytest.approx(SSIM_REFERENCE, abs=1e-5)
    assert ssim(small_pred, small_target).tolist() == pytest.approx(SSIM_REFERENCE_7PX, abs=1e-5)
    assert ssim(target, target).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    # predictions are clamped to [0, 1] first (the targets are in it)
    beyond = pred.clone()
    beyond[0, :, :4] = 1.5
    torch.testing.assert_close(ssim(beyond, target), ssim(beyond.clamp(0, 1), target))
    assert not torch.allclose(ssim(beyond, target), ssim(pred, target))


def test_ssim_is_per_image_and_symmetric():
    (pred, target), _ = _ssim_cases()
    torch.testing.assert_close(ssim(pred[1:], target[1:]), ssim(pred, target)[1:])  # images do not mix
    torch.testing.assert_close(ssim(target, pred), ssim(pred, target))
    per_channel = torch.stack([ssim(pred[:, c : c + 1], target[:, c : c + 1]) for c in range(3)])
    torch.testing.assert_close(ssim(pred, target), per_channel.mean(dim=0))  # channels averaged


def test_upscalers_on_constructed_images():
    small = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).expand(1, 3, 2, 2)
    nearest = upscale(small, 4, 4, "nearest")
    assert torch.equal(
        nearest[0, 0], torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0.0]])
    )
    flat = torch.full((2, 3, 8, 8), 100 / 255)
    for method in UPSCALERS:
        up = upscale(flat, 16, 24, method)
        assert up.shape == (2, 3, 16, 24) and torch.allclose(up, torch.full_like(up, 100 / 255))
    gray = upscale(torch.rand(1, 1, 8, 8), 16, 16, "bicubic")
    assert gray.shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="'area' is not one of nearest, bicubic, lanczos"):
        upscale(flat, 16, 16, "area")


def test_upscalers_are_pils_filters_on_the_8bit_input():
    """Each baseline is PIL's resize of the input quantised to 8 bits, with the filter its name says
    (Lanczos a = 3, antialiased; bicubic a = -0.5): an independent check of :data:`UPSCALERS`."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    images = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
    filters = {"nearest": Image.Resampling.NEAREST, "bicubic": Image.Resampling.BICUBIC,
               "lanczos": Image.Resampling.LANCZOS}  # fmt: skip
    assert set(filters) == set(UPSCALERS)
    outputs = {}
    for method, resample in filters.items():
        expected = np.asarray(Image.fromarray(small).resize((21, 10), resample), dtype=np.float32) / 255
        outputs[method] = upscale(images + 0.4 / 255, 10, 21, method)  # rounds to the same 8-bit input
        np.testing.assert_array_equal(outputs[method][0].permute(1, 2, 0).numpy(), expected)
    assert not torch.equal(outputs["bicubic"], outputs["lanczos"])  # the check tells the filters apart


def test_bicubic_beats_nearest_on_a_smooth_image():
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    truth = (0.5 + 0.4 * torch.sin(3 * xs) * torch.cos(2 * ys)).expand(1, 3, 64, 64)
    low = torch.nn.functional.interpolate(truth, size=(16, 16), mode="area")
    scores = {m: psnr(upscale(low, 64, 64, m), truth).item() for m in UPSCALERS}
    assert scores["bicubic"] > scores["nearest"] and scores["lanczos"] > scores["nearest"]


def test_scalar_tags_name_scales_baselines_and_the_margin():
    means = {"psnr": 30.0, "ssim": 0.9, "psnr_64": 25.0, "ssim_64": 0.8, "nearest_64": 24.0, "bicubic_64": 26.0,
             "lanczos_64": 26.5, "psnr_clamped_64": 25.1, "psnr_100": 20.0}  # fmt: skip
    tags = scalar_tags(means, 32)
    assert tags["psnr_x2"] == 25.0 and tags["psnr_clamped_x2"] == 25.1 and tags["baseline/bicubic_x2"] == 26.0
    assert (
        tags["margin_x2"] == pytest.approx(-1.5) and tags["psnr_100px"] == 20.0 and "margin_100px" not in tags
    )


def test_flop_counter_counts_a_depthwise_convolution_backward_as_two_forwards():
    from ginr.engine.step import flop_counter

    conv = torch.nn.Conv1d(64, 64, 4, groups=64, bias=False)  # the encoder's causal convolution's shape
    x = torch.randn(8, 64, 100, requires_grad=True)
    with flop_counter() as forward_only:
        conv(x)
    with flop_counter() as both:
        conv(x).sum().backward()
    forward = 2 * 8 * 97 * 64 * 4  # multiply-adds of 64 channels x 4 taps at 97 positions, x2
    assert forward_only.get_total_flops() == forward
    assert both.get_total_flops() == 3 * forward  # forward + input gradient + weight gradient
