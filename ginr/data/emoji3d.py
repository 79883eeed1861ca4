"""Microsoft Fluent Emoji 3D (MIT): 3,391 RGBA 256x256 renders, composited onto white.

The images come from the npm package ``@lobehub/fluent-emoji-3d@1.1.0``. The tarball is downloaded
once into ``root/emoji3d/``, checked against its sha256, read in memory (nothing is extracted), and
each resolution is preprocessed once into ``root/emoji3d/r{resolution}_{split}.v2.npz`` (uint8
``N x H x W x 3`` plus the file names; v2: with a val split). Later runs only load that cache.
"""

import gzip
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ginr.data.splits import SPLITS, check_split, hash_split
from ginr.files import write_atomic

TARBALL_URL = "https://registry.npmjs.org/@lobehub/fluent-emoji-3d/-/fluent-emoji-3d-1.1.0.tgz"
TARBALL_NAME = "fluent-emoji-3d-1.1.0.tgz"
TARBALL_SHA256 = "c1bb7eee7de090205a232518a9ab4adb3df458bfbe8a1f78232991194c8b2e58"
ASSET_DIR = "package/assets/"
SKIN_TONES = frozenset({"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"})
MIN_RESOLUTION, MAX_RESOLUTION = 8, 256


def group_key(name: str) -> str:
    """Emoji name without skin-tone modifiers, so all skin-tone variants share one split.

    ``"1f44d-1f3fb.webp"`` -> ``"1f44d"``; ``"1f9d1-1f3fb-200d-1f91d-200d-1f9d1-1f3fc"`` ->
    ``"1f9d1-200d-1f91d-200d-1f9d1"``.
    """
    stem = name.rsplit("/", 1)[-1].removesuffix(".webp")
    return "-".join(cp for cp in stem.lower().split("-") if cp not in SKIN_TONES)


def cache_name(resolution: int, split: str) -> str:
    return f"r{resolution}_{split}.v2.npz"


def check_resolution(resolution: int) -> int:
    """Return ``resolution`` if it is an int in [8, 256], else raise ``ValueError``."""
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise ValueError(f"resolution must be an int, got {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(
            f"resolution {resolution} out of range; allowed: {MIN_RESOLUTION} to {MAX_RESOLUTION} "
            "(the source images are 256x256)"
        )
    return resolution


def _check_sha(what: str, got: str) -> None:
    if got != TARBALL_SHA256:
        raise RuntimeError(
            f"sha256 mismatch for {what}: expected {TARBALL_SHA256}, got {got}. "
            f"It is corrupt or not {TARBALL_NAME}; delete any bad copy and retry."
        )


def _unavailable_message(target: Path, reason: str) -> str:
    return (
        f"Fluent Emoji 3D tarball not available ({reason}). Provide it by hand: download {TARBALL_URL} "
        f"(`npm pack @lobehub/fluent-emoji-3d@1.1.0` or `curl -LO {TARBALL_URL}`), then pass "
        f"data.tarball=PATH (Emoji3D(tarball=PATH)) or place it at {target}."
    )


def download_tarball(target: Path) -> None:
    """Download the tarball to ``target`` through a temp file; it appears only once complete and verified."""

    def fetch(out: BinaryIO) -> None:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(TARBALL_URL, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {TARBALL_NAME}") as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as err:
            raise RuntimeError(_unavailable_message(target, f"download failed: {err}")) from err
        _check_sha(f"download of {TARBALL_URL}", digest.hexdigest())  # a mismatch is never renamed into place

    write_atomic(target, fetch)


def _load_webp(data: bytes, resolution: int) -> np.ndarray:
    rgba = Image.open(io.BytesIO(data)).convert("RGBA")
    # Composite before resizing: resizing straight RGBA would bleed the colour of transparent pixels.
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if rgb.size != (resolution, resolution):
        rgb = rgb.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)


def preprocess(tarball: Path, resolution: int) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Read, verify and convert every asset of ``tarball``; returns ``{split: (images, names)}``."""
    raw = tarball.read_bytes()
    _check_sha(str(tarball), hashlib.sha256(raw).hexdigest())
    # Decompress once in memory: random access into a .tgz would re-inflate from the start each time.
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        is_asset = lambda m: m.isfile() and m.name.startswith(ASSET_DIR) and m.name.endswith(".webp")
        members = sorted(filter(is_asset, tar.getmembers()), key=lambda m: m.name)
        if not members:
            raise RuntimeError(f"no {ASSET_DIR}*.webp files in {tarball}")
        out: dict[str, tuple[list[np.ndarray], list[str]]] = {split: ([], []) for split in SPLITS}
        for member in tqdm(members, desc=f"emoji3d r{resolution}", unit="img"):
            name = member.name.removeprefix(ASSET_DIR)
            file = tar.extractfile(member)
            assert file is not None  # members are regular files
            try:
                image = _load_webp(file.read(), resolution)
            except OSError as err:
                raise RuntimeError(f"cannot decode {member.name} in {tarball}: {err}") from err
            images, names = out[hash_split(group_key(name))]
            images.append(image)
            names.append(name)
    empty = np.zeros((0, resolution, resolution, 3), np.uint8)
    return {s: (np.stack(imgs) if imgs else empty, names) for s, (imgs, names) in out.items()}


def save_npz(path: Path, images: np.ndarray, names: list[str]) -> None:
    """Write a compressed cache file atomically (:func:`ginr.files.write_atomic`)."""
    write_atomic(path, lambda f: np.savez_compressed(f, images=images, names=np.array(names, dtype=str)))


class Emoji3D(Dataset):
    """Fluent Emoji 3D at ``resolution`` x ``resolution``, RGB on white; items (3, H, W) float32 in [0, 1].

    The train/val/test split (~80/10/10) hashes each emoji with its skin-tone modifiers removed, so
    skin-tone variants never straddle two splits; val is carved out of train, test is unchanged. ``tarball`` points to a local copy of the package
    instead of downloading it.
    """

    channels = 3

    def __init__(
        self,
        *,
        root: str,
        split: str,
        resolution: int = 32,
        download: bool = True,
        tarball: str | None = None,
    ) -> None:
        self.split = check_split(split)
        self.resolution = check_resolution(resolution)
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
                raise FileNotFoundError(f"tarball {path} not found (expected {TARBALL_NAME}, {TARBALL_URL})")
        else:
            path = self.cache_dir / TARBALL_NAME
            if not path.is_file():
                if not download:
                    raise RuntimeError(_unavailable_message(path, f"{path} missing and download=False"))
                download_tarball(path)
        for split, (images, names) in preprocess(path, self.resolution).items():
            save_npz(self.cache_dir / cache_name(self.resolution, split), images, names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].permute(2, 0, 1).contiguous().float().div_(255.0)
