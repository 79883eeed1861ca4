"""Data package: coords, ImageFolder, the emoji split, Emoji3D on a fake tarball, torchvision wrappers."""

import dataclasses
import hashlib
import io
import math
import pickle
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ginr.coords import image_to_values, pixel_grid, sample_image, values_to_image
from ginr.data import CIFAR10, CelebA, Emoji3D, ImageFolder, check_split, hash_split, torchvision_sets
from ginr.data import emoji3d as emoji3d_module
from ginr.data.emoji3d import concept_key
from ginr.data.splits import GUARD_RESOLUTION, SPLITS, concept_split, cross_split_near_duplicates

MP = pytest.MonkeyPatch


def test_pixel_grid_corners_and_centres() -> None:
    assert torch.allclose(pixel_grid(1, 1), torch.zeros(1, 2))
    assert torch.equal(pixel_grid(2, 2), torch.tensor([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]))
    grid = pixel_grid(4, 8)
    assert grid.shape == (32, 2) and grid.dtype == torch.float32
    assert torch.allclose(grid[0], torch.tensor([1 / 4 - 1, 1 / 8 - 1]))
    assert torch.allclose(grid[-1], torch.tensor([1 - 1 / 4, 1 - 1 / 8]))
    assert torch.allclose(grid[1 * 8 + 3], torch.tensor([3 / 4 - 1, 7 / 8 - 1]))  # row-major: (i=1, j=3)
    assert grid.abs().max() < 1
    with pytest.raises(ValueError, match="height=0"):
        pixel_grid(0, 3)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_sample_image_is_exact_at_pixel_centres_and_upscales_like_interpolate(mode) -> None:
    images = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(sample_image(images, pixel_grid(5, 7)[None], mode), image_to_values(images))
    shared, per_image = pixel_grid(10, 14)[None], pixel_grid(10, 14).expand(2, -1, -1)
    upscaled = image_to_values(F.interpolate(images, size=(10, 14), mode=mode, align_corners=False))
    torch.testing.assert_close(sample_image(images, shared, mode), upscaled)
    torch.testing.assert_close(sample_image(images, per_image, mode), upscaled)
    # (y, x) order: a query on the top row, right of centre, reads the top-right region
    ramp = torch.arange(7.0).expand(1, 1, 5, 7)
    assert sample_image(ramp, torch.tensor([[[-0.8, 0.99]]]), mode).item() == pytest.approx(6.0, abs=0.1)


def test_values_round_trip_in_grid_order() -> None:
    images = torch.rand(2, 3, 4, 5)
    values = image_to_values(images)
    assert values.shape == (2, 20, 3)
    assert torch.equal(values[1, 2 * 5 + 3], images[1, :, 2, 3])
    assert torch.equal(values_to_image(values, 4, 5), images)


def _stripes(path: Path, size: tuple[int, int] = (60, 20), mode: str = "RGB") -> None:
    """Red | green | blue vertical thirds of a ``size = (width, height)`` image."""
    width, height = size
    array = np.zeros((height, width, 3), np.uint8)
    for k in range(3):
        array[:, k * width // 3 : (k + 1) * width // 3, k] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)


def _folder(root: Path, n: int = 40) -> Path:
    for i in range(n):
        _stripes(root / ("sub" if i % 2 else "") / f"img_{i:03d}.{['png', 'jpg', 'webp', 'bmp'][i % 4]}")
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder_rgb_center_crop_and_none(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    ds = ImageFolder(root=str(root), split="train", resolution=16)
    x = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    # The centre square of a 60x20 red|green|blue image is all green.
    assert x[1].min() > 0.9 and x[0].max() < 0.1 and x[2].max() < 0.1
    wide = ImageFolder(root=str(root), split="train", resolution=16, crop="none")[0]
    assert wide[0, :, 0].min() > 0.9 and wide[2, :, -1].min() > 0.9
    assert ImageFolder(root=str(root), split="train", resolution=(8, 12))[0].shape == (3, 8, 12)


def test_image_folder_grayscale(tmp_path: Path) -> None:
    for i in range(20):
        _stripes(tmp_path / "gray" / f"{i}.png", size=(30, 45), mode="L")
    as_rgb = ImageFolder(root=str(tmp_path / "gray"), split="train", resolution=8)[0]
    assert as_rgb.shape == (3, 8, 8) and torch.equal(as_rgb, as_rgb[:1].expand(3, -1, -1))
    as_gray = ImageFolder(root=str(tmp_path / "gray"), split="train", resolution=8, channels=1)[0]
    assert as_gray.shape == (1, 8, 8) and torch.allclose(as_gray[0], as_rgb[0], atol=2 / 255)


def test_image_folder_split_is_deterministic_and_partitions(tmp_path: Path) -> None:
    a, b = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    train = ImageFolder(root=str(a), split="train", resolution=8)
    val = ImageFolder(root=str(a), split="val", resolution=8)
    test = ImageFolder(root=str(a), split="test", resolution=8)
    rel = lambda ds: [p.relative_to(ds.root).as_posix() for p in ds.files]
    assert len(train) + len(val) + len(test) == 40
    assert (
        not set(rel(train)) & set(rel(test))
        and not set(rel(train)) & set(rel(val))
        and not set(rel(val)) & set(rel(test))
    )
    assert 1 <= len(test) <= 10 and 1 <= len(val) <= 10
    assert any(name.endswith(".webp") for name in rel(train) + rel(test))
    # Same relative paths give the same split, wherever the folder lives.
    assert rel(ImageFolder(root=str(b), split="test", resolution=8)) == rel(test)
    assert rel(ImageFolder(root=str(a), split="test", resolution=8)) == rel(test)


def test_image_folder_train_test_subfolders(tmp_path: Path) -> None:
    _stripes(tmp_path / "train" / "0.png")
    _stripes(tmp_path / "test" / "deep" / "only.JPG")
    with pytest.raises(
        ValueError, match=r"train has 1 readable image: carving val out of train/ needs at least 2"
    ):
        ImageFolder(root=str(tmp_path), split="val", resolution=8)
    for i in range(1, 3):  # none of the three hashes into val: the one nearest by hash is moved there
        _stripes(tmp_path / "train" / f"{i}.png")
    few = [ImageFolder(root=str(tmp_path), split=s, resolution=8).files for s in ("train", "val")]
    names = sorted(p.name for p in few[0] + few[1])
    assert [len(f) for f in few] == [2, 1] and names == ["0.png", "1.png", "2.png"]
    for i in range(3, 30):
        _stripes(tmp_path / "train" / f"{i}.png")
    train = ImageFolder(root=str(tmp_path), split="train", resolution=8)
    val = ImageFolder(root=str(tmp_path), split="val", resolution=8)  # carved out of train/ by hash
    assert sorted(p.name for p in train.files + val.files) == sorted(f"{i}.png" for i in range(30))
    assert val.files and not set(train.files) & set(val.files)
    test = ImageFolder(root=str(tmp_path), split="test", resolution=8)
    assert [p.name for p in test.files] == ["only.JPG"]
    _stripes(tmp_path / "val" / "v.png")  # a val/ subfolder is the val split, and train/ stays whole
    assert [p.name for p in ImageFolder(root=str(tmp_path), split="val", resolution=8).files] == ["v.png"]
    assert len(ImageFolder(root=str(tmp_path), split="train", resolution=8)) == 30


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFolder(root=str(tmp_path / "missing"), split="train", resolution=8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="empty"):
        ImageFolder(root=str(tmp_path / "empty"), split="train", resolution=8)
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "test").mkdir()
    (tmp_path / "bad" / "train" / "broken.png").write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match=r"none of the 1 images under .*train can be read: broken.png \("):
        ImageFolder(root=str(tmp_path / "bad"), split="train", resolution=8)
    with pytest.raises(FileNotFoundError, match="test"):
        ImageFolder(root=str(tmp_path / "bad"), split="test", resolution=8)
    bad_kwargs = (
        {"split": "valid"},
        {"channels": 4},
        {"crop": "random"},
        {"resolution": 0},
        {"on_bad_file": "no"},
    )
    for kwargs in bad_kwargs:
        with pytest.raises(ValueError):
            ImageFolder(**{"root": str(tmp_path), "split": "train", "resolution": 8, **kwargs})


TONES = ["1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"]


def test_every_form_of_one_emoji_has_one_concept_key() -> None:
    forms = {
        "thumbs up, any skin tone": ["1f44d.webp", "1f44d-1f3fb.webp", "1f44d-1f3ff.webp"],
        "keycap 0, both spellings": ["0030-fe0f-20e3.webp", "30-fe0f-20e3.webp", "30-20e3.webp"],
        "police officer: person, woman, man": ["1f46e.webp", "1f46e-200d-2640-fe0f.webp", "1f46e-1f3fd-200d-2642-fe0f.webp"],
        "cook: person, man, woman": ["1f9d1-200d-1f373.webp", "1f468-1f3fb-200d-1f373.webp", "1f469-200d-1f373.webp"],
        "holding hands": ["1f46b.webp", "1f46c.webp", "1f9d1-1f3fb-200d-1f91d-200d-1f9d1-1f3fc.webp"],
        "couple with heart": ["1f491.webp", "1f469-200d-2764-fe0f-200d-1f468.webp"],
        "presentation selector": ["2764-fe0f.webp", "2764.webp", "2764-fe0e.webp"],
    }  # fmt: skip
    keys = {what: {concept_key(f"package/assets/{n}") for n in names} for what, names in forms.items()}
    assert all(len(k) == 1 for k in keys.values()), keys
    assert len({k.pop() for k in keys.values()}) == len(forms)  # and the concepts stay apart
    assert concept_key("1f466.webp") != concept_key("1f9d1.webp")  # a child is not a grown-up


def _pictures(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random 8-bit 8x8 pictures in [0, 200), far apart (about 10 dB between any two)."""
    return torch.randint(
        0, 200, (n, 8, 8, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def test_near_copies_join_one_split_transitively_and_at_the_threshold() -> None:
    images = _pictures(400)
    keys = [f"k{i}" for i in range(400)]
    apart = concept_split(keys, images)
    a, b = next((i, j) for i in range(400) for j in range(400) if apart[i] == "train" and apart[j] == "test")
    c = next(i for i in range(400) if apart[i] == "val")
    near = images.clone()
    near[b] = images[a] + 10  # 28.1 dB from a: a near copy
    near[c] = images[a] + 20  # 28.1 dB from b but 22.1 dB from a: joined through b
    assert hash_split("a") != hash_split("c") and hash_split("p") != hash_split("q")  # so a join shows
    assert concept_split(["a", "c"], near[[a, c]]) == [hash_split("a"), hash_split("c")]  # apart on their own
    together = concept_split(keys, near)
    assert together[a] == together[b] == together[c]
    assert [s for i, s in enumerate(together) if i not in (a, b, c)] == [
        s for i, s in enumerate(apart) if i not in (a, b, c)
    ]  # nobody else moves
    reordered = concept_split(keys[::-1], near.flip(0))[::-1]
    assert reordered == together  # the split of an image does not depend on the order of the images
    pair = near[[a, b]]
    psnr = 10 * math.log10(255**2 * pair[0].numel() / ((pair[0].long() - pair[1].long()) ** 2).sum().item())
    assert len(set(concept_split(["p", "q"], pair, threshold_db=psnr - 0.01))) == 1
    assert concept_split(["p", "q"], pair, threshold_db=psnr + 0.01) == [hash_split("p"), hash_split("q")]
    with pytest.raises(ValueError, match="8-bit images"):
        concept_split(keys, near.float())


def test_cross_split_near_duplicates_are_reported_closest_first() -> None:
    train = _pictures(6)
    held = {
        "val": (torch.stack([train[2] ^ 3, _pictures(1, seed=9)[0]]), ["v0", "v1"]),
        "test": (train[[4]] ^ 1, ["t0"]),
    }
    to_float = lambda x: x.permute(0, 3, 1, 2).float() / 255
    found = cross_split_near_duplicates(
        (to_float(train), [f"r{i}" for i in range(6)]), {k: (to_float(v), n) for k, (v, n) in held.items()}
    )
    assert [(d.split, d.name, d.train_name) for d in found] == [("test", "t0", "r4"), ("val", "v0", "r2")]
    exact = lambda x, y: 10 * math.log10(255**2 * x.numel() / ((x.long() - y.long()) ** 2).sum().item())
    assert found[0].psnr == pytest.approx(exact(train[4], train[4] ^ 1), abs=0.05)  # 48.13 dB
    assert found[1].psnr == pytest.approx(exact(train[2], train[2] ^ 3), abs=0.05)


def test_hash_split_puts_about_ten_percent_of_keys_in_val_and_test() -> None:
    keys = [f"1{i:04x}" for i in range(2000)]
    splits = [hash_split(k) for k in keys]
    assert 0.08 < splits.count("test") / 2000 < 0.12 and 0.08 < splits.count("val") / 2000 < 0.12
    # val is carved out of train: the test keys are those of the former two-way split
    assert {k for k, s in zip(keys, splits, strict=True) if s == "test"} == {
        k for k in keys if hash_split(k, val_fraction=0.0) == "test"
    }


@pytest.mark.slow
def test_no_val_or_test_emoji_lies_within_25_db_of_a_train_emoji(data_dir: str) -> None:
    """The guard on the real Emoji3D: nothing held out is a near copy of something trained on (at 32 px),
    and every form of one emoji sits in one split."""
    sets = {s: Emoji3D(root=data_dir, split=s, resolution=GUARD_RESOLUTION) for s in SPLITS}
    images = {s: (torch.stack([d[i] for i in range(len(d))]), d.names) for s, d in sets.items()}
    found = cross_split_near_duplicates(images["train"], {s: images[s] for s in ("val", "test")})
    assert found == [], found[:5]
    where: dict[str, set[str]] = {}
    for split, dataset in sets.items():
        for name in dataset.names:
            where.setdefault(concept_key(name), set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    assert sum(len(d) for d in sets.values()) == 3391 and all(len(sets[s]) > 250 for s in ("val", "test"))


def _webp(shade: int = 0) -> bytes:
    """32x32 RGBA: left half opaque red, right half fully transparent black; ``shade`` in the top rows'
    blue, so that pictures of other shades are not near copies of each other."""
    array = np.zeros((32, 32, 4), np.uint8)
    array[:, :16, 0], array[:, :16, 3] = 255, 255
    array[:8, :16, 2] = shade
    buffer = io.BytesIO()
    Image.fromarray(array, "RGBA").save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


def _names_with_both_splits() -> list[str]:
    bases = [f"1f{i:03x}" for i in range(0x600, 0x700)]
    train = [b for b in bases if hash_split(b) == "train"][:2]
    test = [b for b in bases if hash_split(b) == "test"][:1]
    return [f"{train[0]}.webp", f"{train[0]}-1f3fd.webp", f"{train[1]}.webp", f"{test[0]}.webp"]


@pytest.fixture
def fake_tarball(tmp_path: Path, monkeypatch: MP) -> Path:
    path = tmp_path / "fake.tgz"
    with tarfile.open(path, "w:gz") as tar:
        names = _names_with_both_splits()  # the skin-tone form of the first emoji is a near copy of it
        shades = [0, 0, 120, 240]
        files = {f"package/assets/{n}": _webp(shade) for n, shade in zip(names, shades, strict=True)}
        files["package/package.json"] = b"{}"
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(
        emoji3d_module,
        "TARBALL",
        dataclasses.replace(emoji3d_module.TARBALL, sha256=hashlib.sha256(path.read_bytes()).hexdigest()),
    )
    return path


def test_emoji3d_builds_cache_then_loads_it(tmp_path: Path, fake_tarball: Path, monkeypatch: MP) -> None:
    root = tmp_path / "cache"
    train = Emoji3D(root=str(root), split="train", resolution=8, tarball=str(fake_tarball))
    assert sorted(p.name for p in (root / "emoji3d").iterdir()) == [
        "r8_test.v3.npz",
        "r8_train.v3.npz",
        "r8_val.v3.npz",
    ]
    assert len(train) == 3 and train.channels == 3 and all(n.endswith(".webp") for n in train.names)
    x = train[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x[:, :, 0], torch.tensor([1.0, 0.0, 0.0])[:, None], atol=0.02)  # opaque red
    assert torch.allclose(x[:, :, -1], torch.ones(3, 8))  # transparent -> white
    fake_tarball.unlink()
    monkeypatch.setattr(emoji3d_module, "preprocess", lambda *a: pytest.fail("cache not used"))
    test = Emoji3D(root=str(root), split="test", resolution=8, tarball=str(fake_tarball))
    again = Emoji3D(root=str(root), split="train", resolution=8, download=False)
    assert len(test) == 1 and again.names == train.names and torch.equal(again[2], train[2])
    assert concept_key(test.names[0]) not in {concept_key(n) for n in train.names}


def test_emoji3d_wrong_sha(tmp_path: Path, fake_tarball: Path, monkeypatch: MP) -> None:
    monkeypatch.setattr(
        emoji3d_module, "TARBALL", dataclasses.replace(emoji3d_module.TARBALL, sha256="0" * 64)
    )
    got = hashlib.sha256(fake_tarball.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match=rf"fake\.tgz.*expected 0{{64}}, got {got}"):
        Emoji3D(root=str(tmp_path / "c"), split="train", resolution=8, tarball=str(fake_tarball))
    assert not (tmp_path / "c" / "emoji3d").exists()


def test_emoji3d_bad_resolution_and_split(tmp_path: Path) -> None:
    for bad in (7, 257, 32.0):
        with pytest.raises(ValueError, match="resolution"):
            Emoji3D(root=str(tmp_path), split="train", resolution=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"8 to 256"):
        Emoji3D(root=str(tmp_path), split="train", resolution=300)
    with pytest.raises(ValueError, match="split"):
        Emoji3D(root=str(tmp_path), split="valid")


def test_emoji3d_download_failure_and_success(tmp_path: Path, fake_tarball: Path, monkeypatch: MP) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    urllib_request, root, data = urllib.request, str(tmp_path / "c"), fake_tarball.read_bytes()
    monkeypatch.setattr(urllib_request, "urlopen", offline)
    with pytest.raises(
        RuntimeError, match=r"npm pack @lobehub/fluent-emoji-3d@1\.1\.0.*data\.dataset\.tarball=PATH"
    ):
        Emoji3D(root=root, split="train", resolution=8)
    assert list((tmp_path / "c" / "emoji3d").iterdir()) == []  # no half-written file
    with pytest.raises(RuntimeError, match="download=False"):
        Emoji3D(root=root, split="train", resolution=8, download=False)

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(data))}

    monkeypatch.setattr(urllib_request, "urlopen", lambda *a, **k: Response(data))
    assert len(Emoji3D(root=root, split="test", resolution=8)) == 1
    assert (tmp_path / "c" / "emoji3d" / emoji3d_module.TARBALL.name).read_bytes() == data


def test_cifar10_wrapper_on_fake_batches(tmp_path: Path, monkeypatch: MP) -> None:
    pytest.importorskip("torchvision", reason='the vision extra: pip install -e ".[vision]"')
    import torchvision.datasets.cifar as cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b"]}))
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    train = CIFAR10(root=str(tmp_path), split="train", download=False)
    val = CIFAR10(root=str(tmp_path), split="val", download=False)
    assert (
        len(train) == 9
        and len(val) == 1
        and len(CIFAR10(root=str(tmp_path), split="test", download=False)) == 2
    )
    assert sorted(train.indices + val.indices) == list(range(10))  # val held out of the official train set
    x = train[0]
    raw = torch.from_numpy(train.base.data[train.indices[0]]).permute(2, 0, 1).float() / 255
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and torch.equal(x, raw)
    assert CIFAR10(root=str(tmp_path), split="train", resolution=16, download=False)[0].shape == (3, 16, 16)


def test_celeba_crop_then_resize() -> None:
    array = np.zeros((218, 178, 3), np.uint8)
    array[:20, :, 0] = array[-20:, :, 0] = 255  # red bands fall outside the 178x178 centre crop
    array[20:-20, :, 2] = 255
    x = torchvision_sets.to_tensor(Image.fromarray(array), 64, crop=torchvision_sets.CELEBA_CROP)
    assert x.shape == (3, 64, 64) and torch.allclose(x, torch.tensor([0.0, 0.0, 1.0])[:, None, None])


def test_split_check_and_missing_torchvision(tmp_path: Path, monkeypatch: MP) -> None:
    assert check_split("test") == "test"
    with pytest.raises(ValueError, match=r"'valid'.*train, val, test"):
        CelebA(root=str(tmp_path), split="valid", download=False)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    for cls in (CIFAR10, CelebA):
        with pytest.raises(ImportError, match=r'pip install -e "\.\[vision\]"'):
            cls(root=str(tmp_path), split="train", download=False)


def _fake_celeba(root: Path) -> None:
    """Files laid out as torchvision reads CelebA: img_align_celeba/*.jpg (178 x 218) and the lists."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 8)]
    partition = [0, 0, 0, 1, 1, 2, 2]  # train x 3, valid x 2, test x 2 (torchvision fails on a split of one)
    for i, name in enumerate(names):
        array = np.zeros((218, 178, 3), np.uint8)
        array[:20] = array[-20:] = 255  # white bands fall outside the 178 x 178 centre crop
        array[20:-20, :, i % 3] = 200
        Image.fromarray(array).save(folder / "img_align_celeba" / name, quality=100)
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in zip(names, partition, strict=True))
    )
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} 1\n" for n in names))
    attrs = " ".join(f"a{i}" for i in range(40))
    (folder / "list_attr_celeba.txt").write_text(
        f"{len(names)}\n{attrs}\n" + "".join(f"{n} " + " ".join(["1"] * 40) + "\n" for n in names)
    )
    (folder / "list_bbox_celeba.txt").write_text(
        f"{len(names)}\nimage_id x_1 y_1 width height\n" + "".join(f"{n} 0 0 1 1\n" for n in names)
    )
    marks = " ".join(f"m{i}" for i in range(10))
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{len(names)}\n{marks}\n" + "".join(f"{n} " + " ".join(["0"] * 10) + "\n" for n in names)
    )


def test_celeba178_protocol_on_files_laid_out_like_celeba(tmp_path: Path, monkeypatch: MP) -> None:
    pytest.importorskip("torchvision", reason='the vision extra: pip install -e ".[vision]"')
    import torchvision.datasets.celeba as celeba

    from ginr.config import compose, prepare
    from ginr.engine.build import build_dataset, build_model
    from ginr.train import train

    _fake_celeba(tmp_path)
    monkeypatch.setattr(celeba.CelebA, "_check_integrity", lambda self: True)
    cfg = prepare(compose(["data=celeba178", f"paths.data_dir={tmp_path}", "+data.dataset.download=false"]))
    sizes = {split: len(build_dataset(cfg, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 2, "test": 2}  # the official partition; val is CelebA's "valid"
    image = build_dataset(cfg, "val")[0]
    assert image.shape == (3, 178, 178) and image.min() < 0.9  # centre crop: the white bands are gone
    tokenizer = build_model(cfg).encoder.tokenizer
    assert (tokenizer.patch_size, tokenizer.padding) == (9, 1)
    assert tokenizer(image[None]).shape[1] == 400  # (178 + 2) / 9 = 20 patches a side
    tiny = [
        "debug=smoke", "encoder.patch_size=9", "data.eval_resolutions=[]", "data.batch_size=2",
        "data.num_workers=0", "trainer.queries_per_image=64", "trainer.max_steps=2", "trainer.eval_every=2",
        "trainer.compile=false",
    ]  # fmt: skip
    run = [f"paths.data_dir={tmp_path}", f"run_dir={tmp_path / 'run'}", "+data.dataset.download=false"]
    metrics = train(compose(["data=celeba178", *tiny, *run]))  # a few steps of a tiny model on these files
    assert metrics["val/split_images"] == metrics["test/split_images"] == 2 and "test/psnr" in metrics


def test_the_near_duplicate_report_finds_a_copy_across_an_image_folders_splits(
    tmp_path: Path, capsys
) -> None:
    from ginr.tools import near_duplicates

    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        (tmp_path / split).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / split / f"{i}.png"
            )
    root = [f"data.dataset.root={tmp_path}"]
    near_duplicates.main(["data=image_folder", *root])
    assert "no val or test image lies within 25 dB" in capsys.readouterr().out
    Image.open(tmp_path / "train" / "3.png").save(tmp_path / "test" / "copy.png")
    with pytest.raises(SystemExit) as exit_:
        near_duplicates.main(["data=image_folder", *root])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert (
        "0 val and 1 test images lie within 25 dB" in out
        and "test/copy.png | " in out
        and "train/3.png | " in out
    )
