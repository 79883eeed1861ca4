"""Image datasets for generalizable INRs, one module per source.

Every dataset takes keyword-only ``root`` and ``split`` (:data:`ginr.data.splits.SPLITS`) and yields
float32 tensors ``(C, H, W)`` in [0, 1]; :mod:`ginr.coords` turns them into (coordinate, value) pairs.
Nothing is imported until it is used: ``from ginr.data import Emoji3D`` loads that source alone.
"""

import importlib
from typing import Any

_WHERE = {
    "SPLITS": "splits", "check_split": "splits", "hash_split": "splits",
    "Emoji3D": "emoji3d", "concept_key": "emoji3d",
    "ImageFolder": "folder", "Photos": "photos", "Mixed": "mixed",
    "CIFAR10": "torchvision_sets", "CelebA": "torchvision_sets",
}  # fmt: skip
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ginr.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ginr.data.{_WHERE[name]}"), name)
