"""From a composed config to objects: CPU scaling, validation before any work, model and data builders.

Everything swappable is built by ``hydra.utils.instantiate`` from its ``_target_``.
"""

import logging
from collections.abc import Iterable

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ginr.models.encoder import PLACEMENTS
from ginr.models.ginr import GINR
from ginr.models.layers import ATTN_IMPLS
from ginr.ops.backend import BACKENDS

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key, the value and what is allowed."""


POSITIVE_INTS = [
    "encoder.dim",
    "encoder.depth",
    "encoder.mlp_dim",
    "encoder.patch_size",
    "encoder.num_latents",
    "encoder.d_state",
    "encoder.d_conv",
    "encoder.expand",
    "encoder.heads",
    "encoder.dim_head",
    "decoder.hidden_dim",
    "decoder.num_layers",
    "decoder.num_fourier",
    "decoder.heads",
    "decoder.dim_head",
    "decoder.block.ff_mult",
    "decoder.ff_mult",
    "data.resolution",
    "data.channels",
    "data.batch_size",
    "trainer.max_steps",
    "trainer.eval_every",
    "trainer.log_every",
    "trainer.ckpt_every",
    "trainer.render_chunk",
    "trainer.max_bad_steps",
]
CHOICES = {
    "trainer.device": ("auto", "cuda", "cpu"),
    "trainer.precision": ("auto", "bf16", "fp16", "fp32"),
    "encoder.placement": PLACEMENTS,
    "encoder.backend": BACKENDS,
    "decoder.attn_impl": ATTN_IMPLS,
}


def _fail(key: str, value, allowed: str):
    raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _check_positive_int(cfg: DictConfig, key: str, minimum: int = 1) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        _fail(key, value, f"expected an integer >= {minimum}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on the first bad value, before any data or model is touched."""
    for key in POSITIVE_INTS:
        _check_positive_int(cfg, key)
    _check_positive_int(cfg, "encoder.processor_depth", 0)
    _check_positive_int(cfg, "data.num_workers", 0)
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in allowed:
            _fail(key, value, f"expected one of {', '.join(allowed)}")
    resolution, patch = cfg.data.resolution, cfg.encoder.patch_size
    if patch > resolution:
        _fail("encoder.patch_size", patch, f"the patch must fit in the image (data.resolution={resolution})")
    for key in ("decoder.bandwidths", "data.eval_resolutions"):
        for value in OmegaConf.select(cfg, key, default=None) or []:
            if not isinstance(value, int | float) or value <= 0:
                _fail(key, value, "expected a list of positive numbers")
    queries = cfg.trainer.queries_per_image
    if queries is not None and (not isinstance(queries, int) or not 1 <= queries <= resolution**2):
        _fail("trainer.queries_per_image", queries, f"expected null or an integer in [1, {resolution**2}]")
    chunk = cfg.trainer.get("checkpoint_queries")
    if chunk is not None:
        _check_positive_int(cfg, "trainer.checkpoint_queries")
        block = OmegaConf.select(cfg, "decoder.block._target_", default=None)
        if block is not None and getattr(get_class(block), "mixes_queries", False):
            _fail(
                "trainer.checkpoint_queries",
                chunk,
                f"null for {block.rsplit('.', 1)[-1]}, whose blocks mix queries",
            )
    lr = cfg.optim.optimizer.lr
    if not isinstance(lr, int | float) or lr <= 0:
        _fail("optim.optimizer.lr", lr, "expected a positive number")
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        _fail("trainer.device", "cuda", "no CUDA device is available here (use auto or cpu)")


def prepare(cfg: DictConfig, user_keys: Iterable[str] = ()) -> DictConfig:
    """Apply the CPU scaling when there is no GPU (never to ``user_keys``, the keys set on the command
    line), validate, and resolve every interpolation."""
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    on_cuda = cfg.trainer.device != "cpu" and torch.cuda.is_available()
    user_keys = set(user_keys)
    overrides = [o for o in cfg.trainer.get("cpu_overrides") or [] if o.split("=", 1)[0] not in user_keys]
    if not on_cuda and overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
        log.warning(
            "No CUDA device: training a scaled-down model for a ~10-minute CPU run (%s). "
            "The full run needs a GPU; to force the full configuration on CPU add trainer.cpu_overrides=[].",
            ", ".join(overrides),
        )
    validate(cfg)
    OmegaConf.resolve(cfg)
    return cfg


def build_model(cfg: DictConfig) -> GINR:
    return GINR(
        encoder=instantiate(cfg.encoder),
        decoder=instantiate(cfg.decoder),
        checkpoint_queries=cfg.trainer.get("checkpoint_queries"),
    )


def build_dataset(cfg: DictConfig, split: str, resolution: int | None = None) -> torch.utils.data.Dataset:
    return instantiate(cfg.data.dataset, split=split, resolution=resolution or cfg.data.resolution)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
