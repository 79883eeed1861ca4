"""From a validated config to objects: device, precision, model, datasets, the training step with its
optimizer and schedule, and the step's inputs (which pixels it decodes, against which targets). Everything
swappable is built by ``hydra.utils.instantiate`` from its ``_target_``. This is the core's face to the
tools: the benchmark and the memory planner build their steps and inputs here, as the trainer does."""

import ctypes
import ctypes.util
import functools
import math
import sys

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import Dataset

from ginr.config.schema import target_resolutions
from ginr.engine import distributed as dist
from ginr.engine.data import Batch
from ginr.engine.step import StepQueries, TrainStep
from ginr.models.ginr import GINR
from ginr.models.layout import patch_grid


def pick_device(name: str) -> torch.device:
    """``cuda`` when asked for (or ``auto``) and available, else ``cpu``."""
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Have glibc's allocator keep freed memory for reuse rather than give every large block back to
    the OS: a training step on the CPU allocates and frees the same buffers of several MB each step,
    and each round trip to the OS page-faults them in again (``hardware=cpu`` on 2 cores: 817 ->
    451 ms per step, system time 7.8 -> 1.1 s over 13 steps). Blocks up to 32 MB come from the heap,
    which keeps up to 1 GB of free memory; the process's memory stays at its peak. Once per process,
    on glibc only (elsewhere: False, and nothing changes)."""
    if not sys.platform.startswith("linux") or (name := ctypes.util.find_library("c")) is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):  # musl
        return False
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # mallopt's parameter numbers (malloc.h)
    return all(
        libc.mallopt(param, value) == 1
        for param, value in ((mmap_threshold, 32 << 20), (trim_threshold, 1 << 30), (top_pad, 256 << 20))
    )


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``trainer.precision`` (``None``: no autocast); ``auto`` is bf16 on CUDA."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


class WarmupCosine:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total`` steps (a LambdaLR factor).

    A callable object rather than a closure: LambdaLR checkpoints its attributes, and ``total`` may be
    set during warm-up (``trainer.train_minutes`` fixes the run's length once the step time is known;
    the warm-up does not depend on it)."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_note(max_steps: int, warmup_steps: int) -> str | None:
    """A warning for a run of ``max_steps`` that ends inside the ``warmup_steps`` warm-up (its learning rate
    never reaches the configured one, its cosine never starts), else None."""
    if max_steps > warmup_steps:
        return None
    return (
        f"trainer.max_steps={max_steps} ends inside the warm-up (optim.warmup_steps={warmup_steps}): the "
        f"learning rate reaches {max_steps / warmup_steps:.1%} of optim.optimizer.lr and never decays"
    )


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms, and parameters marked ``_no_weight_decay`` (A_log, D)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_model(cfg: DictConfig) -> GINR:
    return GINR(
        encoder=instantiate(cfg.encoder),
        decoder=instantiate(cfg.decoder),
        checkpoint_queries=cfg.trainer.get("checkpoint_queries"),
    )


def build_dataset(cfg: DictConfig, split: str, resolution: int | None = None) -> Dataset:
    return instantiate(cfg.data.dataset, split=split, resolution=resolution or cfg.data.resolution)


def build_queries(
    cfg: DictConfig, model: GINR, device: torch.device, *, distributed: dist.DistInfo | None = None
) -> StepQueries:
    """The pixels each step decodes and their targets, from the step number alone: ``trainer.
    queries_per_image`` and ``query_sampling`` of the input's pixels, plus ``targets.queries`` pixels of
    the same images at ``targets.resolution``; with each pixel's size where ``model`` is cell-conditioned."""
    distributed = distributed or dist.DistInfo()
    return StepQueries(
        cfg.data.resolution, cfg.seed, distributed.rank, distributed.world_size,
        queries_per_image=cfg.trainer.queries_per_image, shared=cfg.trainer.query_sampling == "per_batch",
        target_resolutions=target_resolutions(cfg.targets), target_queries=cfg.targets.queries,
        cells=model.cell_conditioned, continuous=cfg.targets.scales == "continuous", device=device,
    )  # fmt: skip


def synthetic_batch(cfg: DictConfig, device: torch.device | str, batch_size: int | None = None) -> Batch:
    """Random images in the shapes the training loader yields for ``cfg`` (``data.batch_size`` of them unless
    ``batch_size`` says otherwise): at ``data.resolution`` and, with ``targets.resolution``, a tuple of those
    and the same count at each target resolution. For the benchmark and the planner, whose steps then take
    their inputs from :func:`build_queries` as the trainer's do."""
    count, channels = batch_size or cfg.data.batch_size, cfg.data.channels
    sides = [cfg.data.resolution, *target_resolutions(cfg.targets)]
    images = tuple(torch.rand(count, channels, side, side, device=device) for side in sides)
    return images[0] if len(images) == 1 else images


def encoder_tokens(cfg: DictConfig) -> int | None:
    """Patch tokens + latents of the encoder's sequence at ``data.resolution`` (None: an encoder without
    a patch layout)."""
    encoder = cfg.encoder
    if "patch_size" not in encoder:
        return None
    side = cfg.data.resolution
    rows, columns = patch_grid(
        side, side, patch_size=encoder.patch_size, padding=encoder.get("patch_padding", 0)
    )
    return rows * columns + encoder.num_latents


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    factory = instantiate(cfg.optim.optimizer)
    return factory(param_groups(model, cfg.optim.optimizer.get("weight_decay", 0.0)))


def build_train_step(
    cfg: DictConfig, device: torch.device, *, distributed: dist.DistInfo | None = None
) -> TrainStep:
    """The model of ``cfg`` on ``device`` with its AdamW, warm-up + cosine schedule and precision; wrapped
    in DDP across ``distributed`` ranks, then compiled when ``trainer.compile`` is set."""
    distributed = distributed or dist.DistInfo()
    if device.type == "cpu":
        keep_freed_cpu_memory()
    model = build_model(cfg).to(device)  # built on the CPU: the same initial weights on every device
    optimizer = build_optimizer(cfg, model)
    factor = WarmupCosine(cfg.optim.warmup_steps, cfg.trainer.max_steps, cfg.optim.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    net = model
    if distributed.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.trainer.compile:
        net = torch.compile(net, mode=cfg.trainer.get("compile_mode", "default"))
    model.train()
    amp = amp_dtype(cfg.trainer.precision, device)
    return TrainStep(
        model, optimizer, scheduler=scheduler, amp=amp, grad_clip=cfg.optim.grad_clip, net=net,
        all_finite=dist.all_finite(distributed),
    )  # fmt: skip
