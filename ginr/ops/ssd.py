"""Mamba-2's state-space duality (SSD) scan: a scalar decay per head, so a chunk of the sequence is a
masked matrix product and only the chunks' states run in sequence.

With ``x`` (B, L, H, P), step sizes ``dt`` (B, L, H) (after the bias and softplus), ``A`` (H) (negative),
``B`` and ``C`` (B, L, G, N) shared by the H / G heads of a group, and ``D`` (H)::

    state_t = exp(dt_t A) state_{t-1} + dt_t x_t B_t^T        (H, P, N)
    y_t     = state_t C_t + D x_t                            (H, P)

:func:`ssd_ref` is that loop (slow, for tests), :func:`ssd_torch` the chunked matrix form on the same
arguments, and :func:`ssd` picks mamba-ssm's fused Triton kernel (``mamba_chunk_scan_combined``) for
tensors on a GPU where it imports, else :func:`ssd_torch`.
"""

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ginr.ops import backend as _backend

SSDBackend = Literal["auto", "cuda", "torch"]
SSD_BACKENDS = get_args(SSDBackend)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _per_head(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, G, N) -> (B, L, H, N): each group's B or C for each of its heads."""
    return t.repeat_interleave(heads // t.shape[2], dim=2)


def _check(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> None:
    batch, length, heads, _ = x.shape
    if dt.shape != (batch, length, heads) or A.shape != (heads,):
        raise ValueError(f"ssd: dt {tuple(dt.shape)} and A {tuple(A.shape)} do not fit x {tuple(x.shape)}")
    if B.shape != C.shape or B.shape[:2] != (batch, length) or heads % B.shape[2]:
        raise ValueError(
            f"ssd: B {tuple(B.shape)} and C {tuple(C.shape)} must be (batch, length, groups, state) "
            f"with the {heads} heads a multiple of the groups"
        )


def ssd_ref(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None) -> Tensor:
    """The recurrence one step at a time: slow, obviously right, for tests only."""
    _check(x, dt, A, B, C)
    dtype = _compute_dtype(x)
    x, dt, A, B, C = (t.to(dtype) for t in (x, dt, A, B, C))
    heads = x.shape[2]
    B, C = _per_head(B, heads), _per_head(C, heads)
    state = x.new_zeros(*x.shape[:1], heads, x.shape[3], B.shape[3])  # (B, H, P, N)
    out = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]
        update = (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        state = decay * state + update
        out.append((state * C[:, t, :, None, :]).sum(-1))
    y = torch.stack(out, dim=1)
    if D is not None:
        y = y + D.to(dtype)[:, None] * x
    return y


def ssd_torch(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, *, chunk: int = 64
) -> Tensor:
    """The chunked form, in float32 (float64 for float64 inputs), returned in ``x``'s dtype.

    Within a chunk, input j reaches output i >= j decayed by ``exp(S_i - S_j)`` (S: the chunk's running
    sum of ``dt A``): a masked (Q, Q) matrix per chunk and head. Each chunk's final state is a weighted
    sum of its inputs; the state entering chunk c is the sum of the earlier chunks' final states, each
    decayed over the chunks between (a masked (chunks, chunks) matrix); it reaches output i decayed by
    ``exp(S_i)``. The sequence is padded to a multiple of ``chunk`` with ``dt = 0`` (no decay, no input)
    after its end, which leaves every real output as it was."""
    _check(x, dt, A, B, C)
    dtype, length, heads = _compute_dtype(x), x.shape[1], x.shape[2]
    pad = -length % chunk
    x, dt, A, B, C = (t.to(dtype) for t in (x, dt, A, B, C))
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    B, C = _per_head(B, heads), _per_head(C, heads)
    xs, Bs, Cs = (rearrange(t, "b (c q) h d -> b c q h d", q=chunk) for t in (x, B, C))
    dts = rearrange(dt, "b (c q) h -> b h c q", q=chunk)
    S = torch.cumsum(dts * A[:, None, None], dim=-1)  # (B, H, chunks, Q): log-decay from the chunk's start

    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp((S[..., :, None] - S[..., None, :]).masked_fill(~causal, float("-inf")))
    weights = torch.einsum("bcihn,bcjhn->bhcij", Cs, Bs) * decay * dts[..., None, :]
    y = torch.einsum("bhcij,bcjhp->bcihp", weights, xs)

    to_end = torch.exp(S[..., -1:] - S) * dts  # (B, H, chunks, Q): input j's weight in its chunk's state
    final = torch.einsum("bhcj,bcjhp,bcjhn->bchpn", to_end, xs, Bs)  # (B, chunks, H, P, N)
    total = S[..., -1]  # (B, H, chunks): each chunk's whole log-decay
    ends = torch.cumsum(total, dim=-1)
    chunks = total.shape[-1]
    earlier = torch.ones(chunks, chunks, dtype=torch.bool, device=x.device).tril(-1)
    carry = torch.exp(
        ((ends - total)[..., :, None] - ends[..., None, :]).masked_fill(~earlier, float("-inf"))
    )
    entering = torch.einsum("bhck,bkhpn->bchpn", carry, final)  # the state before each chunk
    y = y + torch.einsum("bcihn,bchpn->bcihp", Cs, entering) * rearrange(torch.exp(S), "b h c i -> b c i h 1")

    y = rearrange(y, "b c q h p -> b (c q) h p")[:, :length]
    if D is not None:
        y = y + D.to(dtype)[:, None] * x[:, :length]
    return y


def ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    *,
    chunk: int = 64,
    backend: str = "auto",
) -> Tensor:
    """The SSD scan on ``backend``: ``cuda`` (mamba-ssm's kernel, tensors on a GPU), ``torch``
    (:func:`ssd_torch`), or ``auto`` (the kernel where it can run). Returns float32 or wider."""
    if backend not in SSD_BACKENDS:
        raise ValueError(f"ssd backend must be one of {', '.join(SSD_BACKENDS)}, got {backend!r}")
    # tensors really on a GPU: the memory planner's simulated GPU (fake CPU tensors) plans the chunked form
    kernel = _backend.ssd_cuda is not None and x.device.type == "cuda"
    if backend == "cuda" and not kernel:
        why = _backend.SSD_STATUS if _backend.ssd_cuda is None else f"tensors are on {x.device.type}"
        raise RuntimeError(f"ssd backend 'cuda' was requested but cannot run: {why}")
    if kernel and backend != "torch":
        return _backend.ssd_cuda(x, dt, A, B, C, chunk, D=D)
    return ssd_torch(x, dt, A, B, C, D, chunk=chunk)
