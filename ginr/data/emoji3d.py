"""Microsoft Fluent Emoji 3D (MIT): 3,391 RGBA 256x256 renders, composited onto white.

The images come from the npm package ``@lobehub/fluent-emoji-3d@1.1.0``. The tarball is downloaded
once into ``root/emoji3d/``, checked against its sha256, read in memory (nothing is extracted), and
each resolution is preprocessed once into ``root/emoji3d/r{resolution}_{split}.v3.npz`` (uint8
``N x H x W x 3`` plus the file names; v2 added a val split, v3 splits by concept with a near-duplicate
guard). Later runs only load that cache.
"""

import gzip
import io
import logging
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ginr.data.fetch import Pinned
from ginr.data.splits import GUARD_RESOLUTION, SPLITS, check_resolution, check_split, concept_split
from ginr.files import write_atomic

TARBALL = Pinned(
    url="https://registry.npmjs.org/@lobehub/fluent-emoji-3d/-/fluent-emoji-3d-1.1.0.tgz",
    name="fluent-emoji-3d-1.1.0.tgz",
    sha256="c1bb7eee7de090205a232518a9ab4adb3df458bfbe8a1f78232991194c8b2e58",
    by_hand="`npm pack @lobehub/fluent-emoji-3d@1.1.0`, then pass data.dataset.tarball=PATH",
)
ASSET_DIR = "package/assets/"
SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})
MAX_RESOLUTION = 256

log = logging.getLogger(__name__)


# Code points that change an emoji's form, not what it shows: skin tones, the text / emoji presentation
# selectors, the zero-width joiner, and the female / male signs of gendered ZWJ sequences.
FORM_ONLY = SKIN_TONES | {"fe0e", "fe0f", "200d", "2640", "2642"}
# Gendered people and their neutral form; people together, as the single code points that show them.
NEUTRAL = {
    "1f468": "1f9d1", "1f469": "1f9d1",  # man, woman -> person
    "1f466": "1f9d2", "1f467": "1f9d2",  # boy, girl -> child
    "1f474": "1f9d3", "1f475": "1f9d3",  # old man, old woman -> older person
    "1f46b": "1f9d1-1f91d-1f9d1", "1f46c": "1f9d1-1f91d-1f9d1", "1f46d": "1f9d1-1f91d-1f9d1",  # holding hands
    "1f491": "1f9d1-2764-1f9d1",  # couple with heart
    "1f48f": "1f9d1-2764-1f48b-1f9d1",  # kiss
    "1f46a": "1f9d1-1f9d1-1f9d2",  # family
}  # fmt: skip


def concept_key(name: str) -> str:
    """What an emoji shows, whatever its form: all of one concept's forms share a split.

    Code points lose leading zeros (``0030`` is ``30``), then the form-only ones (:data:`FORM_ONLY`),
    and gendered people become neutral (:data:`NEUTRAL`): ``"1f44d-1f3fb.webp"`` -> ``"1f44d"``;
    ``"0030-fe0f-20e3"`` -> ``"30-20e3"``; ``"1f46e-1f3fd-200d-2640-fe0f"`` -> ``"1f46e"``;
    ``"1f468-200d-1f373"`` -> ``"1f9d1-1f373"``.
    """
    stem = name.rsplit("/", 1)[-1].removesuffix(".webp").lower()
    points = (format(int(cp, 16), "x") for cp in stem.split("-"))
    return "-".join(NEUTRAL.get(cp, cp) for cp in points if cp not in FORM_ONLY)


def cache_name(resolution: int, split: str) -> str:
    return f"r{resolution}_{split}.v3.npz"


def _load_webp(data: bytes, *resolutions: int) -> list[np.ndarray]:
    rgba = Image.open(io.BytesIO(data)).convert("RGBA")
    # Composite before resizing: resizing straight RGBA would bleed the colour of transparent pixels.
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return [
        np.asarray(
            rgb if rgb.size == (r, r) else rgb.resize((r, r), Image.Resampling.LANCZOS), dtype=np.uint8
        )
        for r in resolutions
    ]


def preprocess(tarball: Path, resolution: int) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Read, verify and convert every asset of ``tarball``; returns ``{split: (images, names)}``, split
    by concept with the near-duplicate guard (:func:`ginr.data.splits.concept_split`, at 32 px whatever
    ``resolution``, so every resolution splits alike)."""
    raw = TARBALL.read(tarball)
    # Decompress once in memory: random access into a .tgz would re-inflate from the start each time.
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        is_asset = lambda m: m.isfile() and m.name.startswith(ASSET_DIR) and m.name.endswith(".webp")
        members = sorted(filter(is_asset, tar.getmembers()), key=lambda m: m.name)
        if not members:
            raise RuntimeError(f"no {ASSET_DIR}*.webp files in {tarball}")
        names, images, guard = [], [], []
        log.info(
            "emoji3d: preprocessing %d images at %d px, once (cached in %s)",
            len(members),
            resolution,
            tarball.parent,
        )
        bar = tqdm(members, desc=f"emoji3d r{resolution}", unit="img", disable=not sys.stderr.isatty())
        for member in bar:
            file = tar.extractfile(member)
            assert file is not None  # members are regular files
            try:
                image, small = _load_webp(file.read(), resolution, GUARD_RESOLUTION)
            except OSError as err:
                raise RuntimeError(f"cannot decode {member.name} in {tarball}: {err}") from err
            names.append(member.name.removeprefix(ASSET_DIR))
            images.append(image)
            guard.append(small)
    splits = concept_split([concept_key(n) for n in names], torch.from_numpy(np.stack(guard)))
    empty = np.zeros((0, resolution, resolution, 3), np.uint8)
    out = {}
    for split in SPLITS:
        chosen = [i for i, s in enumerate(splits) if s == split]
        out[split] = (np.stack([images[i] for i in chosen]) if chosen else empty, [names[i] for i in chosen])
    return out


def save_npz(path: Path, images: np.ndarray, names: list[str]) -> None:
    """Write a compressed cache file atomically (:func:`ginr.files.write_atomic`)."""
    write_atomic(path, lambda f: np.savez_compressed(f, images=images, names=np.array(names, dtype=str)))


class Emoji3D(Dataset):
    """Fluent Emoji 3D at ``resolution`` x ``resolution``, RGB on white; items (3, H, W) float32 in [0, 1].

    The train/val/test split (~80/10/10) is by concept: every form of one emoji (skin tones,
    presentation selectors, keycap spellings, the man / woman / person forms) and every image within
    25 dB PSNR of another at 32 px lies in one split (:func:`concept_key`,
    :func:`ginr.data.splits.concept_split`). ``tarball`` points to a local copy of the package instead
    of downloading it.
    """

    channels = 3

    def __init__(
        self, *, root: str, split: str, resolution: int = 32, download: bool = True, tarball: str | None = None,
    ) -> None:  # fmt: skip
        self.split = check_split(split)
        self.resolution = check_resolution(resolution, MAX_RESOLUTION, "the source images are 256x256")
        self.cache_dir = Path(root).expanduser() / "emoji3d"
        self.cache_file = self.cache_dir / cache_name(resolution, split)
        if not self.cache_file.exists():
            self._build_cache(download=download, tarball=tarball)
        with np.load(self.cache_file, allow_pickle=False) as cache:
            self.images = torch.from_numpy(cache["images"])
            self.names: list[str] = [str(n) for n in cache["names"]]

    def _build_cache(self, *, download: bool, tarball: str | None) -> None:
        if tarball is not None:
            path = Path(tarball).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"tarball {path} not found (expected {TARBALL.name}, {TARBALL.url})")
        else:
            path = self.cache_dir / TARBALL.name
            if not path.is_file():
                if not download:
                    raise RuntimeError(TARBALL.unavailable(path, f"{path} missing and download=False"))
                TARBALL.download(path)
        for split, (images, names) in preprocess(path, self.resolution).items():
            save_npz(self.cache_dir / cache_name(self.resolution, split), images, names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].permute(2, 0, 1).contiguous().float().div_(255.0)
