"""``python -m ginr.tools.evaluate RUN --inputs ... --sizes ...``: any images, rendered at any size, scored only
against real ground truth."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import ginr
from ginr.config import compose
from ginr.data.imagefiles import load_image
from ginr.engine.metrics import ssim, strip_ssim
from ginr.tools.evaluate import main
from ginr.tools.images import InputError, render_images
from ginr.train import train
from tests.conftest import DEFAULT_EXPERIMENT


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    """A checkpoint of a very small model, trained one step (uncompiled: the test is about evaluation)."""
    run = tmp_path_factory.mktemp("inputs") / "run"
    train(
        compose([f"experiment={DEFAULT_EXPERIMENT}", "debug=smoke", f"paths.data_dir={data_dir}", f"run_dir={run}",
                 "trainer.max_steps=1", "trainer.compile=false", "data.eval_resolutions=[]",
                 "trainer.eval_max_images=1", "trainer.test_max_images=1",
                 "decoder.hidden_dim=8", "decoder.num_layers=1", "decoder.num_fourier=4"])
    )  # fmt: skip
    return run


def photo(width: int, height: int) -> np.ndarray:
    """A smooth, photo-like RGB image: gradients and a soft blob."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    blob = np.exp(-((x - 0.6) ** 2 + (y - 0.4) ** 2) / 0.05)
    rgb = np.stack([x, 0.5 + 0.4 * np.sin(6 * y), blob], axis=-1)
    return (rgb.clip(0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo(1024, 768)).save(folder / "photo.png")
    Image.fromarray(photo(640, 640)[..., 1]).save(folder / "sub" / "gray.jpg", quality=95)
    Image.fromarray(photo(20, 28)).save(folder / "small.bmp")
    return folder


def test_any_images_render_at_any_size_and_score_only_against_real_truth(run_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(run_dir), "--inputs", str(images), "--sizes", "1024", "64", "512", "--out", str(out)]
    assert main(argv) == 0
    stdout, stderr = capsys.readouterr()
    scored = {"photo": (64, 512), "sub_gray": (64, 512), "small": ()}
    for name, sizes in scored.items():
        for size in (64, 512, 1024):
            with Image.open(out / f"{name}_{size}.png") as render:
                assert (render.size, render.mode) == ((size, size), "RGB")
            with Image.open(out / f"{name}_{size}_grid.png") as grid:  # input | bicubic | model | original
                assert grid.size == ((4 if size in sizes else 3) * size, size)
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    for row in rows:
        expected = int(row["size"]) in scored[row["name"]]
        assert row["scored"] == str(expected)
        for key in ("psnr", "psnr_clamped", "ssim", "nearest", "bicubic", "lanczos", "margin"):
            assert bool(row[key]) == expected, (row["name"], row["size"], key)
    for row in rows:  # every render is timed; peak GPU memory only where there is a GPU
        assert float(row["render_s"]) > 0 and row["peak_gb"] == ""
    results = json.loads((out / "results.json").read_text())
    assert results["sizes"]["1024"]["render_s"] == pytest.approx(
        sum(float(r["render_s"]) for r in rows if r["size"] == "1024") / 3
    )
    assert "| 64x64 | 2 of 3 |" in stdout and "| 512x512 | 2 of 3 |" in stdout
    assert "| 1024x1024 | 0 of 3 | - | - | - | - | - | - | - |" in stdout
    assert "photo: no ground truth at 1024 px: the original is 1024x768 (its centre square 768 px)" in stdout
    assert "sub_gray: no ground truth at 1024 px: the original is 640x640" in stdout
    assert "small: no ground truth at 64, 512, 1024 px: the original is 20x28" in stdout
    assert "small: the input is upsampled" in stdout
    assert "3 images, each its centre square resized (Lanczos) to 32x32" in stdout
    assert [line.split("]")[0] for line in stderr.splitlines() if line.startswith("[")] == [
        "[1/3",
        "[2/3",
        "[3/3",
    ]


def test_api_truth_is_the_centre_square_downsampled_never_upsampled(run_dir, tmp_path):
    image = tmp_path / "wide.png"
    Image.fromarray(photo(300, 200)).save(image)
    loaded = ginr.load(run_dir)
    result = render_images(loaded, image, [256, 128, 200], out=tmp_path / "out", progress=False)
    assert result.sizes == [128, 200, 256] and result.scored == {128: 1, 200: 1, 256: 0}
    assert set(result.means[128]) == {
        "psnr",
        "psnr_clamped",
        "ssim",
        "nearest",
        "bicubic",
        "lanczos",
        "margin",
    }
    assert result.means[256] == {}
    assert result.notes == [
        "wide: no ground truth at 256 px: the original is 300x200 (its centre square 200 px)"
    ]
    grid = np.asarray(Image.open(tmp_path / "out" / "wide_200_grid.png"))
    np.testing.assert_array_equal(grid[:, 600:], photo(300, 200)[:, 50:250])  # the exact centre crop
    truth = (load_image(image, size=(128, 128), channels=3, crop="center") * 255).round().byte()
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out" / "wide_128_grid.png"))[:, 384:],
        truth.permute(1, 2, 0).numpy(),
    )
    with pytest.raises(InputError, match=r"size 0 is not allowed: expected a positive integer"):
        render_images(loaded, image, [64, 0], out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_any_image_is_rendered_and_upscaled_from_its_low_resolution_input_only(tmp_path):
    """``render_images`` hands the model (``images=``, for an image skip) and every upscaler the input at
    the model's resolution, never the ground truth it scores against; a stand-in model records it."""
    from omegaconf import OmegaConf

    from ginr.api import Loaded
    from ginr.engine.metrics import UPSCALERS, psnr, upscale
    from tests.test_protocol import Recorder

    image = tmp_path / "photo.png"
    Image.fromarray(photo(96, 80)).save(image)
    model = Recorder()
    model.decoder = torch.nn.Identity()
    config = OmegaConf.create({"data": {"resolution": 16, "eval_resolutions": [], "channels": 3},
                               "trainer": {"render_chunk": 4096}})  # fmt: skip
    loaded = Loaded(
        model, config, step=0, checkpoint=tmp_path / "run" / "checkpoints" / "last.ckpt", amp=None
    )
    result = render_images(loaded, image, [32, 64], out=tmp_path / "out", progress=False)
    small = load_image(image, size=(16, 16), channels=3, crop="center")[None]
    assert [(h, w) for h, w, _ in model.rendered] == [(32, 32), (64, 64)]
    assert all(torch.equal(given, small) for _, _, given in model.rendered)
    assert len(model.encoded) == 1 and torch.equal(model.encoded[0], small)
    for row in result.rows:
        size = row["size"]
        truth = load_image(image, size=(size, size), channels=3, crop="center")[None]
        for method in UPSCALERS:
            expected = psnr(upscale(small, size, size, method), truth).item()
            assert row[method] == pytest.approx(expected, abs=1e-4) and expected < 60  # the truth: 100 dB
        render = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear")
        assert row["psnr"] == pytest.approx(psnr(render, truth).item(), abs=1e-4)


def test_max_images_says_how_many_were_scored(run_dir, tmp_path, capsys):
    assert main([str(run_dir), "--max-images", "2", "--out", str(tmp_path / "eval")]) == 0
    assert "2 of 354 test images scored" in capsys.readouterr().out


def test_each_resolution_is_one_row_the_inputs_included(run_dir, tmp_path, capsys):
    """``--resolutions 32 64 64`` for a 32 px run: the input's row once (always scored), 64 px once."""
    assert (
        main(
            [
                str(run_dir),
                "--max-images",
                "2",
                "--resolutions",
                "32",
                "64",
                "64",
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 0
    )
    rows = [
        line.split("|")[1].strip()
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and "x" in line.split("|")[1]
    ]
    assert rows == ["32x32", "64x64"], rows


@pytest.mark.parametrize(
    "args, message",
    [
        (["--inputs", "{tmp}/nowhere"], "error: {tmp}/nowhere does not exist: expected an image file (bmp, jpeg"),
        (["--inputs", "{tmp}/empty"], "error: no images (bmp, jpeg, jpg, png, webp) found under {tmp}/empty"),
        (["--inputs", "{tmp}/notes.txt"], "error: {tmp}/notes.txt is not an image: expected one of bmp"),
        (["--inputs", "{tmp}/broken.png"], "error: cannot decode image {tmp}/broken.png: not an image format"),
        (["--inputs", "{tmp}/ok.png", "--sizes", "64", "0"], "error: argument --sizes: 0 is not allowed: expected a positive integer (pixels)"),
        (["--inputs", "{tmp}/ok.png", "--sizes", "big"], "error: argument --sizes: big is not allowed"),
        (["--sizes", "64"], "error: --sizes needs --inputs"),
        (["--inputs", "{tmp}/ok.png", "--resolutions", "64"], "error: --resolutions is for the run's dataset"),
    ],
)  # fmt: skip
def test_bad_inputs_are_one_line_and_exit_code_2_before_any_work(run_dir, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    Image.fromarray(photo(40, 40)).save(tmp_path / "ok.png")
    ckpt = str(run_dir) if "broken" in message else str(tmp_path / "no-run")  # paths are checked first
    argv = [ckpt, *(a.replace("{tmp}", str(tmp_path)) for a in args), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(message.replace("{tmp}", str(tmp_path))) and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("height, width, rows", [(700, 600, 128), (277, 12, 11), (50, 50, 256)])
def test_ssim_over_strips_is_the_ssim_of_the_whole_image(height, width, rows):
    target = torch.rand(2, 3, height, width)
    pred = 0.7 * target + 0.3 * torch.rand_like(target)
    torch.testing.assert_close(strip_ssim(pred, target, rows=rows), ssim(pred, target))


def test_a_photo_folder_as_data_dir_is_pointed_to_inputs_not_filled_with_the_dataset(run_dir, images, capsys):
    assert main([str(run_dir), "--data-dir", str(images)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --data-dir {images} holds images, but it is where the run's Emoji3D is cached: " \
                  f"to evaluate those images use --inputs {images}"  # fmt: skip
    assert not any(p.suffix in (".npz", ".tgz") for p in images.rglob("*"))  # nothing downloaded into it


def test_a_resolution_the_dataset_cannot_provide_is_one_line(run_dir, capsys):
    assert main([str(run_dir), "--resolutions", "512"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no 512 px ground truth in Emoji3D (") and "--inputs IMAGES --sizes" in err
    assert "\n" not in err
