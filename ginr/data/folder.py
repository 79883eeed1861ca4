"""Any folder of images as a dataset: png, jpg, jpeg, webp or bmp, searched recursively."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ginr.data.splits import VAL_FRACTION, check_split, hash_split, hash_unit

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
CROPS = ("center", "none")


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


def load_image(path: Path, *, size: tuple[int, int], channels: int, crop: str) -> torch.Tensor:
    """Decode ``path`` to a (channels, H, W) float32 tensor in [0, 1]; transparency goes onto white."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = img.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise RuntimeError(f"cannot decode image {path}: {err}") from err
    height, width = size
    if crop == "center":
        # Largest centred box with the target's aspect ratio (a square for an int resolution).
        scale = min(img.width / width, img.height / height)
        box_w, box_h = min(img.width, round(width * scale)), min(img.height, round(height * scale))
        left, top = (img.width - box_w) // 2, (img.height - box_h) // 2
        img = img.crop((left, top, left + box_w, top + box_h))
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous().float().div_(255.0)


class ImageFolder(Dataset):
    """Images under ``root``; items (channels, H, W) float32 in [0, 1].

    If ``root`` has ``train/`` and ``test/`` subfolders they are the splits (with ``val/``, or else ~10% of
    ``train/`` as val); otherwise ~10% of the images go to val and ~10% to test, chosen by a hash of their
    path relative to ``root`` (stable across runs and machines). ``crop="center"`` centre-crops to the target aspect ratio before resizing;
    ``crop="none"`` resizes directly. Images are decoded lazily, in ``__getitem__``.
    """

    def __init__(
        self,
        *,
        root: str,
        split: str,
        resolution: int | tuple[int, int],
        channels: int = 3,
        crop: str = "center",
    ) -> None:
        self.split = check_split(split)
        self.size = _size(resolution)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; allowed: {', '.join(CROPS)}")
        self.channels, self.crop = channels, crop
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist or is not a directory")
        if (self.root / "train").is_dir() and (self.root / "test").is_dir():
            self.files = self._from_subfolders(split)
            if not self.files:
                raise FileNotFoundError(self._no_images(self.root / split))
            return
        found = _find_images(self.root)
        if not found:
            raise FileNotFoundError(self._no_images(self.root))
        self.files = [p for p in found if hash_split(p.relative_to(self.root).as_posix()) == split]
        if not self.files:
            raise ValueError(
                f"none of the {len(found)} images in {self.root} falls in split {split!r} "
                "(~10% go to val and ~10% to test by hash); add more images or use train/, val/ and test/ "
                "subfolders"
            )

    def _from_subfolders(self, split: str) -> list[Path]:
        """train/, test/ and val/; without val/, ~10% of train/ (by hash of the path) is val."""
        if split == "test" or (self.root / "val").is_dir():
            return _find_images(self.root / split)
        in_val = lambda p: hash_unit("val/" + p.relative_to(self.root).as_posix()) < VAL_FRACTION
        found = _find_images(self.root / "train")
        files = [p for p in found if in_val(p) == (split == "val")]
        if found and not files:
            raise ValueError(
                f"none of the {len(found)} images in {self.root / 'train'} falls in split {split!r} (~10% of "
                "train/ go to val by hash); add more images or a val/ subfolder"
            )
        return files

    @staticmethod
    def _no_images(folder: Path) -> str:
        return f"no images ({', '.join(sorted(EXTENSIONS))}) found under {folder}"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.files[index], size=self.size, channels=self.channels, crop=self.crop)
