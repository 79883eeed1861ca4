"""GINR: an encoder from images to latent tokens and a decoder from (latents, coordinates) to values."""

import torch
from torch import nn

from ginr.coords import pixel_grid, values_to_image, with_cells
from ginr.models.decoder import DecoderInputs
from ginr.models.layers import checkpointed


class GINR(nn.Module):
    """``checkpoint_queries``: when gradients are needed, decode the queries in chunks of this many per
    image under activation checkpointing, so the decoder holds one chunk's activations at a time (the
    memory-lean mode: peak memory no longer grows with the number of queries, for ~1/3 more compute).

    Any ``decoder(latents, coords)`` module works; one that reads the encoder's input (``reads_images``)
    also has ``read(images)`` (:class:`ginr.models.decoder.QueryDecoder`), made once per image and passed
    as the decoder's third argument to every chunk of queries."""

    def __init__(self, *, encoder: nn.Module, decoder: nn.Module, checkpoint_queries: int | None = None):
        super().__init__()
        if checkpoint_queries is not None and getattr(decoder, "mixes_queries", False):
            raise ValueError(
                "checkpoint_queries needs a decoder whose blocks do not mix queries (not attn_ff)"
            )
        self.encoder, self.decoder, self.checkpoint_queries = encoder, decoder, checkpoint_queries

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) in [0, 1] -> latents (B, M, D)."""
        return self.encoder(images)

    def decode(
        self, latents: torch.Tensor, coords: torch.Tensor, *, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """latents (B, M, D), coords (B, N, 2) per image, or (N, 2) / (1, N, 2) shared by the batch ->
        values (B, N, C); coordinates may carry their pixel's size as two more columns (``ginr.coords``).
        Shared coordinates stay at batch 1 through the decoder's coordinate-only work (Fourier features,
        query projection, each band stack), which is then computed once per batch. ``images``, the
        encoder's input, is needed by a decoder that reads it (:attr:`reads_images`)."""
        return self._decode(latents, coords, self.read(images))

    def _decode(
        self, latents: torch.Tensor, coords: torch.Tensor, inputs: DecoderInputs | None
    ) -> torch.Tensor:
        """:meth:`decode` from what the decoder read of the images, once for all the chunks of queries."""
        if coords.dim() == 2:
            coords = coords.unsqueeze(0)
        extra = () if inputs is None else (inputs,)
        chunk = self.checkpoint_queries
        if chunk is None or not torch.is_grad_enabled() or coords.shape[1] <= chunk:
            return self.decoder(latents, coords, *extra)
        parts = [checkpointed(self.decoder, latents, part, *extra) for part in coords.split(chunk, dim=1)]
        return torch.cat(parts, dim=1)

    def read(self, images: torch.Tensor | None) -> DecoderInputs | None:
        """What the decoder reads of the encoder's input, once per image; None for a decoder that reads
        nothing of it (and raises, naming what reads it, where ``images`` is missing)."""
        return self.decoder.read(images) if self.reads_images else None

    def forward(self, images: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images), coords, images=images)

    @property
    def cell_conditioned(self) -> bool:
        """Whether the decoder reads each query's pixel size (``decoder.cell_conditioning``)."""
        return getattr(self.decoder, "cell", None) is not None

    @property
    def mixes_queries(self) -> bool:
        """Whether the decoder's blocks mix the queries decoded together (``attn_ff``): a render then
        decodes all of its pixels at once, and query chunks are refused."""
        return getattr(self.decoder, "mixes_queries", False)

    @property
    def reads_images(self) -> bool:
        """Whether the decoder reads its input image (``decoder.image_skip``, ``decoder.input_window``,
        ``decoder.local_features``): decode and render then need ``images=``."""
        return getattr(self.decoder, "reads_images", False)

    @torch.no_grad()
    def render(
        self,
        latents: torch.Tensor,
        height: int,
        width: int,
        *,
        images: torch.Tensor | None = None,
        chunk: int = 65536,
    ) -> torch.Tensor:
        """Decode the full ``height x width`` pixel grid -> (B, C, H, W), ``chunk`` queries at a time
        across the batch (``chunk // B`` per image), so peak memory is bounded by ``chunk``. ``images``:
        the encoder's input, for a decoder that reads it (:attr:`reads_images`).

        A decoder whose blocks mix queries (``attn_ff``) sees all queries at once, as in a full decode,
        so its renders stay exact.
        """
        if chunk < 1:
            raise ValueError(f"render chunk must be >= 1, got {chunk}")
        coords = pixel_grid(height, width, device=latents.device)
        if self.cell_conditioned:
            coords = with_cells(coords, height, width)
        chunk = max(1, chunk // latents.shape[0])
        if self.mixes_queries:
            chunk = coords.shape[0]
        inputs = self.read(images)
        values = [self._decode(latents, part, inputs) for part in coords.split(chunk)]
        return values_to_image(torch.cat(values, dim=1), height, width)
