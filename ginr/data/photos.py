"""Natural photographs as square crops, split by photo (:mod:`ginr.data.photo_sources` says which photos,
from which packages, under which licences).

The photos, read from their packages once, are kept PNG-compressed in ``root/photos/photos.v2.npz``: the
compact form (about 22 MB) that a GPU machine without a registry gets carried. Later runs load only that
file.

Items are square crops, resized (Lanczos) to ``resolution``:

- ``train``: item ``i`` is a crop of train photo ``i % photos``, its side uniform in [:data:`MIN_CROP`,
  the photo's short side] and its place uniform, both drawn from ``i`` alone: the same ``i`` is the same
  crop at every resolution (the input and its targets) and after a resume, and different items are
  different random crops (equal only by chance: a 500 px photo has about 5 million). There are
  ``crops_per_photo`` items per photo, so a run shorter than one epoch (a pass of the trainer's sampler
  over every item) draws a fresh crop every time it uses a photo.
- ``val`` and ``test``: :data:`EVAL_CROPS` fixed crops of each photo, then its centre square (the largest).

A crop is at least :data:`MIN_CROP` px, so its pixels at every resolution up to 256 px are real (averaged
from the photo, never interpolated).
"""

import io
import logging
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ginr.data import photo_sources
from ginr.data.splits import check_resolution, check_split
from ginr.files import write_atomic

log = logging.getLogger(__name__)

MIN_CROP = 256  # the smallest crop: real pixels up to 256 px
EVAL_CROPS = 8  # fixed crops of each val or test photo, besides its centre square
CACHE = "photos.v2.npz"  # v1: the 19 photos before the Lomiri and MATE ones


def save_cache(path: Path, photos: dict[str, np.ndarray], splits: dict[str, str]) -> None:
    """``photos`` (name -> uint8 (H, W, 3)) and their ``splits``, PNG-compressed in one ``.npz``,
    written atomically."""

    def png(image: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", optimize=True)
        return np.frombuffer(buffer.getvalue(), dtype=np.uint8)

    arrays = {f"png/{name}": png(image) for name, image in photos.items()}
    arrays["names"], arrays["splits"] = np.array(list(photos)), np.array([splits[n] for n in photos])
    write_atomic(path, lambda f: np.savez(f, **arrays))


def load_cache(path: Path, split: str) -> tuple[list[str], list[np.ndarray]]:
    """The names and uint8 (H, W, 3) photos of ``split`` in the cache at ``path``."""
    with np.load(path, allow_pickle=False) as cache:
        chosen = [str(n) for n, s in zip(cache["names"], cache["splits"], strict=True) if s == split]
        photos = [
            np.asarray(Image.open(io.BytesIO(cache[f"png/{n}"].tobytes())).convert("RGB")) for n in chosen
        ]
    return chosen, photos


Crop = tuple[int, int, int]  # (top, left, side) in the photo's pixels


def random_crop(height: int, width: int, key: str) -> Crop:
    """A square crop fixed by ``key``: side uniform in [MIN_CROP, the short side], place uniform."""
    draw = random.Random(key)  # str seeds hash with sha512: the same in every process
    side = draw.randint(min(MIN_CROP, height, width), min(height, width))
    return draw.randint(0, height - side), draw.randint(0, width - side), side


def centre_crop(height: int, width: int) -> Crop:
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


class Photos(Dataset):
    """Square crops of the photos of ``split`` at ``resolution`` x ``resolution``; items (3, H, W)
    float32 in [0, 1] (the module's docstring says which crops). ``names[i]`` says which photo and
    crop item ``i`` is (val and test)."""

    channels = 3

    def __init__(
        self, *, root: str, split: str, resolution: int = 32, crops_per_photo: int = 65536, download: bool = True,
    ) -> None:  # fmt: skip
        self.split = check_split(split)
        self.resolution = check_resolution(
            resolution, MIN_CROP, "the smallest crop: its pixels are real up to that size"
        )
        if isinstance(crops_per_photo, bool) or not isinstance(crops_per_photo, int) or crops_per_photo < 1:
            raise ValueError(f"photos: crops_per_photo must be a positive int, got {crops_per_photo!r}")
        folder = Path(root).expanduser() / "photos"
        cache = folder / CACHE
        if not cache.exists():
            log.info("photos: building %s from the source packages, once", cache)
            save_cache(
                cache,
                photo_sources.preprocess(folder, download=download),
                {n: s for n, (_, _, s) in photo_sources.PHOTOS.items()},
            )
        self.photo_names, self.photos = load_cache(cache, split)
        if not self.photos:
            raise RuntimeError(f"photos: no {split} photos in {cache}")
        if split == "train":
            self.crops_per_photo = crops_per_photo
            self.names: list[str] = []
            self.fixed: list[tuple[int, Crop]] = []
        else:  # each photo's fixed crops, then its centre square
            self.fixed = [
                (p, random_crop(*photo.shape[:2], f"photos:{split}:{name}:{k}") if k < EVAL_CROPS
                 else centre_crop(*photo.shape[:2]))
                for p, (name, photo) in enumerate(zip(self.photo_names, self.photos, strict=True))
                for k in range(EVAL_CROPS + 1)
            ]  # fmt: skip
            self.names = [
                f"{self.photo_names[p]}#{'centre' if k == EVAL_CROPS else k}"
                for p in range(len(self.photos))
                for k in range(EVAL_CROPS + 1)
            ]

    def __len__(self) -> int:
        return len(self.photos) * self.crops_per_photo if self.split == "train" else len(self.fixed)

    def crop(self, index: int) -> tuple[int, Crop]:
        """(the photo's index, the crop) of item ``index``."""
        if self.split != "train":
            return self.fixed[index]
        photo = index % len(self.photos)
        return photo, random_crop(*self.photos[photo].shape[:2], f"photos:train:{index}")

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"photos: index {index} out of range for {len(self)} {self.split} items")
        photo, (top, left, side) = self.crop(index)
        crop = Image.fromarray(self.photos[photo][top : top + side, left : left + side])
        if side != self.resolution:
            crop = crop.resize((self.resolution, self.resolution), Image.Resampling.LANCZOS)
        return torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
