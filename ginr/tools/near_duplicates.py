"""Near copies that straddle a dataset's splits: ``python -m ginr.tools.near_duplicates [overrides]``.

Loads the train, val and test splits of the composed config's dataset (``data=image_folder
data.dataset.root=DIR``, any override) at ``--resolution`` px (32, the Emoji3D guard's, by default) and
lists each val or test image within ``--db`` dB PSNR (25) of a train image, closest first: a held-out
image that close to one trained on scores its copy, not generalisation. Exit status 1 when there is any.
"""

import argparse
import sys
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ginr.config import ConfigError, compose
from ginr.data.splits import GUARD_RESOLUTION, NEAR_DUPLICATE_DB, NearDuplicate, cross_split_near_duplicates
from ginr.engine.build import build_dataset
from ginr.tools.tables import markdown_table


def _loaded(dataset: Dataset) -> tuple[torch.Tensor, list[str]]:
    count = len(dataset)  # type: ignore[arg-type]
    names = getattr(dataset, "names", None) or [str(f) for f in getattr(dataset, "files", range(count))]
    images = torch.stack([dataset[i] for i in range(count)]) if count else torch.zeros(0)
    return images, list(names)


def find(
    overrides: Sequence[str], resolution: int = GUARD_RESOLUTION, db: float = NEAR_DUPLICATE_DB
) -> list[NearDuplicate]:
    """The cross-split near copies of the dataset that ``overrides`` compose, at ``resolution`` px."""
    cfg = compose(list(overrides))
    splits = {split: _loaded(build_dataset(cfg, split, resolution)) for split in ("train", "val", "test")}
    return cross_split_near_duplicates(splits["train"], {s: splits[s] for s in ("val", "test")}, db)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ginr.tools.near_duplicates", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--resolution", type=int, default=GUARD_RESOLUTION, help="compare at this size (px)")
    parser.add_argument(
        "--db",
        type=float,
        default=NEAR_DUPLICATE_DB,
        help="PSNR at or above which two images are near copies",
    )
    parser.add_argument("--most", type=int, default=20, help="rows to print")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. data=image_folder data.dataset.root=DIR"
    )
    args = parser.parse_args(argv)
    if args.resolution < 1 or args.most < 1:
        parser.error(f"--resolution and --most must be >= 1, got {args.resolution} and {args.most}")
    try:
        found = find(args.overrides, args.resolution, args.db)
    except (ConfigError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if not found:
        print(f"no val or test image lies within {args.db:g} dB of a train image at {args.resolution} px")
        return
    counts = {s: sum(d.split == s for d in found) for s in ("val", "test")}
    print(f"{counts['val']} val and {counts['test']} test images lie within {args.db:g} dB of a train image "
          f"at {args.resolution} px (closest first):")  # fmt: skip
    rows = [[d.split, d.name, d.train_name, f"{d.psnr:.1f}"] for d in found[: args.most]]
    print(markdown_table(["split", "image", "closest train image", "PSNR (dB)"], rows))
    sys.exit(1)


if __name__ == "__main__":
    main()
