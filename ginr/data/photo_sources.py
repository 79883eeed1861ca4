"""Where the photos of ``data=photos`` come from: 45 photos in packages of the registries this project
reaches, each package pinned by its sha256, and each photo's split (by photo, by hand).

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
``train`` (36 train photos, from 10): val and test are version 1's. :func:`preprocess` reads each photo out
of its verified package (downloaded once into a folder) and shrinks it (Lanczos) so that its short side is
at most :data:`MAX_SIDE` px.
"""

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from ginr.data.fetch import Pinned

log = logging.getLogger(__name__)

MAX_SIDE = 512  # the kept photos' short side at most


def _debian(source: str, package: str, version: str, sha256: str, size: str) -> Pinned:
    """A package of Debian's main archive (``version`` as apt names it, epoch included), built from
    ``source``."""
    name = f"{package}_{version.split(':')[-1]}_all.deb"
    pool = source[:4] if source.startswith("lib") else source[0]
    return Pinned(
        url=f"http://deb.debian.org/debian/pool/main/{pool}/{source}/{name}",
        name=name,
        sha256=sha256,
        by_hand=f"`apt-get download {package}={version}` ({size})",
    )


WALLPAPERS = _debian(
    "plasma-workspace-wallpapers", "plasma-workspace-wallpapers", "4:5.27.5-2",
    "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b", "94 MB",
)  # fmt: skip
JXL_TESTDATA = _debian(
    "libjxl-testdata", "libjxl-testdata", "0.0~git20230110.d6168ff-1",
    "a58523413f486760a0f3cbc931142a27e3aa25f77315b862046f089ed34aa2c7", "56 MB",
)  # fmt: skip
LOMIRI = _debian(
    "lomiri-wallpapers", "lomiri-wallpapers-16.04", "20.04.0-2",
    "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab", "16 MB",
)  # fmt: skip
MATE = _debian(
    "mate-backgrounds", "mate-backgrounds", "1.26.0-1",
    "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04", "47 MB",
)  # fmt: skip
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
