"""Fourier features: the stated units, both spectra, and bandwidths relative to the training resolution."""

import math

import pytest
import torch

from ginr.config import compose
from ginr.coords import nyquist, pixel_grid
from ginr.models.decoder import MultiBandDecoder, ScentDecoder
from ginr.models.layers import FourierFeatures
from tests.conftest import DEFAULT_EXPERIMENT, block_of
from tests.test_models import BLOCKS


def test_nyquist_is_half_a_cycle_per_pixel():
    for resolution in (1, 32, 178):
        step = 2 / resolution  # neighbouring pixel centres
        assert nyquist(resolution) * step == pytest.approx(math.pi)
    assert nyquist(32) == pytest.approx(16 * math.pi)
    with pytest.raises(ValueError, match="resolution must be positive, got 0"):
        nyquist(0)


def test_a_feature_at_nyquist_alternates_sign_on_the_pixel_grid():
    """The unit is radians per coordinate unit: at nyquist(R), sin is +-1 alternating pixel by pixel."""
    fourier = FourierFeatures(in_dim=2, num_features=2, bandwidth=nyquist(16), spectrum="log")
    sin_x = fourier(pixel_grid(1, 16))[:, 1]  # one row, x varies; the single x frequency is the bandwidth
    assert torch.allclose(sin_x.abs(), torch.ones(16), atol=1e-5)
    assert (sin_x[1:] * sin_x[:-1] < 0).all()


def test_gaussian_bandwidth_is_the_frequency_standard_deviation():
    torch.manual_seed(0)
    fourier = FourierFeatures(in_dim=2, num_features=20_000, bandwidth=7.0)
    effective = fourier.freqs * fourier.log_bandwidth.exp()
    assert effective.std().item() == pytest.approx(7.0, rel=0.02)


def test_log_spectrum_is_axis_aligned_and_log_spaced_up_to_the_bandwidth():
    fourier = FourierFeatures(in_dim=2, num_features=8, bandwidth=40.0, spectrum="log")
    w = fourier.freqs * fourier.log_bandwidth.exp()
    x_freqs, y_freqs = w[0, :4], w[1, 4:]
    assert (w[0, 4:] == 0).all() and (w[1, :4] == 0).all()
    assert torch.allclose(x_freqs, y_freqs)
    assert x_freqs[0].item() == pytest.approx(math.pi / 2, rel=1e-5)
    assert x_freqs[-1].item() == pytest.approx(40.0, rel=1e-5)
    ratios = x_freqs[1:] / x_freqs[:-1]
    assert torch.allclose(ratios, ratios[0].expand(3), rtol=1e-4)
    # deterministic: the same on every construction, whatever the RNG
    torch.manual_seed(1)
    assert torch.equal(
        FourierFeatures(in_dim=2, num_features=8, bandwidth=40.0, spectrum="log").freqs, fourier.freqs
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spectrum": "uniform"}, "Fourier spectrum must be one of gaussian, log, got 'uniform'"),
        ({"bandwidth": 0.0}, "Fourier bandwidth must be > 0, got 0.0"),
        ({"spectrum": "log", "num_features": 7}, "log spectrum needs num_fourier divisible by 2 axes, got 7"),
        (
            {"spectrum": "log", "bandwidth": 1.0},
            "log spectrum needs a bandwidth above pi / 2 rad per unit, got 1",
        ),
    ],
)
def test_bad_fourier_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FourierFeatures(**kwargs)


@pytest.mark.parametrize("resolution", [32, 178])
def test_decoder_bandwidths_are_fractions_of_the_training_nyquist(resolution):
    decoder = MultiBandDecoder(
        block=BLOCKS[block_of(DEFAULT_EXPERIMENT)], latent_dim=16, hidden_dim=16, num_layers=1, num_fourier=8, heads=2, dim_head=8,
        resolution=resolution, bandwidths=(0.25, 1.0), query_bandwidth=0.5,
    )  # fmt: skip
    rad = [band.fourier.log_bandwidth.exp().item() for band in decoder.bands]
    assert rad == pytest.approx([0.25 * nyquist(resolution), nyquist(resolution)], rel=1e-6)
    assert decoder.query_fourier.log_bandwidth.exp().item() == pytest.approx(
        0.5 * nyquist(resolution), rel=1e-6
    )
    scent = ScentDecoder(
        latent_dim=16, hidden_dim=16, num_fourier=8, heads=2, dim_head=8, resolution=resolution
    )
    assert scent.query_fourier.log_bandwidth.exp().item() == pytest.approx(
        0.125 * nyquist(resolution), rel=1e-6
    )


def test_one_config_scales_the_spectrum_with_the_training_resolution():
    """The same experiment at 32 px and 178 px keeps its bandwidths as fractions; the radians follow."""
    small = compose([f"experiment={DEFAULT_EXPERIMENT}", "hardware=cpu"])
    large = compose([f"experiment={DEFAULT_EXPERIMENT}", "hardware=cpu", "data=celeba178"])
    assert small.decoder.bandwidths == large.decoder.bandwidths
    assert (small.decoder.resolution, large.decoder.resolution) == (small.data.resolution, 178)
