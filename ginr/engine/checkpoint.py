"""Checkpoints written atomically (:func:`ginr.files.write_atomic`: temporary file, fsync, rename): a
crash, a kill or a full disk while writing leaves the previous checkpoint intact."""

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ginr.files import write_atomic

log = logging.getLogger(__name__)

MODEL_KEYS = ("encoder", "decoder", "data.channels")  # what a checkpoint's weights depend on


class CheckpointError(RuntimeError):
    pass


def check_compatible(saved: dict, cfg: DictConfig, path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``cfg`` builds the model the checkpoint's config built."""
    current = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    saved = OmegaConf.create(saved)
    diffs = [k for k in MODEL_KEYS if OmegaConf.select(saved, k) != OmegaConf.select(current, k)]
    if diffs:
        raise CheckpointError(f"checkpoint {path} was trained with another {', '.join(diffs)} config")


def rng_state() -> dict[str, Any]:
    """Every RNG's state, in types ``torch.load(weights_only=True)`` reads (no numpy objects)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    keys = numpy_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (numpy_state["kind"], keys, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically."""
    path = Path(path)
    try:
        write_atomic(path, lambda f: torch.save(state, f))
    except OSError as err:
        raise CheckpointError(
            f"could not write checkpoint {path} ({err}); the previous one is intact"
        ) from err
    return path


def resolve_checkpoint(path: str | Path, which: str = "last") -> Path:
    """A checkpoint file, or a run directory -> its ``checkpoints/<which>.ckpt``."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / f"{which}.ckpt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)  # tensors and plain data only
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is unreadable or corrupt ({type(err).__name__}: {err})"
        ) from err
    missing = {"model", "config", "step"} - set(state) if isinstance(state, dict) else {"model"}
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}: not a ginr checkpoint")
    return state


def load_for_resume(
    resume: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """(path, state) to resume from: a checkpoint file as given, or the newest readable checkpoint of a
    run directory (``last``, else ``best``: a corrupt or missing ``last.ckpt`` costs the steps since
    ``best.ckpt``, not the run)."""
    path = Path(resume).expanduser()
    if not path.is_dir():
        return path, load_checkpoint(path, map_location)
    found, problems = [], []
    for name in ("last", "best"):
        candidate = path / "checkpoints" / f"{name}.ckpt"
        if not candidate.is_file():
            continue
        try:
            found.append((candidate, load_checkpoint(candidate, map_location)))
        except CheckpointError as err:
            log.warning("skipping %s", err)
            problems.append(str(err))
    if not found:
        detail = "; ".join(problems) if problems else "no checkpoints/last.ckpt or best.ckpt"
        raise CheckpointError(f"nothing to resume in {path}: {detail}")
    return max(found, key=lambda item: item[1]["step"])
