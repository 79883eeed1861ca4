"""Dataset splits: the names every dataset accepts and a deterministic hash split.

``train`` fits the weights, ``val`` selects (best checkpoint, sweep objective, defaults), ``test`` is
reported at the end of a run and by ``ginr.tools.evaluate``, never used to choose anything.
"""

import hashlib

SPLITS = ("train", "val", "test")
TEST_FRACTION = 0.1
VAL_FRACTION = 0.1


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise ``ValueError``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


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
