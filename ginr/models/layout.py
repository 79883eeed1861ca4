"""Where the tokens sit: the latents' slots in an encoder's sequence (placement) and their places in the
image, the patch grid and its centres, all in the pixel-centre convention of ``ginr.coords``. Plain Python
where it can be, so that models built on fake tensors (the memory planner) and compiled graphs get them as
constants."""

import math
from typing import Literal, get_args

import torch

Placement = Literal["interleave", "append", "prepend"]
PLACEMENTS = get_args(Placement)


def latent_positions(num_tokens: int, num_latents: int, placement: str) -> list[int]:
    """Indices of the latents in a sequence of ``num_tokens`` patches and ``num_latents`` latents.

    ``interleave`` spreads them evenly, each after its share of patches (Mamba-GINR: with as many
    latents as patches, the sequence alternates patch, latent, ...). Plain Python integers: under
    torch.compile they are constants of the graph, not tensor ops on another device.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"latent placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    if placement == "prepend":
        return list(range(num_latents))
    if placement == "append":
        return [num_tokens + i for i in range(num_latents)]
    return [(i + 1) * (num_tokens + num_latents) // num_latents - 1 for i in range(num_latents)]


def patch_grid(height: int, width: int, *, patch_size: int, padding: int = 0) -> tuple[int, int]:
    """(rows, columns) of patches of a ``height x width`` image padded by ``padding`` on every side, then
    at the bottom and right up to a multiple of ``patch_size`` (:class:`PatchTokenizer`)."""
    return math.ceil((height + 2 * padding) / patch_size), math.ceil((width + 2 * padding) / patch_size)


def _centres_along(count: int, size: int, patch_size: int, padding: int) -> list[float]:
    """Centres of ``count`` patches along an axis of ``size`` pixels: patch k covers pixels
    ``k p - pad .. (k + 1) p - pad - 1``, centred on pixel ``k p + (p - 1) / 2 - pad``."""
    return [(2 * (k * patch_size + (patch_size - 1) / 2 - padding) + 1) / size - 1 for k in range(count)]


def patch_centres(
    height: int, width: int, *, patch_size: int, padding: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """(rows * columns, 2) centres (y, x) of the patches, row-major (the token order), in the pixel-centre
    convention of ``ginr.coords``: a patch's centre is the mean of its pixels' centres, padding included."""
    rows, columns = patch_grid(height, width, patch_size=patch_size, padding=padding)
    p, pad = patch_size, padding  # as _centres_along, computed on the device
    ys = (torch.arange(rows, device=device) * p + p / 2 - pad) * 2 / height - 1
    xs = (torch.arange(columns, device=device) * p + p / 2 - pad) * 2 / width - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


def latent_coords(
    height: int, width: int, *, patch_size: int, padding: int = 0, num_latents: int, placement: str
) -> torch.Tensor:
    """(M, 2) where each latent sits in a ``height x width`` image, (y, x) in ``ginr.coords``'s convention.

    Interleaved latents follow their share of patches (:func:`latent_positions`): the patches between the
    previous latent and this one, in token (raster) order. A latent sits at the centre (mean) of its
    share's patch centres; where that point is not on the share (a share that wraps from the end of one
    row to the start of the next), at the centre of the share's longest run along a row, the later one
    of equal runs (nearer the latent in the sequence). A latent with an empty share (more latents than
    patches) sits at the patch before it, or the first patch if there is none. Appended or prepended
    latents see the whole image from one end of the sequence and have no place in it: refused. Computed
    in Python, so that models built on fake tensors (the memory planner) get them too.
    """
    if placement != "interleave":
        raise ValueError(
            f"latents have image positions only interleaved with the patches (placement='interleave'), "
            f"got placement={placement!r}"
        )
    rows, columns = patch_grid(height, width, patch_size=patch_size, padding=padding)
    ys = _centres_along(rows, height, patch_size, padding)
    xs = _centres_along(columns, width, patch_size, padding)
    half_y, half_x = patch_size / height, patch_size / width  # half a patch

    def centre(patches: list[int]) -> tuple[float, float]:
        return sum(ys[k // columns] for k in patches) / len(patches), sum(
            xs[k % columns] for k in patches
        ) / len(patches)

    places, start = [], 0
    for i, position in enumerate(latent_positions(rows * columns, num_latents, placement)):
        end = position - i  # patches before latent i
        share = list(range(start, end)) or [min(max(end - 1, 0), rows * columns - 1)]
        start = end
        y, x = centre(share)
        if not any(
            abs(y - ys[k // columns]) <= half_y + 1e-9 and abs(x - xs[k % columns]) <= half_x + 1e-9
            for k in share
        ):
            runs = [
                [k for k in share if k // columns == row] for row in sorted({k // columns for k in share})
            ]
            y, x = centre(max(reversed(runs), key=len))
        places.append((y, x))
    return torch.tensor(places)


def insert_latents(tokens: torch.Tensor, latents: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """tokens (B, L, D), latents (M, D) -> (B, L + M, D) with latent i at ``positions[i]``, the patches in
    their order in the other slots."""
    batch, num_tokens, _ = tokens.shape
    taken = set(positions)
    patch_slots = [slot for slot in range(num_tokens + len(positions)) if slot not in taken]
    source = [0] * (num_tokens + len(positions))  # slot -> row of [tokens; latents]
    for row, slot in enumerate(patch_slots + positions):
        source[slot] = row
    sequence = torch.cat([tokens, latents.to(tokens.dtype).expand(batch, -1, -1)], dim=1)
    return sequence[:, torch.tensor(source, device=tokens.device)]
