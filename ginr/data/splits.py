"""What every dataset takes, checked (a split's name, a resolution in the range its data holds), and a
deterministic hash split.

``train`` fits the weights, ``val`` selects (best checkpoint, sweep objective, defaults), ``test`` is
reported at the end of a run and by ``ginr.tools.evaluate``, never used to choose anything. Near-copies
of one picture belong to one split (:func:`concept_split`); :func:`cross_split_near_duplicates` finds
those that straddle the splits of any dataset.
"""

import dataclasses
import hashlib
from collections.abc import Sequence

import torch

SPLITS = ("train", "val", "test")
TEST_FRACTION = 0.1
VAL_FRACTION = 0.1


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise ``ValueError``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


def check_resolution(resolution: int, largest: int, why: str, smallest: int = 8) -> int:
    """Return ``resolution`` if it is an int in [``smallest``, ``largest``], else raise ``ValueError``
    saying ``why`` the range stops at ``largest``."""
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise ValueError(f"resolution must be an int, got {resolution!r}")
    if not smallest <= resolution <= largest:
        raise ValueError(f"resolution {resolution} out of range; allowed: {smallest} to {largest} ({why})")
    return resolution


def hash_unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: sha256 rather than ``hash()``, so it is the same in every
    process and Python version."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def hash_split(key: str, test_fraction: float = TEST_FRACTION, val_fraction: float = VAL_FRACTION) -> str:
    """Deterministic split of ``key``: ``"test"`` for about ``test_fraction`` of all keys, ``"val"`` for
    about ``val_fraction``, else ``"train"``. The test keys do not depend on ``val_fraction``: val is
    carved out of what was train."""
    unit = hash_unit(key)
    return "test" if unit < test_fraction else "val" if unit < test_fraction + val_fraction else "train"


# Two images closer than this (PSNR at GUARD_RESOLUTION px) are one picture for the split: never in two splits.
NEAR_DUPLICATE_DB = 25.0
GUARD_RESOLUTION = 32


def psnr_matrix(a: torch.Tensor, b: torch.Tensor, *, chunk: int = 1024) -> torch.Tensor:
    """PSNR (dB, peak 1) between every image of ``a`` (N, ...) and every image of ``b`` (M, ...), values
    in [0, 1] -> (N, M), in float32: to about 0.01 dB near 25 dB; identical images give 70 dB or more."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"images of different sizes: {a.shape[1]} and {b.shape[1]} values each")
    b_sq = (b * b).sum(1)
    rows = []
    for part in a.split(chunk):
        mse = ((part * part).sum(1, keepdim=True) + b_sq - 2 * part @ b.T).clamp_min(0) / a.shape[1]
        rows.append(-10 * torch.log10(mse))
    return torch.cat(rows)


def _close_pairs(images: torch.Tensor, threshold_db: float) -> list[tuple[int, int]]:
    """The pairs i < j of 8-bit ``images`` within ``threshold_db``, decided on their exact integer sums
    of squared differences (so the same on every machine); float32 PSNR only proposes candidates."""
    flat = images.flatten(1)
    candidates = torch.triu(psnr_matrix(flat / 255.0, flat / 255.0) >= threshold_db - 0.5, diagonal=1)
    limit = 255**2 * flat.shape[1] * 10 ** (-threshold_db / 10)  # PSNR >= threshold <=> SSE <= limit
    pairs = candidates.nonzero().tolist()
    return [(i, j) for i, j in pairs if ((flat[i].long() - flat[j].long()) ** 2).sum().item() <= limit]


def concept_split(
    keys: Sequence[str], images: torch.Tensor, threshold_db: float = NEAR_DUPLICATE_DB
) -> list[str]:
    """The split of each image: images with one key, and images within ``threshold_db`` of each other
    (``images``: uint8, one per key, at :data:`GUARD_RESOLUTION`), are joined, transitively, into one
    group, whose split is :func:`hash_split` of its smallest key. So no val or test image lies within
    ``threshold_db`` of a train image, and an image's split does not depend on the order of the images."""
    if len(keys) != len(images):
        raise ValueError(f"{len(keys)} keys for {len(images)} images")
    if images.dtype != torch.uint8:
        raise ValueError(f"concept_split takes 8-bit images (exact distances), got {images.dtype}")
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        i, j = root(i), root(j)
        parent[max(i, j)] = min(i, j)

    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        join(i, first.setdefault(key, i))
    for i, j in _close_pairs(images, threshold_db):
        join(i, j)
    smallest: dict[int, str] = {}
    for i, key in enumerate(keys):
        smallest[root(i)] = min(key, smallest.get(root(i), key))
    return [hash_split(smallest[root(i)]) for i in range(len(keys))]


@dataclasses.dataclass(frozen=True)
class NearDuplicate:
    """A held-out image within the guard's PSNR of a train image."""

    split: str
    name: str
    train_name: str
    psnr: float


def cross_split_near_duplicates(
    train: tuple[torch.Tensor, Sequence[str]],
    held_out: dict[str, tuple[torch.Tensor, Sequence[str]]],
    threshold_db: float = NEAR_DUPLICATE_DB,
) -> list[NearDuplicate]:
    """Each val or test image (``held_out``: split -> (images, names)) whose closest train image lies
    within ``threshold_db``, closest first; images at one resolution, values in [0, 1]."""
    found = []
    train_images, train_names = train
    for split, (images, names) in held_out.items():
        if not len(images) or not len(train_images):
            continue
        best, where = psnr_matrix(images, train_images).max(dim=1)
        found += [
            NearDuplicate(split, names[i], train_names[int(where[i])], float(best[i]))
            for i in (best >= threshold_db).nonzero().flatten().tolist()
        ]
    return sorted(found, key=lambda d: -d.psnr)
