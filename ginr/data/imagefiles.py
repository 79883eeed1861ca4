"""Image files: decoding (upright, transparency onto white, to L or RGB) and the one-time scan that finds
the unreadable ones. A scan decodes each file once and keeps the result per file (size, mtime) for the
process and, given ``cache_dir``, in ``cache_dir/image_folder/*.scan.json``, so later scans only ``stat``
unchanged files and never write into the image folder."""

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ginr.files import write_atomic

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
SCAN_VERSION = 1

log = logging.getLogger(__name__)


class Scanned(NamedTuple):
    size: int
    mtime_ns: int
    reason: str | None  # why the file cannot be read; None: it decodes


SCANNED: dict[str, Scanned] = {}  # absolute path -> its last scan in this process


class UnreadableImage(RuntimeError):
    """``path`` cannot be decoded; ``reason`` says why in one line."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot decode image {path}: {reason}")
        self.path, self.reason = path, reason


def _reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not an image format PIL can read"
    if isinstance(err, FileNotFoundError):
        return "file not found"
    return " ".join(str(err).split()) or type(err).__name__


def _decode(path: Path, channels: int) -> Image.Image:
    """The whole image, upright, as ``L`` or ``RGB``; transparency goes onto white."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        img = img.convert("L" if channels == 1 else "RGB")
    if img.width < 1 or img.height < 1:
        raise ValueError(f"empty image ({img.width}x{img.height})")
    return img


def check_image(path: Path) -> str | None:
    """None if ``path`` decodes completely to at least 1x1 pixel, else why not (one line)."""
    try:
        _decode(path, 3)
    except Exception as err:  # any failure of any decoder makes the file unreadable
        return _reason(err)
    return None


def load_image(path: Path, *, size: tuple[int, int], channels: int, crop: str) -> torch.Tensor:
    """Decode ``path`` to a (channels, H, W) float32 tensor in [0, 1]; transparency goes onto white.
    Raises :class:`UnreadableImage` if it cannot be decoded."""
    try:
        img = _decode(path, channels)
    except Exception as err:
        raise UnreadableImage(path, _reason(err)) from err
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


def scan_cache_path(folder: Path, cache_dir: str | Path) -> Path:
    """Where the scan of ``folder`` is cached: ``cache_dir/image_folder/<name>-<hash of its path>.scan.json``."""
    resolved = str(folder.resolve())
    digest = hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:12]
    return Path(cache_dir).expanduser() / "image_folder" / f"{folder.name or 'root'}-{digest}.scan.json"


def _read_cache(path: Path, folder: Path) -> dict[str, Scanned]:
    """The cached entries by path relative to ``folder``; nothing if the file is missing or malformed."""
    try:
        data = json.loads(path.read_text())
        if data.get("version") != SCAN_VERSION or data.get("folder") != str(folder.resolve()):
            return {}
        return {
            rel: Scanned(int(size), int(mtime), reason if isinstance(reason, str) else None)
            for rel, (size, mtime, reason) in data["files"].items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _write_cache(path: Path, folder: Path, entries: dict[str, Scanned]) -> None:
    """Write ``entries`` atomically; a cache that cannot be written only costs a rescan next time."""
    files = {rel: list(entry) for rel, entry in entries.items()}
    data = {"version": SCAN_VERSION, "folder": str(folder.resolve()), "files": files}
    try:
        write_atomic(path, json.dumps(data))
    except OSError as err:
        log.warning("cannot write the image scan cache %s (%s); the images will be decoded again", path, err)


def scan_images(folder: Path, files: list[Path], cache_dir: str | Path | None = None) -> dict[Path, str]:
    """Decode each of ``files`` (all under ``folder``) unless it was scanned before with the same size and
    mtime, in this process or in the cache under ``cache_dir``; return the unreadable ones with why."""
    cache = scan_cache_path(folder, cache_dir) if cache_dir is not None else None
    stored = _read_cache(cache, folder) if cache is not None else {}
    entries: dict[str, Scanned] = {}
    todo: list[tuple[str, Path, int, int]] = []
    for path in files:
        rel = path.relative_to(folder).as_posix()
        try:
            stat = path.stat()
        except OSError as err:
            entries[rel] = Scanned(-1, -1, _reason(err))
            continue
        known = SCANNED.get(str(path)) or stored.get(rel)
        if known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            entries[rel] = known
        else:
            todo.append((rel, path, stat.st_size, stat.st_mtime_ns))
    if todo:
        where = f"; the result is cached in {cache}" if cache is not None else ""
        log.info("checking %d images under %s: each is decoded once%s", len(todo), folder, where)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(todo))) as pool:
            reasons = list(pool.map(check_image, [path for _, path, _, _ in todo]))
        for (rel, _, size, mtime), reason in zip(todo, reasons, strict=True):
            entries[rel] = Scanned(size, mtime, reason)
    for rel, entry in entries.items():
        if entry.size >= 0:
            SCANNED[str(folder / rel)] = entry
    if cache is not None and entries != stored:
        _write_cache(cache, folder, {k: v for k, v in entries.items() if v.size >= 0})
    return {folder / rel: e.reason for rel, e in entries.items() if e.reason is not None}
