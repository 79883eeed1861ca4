"""Batches and query pixels that depend only on (seed, step): a resumed run sees exactly what an
uninterrupted one would, with any number of processes."""

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class StepBatchSampler(Sampler[list[int]]):
    """Endless global batches from a seeded permutation per epoch, starting at ``start_step``; each rank
    takes its contiguous share of every global batch."""

    def __init__(
        self, num_samples: int, global_batch: int, *, seed: int, start_step: int, rank: int, world_size: int
    ):
        if global_batch % world_size:
            raise ValueError(
                f"data.batch_size={global_batch} must be divisible by the {world_size} processes"
            )
        if num_samples < global_batch:
            raise ValueError(
                f"data.batch_size={global_batch} is larger than the {num_samples} training images"
            )
        self.num_samples, self.global_batch, self.seed = num_samples, global_batch, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.batches_per_epoch = num_samples // global_batch

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.global_batch // self.world_size
        step, perm, perm_epoch = self.start_step, None, -1
        while True:
            epoch, offset = divmod(step, self.batches_per_epoch)
            if epoch != perm_epoch:
                perm = torch.randperm(
                    self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch)
                )
                perm_epoch = epoch
            start = offset * self.global_batch + self.rank * per_rank
            yield perm[start : start + per_rank].tolist()
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a length for progress bars
        return self.batches_per_epoch


def train_loader(dataset: Dataset, sampler: StepBatchSampler, num_workers: int, pin: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin,
        persistent_workers=num_workers > 0,
    )


def query_indices(
    step: int,
    seed: int,
    rank: int,
    world_size: int,
    batch: int,
    num_pixels: int,
    k: int,
    *,
    shared: bool = False,
) -> torch.Tensor:
    """(batch, k) random pixel indices per image of this rank's share of the global batch at ``step``,
    distinct within an image; the same pixels for an image whatever the number of processes. ``shared``:
    one draw (k,) for every image of the global batch, so the decoder's coordinate-only work is shared."""
    generator = torch.Generator().manual_seed(hash((seed, step)) % 2**63)
    if shared:
        return torch.rand(num_pixels, generator=generator).argsort()[:k]
    scores = torch.rand(batch * world_size, num_pixels, generator=generator)[
        rank * batch : (rank + 1) * batch
    ]
    return scores.argsort(dim=1)[:, :k]
