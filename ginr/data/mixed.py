"""Several datasets as one (``data=mixed``: Emoji3D and the photos): each part built for the same split
and resolution, their items one after the other. The parts' sizes set their shares of an epoch, and of
the val and test scores; ``python -m ginr.tools.evaluate RUN --data NAME`` scores a part's test split
alone."""

import bisect
from collections.abc import Callable, Mapping

import torch
from torch.utils.data import Dataset

from ginr.data.splits import check_split


class Mixed(Dataset):
    """The items of every part of ``parts`` (name -> a dataset class or factory taking ``split`` and
    ``resolution``, e.g. a Hydra ``_partial_``), in order; :meth:`part_of` names an item's part."""

    def __init__(self, *, parts: Mapping[str, Callable[..., Dataset]], split: str, resolution: int):
        if not parts:
            raise ValueError("data=mixed needs at least one part, got none")
        self.split = check_split(split)
        self.parts = {name: make(split=split, resolution=resolution) for name, make in parts.items()}
        channels = {getattr(d, "channels", 3) for d in self.parts.values()}
        if len(channels) != 1:
            raise ValueError(f"mixed parts must have one number of channels, got {sorted(channels)}")
        self.channels = channels.pop()
        self.names, self.datasets = tuple(self.parts), tuple(self.parts.values())
        self.ends = [0]
        for dataset in self.datasets:
            self.ends.append(self.ends[-1] + len(dataset))

    def __len__(self) -> int:
        return self.ends[-1]

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"mixed: index {index} out of range for {len(self)} {self.split} items")
        part = bisect.bisect_right(self.ends, index) - 1
        return part, index - self.ends[part]

    def part_of(self, index: int) -> str:
        return self.names[self._locate(index)[0]]

    def __getitem__(self, index: int) -> torch.Tensor:
        part, inner = self._locate(index)
        return self.datasets[part][inner]
