"""data=photos on tiny fixtures: source packages made here (a Debian package and a tarball), no network."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ginr.data import photo_sources, photos
from ginr.data.fetch import Pinned
from ginr.data.photos import EVAL_CROPS, MIN_CROP, Photos
from ginr.tools import evaluate

MP = pytest.MonkeyPatch


def smooth_photo(seed: int, height: int, width: int) -> np.ndarray:
    """A photo-like uint8 image: smooth colour fields (a low-resolution noise upsampled)."""
    low = torch.from_numpy(np.random.default_rng(seed).random((1, 3, 6, 8), dtype=np.float32))
    image = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    return (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def deb_bytes(files: dict[str, bytes]) -> bytes:
    """A Debian package as dpkg-deb writes one: an ar archive of debian-binary, control and data tarballs."""
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", tar_bytes({"./control": b"x"}, "w:xz")),
               ("data.tar.xz", tar_bytes(files, "w:xz"))]  # fmt: skip
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: MP) -> Path:
    """Two source packages in ROOT/photos (a .deb and a .tar.gz) with five photos, pinned by their sha256
    in a stand-in for photo_sources.PHOTOS: 3 train (one larger than MAX_SIDE), 1 val, 1 test."""
    folder = tmp_path / "root" / "photos"
    folder.mkdir(parents=True)
    sizes = {"a": (900, 1200), "b": (300, 400), "c": (260, 300), "v": (320, 320), "t": (280, 420)}
    images = {name: smooth_photo(i, *size) for i, (name, size) in enumerate(sizes.items())}
    deb = deb_bytes({f"./usr/share/{n}.png": png(images[n]) for n in "abv"})
    tgz = tar_bytes({f"pkg/{n}.png": png(images[n]) for n in "ct"}, "w:gz")
    (folder / "fake.deb").write_bytes(deb)
    (folder / "fake.tar.gz").write_bytes(tgz)
    pin = lambda name, raw: Pinned(
        f"https://example.invalid/{name}", name, hashlib.sha256(raw).hexdigest(), "x"
    )
    deb_pin, tgz_pin = pin("fake.deb", deb), pin("fake.tar.gz", tgz)
    table = {"a": (deb_pin, "./usr/share/a.png", "train"), "b": (deb_pin, "./usr/share/b.png", "train"),
             "c": (tgz_pin, "pkg/c.png", "train"), "v": (deb_pin, "./usr/share/v.png", "val"),
             "t": (tgz_pin, "pkg/t.png", "test")}  # fmt: skip
    monkeypatch.setattr(photo_sources, "PHOTOS", table)
    return tmp_path / "root"


def test_the_real_photo_table_splits_by_photo_with_every_split_used() -> None:
    splits = {split for _, _, split in photo_sources.PHOTOS.values()}
    assert splits == {"train", "val", "test"}
    paths = [(source.name, path) for source, path, _ in photo_sources.PHOTOS.values()]
    assert len(set(paths)) == len(paths)  # one file is one photo, in one split
    assert all(
        len(source.sha256) == 64 and source.url.endswith(source.name)
        for source, _, _ in photo_sources.PHOTOS.values()
    )


def test_the_cache_is_built_once_from_the_verified_packages(sources: Path, monkeypatch: MP) -> None:
    train = Photos(root=str(sources), split="train", resolution=16, crops_per_photo=5)
    assert train.photo_names == ["a", "b", "c"] and len(train) == 15
    assert max(train.photos[0].shape[:2]) > min(train.photos[0].shape[:2]) == photo_sources.MAX_SIDE  # shrunk
    assert train.photos[1].shape == (300, 400, 3)  # a photo below MAX_SIDE keeps its pixels
    original = Image.open(io.BytesIO(png(smooth_photo(1, 300, 400))))
    assert np.array_equal(train.photos[1], np.asarray(original))  # PNG in the cache: lossless
    monkeypatch.setattr(photo_sources, "preprocess", lambda *a, **k: pytest.fail("the cache was not used"))
    for name in ("fake.deb", "fake.tar.gz"):
        (sources / "photos" / name).unlink()
    assert Photos(root=str(sources), split="val", resolution=16).photo_names == ["v"]


def test_a_corrupt_or_missing_package_is_one_clear_error(sources: Path, monkeypatch: MP) -> None:
    deb = sources / "photos" / "fake.deb"
    deb.write_bytes(deb.read_bytes()[:-1] + b"!")
    with pytest.raises(RuntimeError, match=r"sha256 mismatch for .*fake\.deb: expected [0-9a-f]{64}, got"):
        Photos(root=str(sources), split="train", download=False)
    deb.unlink()
    with pytest.raises(
        RuntimeError, match=r"fake\.deb not available \(.*missing and download=False\).*curl -LO"
    ):
        Photos(root=str(sources), split="train", download=False)
    assert not (sources / "photos" / photos.CACHE).exists()  # nothing half-made


def test_train_crops_are_fixed_by_the_index_alone_and_alike_at_every_resolution(sources: Path) -> None:
    low = Photos(root=str(sources), split="train", resolution=16, crops_per_photo=50)
    high = Photos(root=str(sources), split="train", resolution=64, crops_per_photo=50)
    assert [low.crop(i)[0] for i in range(6)] == [0, 1, 2, 0, 1, 2]  # photos in turn
    large = [i for i in range(len(low)) if low.crop(i)[0] < 2]  # a and b: many thousand crops each
    assert len({low.crop(i) for i in large}) == len(large)  # every item a crop of its own
    for i in (0, 7, 149):
        photo, (top, left, side) = low.crop(i)
        height, width = low.photos[photo].shape[:2]
        assert MIN_CROP <= side <= min(height, width) and top + side <= height and left + side <= width
        assert (
            low.crop(i)
            == high.crop(i)
            == Photos(root=str(sources), split="train", crops_per_photo=50).crop(i)
        )
        x, y = low[i], high[i]
        assert x.shape == (3, 16, 16) and y.shape == (3, 64, 64) and x.min() >= 0 and x.max() <= 1
        assert F.mse_loss(F.avg_pool2d(y[None], 4)[0], x) < 1e-3  # one crop, two resolutions
    with pytest.raises(IndexError, match="150 train items"):
        low[150]


def test_val_and_test_are_fixed_crops_then_the_centre_square(sources: Path) -> None:
    test = Photos(root=str(sources), split="test", resolution=32)
    assert len(test) == EVAL_CROPS + 1 and test.names[-1] == "t#centre" and test.names[0] == "t#0"
    assert test.crop(EVAL_CROPS) == (0, (0, 70, 280))  # 280 x 420: the middle 280 x 280
    assert torch.equal(test[3], Photos(root=str(sources), split="test", resolution=32)[3])
    assert len({test.crop(k) for k in range(EVAL_CROPS)}) == EVAL_CROPS


@pytest.mark.parametrize(
    ("options", "message"),
    [({"resolution": 257}, r"resolution 257 out of range; allowed: 8 to 256"),
     ({"resolution": 32.0}, r"resolution must be an int, got 32\.0"),
     ({"crops_per_photo": 0}, r"crops_per_photo must be a positive int, got 0"),
     ({"split": "valid"}, r"unknown split 'valid'")],
)  # fmt: skip
def test_bad_options_are_refused_before_any_work(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Photos(root=str(tmp_path), **{"split": "train", **options})
    assert not (tmp_path / "photos").exists()


def test_data_photos_trains_arbitrary_scale_with_continuous_scales_on_the_fixture(sources: Path) -> None:
    from ginr.config import compose, prepare
    from ginr.train import train

    tiny = ["debug=smoke", "data.batch_size=2", "data.num_workers=0", "trainer.max_steps=2", "trainer.eval_every=2",
            "trainer.compile=false", "data.dataset.crops_per_photo=4", "targets=arbitrary_scale",
            "targets.scales=continuous"]  # fmt: skip
    run = [f"paths.data_dir={sources}", f"run_dir={sources / 'run'}", "data=photos"]
    from ginr.engine.build import build_model, build_queries

    cfg = prepare(compose([*run, *tiny]))
    assert build_queries(cfg, build_model(cfg), "cpu").continuous  # the config reaches the step's queries
    metrics = train(compose([*run, *tiny]))
    assert metrics["val/split_images"] == EVAL_CROPS + 1 and metrics["test/split_images"] == EVAL_CROPS + 1
    # scored against the same crops' real pixels at 2x (debug=smoke's eval resolution), beside Lanczos
    assert np.isfinite(metrics["test/psnr_x2"]) and np.isfinite(metrics["test/baseline/lanczos_x2"])

    # the same model on another data option's test split: an image folder here
    folder = sources / "folder"
    for split, count in (("train", 2), ("val", 1), ("test", 3)):
        (folder / split).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(smooth_photo(10 + i, 40, 40)).save(folder / split / f"{i}.png")
    args = [str(sources / "run"), "--data", "image_folder", "--data-dir", str(folder), "--device", "cpu"]
    assert evaluate.main(args) == 0
    scored = json.loads((sources / "run" / "eval_image_folder" / "results.json").read_text())
    assert scored["split_images"] == 3 and scored["resolution"] == 32 and np.isfinite(scored["psnr"])
    assert evaluate.main([str(sources / "run"), "--data", "photo"]) == 2  # not a data option: one line


def test_an_unknown_data_option_is_one_line_naming_the_options(tmp_path: Path, capsys) -> None:
    assert evaluate.main([str(tmp_path), "--data", "photo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data photo is not a data option: one of ") and "photos" in err


def test_mixed_puts_its_parts_one_after_the_other_for_every_split(sources: Path) -> None:
    from functools import partial

    from ginr.config import compose, prepare
    from ginr.data.mixed import Mixed

    many, few = partial(Photos, root=str(sources), crops_per_photo=4), partial(Photos, root=str(sources))
    train = Mixed(parts={"many": many, "few": few}, split="train", resolution=16)
    assert len(train) == 3 * 4 + 3 * 65536 and train.channels == 3
    assert [train.part_of(i) for i in (0, 11, 12, len(train) - 1)] == ["many", "many", "few", "few"]
    assert torch.equal(train[5], many(split="train", resolution=16)[5])
    assert torch.equal(train[12 + 7], few(split="train", resolution=16)[7])
    test = Mixed(parts={"a": many, "b": few}, split="test", resolution=16)
    assert len(test) == 2 * (EVAL_CROPS + 1)  # val and test of every part
    with pytest.raises(IndexError, match="18 test items"):
        test[18]
    with pytest.raises(ValueError, match="at least one part"):
        Mixed(parts={}, split="train", resolution=16)
    cfg = prepare(compose(["data=mixed"]))  # Emoji3D and the photos, half of every epoch each
    parts = cfg.data.dataset.parts
    assert [p._target_.rsplit(".", 1)[-1] for p in parts.values()] == ["Emoji3D", "Photos"]
    assert parts.photos.crops_per_photo * 36 == 2736 and cfg.data.eval_resolutions == [64, 128, 256]
