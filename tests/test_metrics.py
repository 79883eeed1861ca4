"""Metrics and the evaluation protocol on constructed cases: unclamped vs clamped PSNR, SSIM, the
classical upscalers, and their tags."""

import math

import pytest
import torch

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


def test_ssim_identity_and_noise():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32)
    assert ssim(image, image).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    assert (ssim(noisy, image) < 0.9).all()
    assert ssim(image[:, :, :5, :5], image[:, :, :5, :5]).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


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
