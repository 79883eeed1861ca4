"""The Python API: a trained model from a run directory or a checkpoint, ready to encode, decode and
render, rebuilt from the config stored in the checkpoint alone.

    import ginr
    run = ginr.load("outputs/runs/scent_ff/2026-11-22_10-00-00")
    latents = run.model.encode(images)                # (B, C, H, W) in [0, 1] -> (B, 256, D)
    big = run.model.render(latents, 512, 512, images=images)  # (B, C, 512, 512); images= for an image skip

Any image files or folders, encoded, rendered at any sizes and scored where real ground truth exists:
``ginr.tools.images.render_images(run, ["photos/"], [256, 1024])`` (``python -m ginr.tools.evaluate RUN --inputs``).
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ginr.engine.build import amp_dtype, build_model, pick_device
from ginr.engine.checkpoint import load_checkpoint, resolve_checkpoint
from ginr.models.ginr import GINR


@dataclass
class Loaded:
    """A trained model in eval mode on ``device``, the resolved config it was trained with, its step,
    the checkpoint it came from, and the autocast dtype it was trained under (None: float32)."""

    model: GINR
    config: DictConfig
    step: int
    checkpoint: Path
    amp: torch.dtype | None


def load(path: str | Path, *, device: str | torch.device = "auto", which: str = "last") -> Loaded:
    """Load ``path``: a checkpoint file, or a run directory (its ``checkpoints/<which>.ckpt``)."""
    if which not in ("last", "best"):
        raise ValueError(f"which={which!r} is not allowed: expected last or best")
    checkpoint = resolve_checkpoint(path, which=which)
    state = load_checkpoint(checkpoint)
    cfg = OmegaConf.create(state["config"])
    device = (
        pick_device(device)
        if isinstance(device, str) and device in ("auto", "cuda", "cpu")
        else torch.device(device)
    )
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Loaded(model, cfg, state["step"], checkpoint, amp_dtype(cfg.trainer.precision, device))
