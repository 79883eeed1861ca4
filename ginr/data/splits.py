"""Dataset splits: the names every dataset accepts and a deterministic hash split."""

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
