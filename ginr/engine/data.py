"""Batches and query pixels that depend only on (seed, step): a resumed run sees exactly what an
uninterrupted one would, with any number of processes."""

import queue
import threading
from collections.abc import Iterator
from contextlib import nullcontext

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Batch = torch.Tensor | tuple[torch.Tensor, ...]


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
                f"data.batch_size={global_batch} is larger than the {num_samples} training images: "
                f"give data.batch_size={num_samples} or less, or more training images"
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


class Resolutions(Dataset):
    """Item i of each dataset, as a tuple: the same images at several resolutions (the input, and the
    targets of arbitrary-scale training)."""

    def __init__(self, *datasets: Dataset):
        sizes = {len(d) for d in datasets}
        if len(sizes) != 1:
            raise ValueError(f"datasets of one image set must be equally long, got lengths {sorted(sizes)}")
        self.datasets = datasets

    def __len__(self) -> int:
        return len(self.datasets[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(d[index] for d in self.datasets)


def train_loader(dataset: Dataset, sampler: StepBatchSampler, num_workers: int, pin: bool) -> DataLoader:
    """The training batches. Its own generator: a DataLoader draws its workers' base seed from it when
    iterated, and drawing from the global one would put a resumed run's torch numbers a draw ahead of an
    uninterrupted run's."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(sampler.seed),
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
        return torch.rand(num_pixels, generator=generator).argsort()[:k].clone()
    scores = torch.rand(batch * world_size, num_pixels, generator=generator)[
        rank * batch : (rank + 1) * batch
    ]
    return scores.argsort(dim=1)[:, :k].clone()  # not a view that keeps every pixel's rank alive


def _to(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return tuple(t.to(device, non_blocking=True) for t in batch)


def prefetched(batches: Iterator[Batch], device: torch.device, ahead: int = 2) -> Iterator[Batch]:
    """The batches (tensors or tuples of tensors), in order, copied to ``device`` by a background thread that keeps ``ahead`` of them
    ready: loading and the host-to-GPU copy (on a side stream) overlap the training step, which waits for
    the GPU once per step. An error of the loader is raised here, at the batch where it happened."""
    ready: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def load() -> None:
        try:
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                for batch in batches:
                    batch = _to(batch, device)
                    copied = None
                    if stream is not None:
                        copied = torch.cuda.Event()
                        copied.record(stream)
                    while not stop.is_set():
                        try:
                            ready.put((batch, copied), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
        except BaseException as err:  # handed to the consumer, raised at this batch
            ready.put((err, None))

    thread = threading.Thread(target=load, name="ginr-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            batch, copied = ready.get()
            if isinstance(batch, BaseException):
                raise batch
            if copied is not None:
                torch.cuda.current_stream(device).wait_event(copied)
                for tensor in (batch,) if isinstance(batch, torch.Tensor) else batch:
                    tensor.record_stream(torch.cuda.current_stream(device))
            yield batch
    finally:
        stop.set()
        thread.join(timeout=5)
