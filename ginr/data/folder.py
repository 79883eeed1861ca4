"""Any folder of images as a dataset: png, jpg, jpeg, webp or bmp, searched recursively.

Before any work, every image a split is drawn from is decoded once (:func:`ginr.data.imagefiles.scan_images`,
cached outside the folder): unreadable files are reported one line each and skipped, or refused
(``on_bad_file``).
"""

import logging
from collections import Counter
from pathlib import Path
from typing import Literal

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ginr.data import imagefiles
from ginr.data.imagefiles import EXTENSIONS, Scanned, UnreadableImage, load_image, scan_images
from ginr.data.splits import SPLITS, VAL_FRACTION, check_split, hash_split, hash_unit

CROPS = ("center", "none")
BAD_FILE_POLICIES = ("skip", "error")
SHOWN_BAD_FILES = 3

log = logging.getLogger(__name__)
_REPORTED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already warned about


def _size(resolution: int | tuple[int, int]) -> tuple[int, int]:
    """``resolution`` as ``(height, width)``."""
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        size = (resolution, resolution)
    elif isinstance(resolution, (tuple, list)) and len(resolution) == 2:
        size = (resolution[0], resolution[1])
    else:
        raise ValueError(f"resolution must be an int or a (height, width) pair, got {resolution!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise ValueError(f"resolution must be positive ints, got {resolution!r}")
    return size


def _find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _split_sizes(counts: list[int]) -> list[int]:
    """The split sizes nearest ``counts`` with none empty (needs ``sum(counts) >= len(counts)``): an empty
    split takes one image, the largest gives it up."""
    sizes = [max(1, c) for c in counts]
    while sum(sizes) > sum(counts):
        sizes[sizes.index(max(sizes))] -= 1
    return sizes


def _runs(
    files: list[Path], unit: dict[Path, float], names: list[str], counts: list[int]
) -> dict[str, list[Path]]:
    """``files`` ordered by ``unit``, cut into contiguous runs named ``names`` with sizes ``counts``."""
    order, runs, start = sorted(files, key=unit.__getitem__), {}, 0
    for name, size in zip(names, _split_sizes(counts), strict=True):
        runs[name], start = sorted(order[start : start + size]), start + size
    return runs


class ImageFolder(Dataset):
    """Images under ``root``; items (channels, H, W) float32 in [0, 1].

    If ``root`` has ``train/`` and ``test/`` subfolders they are the splits (with ``val/``, or else ~10% of
    ``train/`` as val); otherwise ~10% of the images go to val and ~10% to test, chosen by a hash of their
    path relative to ``root`` (stable across runs and machines). If that leaves a split empty (a folder of
    a few dozen images or fewer), the image nearest by hash moves into it; an automatic split needs at
    least 3 readable images (2 in ``train/`` to carve val out of it), else a one-line ``ValueError``.
    ``crop="center"`` centre-crops to the target aspect ratio before resizing; ``crop="none"`` resizes
    directly.

    The images a split is drawn from (``root``, or its subfolders) are decoded once at construction: an
    unreadable one is logged and left out (``on_bad_file="skip"``; the others keep their split) or
    refused with a one-line ``ValueError`` (``"error"``). ``unreadable`` maps each to why. ``cache_dir``
    keeps the scan across processes (see :func:`scan_images`). Items are decoded in ``__getitem__``; an
    image that fails there (changed since the scan) is logged once, counted in ``skipped`` and replaced by
    the next readable image of the split, whatever ``on_bad_file``. ``skipped`` counts in the process that
    read the images: with DataLoader workers (``data.num_workers > 0``) each worker has its own count, and
    its warnings are the record.
    """

    def __init__(
        self,
        *,
        root: str,
        split: str,
        resolution: int | tuple[int, int],
        channels: int = 3,
        crop: str = "center",
        on_bad_file: Literal["skip", "error"] = "skip",
        cache_dir: str | None = None,
    ) -> None:
        self.split = check_split(split)
        self.size = _size(resolution)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; allowed: {', '.join(CROPS)}")
        if on_bad_file not in BAD_FILE_POLICIES:
            raise ValueError(f"unknown on_bad_file {on_bad_file!r}; allowed: {', '.join(BAD_FILE_POLICIES)}")
        self.channels, self.crop, self.on_bad_file, self.cache_dir = channels, crop, on_bad_file, cache_dir
        self.unreadable: dict[Path, str] = {}
        self.skipped = 0
        self._failed: set[int] = set()  # indices that failed in __getitem__
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist or is not a directory")
        if (self.root / "train").is_dir() and (self.root / "test").is_dir():
            self.files = self._from_subfolders(split)
        else:
            self.files = self._automatic_split(split)

    def _readable(self, folder: Path) -> list[Path]:
        """The images under ``folder`` that decode; the others are reported, then skipped or refused."""
        found = _find_images(folder)
        if not found:
            raise FileNotFoundError(self._no_images(folder))
        bad = scan_images(folder, found, self.cache_dir)
        self.unreadable.update(bad)
        listing = ", ".join(
            f"{p.relative_to(folder).as_posix()} ({why})" for p, why in list(bad.items())[:SHOWN_BAD_FILES]
        )
        more = f" and {len(bad) - SHOWN_BAD_FILES} more" if len(bad) > SHOWN_BAD_FILES else ""
        if bad and self.on_bad_file == "error":
            raise ValueError(
                f"{len(bad)} of the {len(found)} images under {folder} cannot be read: {listing}{more}; "
                "remove or repair them, or set data.dataset.on_bad_file=skip to leave them out"
            )
        for path, why in bad.items():
            stamp = (str(path), *imagefiles.SCANNED.get(str(path), Scanned(-1, -1, None))[:2])
            if stamp not in _REPORTED:
                _REPORTED.add(stamp)
                log.warning("skipping unreadable image %s: %s", path, why)
        if len(bad) == len(found):
            raise ValueError(f"none of the {len(found)} images under {folder} can be read: {listing}{more}")
        return [p for p in found if p not in bad]

    def _automatic_split(self, split: str) -> list[Path]:
        """~80/10/10 by hash of the path relative to ``root``, no split empty."""
        files = self._readable(self.root)
        if len(files) < len(SPLITS):
            raise ValueError(
                f"{self.root} has {len(files)} readable image(s): its automatic train/val/test split needs at "
                f"least {len(SPLITS)}, one per split; add images or use train/, val/ and test/ subfolders"
            )
        rel = {p: p.relative_to(self.root).as_posix() for p in files}
        counts = Counter(hash_split(key) for key in rel.values())
        names = ["test", "val", "train"]  # as hash_split assigns them by ascending hash_unit
        unit = {p: hash_unit(key) for p, key in rel.items()}
        return _runs(files, unit, names, [counts[n] for n in names])[split]

    def _from_subfolders(self, split: str) -> list[Path]:
        """train/, test/ and val/; without val/, ~10% of train/ (by hash of the path) is val, at least one."""
        if split == "test" or (self.root / "val").is_dir():
            return self._readable(self.root / split)
        found = self._readable(self.root / "train")
        if len(found) < 2:
            raise ValueError(
                f"{self.root / 'train'} has {len(found)} readable image: carving val out of train/ needs at "
                "least 2; add images or a val/ subfolder"
            )
        unit = {p: hash_unit("val/" + p.relative_to(self.root).as_posix()) for p in found}
        in_val = sum(u < VAL_FRACTION for u in unit.values())
        return _runs(found, unit, ["val", "train"], [in_val, len(found) - in_val])[split]

    @staticmethod
    def _no_images(folder: Path) -> str:
        return f"no images ({', '.join(sorted(EXTENSIONS))}) found under {folder}"

    def __len__(self) -> int:
        return len(self.files)

    def upsampled(self, index: int) -> bool:
        """Whether item ``index`` is enlarged from a smaller original (after the crop): not ground truth
        at this resolution, and evaluation does not score it as such."""
        try:
            with Image.open(self.files[index]) as img:
                width, height = ImageOps.exif_transpose(img).size
        except Exception:  # unreadable now: __getitem__ substitutes another image, said there
            return False
        target_h, target_w = self.size
        if self.crop == "center":
            return min(width / target_w, height / target_h) < 1
        return width < target_w or height < target_h

    def __getitem__(self, index: int) -> torch.Tensor:
        """Image ``index``, or the next readable one if it fails to decode (see the class docstring)."""
        count = len(self.files)
        for offset in range(count):
            at = (index + offset) % count
            if at in self._failed:
                continue
            try:
                return load_image(self.files[at], size=self.size, channels=self.channels, crop=self.crop)
            except UnreadableImage as err:
                self._failed.add(at)
                self.skipped += 1
                log.warning(
                    "skipping unreadable image %s: %s (it changed since the scan; %d skipped in this process)",
                    err.path, err.reason, self.skipped,
                )  # fmt: skip
        raise RuntimeError(
            f"none of the {count} images of split {self.split!r} under {self.root} can be read"
        )
