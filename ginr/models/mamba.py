"""The selective-SSM mixer of Mamba and its bidirectional pairing.

:class:`MambaMixer` keeps the parameter names and shapes of ``mamba_ssm.Mamba`` (in_proj, conv1d,
x_proj, dt_proj, A_log, D, out_proj), so a state_dict from one loads into the other. Its kernels come
from :mod:`ginr.ops`, which picks the CUDA kernels or the PyTorch versions; the parameters are the same
on every backend.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ginr.ops import backend as _backend
from ginr.ops.causal_conv1d import causal_conv1d
from ginr.ops.selective_scan import selective_scan


class MambaMixer(nn.Module):
    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        bias: bool = False,
        conv_bias: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.backend = backend
        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(A.log())
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, floor: float) -> None:
        # Step sizes start log-uniform in [dt_min, dt_max]; the bias is their inverse softplus.
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, D) -> (B, L, D)."""
        xz = rearrange(self.in_proj(hidden), "b l d -> b d l")
        if (
            _backend.mamba_inner_cuda is not None
            and _backend.resolve_backend(self.backend, xz.device) == "cuda"
        ):
            return self._fused(xz)
        return self._unfused(xz)

    def _fused(self, xz: torch.Tensor) -> torch.Tensor:
        """The whole mixer after in_proj in one CUDA autograd function (mamba-ssm's fast path)."""
        return _backend.mamba_inner_cuda(
            xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
            self.out_proj.weight, self.out_proj.bias, -torch.exp(self.A_log.float()), None, None,
            self.D.float(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )  # fmt: skip

    def _unfused(self, xz: torch.Tensor) -> torch.Tensor:
        length = xz.shape[-1]
        x, z = xz.chunk(2, dim=1)
        weight = rearrange(self.conv1d.weight, "d 1 w -> d w")
        x = causal_conv1d(x, weight, self.conv1d.bias, activation="silu", backend=self.backend)
        dt, B, C = self.x_proj(rearrange(x, "b d l -> (b l) d")).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1
        )
        dt = rearrange(F.linear(dt, self.dt_proj.weight), "(b l) d -> b d l", l=length)
        B = rearrange(B, "(b l) n -> b n l", l=length).contiguous()
        C = rearrange(C, "(b l) n -> b n l", l=length).contiguous()
        y = selective_scan(
            x,
            dt,
            -torch.exp(self.A_log.float()),
            B,
            C,
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            backend=self.backend,
        )
        return self.out_proj(rearrange(y, "b d l -> b l d"))


class BiMamba(nn.Module):
    """Two mixers with separate weights: one scans the sequence, one its reverse; outputs averaged."""

    def __init__(self, d_model: int, **mixer_kwargs):
        super().__init__()
        self.forward_mixer = MambaMixer(d_model, **mixer_kwargs)
        self.backward_mixer = MambaMixer(d_model, **mixer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        backward = self.backward_mixer(x.flip(1)).flip(1)
        return 0.5 * (self.forward_mixer(x) + backward)
