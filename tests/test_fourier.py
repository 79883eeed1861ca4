"""The coordinate convention (pixel centres, cells, patch centres) and the Fourier features of coordinates:
the stated units, both spectra, and bandwidths relative to the training resolution."""

import math

import pytest
import torch

from ginr.config import compose
from ginr.coords import nyquist, pixel_grid, with_cells
from ginr.models.decoder import MultiBandDecoder, ScentDecoder
from ginr.models.encoder import PatchTokenizer
from ginr.models.layers import FourierFeatures
from tests.conftest import DEFAULT_EXPERIMENT, block_of
from tests.test_models import BLOCKS


def test_pixel_centres_and_cells_of_small_images():
    """Pixel (i, j) of H x W at ((2 i + 1) / H - 1, (2 j + 1) / W - 1), its cell 2 / H by 2 / W."""
    want = torch.tensor([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    assert torch.equal(pixel_grid(2, 2), want)
    wide = pixel_grid(2, 4)
    assert wide[:4].tolist() == [[-0.5, -0.75], [-0.5, -0.25], [-0.5, 0.25], [-0.5, 0.75]]
    assert torch.equal(with_cells(pixel_grid(2, 4), 2, 4)[:, 2:], torch.tensor([[1.0, 0.5]]).expand(8, 2))
    assert torch.equal(with_cells(want, 2, 2), torch.cat([want, torch.ones(4, 2)], dim=-1))


@pytest.mark.parametrize(
    "size, patch, padding", [((4, 4), 2, 0), ((6, 10), 2, 0), ((7, 7), 3, 1), ((5, 9), 4, 0)]
)
def test_patch_centres_are_the_mean_of_their_pixel_centres(size, patch, padding):
    """In the pixel convention extended to the padding (pixel -1 at -1 - 1 / H): 2 x 2 patches of a 4 x 4
    image sit where a 2 x 2 image's pixels do."""
    height, width = size
    centres = PatchTokenizer(channels=1, dim=4, patch_size=patch, padding=padding).centres(
        height, width, torch.device("cpu")
    )
    rows = -(-(height + 2 * padding) // patch)
    cols = -(-(width + 2 * padding) // patch)
    ys = torch.tensor([(2 * (r * patch - padding + (patch - 1) / 2) + 1) / height - 1 for r in range(rows)])
    xs = torch.tensor([(2 * (c * patch - padding + (patch - 1) / 2) + 1) / width - 1 for c in range(cols)])
    torch.testing.assert_close(centres, torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2))
    if size == (4, 4):
        assert torch.equal(centres, pixel_grid(2, 2))


def test_fourier_features_on_values_worked_out_by_hand():
    """[sin(c W) | cos(c W)] in radians per coordinate unit; the log spectrum puts y's frequencies first,
    lowest first: with bandwidth 2 pi, pi / 2 and 2 pi per axis. At (y, x) = (0.5, 0.25):
    y: pi / 4, pi; x: pi / 8, pi / 2."""
    fourier = FourierFeatures(in_dim=2, num_features=4, bandwidth=2 * math.pi, spectrum="log")
    got = fourier(torch.tensor([[0.5, 0.25]]))
    r = math.sqrt(0.5)
    sines = [r, 0.0, 0.3826834323650898, 1.0]
    cosines = [r, -1.0, 0.9238795325112867, 0.0]
    torch.testing.assert_close(got, torch.tensor([sines + cosines]), rtol=0, atol=1e-6)


def test_gaussian_fourier_features_are_sines_then_cosines_of_the_scaled_projection():
    torch.manual_seed(0)
    fourier = FourierFeatures(in_dim=2, num_features=3, bandwidth=5.0)
    coords = torch.tensor([[0.3, -0.7]])
    phase = [(0.3 * fourier.freqs[0, k] - 0.7 * fourier.freqs[1, k]).item() * 5.0 for k in range(3)]
    want = [math.sin(a) for a in phase] + [math.cos(a) for a in phase]
    torch.testing.assert_close(fourier(coords), torch.tensor([want]), rtol=0, atol=1e-5)


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
