"""CIFAR-10 and CelebA through torchvision (the optional ``vision`` extra), as image-only datasets.

Resizing uses PIL bilinear, which is what ``torchvision.transforms.Resize`` does on PIL images, so
CelebA matches the usual GINR / Functa pipeline: ``CenterCrop(178)`` then ``Resize(resolution)``.
"""

from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ginr.data.splits import VAL_FRACTION, check_split

CELEBA_CROP = 178


def _datasets() -> ModuleType:
    try:
        import torchvision.datasets
    except ImportError as err:
        raise ImportError(
            'CIFAR10 and CelebA need torchvision: pip install -e ".[vision]" (or pip install torchvision)'
        ) from err
    return torchvision.datasets


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    return resolution


def to_tensor(img: Image.Image, resolution: int, crop: int | None = None) -> torch.Tensor:
    """Optional centre crop to ``crop`` x ``crop``, bilinear resize, then (3, H, W) float32 in [0, 1]."""
    img = img.convert("RGB")
    if crop is not None:
        left, top = (img.width - crop) // 2, (img.height - crop) // 2
        img = img.crop((left, top, left + crop, top + crop))
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous().float().div_(255.0)


class CIFAR10(Dataset):
    """CIFAR-10 images (labels dropped), 32x32 unless ``resolution`` says otherwise; (3, H, W) in [0, 1].

    val is a fixed 10% of the official training set (a seeded permutation), train the other 90%."""

    channels = 3

    def __init__(self, *, root: str, split: str, resolution: int = 32, download: bool = True) -> None:
        self.split = check_split(split)
        self.resolution = _check_resolution(resolution)
        self.base = _datasets().CIFAR10(
            root=str(Path(root).expanduser()), train=split != "test", download=download
        )
        self.indices = list(range(len(self.base)))
        if split != "test":
            order = torch.randperm(len(self.base), generator=torch.Generator().manual_seed(0)).tolist()
            cut = round(VAL_FRACTION * len(order))
            self.indices = sorted(order[:cut] if split == "val" else order[cut:])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        image, _ = self.base[self.indices[index]]
        return to_tensor(image, self.resolution)


class CelebA(Dataset):
    """CelebA aligned faces (attributes dropped): 178x178 centre crop, then resize; (3, H, W) in [0, 1].

    torchvision downloads CelebA from Google Drive, which is often over quota; if it fails, place the
    files under ``root/celeba/`` by hand (see ``torchvision.datasets.CelebA``).
    """

    channels = 3

    def __init__(self, *, root: str, split: str, resolution: int = 64, download: bool = True) -> None:
        self.split = check_split(split)
        self.resolution = _check_resolution(resolution)
        self.base = _datasets().CelebA(
            root=str(Path(root).expanduser()),
            split="valid" if split == "val" else split,
            target_type=[],
            download=download,
        )

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> torch.Tensor:
        image, _ = self.base[index]
        return to_tensor(image, self.resolution, crop=CELEBA_CROP)
