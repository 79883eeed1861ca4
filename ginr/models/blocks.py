"""Decoder block types: the ablation axis. Each maps ``(x (B, N, D), context (B, M, Dc)) -> (B, N, D)``.

Adding a type is one class here and one file in ``configs/decoder/block/``. ``mixes_queries`` marks
blocks whose output for one query depends on the other queries decoded with it.
"""

import torch
from torch import nn

from ginr.constraints import Positive
from ginr.models.layers import AttnImpl, prenorm_attention, prenorm_feedforward


def mixes_queries(module: nn.Module) -> bool:
    """Whether any block inside ``module`` mixes the queries decoded together."""
    return any(getattr(m, "mixes_queries", False) is True for m in module.modules())


class ResBlock(nn.Module):
    """Linear-ReLU-Linear with a residual: the original Mamba-GINR decoder block."""

    mixes_queries = False

    def __init__(self, *, dim: Positive):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class AttnFF(nn.Module):
    """Attention + GEGLU feedforward (SCENT-style). Without ``context_dim``, self-attention over all the
    queries decoded together (``attn_ff``: O(N^2) in queries, and it mixes them); with it, cross-attention
    from each query to the latent tokens (``xattn_ff``)."""

    def __init__(
        self,
        *,
        dim: Positive,
        context_dim: Positive | None = None,
        heads: Positive = 8,
        dim_head: Positive = 64,
        ff_mult: Positive = 4,
        attn_impl: AttnImpl = "sdpa",
    ):
        super().__init__()
        self.mixes_queries = context_dim is None
        self.attn = prenorm_attention(
            dim, context_dim=context_dim, heads=heads, dim_head=dim_head, impl=attn_impl
        )
        self.ff = prenorm_feedforward(dim, mult=ff_mult)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + (self.attn(x) if self.mixes_queries else self.attn(x, context=context))
        return x + self.ff(x)


class FFFF(nn.Module):
    """Two GEGLU feedforwards: per-query, so memory is linear in the number of queries."""

    mixes_queries = False

    def __init__(self, *, dim: Positive, ff_mult: Positive = 4):
        super().__init__()
        self.ff1 = prenorm_feedforward(dim, mult=ff_mult)
        self.ff2 = prenorm_feedforward(dim, mult=ff_mult)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.ff1(x)
        return x + self.ff2(x)
