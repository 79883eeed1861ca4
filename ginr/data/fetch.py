"""A pinned source file, fetched once: downloaded through a temporary file, checked against its sha256 and
put in place only whole and verified (:func:`ginr.files.write_atomic`); read back only after the same
check. Every dataset that downloads goes through here."""

import hashlib
import logging
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ginr.files import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pinned:
    """One file of a registry: where it is, its name, its sha256, and how a person gets it by hand."""

    url: str
    name: str
    sha256: str
    by_hand: str  # how a person gets it, e.g. "`apt-get download libjxl-testdata=0.0~git20230110.d6168ff-1`"

    def check(self, what: str, got: str) -> None:
        if got != self.sha256:
            raise RuntimeError(
                f"sha256 mismatch for {what}: expected {self.sha256}, got {got}. "
                f"It is corrupt or not {self.name}; delete any bad copy and retry."
            )

    def unavailable(self, target: Path, reason: str) -> str:
        return (
            f"{self.name} not available ({reason}). Provide it by hand: {self.by_hand}, or download "
            f"{self.url} (`curl -LO {self.url}`) and place it at {target}."
        )

    def read(self, path: Path) -> bytes:
        """The file at ``path``, once its sha256 is this one's."""
        raw = path.read_bytes()
        self.check(str(path), hashlib.sha256(raw).hexdigest())
        return raw

    def download(self, target: Path) -> None:
        """Download to ``target``: it appears only once complete and verified."""

        def fetch(out: BinaryIO) -> None:
            log.info("downloading %s to %s, once", self.url, target)
            digest = hashlib.sha256()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"download {self.name}",
                               disable=not sys.stderr.isatty())  # fmt: skip
                    with bar:
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, OSError) as err:
                raise RuntimeError(self.unavailable(target, f"download failed: {err}")) from err
            self.check(
                f"download of {self.url}", digest.hexdigest()
            )  # a mismatch is never renamed into place

        write_atomic(target, fetch)

    def fetch(self, folder: Path, *, download: bool) -> bytes:
        """The verified bytes of ``folder/name``, downloaded first where missing (unless ``download`` is
        False: then a clear error)."""
        path = folder / self.name
        if not path.is_file():
            if not download:
                raise RuntimeError(self.unavailable(path, f"{path} missing and download=False"))
            self.download(path)
        return self.read(path)
