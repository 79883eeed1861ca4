"""Process-group set-up for torchrun (DDP); a single process when WORLD_SIZE is unset."""

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_finite(info: DistInfo) -> Callable[[torch.Tensor], torch.Tensor]:
    """A step's finite check: true when every rank's flag is; on the device, nothing waits for it."""
    return lambda flag: all_reduce_mean(flag.float(), info) == 1.0


class StopVote:
    """A stop that every rank takes at the same step. Any rank may ask for one at any moment (a signal,
    its own clock passing the time limit); :meth:`agreed` answers every rank alike: in one process at
    once, under DDP at every ``every``-th step, where the ranks compare requests (one host sync, so not
    every step). A signal outranks a time limit: the run is complete only when no rank was signalled."""

    TIME_LIMIT, SIGNAL = 1, 2

    def __init__(self, info: DistInfo, device: torch.device, every: int = 10):
        self.info, self.device, self.every = info, device, every
        self.requested: tuple[int, str] | None = None  # (kind, reason) on this rank
        self.kind, self.reason = 0, None  # agreed by every rank

    def request(self, reason: str, kind: int) -> None:
        if self.requested is None or kind > self.requested[0]:
            self.requested = (kind, reason)

    def agreed(self, step: int) -> str | None:
        """The reason to stop after ``step``, the same on every rank (None: go on)."""
        if self.reason is not None or (self.info.enabled and step % self.every):
            return self.reason
        mine = self.requested[0] if self.requested else 0
        kind = mine
        if self.info.enabled:
            flag = torch.tensor(float(mine), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            kind = int(flag.item())
        if kind:
            self.kind = kind
            other = "time limit on another rank" if kind == self.TIME_LIMIT else "signal on another rank"
            self.reason = self.requested[1] if mine == kind else other
        return self.reason

    @property
    def complete(self) -> bool:
        """Whether a run that stops here has done what it was asked (no rank was signalled)."""
        return self.kind != self.SIGNAL
