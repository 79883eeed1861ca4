"""GINR: an encoder from images to latent tokens and a decoder from (latents, coordinates) to values."""

import torch
from torch import nn

from ginr.data.coords import pixel_grid, values_to_image


class GINR(nn.Module):
    def __init__(self, *, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) in [0, 1] -> latents (B, M, D)."""
        return self.encoder(images)

    def decode(self, latents: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """latents (B, M, D), coords (B, N, 2) or (N, 2) shared by the batch -> values (B, N, C)."""
        if coords.dim() == 2:
            coords = coords.expand(latents.shape[0], -1, -1)
        return self.decoder(latents, coords)

    def forward(self, images: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images), coords)

    @torch.no_grad()
    def render(self, latents: torch.Tensor, height: int, width: int, *, chunk: int = 65536) -> torch.Tensor:
        """Decode the full ``height x width`` pixel grid -> (B, C, H, W), ``chunk`` queries at a time.

        Peak memory is bounded by ``chunk``. A decoder whose blocks mix queries (``attn_ff``) sees all
        queries at once, as in a full decode, so its renders stay exact.
        """
        if chunk < 1:
            raise ValueError(f"render chunk must be >= 1, got {chunk}")
        coords = pixel_grid(height, width, device=latents.device)
        if not getattr(self.decoder, "query_independent", True):
            chunk = coords.shape[0]
        values = [self.decode(latents, part) for part in coords.split(chunk)]
        return values_to_image(torch.cat(values, dim=1), height, width)
