"""Mamba-2 mixers (SSD: a scalar decay per head, :mod:`ginr.ops.ssd`), one per scan direction.

One mixer, on (B, L, D)::

    [z, xBC, dt] = in_proj(u);  xBC = SiLU(causal depthwise conv(xBC));  [x, B, C] = xBC
    y = SSD(x by heads, softplus(dt + dt_bias), -exp(A_log), B, C, D)
    out = out_proj(RMSNorm(y * SiLU(z)))
"""

import math
from typing import TypedDict

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ginr.constraints import Positive
from ginr.ops.causal_conv1d import causal_conv1d
from ginr.ops.ssd import SSD_BACKENDS, SSDBackend, ssd


class Mamba2Options(TypedDict, total=False):
    """What an encoder sets of its Mamba-2 mixers; the defaults are :class:`Mamba2Mixer`'s."""

    d_state: Positive
    d_conv: Positive
    expand: Positive
    headdim: Positive
    ngroups: Positive
    chunk: Positive
    backend: SSDBackend


class Mamba2Mixer(nn.Module):
    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk: int = 64,
        backend: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.d_inner = expand * d_model
        if self.d_inner % headdim or (self.d_inner // headdim) % ngroups:
            raise ValueError(
                f"mamba2: expand * dim = {self.d_inner} must split into heads of headdim={headdim}, "
                f"and the heads into ngroups={ngroups}"
            )
        if backend not in SSD_BACKENDS:
            raise ValueError(f"mamba2 backend must be one of {', '.join(SSD_BACKENDS)}, got {backend!r}")
        self.heads, self.headdim, self.groups, self.d_state = (
            self.d_inner // headdim,
            headdim,
            ngroups,
            d_state,
        )
        self.chunk, self.backend, self.eps = chunk, backend, eps
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + self.heads, bias=False)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(self.d_inner))
        # decays: A in [1, 16] per head; step sizes log-uniform in [dt_min, dt_max] through the softplus
        self.A_log = nn.Parameter(torch.empty(self.heads).uniform_(1, 16).log())
        dt = torch.exp(torch.rand(self.heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.D = nn.Parameter(torch.ones(self.heads))
        for p in (self.A_log, self.dt_bias, self.D):
            p._no_weight_decay = True

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, D) -> (B, L, D)."""
        z, xBC, dt = self.in_proj(u).split([self.d_inner, self.conv_dim, self.heads], dim=-1)
        weight = rearrange(self.conv1d.weight, "d 1 w -> d w")
        xBC = causal_conv1d(rearrange(xBC, "b l d -> b d l"), weight, self.conv1d.bias, activation="silu")
        x, B, C = rearrange(xBC, "b d l -> b l d").split(
            [self.d_inner, *2 * [self.groups * self.d_state]], -1
        )
        y = ssd(
            rearrange(x, "b l (h p) -> b l h p", p=self.headdim),
            F.softplus(dt.float() + self.dt_bias.float()),
            -torch.exp(self.A_log.float()),
            rearrange(B, "b l (g n) -> b l g n", g=self.groups),
            rearrange(C, "b l (g n) -> b l g n", g=self.groups),
            self.D.float(),
            chunk=self.chunk,
            backend=self.backend,
        )
        y = rearrange(y, "b l h p -> b l (h p)") * F.silu(z.float())
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm_weight
        return self.out_proj(y.to(u.dtype))


class BiMamba2(nn.Module):
    """Two Mamba-2 mixers with separate weights: one scans the sequence, one its reverse; outputs averaged."""

    def __init__(self, d_model: int, **mixer_kwargs):
        super().__init__()
        self.forward_mixer = Mamba2Mixer(d_model, **mixer_kwargs)
        self.backward_mixer = Mamba2Mixer(d_model, **mixer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        return 0.5 * (self.forward_mixer(x) + self.backward_mixer(x.flip(1)).flip(1))
