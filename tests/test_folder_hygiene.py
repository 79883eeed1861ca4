"""ImageFolder data hygiene: every image decoded once before work (cached), unreadable files reported and
skipped or refused, later failures skipped in ``__getitem__``, and no split left empty."""

import json
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ginr.data import folder as folder_module
from ginr.data import imagefiles
from ginr.data.folder import ImageFolder
from ginr.data.imagefiles import UnreadableImage
from ginr.data.splits import SPLITS, hash_split

WARNING = "skipping unreadable image"


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: nothing scanned or reported yet."""
    monkeypatch.setattr(imagefiles, "SCANNED", {})
    monkeypatch.setattr(folder_module, "_REPORTED", set())


def _png(path: Path, seed: int, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flat(root: Path, n: int) -> Path:
    for i in range(n):
        _png(root / f"img_{i:03d}.png", i)
    return root


def _corrupt_folder(root: Path) -> tuple[Path, Path]:
    """30 good PNGs, a truncated PNG among them and a text file named .jpg."""
    _flat(root, 30)
    truncated, text = root / "img_015b.png", root / "sub" / "notes.jpg"
    _png(truncated, 99, size=64)
    _truncate(truncated)
    text.parent.mkdir()
    text.write_text("not a jpeg")
    return truncated, text


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and WARNING in r.getMessage()
    ]


def _decode_counter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    check = imagefiles.check_image

    def counting(path: Path) -> str | None:
        calls.append(path)
        return check(path)

    monkeypatch.setattr(imagefiles, "check_image", counting)
    return calls


def test_unreadable_files_are_reported_once_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truncated, text = _corrupt_folder(tmp_path / "imgs")
    caplog.set_level(logging.WARNING, logger="ginr.data.folder")
    splits = {s: ImageFolder(root=str(tmp_path / "imgs"), split=s, resolution=8) for s in SPLITS}
    lines = _warnings(caplog)
    assert len(lines) == 2 and all("\n" not in line for line in lines)  # once per process, not per split
    assert any(line.startswith(f"{WARNING} {truncated}: image file is truncated") for line in lines)
    assert any(line.startswith(f"{WARNING} {text}: not an image") for line in lines)
    files = [p for ds in splits.values() for p in ds.files]
    assert len(files) == len(set(files)) == 30 and truncated not in files and text not in files
    assert set(splits["train"].unreadable) == {truncated, text}
    # the readable images keep the split they have without the bad files
    clean = {s: ImageFolder(root=str(_flat(tmp_path / "clean", 30)), split=s, resolution=8) for s in SPLITS}
    for s in SPLITS:
        assert [p.name for p in splits[s].files] == [p.name for p in clean[s].files]
    x = splits["train"][0]
    assert x.shape == (3, 8, 8) and splits["train"].skipped == 0


def test_on_bad_file_error_refuses_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _corrupt_folder(tmp_path / "imgs")
    with pytest.raises(ValueError) as err:
        ImageFolder(root=str(tmp_path / "imgs"), split="train", resolution=8, on_bad_file="error")
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        f"2 of the 32 images under {tmp_path / 'imgs'} cannot be read: "
    )
    assert "img_015b.png (image file is truncated" in message and "sub/notes.jpg (not an image" in message
    assert message.endswith("set data.dataset.on_bad_file=skip to leave them out")
    assert not _warnings(caplog)
    with pytest.raises(ValueError, match="on_bad_file"):
        ImageFolder(root=str(tmp_path / "imgs"), split="train", resolution=8, on_bad_file="ignore")  # type: ignore[arg-type]
    for i in range(4, 8):
        _png(tmp_path / "many" / f"{i}.png", i)
        _truncate(tmp_path / "many" / f"{i}.png")
    _flat(tmp_path / "many", 4)
    with pytest.raises(
        ValueError, match=r"4 of the 8 images .*: 4\.png \(.*, 6\.png \(.*\) and 1 more; remove"
    ):
        ImageFolder(root=str(tmp_path / "many"), split="test", resolution=8, on_bad_file="error")


def test_scan_is_cached_outside_the_folder_and_invalidated_by_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root, cache = _flat(tmp_path / "imgs", 20), tmp_path / "cache"
    before = sorted(root.rglob("*"))
    calls = _decode_counter(monkeypatch)
    build = lambda split="train": ImageFolder(root=str(root), split=split, resolution=8, cache_dir=str(cache))
    first = build()
    assert len(calls) == 20
    (cached,) = (cache / "image_folder").glob("imgs-*.scan.json")
    assert sorted(root.rglob("*")) == before  # nothing written into the image folder
    assert len(json.loads(cached.read_text())["files"]) == 20
    build("val"), build("test")
    assert len(calls) == 20  # the other splits and a second construction reuse this process's scan
    monkeypatch.setattr(imagefiles, "SCANNED", {})  # a new process: only the cache file is left
    assert build().files == first.files and len(calls) == 20
    target = first.files[3]
    _png(target, 1000, size=16)  # changed: decoded again
    os.utime(target, ns=(1, 1))
    _truncate(first.files[5])  # changed and now unreadable
    _png(root / "new.png", 2000)  # new: decoded; the others only stat'ed
    caplog.set_level(logging.WARNING, logger="ginr.data.folder")
    again = build()
    assert sorted(calls[20:]) == sorted([target, first.files[5], root / "new.png"])
    assert first.files[5] not in again.files and len(_warnings(caplog)) == 1
    monkeypatch.setattr(imagefiles, "SCANNED", {})
    cached.write_text("{not json")  # a damaged cache is rebuilt, not trusted
    build()
    assert len(calls) == 23 + 21


def test_image_changed_after_the_scan_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ginr.engine.data import StepBatchSampler, train_loader

    ds = ImageFolder(root=str(_flat(tmp_path / "imgs", 30)), split="train", resolution=8)
    expected_next = ds[4]
    _truncate(ds.files[3])
    caplog.set_level(logging.WARNING, logger="ginr.data.folder")
    assert torch.equal(ds[3], expected_next)  # deterministic: the next readable image of the split
    assert ds.skipped == 1 and len(_warnings(caplog)) == 1 and str(ds.files[3]) in _warnings(caplog)[0]
    assert torch.equal(ds[3], expected_next) and ds.skipped == 1 and len(_warnings(caplog)) == 1
    ds.files[-1].unlink()  # deleted after the scan: wraps round to the first
    assert torch.equal(ds[len(ds) - 1], ds[0]) and ds.skipped == 2
    sampler = StepBatchSampler(len(ds), 4, seed=0, start_step=0, rank=0, world_size=1)
    batches = iter(train_loader(ds, sampler, num_workers=0, pin=False))
    assert all(next(batches).shape == (4, 3, 8, 8) for _ in range(2 * len(ds) // 4))  # two epochs
    for path in ds.files[:-1]:
        _truncate(path)
    with pytest.raises(RuntimeError, match=r"none of the \d+ images of split 'train' under .* can be read"):
        ds[0]
    with pytest.raises(
        UnreadableImage, match=rf"^cannot decode image {re.escape(str(ds.files[0]))}: image file is trunc"
    ):
        folder_module.load_image(ds.files[0], size=(8, 8), channels=3, crop="center")


def _names(n: int, split: str) -> list[str]:
    """``n`` file names that all hash into ``split``."""
    names = (f"photo_{i:04d}.png" for i in range(10_000))
    return [name for name in names if hash_split(name) == split][:n]


def test_few_images_give_non_empty_splits_or_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "seventeen"
    for i, name in enumerate(_names(17, "train")):  # the 10% by hash would leave val and test empty
        _png(root / name, i)
    splits = {s: ImageFolder(root=str(root), split=s, resolution=8).files for s in SPLITS}
    assert {s: len(f) for s, f in splits.items()} == {"train": 15, "val": 1, "test": 1}
    assert len({p for f in splits.values() for p in f}) == 17
    few = tmp_path / "two"
    for i, name in enumerate(_names(2, "train")):
        _png(few / name, i)
    (few / "broken.png").write_bytes(b"no")
    with pytest.raises(ValueError) as err:
        ImageFolder(root=str(few), split="train", resolution=8)
    assert str(err.value) == (
        f"{few} has 2 readable image(s): its automatic train/val/test split needs at least 3, one per split; "
        "add images or use train/, val/ and test/ subfolders"
    )
    _png(few / "third.png", 3)
    assert all(len(ImageFolder(root=str(few), split=s, resolution=8)) == 1 for s in SPLITS)


@pytest.mark.parametrize("n", [3, 4, 5, 9, 17, 40, 400])
def test_automatic_split_is_the_hash_split_with_no_split_empty(n: int) -> None:
    files = [Path(f"f{i}.png") for i in range(n)]
    unit = {p: folder_module.hash_unit(p.name) for p in files}
    counts = [sum(hash_split(p.name) == s for p in files) for s in ("test", "val", "train")]
    runs = folder_module._runs(files, unit, ["test", "val", "train"], counts)
    assert sorted(p for r in runs.values() for p in r) == sorted(files) and all(runs.values())
    if all(counts):  # nothing to move: exactly the hash split
        assert all(hash_split(p.name) == s for s, r in runs.items() for p in r)
    else:
        moved = sum(hash_split(p.name) != s for s, r in runs.items() for p in r)
        assert moved <= 2 * counts.count(0)


def test_config_key_is_checked_and_the_cache_goes_under_the_data_dir(tmp_path: Path) -> None:
    from ginr.config import ConfigError, compose, prepare
    from ginr.engine.build import build_dataset

    root = _flat(tmp_path / "imgs", 10)
    base = ["debug=smoke", "run_dir=unused", "data=image_folder", f"data.dataset.root={root}"]
    with pytest.raises(
        ConfigError, match=r"^data\.dataset\.on_bad_file='maybe' is not allowed: expected one of skip, error$"
    ):
        prepare(compose([*base, "data.dataset.on_bad_file=maybe"]))
    cfg = prepare(compose([*base, f"paths.data_dir={tmp_path / 'data'}"]))
    assert cfg.data.dataset.on_bad_file == "skip" and cfg.data.dataset.cache_dir == str(tmp_path / "data")
    assert len(build_dataset(cfg, "train")) >= 1
    assert len(list((tmp_path / "data" / "image_folder").glob("imgs-*.scan.json"))) == 1


def test_a_small_photo_is_not_ground_truth_at_a_larger_size(tmp_path):
    """A 28 px photo resized to 64 px is an upsampled copy: evaluation renders it but does not score it."""
    from ginr.engine.evaluation import evaluate
    from tests.test_models import make_model

    rng = np.random.default_rng(0)
    for name, side in (("big0", 96), ("small", 28), ("big1", 80)):
        (tmp_path / "test").mkdir(exist_ok=True)
        (tmp_path / "train").mkdir(exist_ok=True)
        array = (rng.random((side, side, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / "test" / f"{name}.png")
        Image.fromarray(array).save(tmp_path / "train" / f"{name}.png")
    low = ImageFolder(root=str(tmp_path), split="test", resolution=16)
    high = ImageFolder(root=str(tmp_path), split="test", resolution=64)
    assert [high.upsampled(i) for i in range(3)] == [p.stem == "small" for p in high.files]
    assert not any(low.upsampled(i) for i in range(3))
    result = evaluate(make_model(), low, highres={64: high}, batch_size=2, device=torch.device("cpu"),
                      amp_dtype=None, chunk=4096)  # fmt: skip
    assert result.means["images_64"] == 2 and result.count == 3
    small = next(r for r in result.rows if high.files[r["index"]].stem == "small")
    assert math.isnan(small["psnr_64"]) and math.isnan(small["bicubic_64"]) and not math.isnan(small["psnr"])
    scored = [r["psnr_64"] for r in result.rows if not math.isnan(r["psnr_64"])]
    assert result.means["psnr_64"] == pytest.approx(sum(scored) / 2)
