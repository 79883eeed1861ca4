"""Atomic file writes: a path holds its old content or all of the new, never part of it, whatever stops
the writer (an exception, a full disk, a kill). The one way ginr writes checkpoints, ``status.json`` and
its data caches; standard library only, so every layer can use it."""

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | Path, data: bytes | str | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``: bytes, text (UTF-8), or a callable that
    writes to the binary file it is given (``lambda f: torch.save(state, f)``). The content goes to a
    temporary file beside ``path`` (same folder, so the rename stays on one file system; created with the
    usual umask permissions), is fsynced, and replaces ``path`` in one ``os.replace``. On any failure,
    the callable's own errors included, the temporary file is removed and the error is raised; ``path``
    is left as it was. Missing parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after the rename
    return path
