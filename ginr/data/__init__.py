"""Image datasets for generalizable INRs and the pixel-coordinate convention they share.

Every dataset takes keyword-only ``root`` and ``split`` (``"train"`` or ``"test"``) and yields
float32 tensors ``(C, H, W)`` in [0, 1]; :mod:`ginr.data.coords` turns them into (coordinate, value)
pairs.
"""

import hashlib

SPLITS = ("train", "test")
TEST_FRACTION = 0.1


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise ``ValueError``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


def hash_split(key: str, test_fraction: float = TEST_FRACTION) -> str:
    """Deterministic split of ``key``: ``"test"`` for about ``test_fraction`` of all keys, else ``"train"``.

    Uses sha256 rather than ``hash()`` so the split is the same in every process and Python version.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") < test_fraction * 2**64 else "train"


# The submodules import the helpers above, so they are imported after them.
from ginr.data.coords import image_to_values, pixel_grid, values_to_image  # noqa: E402
from ginr.data.emoji3d import Emoji3D, group_key  # noqa: E402
from ginr.data.folder import ImageFolder  # noqa: E402
from ginr.data.torchvision_sets import CIFAR10, CelebA  # noqa: E402

__all__ = [
    "CIFAR10",
    "SPLITS",
    "CelebA",
    "Emoji3D",
    "ImageFolder",
    "check_split",
    "group_key",
    "hash_split",
    "image_to_values",
    "pixel_grid",
    "values_to_image",
]
