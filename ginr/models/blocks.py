"""Decoder block types: the ablation axis. Each maps ``(x (B, N, D), context (B, M, Dc)) -> (B, N, D)``.

Adding a type is one class here and one file in ``configs/decoder/block/``. ``mixes_queries`` marks
blocks whose output for one query depends on the other queries decoded with it.
"""

import torch
from torch import nn

from ginr.models.layers import Attention, FeedForward, PreNorm


class ResBlock(nn.Module):
    """Linear-ReLU-Linear with a residual: the original Mamba-GINR decoder block."""

    mixes_queries = False

    def __init__(self, *, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class AttnFF(nn.Module):
    """Self-attention over all queries + GEGLU feedforward (SCENT-style; O(N^2) in queries)."""

    mixes_queries = True

    def __init__(
        self, *, dim: int, heads: int = 8, dim_head: int = 64, ff_mult: int = 4, attn_impl: str = "sdpa"
    ):
        super().__init__()
        self.attn = PreNorm(dim, Attention(dim, heads=heads, dim_head=dim_head, impl=attn_impl))
        self.ff = PreNorm(dim, FeedForward(dim, mult=ff_mult))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ff(x)


class FFFF(nn.Module):
    """Two GEGLU feedforwards: per-query, so memory is linear in the number of queries."""

    mixes_queries = False

    def __init__(self, *, dim: int, ff_mult: int = 4):
        super().__init__()
        self.ff1 = PreNorm(dim, FeedForward(dim, mult=ff_mult))
        self.ff2 = PreNorm(dim, FeedForward(dim, mult=ff_mult))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.ff1(x)
        return x + self.ff2(x)


class XAttnFF(nn.Module):
    """Cross-attention from each query to the latent tokens + GEGLU feedforward."""

    mixes_queries = False

    def __init__(
        self,
        *,
        dim: int,
        context_dim: int,
        heads: int = 8,
        dim_head: int = 64,
        ff_mult: int = 4,
        attn_impl: str = "sdpa",
    ):
        super().__init__()
        attn = Attention(dim, context_dim=context_dim, heads=heads, dim_head=dim_head, impl=attn_impl)
        self.attn = PreNorm(dim, attn, context_dim=context_dim)
        self.ff = PreNorm(dim, FeedForward(dim, mult=ff_mult))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x, context=context)
        return x + self.ff(x)
