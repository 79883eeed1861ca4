"""Selective scan (the SSM of Mamba), three ways with one signature.

Shapes follow mamba-ssm's ``selective_scan_fn``: ``u, delta, z: (B, D, L)``, ``A: (D, N)``,
``B, C: (B, N, L)`` (input-dependent, shared by all channels) or ``(B, G, N, L)`` (one per group of
``D / G`` consecutive channels), ``D, delta_bias: (D,)``. Output ``(B, D, L)`` in ``u``'s dtype.

- :func:`selective_scan`: dispatch to mamba-ssm's CUDA kernel, ginr's Triton kernel
  (``ops.scan_triton``) or the PyTorch version (see ``ops.backend``);
- :func:`selective_scan_torch`: pure PyTorch, parallel over time (``ops.scan``), used on CPU;
- :func:`selective_scan_ref`: a plain loop over time, the reference the other two are tested against.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import einsum
from torch import Tensor

from ginr.ops import backend as _backend
from ginr.ops.scan import linear_scan


def _groups(t: torch.Tensor) -> torch.Tensor:
    """B or C as (B, G, N, L)."""
    return t.unsqueeze(1) if t.dim() == 3 else t


def _discretize(delta, A, B, u, delta_bias, delta_softplus):
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    delta_a = torch.exp(einsum(delta, A, "b d l, d n -> l b d n"))
    B = _groups(B)
    delta_u = (delta * u).unflatten(1, (B.shape[1], -1))
    delta_b_u = einsum(delta_u, B, "b g d l, b g n l -> l b g d n").flatten(2, 3)
    return delta_a, delta_b_u


def _read_out(h: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """States h (L, B, D, N) read out by C -> (B, D, L)."""
    C = _groups(C)
    return einsum(h.unflatten(2, (C.shape[1], -1)), C, "l b g d n, b g n l -> b g d l").flatten(1, 2)


def _output(y, u, D, z):
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _loop_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All states of ``h_t = a_t h_(t-1) + b_t`` (``h_(-1) = 0``), one step at a time: ``linear_scan``'s
    result the obvious way, for the reference."""
    state = torch.zeros_like(a[0])
    states = []
    for t in range(a.shape[0]):
        state = a[t] * state + b[t]
        states.append(state)
    return torch.stack(states)


def _scan_in_pytorch(
    recurrence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], u, delta, A, B, C, D, z, delta_bias,
    delta_softplus,
) -> torch.Tensor:  # fmt: skip
    """The scan in float32 (float64 for float64 inputs), its states from ``recurrence``: the PyTorch
    version and the reference differ only there."""
    dtype = _compute_dtype(u)
    u, delta, A, B, C, D, z, delta_bias = (
        None if t is None else t.to(dtype) for t in (u, delta, A, B, C, D, z, delta_bias)
    )
    delta_a, delta_b_u = _discretize(delta, A, B, u, delta_bias, delta_softplus)
    return _output(_read_out(recurrence(delta_a, delta_b_u), C), u, D, z)


def selective_scan_torch(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False,
) -> Tensor:  # fmt: skip
    """Selective scan in PyTorch, computed in float32 (float64 for float64 inputs)."""
    with torch.autocast(u.device.type, enabled=False):
        return _scan_in_pytorch(linear_scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_ref(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False,
) -> Tensor:  # fmt: skip
    """Selective scan as a loop over time steps: slow, obviously right, for tests only."""
    return _scan_in_pytorch(_loop_scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus).to(u.dtype)


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False,
    *, backend: str = "auto",
) -> Tensor:  # fmt: skip
    """Selective scan on the backend ``backend`` resolves to for ``u``'s device."""
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    chosen = _backend.resolve_backend(backend, u.device)
    if chosen == "cuda":
        return _backend.selective_scan_cuda(*args).to(u.dtype)
    if chosen == "triton":
        return _backend.selective_scan_triton(*args).to(u.dtype)
    return selective_scan_torch(*args).to(u.dtype)
