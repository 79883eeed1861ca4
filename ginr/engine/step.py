"""THE training step: the forward + loss, the update, and the inputs they take (:class:`StepQueries`). The
trainer, the benchmark and the memory planner all run this code, built from the config by
:mod:`ginr.engine.build`, so what they time or predict is what trains.

A step is ``forward_backward`` (autocast forward, float32 MSE, scaled backward) then ``update``
(unscale, clip, a finite check agreed across ranks, optimizer and scheduler step, zero_grad). The
finite check stays on the device: a fused optimizer skips a non-finite step by itself, so the host
never waits for the GPU inside a step and can queue the next one while this one runs.
"""

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo import OptimizedModule
from torch._dynamo.exc import TorchDynamoException
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from ginr.coords import image_to_values, pixel_grid, with_cells
from ginr.engine.data import Batch, query_indices
from ginr.engine.metrics import psnr

log = logging.getLogger(__name__)


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` on ``device``'s type at ``dtype``; no autocast when ``dtype`` is None."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=dtype) if dtype is not None else nullcontext()


def forward_loss(
    net: nn.Module, images: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor, amp: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, predictions): the model under autocast, the MSE in float32 against ``targets`` (B, N, C)."""
    with autocast(images.device, amp):
        pred = net(images, coords)
    return F.mse_loss(pred.float(), targets), pred


def select_queries(
    images: torch.Tensor, grid: torch.Tensor, index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(coords, targets) of a batch: every pixel of the shared ``grid`` (N, 2) when ``index`` is None;
    the pixels ``index`` (K,) of every image -> shared coords (K, 2), targets (B, K, C); or the pixels
    ``index`` (B, K) of each image -> coords (B, K, 2), targets (B, K, C)."""
    targets = image_to_values(images)
    if index is None:
        return grid, targets
    coords = grid[index]
    index = index.expand(len(images), -1) if index.dim() == 1 else index
    return coords, targets.gather(1, index.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))


def with_targets_above(
    coords: torch.Tensor, targets: torch.Tensor, high: torch.Tensor, grid: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's (coords, targets) plus the pixels ``index`` (K,) of the same images at a higher
    resolution, ``high`` (B, C, R, R) on its pixel grid (R * R, 2): coords (1 | B, N + K, 2), targets
    (B, N + K, C). One index for the whole batch keeps shared coordinates shared."""
    coords = coords.unsqueeze(0) if coords.dim() == 2 else coords
    above = grid[index].expand(coords.shape[0], -1, -1)
    return torch.cat([coords, above], dim=1), torch.cat([targets, image_to_values(high)[:, index]], dim=1)


@dataclass
class StepQueries:
    """What one training step decodes and against what: from the step number alone (so a resumed or
    re-sharded run draws the same pixels), every pixel of the input or ``queries_per_image`` of them
    (per image, or one draw for the batch), plus ``target_queries`` pixels of the same images at the
    ``target_resolutions`` when the batch carries them (arbitrary-scale training), split evenly between
    those resolutions. ``continuous`` (LIIF's continuous scale): each step draws every target's side
    anew, uniform in (the side below it, its own] (the input's below the first), and resamples that
    target image to it (bicubic, antialiased), so the targets span every scale between the input's and
    the highest; one draw per step for the whole batch, the same on every process."""

    resolution: int
    seed: int
    rank: int = 0
    world_size: int = 1
    queries_per_image: int | None = None
    shared: bool = False  # one draw of queries_per_image for the whole batch
    target_resolutions: Sequence[int] = ()
    target_queries: int = 0
    cells: bool = False  # each query carries its pixel's size (a cell-conditioned decoder)
    continuous: bool = False  # each step's target sides drawn at random (see above)
    device: torch.device | str = "cpu"

    TARGETS_STREAM = 104_729  # seed offset of the pixels drawn at the (first) target resolution
    SIDES_STREAM = 7_919  # seed offset of the target sides drawn in continuous mode

    def __post_init__(self) -> None:
        self.grid = self._grid(self.resolution)
        self.target_grids = [self._grid(r) for r in self.target_resolutions]
        share, extra = divmod(self.target_queries, max(1, len(self.target_resolutions)))
        self.target_counts = [share + (i < extra) for i in range(len(self.target_resolutions))]

    def target_sides(self, step: int) -> list[int]:
        """The side of each target at ``step``: the target resolutions, or in continuous mode a side
        drawn uniformly in (the side below, the target's own]."""
        if not self.continuous:
            return list(self.target_resolutions)
        generator = torch.Generator().manual_seed(hash((self.seed + self.SIDES_STREAM, step)) % 2**63)
        lows = [self.resolution, *self.target_resolutions[:-1]]
        return [
            low + 1 + int(torch.randint(high - low, (), generator=generator))
            for low, high in zip(lows, self.target_resolutions, strict=True)
        ]

    def _grid(self, resolution: int) -> torch.Tensor:
        grid = pixel_grid(resolution, resolution, device=self.device)
        return with_cells(grid, resolution, resolution) if self.cells else grid

    def inputs(self, step: int, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, coords, targets) of step ``step`` from a batch as the loader yields it: the images, or
        a tuple of them and the same images at each target resolution; the images moved to ``device``."""
        images, *above = (batch,) if isinstance(batch, torch.Tensor) else batch
        images = images.to(self.device, non_blocking=True)
        return images, *self(step, images, *above)

    def __call__(
        self, step: int, images: torch.Tensor, *above: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(coords, targets) of step ``step`` for ``images`` (and the same images at each target
        resolution, in order)."""
        where = (self.rank, self.world_size)
        index = None
        if self.queries_per_image is not None:
            index = query_indices(
                step, self.seed, *where, len(images), self.grid.shape[0], self.queries_per_image,
                shared=self.shared,
            ).to(images.device, non_blocking=True)  # fmt: skip
        coords, targets = select_queries(images, self.grid, index)
        sides = self.target_sides(step)
        for i, (high, side, grid, count) in enumerate(
            zip(above, sides, self.target_grids, self.target_counts, strict=True)
        ):
            if side != high.shape[-1]:  # continuous: this target resampled to this step's side
                resized = F.interpolate(high.float(), size=(side, side), mode="bicubic", antialias=True)
                high, grid = resized.clamp(0, 1), self._grid(side)
            pixels = query_indices(
                step, self.seed + self.TARGETS_STREAM * (i + 1), *where, len(images), grid.shape[0], count,
                shared=True,
            ).to(images.device, non_blocking=True)  # fmt: skip
            coords, targets = with_targets_above(coords, targets, high, grid, pixels)
        return coords, targets


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:  # fmt: skip
    """Each gradient of a convolution costs what its forward does. PyTorch's own formula counts a grouped
    convolution's backward as dense: for the encoder's depthwise causal convolution that is about
    1.6 TFLOP per default step that never run."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode (matrix multiplications, convolutions, attention) with grouped convolutions'
    backward counted as they run; the trainer and the benchmark count with it."""
    return FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops}
    )


@dataclass
class StepResult:
    """Device tensors (reading them waits for the GPU); ``ok``: every rank's loss and gradients were
    finite, so the optimizer stepped."""

    loss: torch.Tensor
    psnr: torch.Tensor
    grad_norm: torch.Tensor
    ok: torch.Tensor


AllFinite = Callable[[torch.Tensor], torch.Tensor]  # this rank's finite flag -> every rank's, on the device


def local_all_finite(flag: torch.Tensor) -> torch.Tensor:
    return flag


def step_if(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """``optimizer.step()`` where ``finite`` (a device bool) holds; a skipped step leaves the parameters
    and the optimizer state (step counts included) as they were. Fused optimizers take the flag on the
    device, as GradScaler passes its own (``found_inf``), so nothing waits for the GPU; others read it
    on the host."""
    if not getattr(optimizer, "_step_supports_amp_scaling", False):
        if finite:
            optimizer.step()
        return
    optimizer.found_inf = (~finite).float()
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf


class TrainStep:
    """One optimisation step of ``model``.

    ``net`` is what the forward runs through (the model itself, or a DDP / compiled wrapper of it);
    ``all_finite`` turns this rank's finite flag into the decision of every rank.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        amp: torch.dtype | None,
        grad_clip: float,
        net: nn.Module | None = None,
        all_finite: AllFinite = local_all_finite,
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.amp, self.grad_clip, self.all_finite = amp, grad_clip, all_finite
        self.net = model if net is None else net
        self.compile_s: float | None = None  # the first compiled step's seconds, once it has run
        self.flops: int | None = None  # one step's FLOPs, once a call has counted them
        device = next(model.parameters()).device
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def forward_backward(
        self, images: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, predictions) after the backward pass has filled the gradients."""
        if self.compile_s is None and isinstance(self.net, OptimizedModule):
            return self._first_compiled(images, coords, targets)
        loss, pred = forward_loss(self.net, images, coords, targets, self.amp)
        self.scaler.scale(loss).backward()
        return loss, pred

    def _first_compiled(
        self, images: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first step of a compiled net: timed (``compile_s``: compilation + one step); where
        compilation fails, the net falls back to eager for good and says so."""
        tick = time.perf_counter()
        try:
            loss, pred = forward_loss(self.net, images, coords, targets, self.amp)
        except TorchDynamoException as err:
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            log.warning("torch.compile failed (%s); training eagerly", first_line[:200])
            self.net = self.net._orig_mod
            loss, pred = forward_loss(self.net, images, coords, targets, self.amp)
        self.scaler.scale(loss).backward()
        self.compile_s = time.perf_counter() - tick
        return loss, pred

    def update(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gradient norm, ok): clip, then step unless a rank saw a non-finite loss or gradient."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        ok = self.all_finite(torch.isfinite(loss.detach()) & torch.isfinite(grad_norm))
        if self.scaler.is_enabled():  # GradScaler skips non-finite steps itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            step_if(self.optimizer, ok)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return grad_norm.detach(), ok

    def __call__(
        self, images: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor, *, count_flops: bool = False
    ) -> StepResult:
        """One step; with ``count_flops``, first its FLOPs into ``flops`` (:meth:`count_flops`)."""
        if count_flops:
            self.flops = self.count_flops(images, coords, targets)
        loss, pred = self.forward_backward(images, coords, targets)
        grad_norm, ok = self.update(loss)
        return StepResult(loss.detach(), psnr(pred.detach(), targets).mean(), grad_norm, ok)

    def count_flops(self, images: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor) -> int | None:
        """The matrix FLOPs of one step on these inputs (forward and backward of the eager model, as the
        benchmark counts them): a run's budget in FLOPs is that times its steps. The gradients are dropped
        and nothing random is drawn, so training goes on as without it. Not for DDP, whose gradient hooks
        would fire on this backward. An eager step can need more memory than the compiled one that
        trains: out of memory, None."""
        loss = None
        try:
            with flop_counter() as counter:
                loss, _ = forward_loss(self.model, images, coords, targets, self.amp)
                loss.backward()
        except torch.OutOfMemoryError:
            log.warning("no FLOP count: the eager step it needs does not fit in GPU memory")
            return None
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            del loss
            if images.device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(images.device)
        return counter.get_total_flops()

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        state["scaler"] = self.scaler.state_dict()
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
