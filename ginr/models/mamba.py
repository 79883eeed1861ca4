"""The selective-SSM mixer of Mamba and its bidirectional pairing.

:class:`MambaMixer` keeps the parameter names and shapes of ``mamba_ssm.Mamba`` (in_proj, conv1d,
x_proj, dt_proj, A_log, D, out_proj), so a state_dict from one loads into the other. Its kernels come
from :mod:`ginr.ops`, which picks the CUDA kernels or the PyTorch versions; the parameters are the same
on every backend.
"""

import math
from typing import Literal, TypedDict, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ginr.constraints import Positive
from ginr.ops import backend as _backend
from ginr.ops.backend import Backend
from ginr.ops.causal_conv1d import causal_conv1d
from ginr.ops.selective_scan import selective_scan


def _mixer_scan(
    x: torch.Tensor, dt: torch.Tensor, A_log: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor, z: torch.Tensor, dt_bias: torch.Tensor, backend: str,
) -> torch.Tensor:  # fmt: skip
    """The selective scan as the mixer parametrises it (as mamba-ssm's does): ``A = -exp(A_log)``, dt through
    its bias and a softplus, the per-channel parameters in float32 whatever the weights' dtype."""
    return selective_scan(
        x, dt, -torch.exp(A_log.float()), B, C, D.float(), z=z, delta_bias=dt_bias.float(),
        delta_softplus=True, backend=backend,
    )  # fmt: skip


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
        x, z = xz.chunk(2, dim=1)
        weight = rearrange(self.conv1d.weight, "d 1 w -> d w")
        x = causal_conv1d(x, weight, self.conv1d.bias, activation="silu", backend=self.backend)
        dt, B, C = self.scan_inputs(x)
        y = _mixer_scan(x, dt, self.A_log, B, C, self.D, z, self.dt_proj.bias, self.backend)
        return self.out_proj(rearrange(y, "b d l -> b l d"))

    def scan_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The convolved sequence x (B, D, L) -> the scan's input-dependent dt (B, D, L), B and C (B, N, L)."""
        length = x.shape[-1]
        dt, B, C = self.x_proj(rearrange(x, "b d l -> (b l) d")).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1
        )
        dt = rearrange(F.linear(dt, self.dt_proj.weight), "(b l) d -> b d l", l=length)
        B = rearrange(B, "(b l) n -> b n l", l=length)
        C = rearrange(C, "(b l) n -> b n l", l=length)
        return dt, B, C


DirectionScan = Literal["joint", "separate"]
DIRECTION_SCANS = get_args(DirectionScan)


class MambaOptions(TypedDict, total=False):
    """What an encoder sets of its bidirectional Mamba mixers; the defaults are :class:`MambaMixer`'s and
    :class:`BiMamba`'s."""

    d_state: Positive
    d_conv: Positive
    expand: Positive
    backend: Backend
    direction_scan: DirectionScan


def _cat(*tensors: torch.Tensor | None, dim: int = 0) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat(tensors, dim=dim)


class BiMamba(nn.Module):
    """Two mixers with separate weights: one scans the sequence, one its reverse; outputs averaged.

    ``direction_scan`` picks how, on the same parameters: ``separate`` runs the two mixers one after the
    other; ``joint`` stacks the directions along the channels (the reverse direction on the flipped
    sequence), so each step (in_proj, convolution, scan, out_proj) is one kernel over both, with B and C
    of the scan in two groups, one per direction.
    """

    def __init__(self, d_model: int, *, direction_scan: DirectionScan = "joint", **mixer_kwargs):
        super().__init__()
        if direction_scan not in DIRECTION_SCANS:
            raise ValueError(
                f"direction_scan must be one of {', '.join(DIRECTION_SCANS)}, got {direction_scan!r}"
            )
        self.direction_scan = direction_scan
        self.forward_mixer = MambaMixer(d_model, **mixer_kwargs)
        self.backward_mixer = MambaMixer(d_model, **mixer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        if self.direction_scan == "joint":
            return self._joint(x)
        backward = self.backward_mixer(x.flip(1)).flip(1)
        return 0.5 * (self.forward_mixer(x) + backward)

    def _joint(self, x: torch.Tensor) -> torch.Tensor:
        fwd, bwd = self.forward_mixer, self.backward_mixer
        xz = F.linear(
            x, torch.cat([fwd.in_proj.weight, bwd.in_proj.weight]), _cat(fwd.in_proj.bias, bwd.in_proj.bias)
        )
        x_fwd, z_fwd, x_bwd, z_bwd = rearrange(xz, "b l d -> b d l").chunk(4, dim=1)
        # Channels [forward | backward]; the backward half runs on the reversed sequence.
        hidden = torch.cat([x_fwd, x_bwd.flip(-1)], dim=1)
        gate = torch.cat([z_fwd, z_bwd.flip(-1)], dim=1)
        conv_weight = rearrange(torch.cat([fwd.conv1d.weight, bwd.conv1d.weight]), "d 1 w -> d w")
        hidden = causal_conv1d(
            hidden,
            conv_weight,
            _cat(fwd.conv1d.bias, bwd.conv1d.bias),
            activation="silu",
            backend=fwd.backend,
        )
        (dt_fwd, B_fwd, C_fwd), (dt_bwd, B_bwd, C_bwd) = (
            mixer.scan_inputs(half) for mixer, half in zip((fwd, bwd), hidden.chunk(2, dim=1), strict=True)
        )
        dt = torch.cat([dt_fwd, dt_bwd], dim=1)
        B = torch.stack([B_fwd, B_bwd], dim=1)  # (batch, 2 groups, N, L)
        C = torch.stack([C_fwd, C_bwd], dim=1)
        A_log, D = torch.cat([fwd.A_log, bwd.A_log]), torch.cat([fwd.D, bwd.D])
        dt_bias = torch.cat([fwd.dt_proj.bias, bwd.dt_proj.bias])
        y = _mixer_scan(hidden, dt, A_log, B, C, D, gate, dt_bias, fwd.backend)
        y_fwd, y_bwd = y.chunk(2, dim=1)
        y = rearrange(torch.cat([y_fwd, y_bwd.flip(-1)], dim=1), "b d l -> b l d")
        out_weight = 0.5 * torch.cat([fwd.out_proj.weight, bwd.out_proj.weight], dim=1)
        out_bias = _cat(fwd.out_proj.bias, bwd.out_proj.bias)
        return F.linear(y, out_weight, None if out_bias is None else 0.5 * out_bias.view(2, -1).sum(0))
