"""The selective scan (:func:`ginr.ops.selective_scan.selective_scan`) in Triton, as two torch custom ops
(forward, backward): the ``triton`` backend, which needs no mamba-ssm.

``torch.compile`` keeps the ops whole, as it keeps mamba-ssm's (``ops.backend``), so the compiled graph
around them is the same for both backends: as a ``triton_op`` Inductor traced into the kernels but laid
out the tensors around them worse (slower transposing copies, 2.5 ms per step: experiments/benchmarks).

Imported only through :mod:`ginr.ops.backend` (it needs Triton). A program owns one sequence of the
batch, ``BLOCK_D`` channels of one group of B and C and one chunk of up to ``CHUNK`` steps (the whole
sequence when it is no longer), and walks the state index n: for each, the states along the chunk come
from one associative scan (in-thread over each thread's steps, then across threads), and the output adds
``C_n h_n``. The backward recomputes the states for each n and runs the adjoint recurrence
``g_t = a_(t+1) g_(t+1) + C_t dy_t`` as a reverse scan; the gradients of B and C, shared by the group's
channels, are summed over a program's channels in registers and added atomically across programs (as
mamba-ssm's kernel adds them, so they are not bit-reproducible); those of A, D and the dt bias are written
per sequence and chunk and summed afterwards.

A longer sequence is scanned in chunks side by side, so a program's work stays that of a short sequence
at any length. The state a chunk starts from is carried between them first: each chunk's end state from
a zero start (one scan per n), then, one short loop over the chunks, ``start_(c+1) = decay_c start_c +
end_c`` with ``decay_c = exp(A sum of the chunk's dt)``; the forward then scans each chunk from its start
and keeps the starts for the backward. The backward carries the adjoint the same way in reverse: each
chunk's adjoint at its first step from a zero carry, then ``carry_(c-1) = a_first(c) g_first(c) +
decay_c carry_c``, and each chunk's gradients from its start state and its carry.

Recurrence, with ``dt = softplus(delta + delta_bias)`` (or without the softplus) and ``a = exp(dt A)``:
``h_t = a_t h_(t-1) + dt_t u_t B_t``, ``y_t = C_t . h_t + D u_t``, ``out_t = y_t silu(z_t)`` (``y_t``
without z).
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

# Channels per program, forward and backward, at 16 steps per thread (tools/scan_tiles.py, an H100).
FWD_ROWS, BWD_ROWS, ITEMS_PER_THREAD = 2, 1, 16
# Steps a program scans (a power of 2); longer sequences are scanned in chunks of this length. Up to it, a
# sequence is one tile, as before chunks existed (the 32, 178 and 256 px patch-8 sequences); the chunk
# length that is fastest beyond is not measured yet (tools/scan_tiles.py --chunk).
CHUNK = 2048
CARRY_ROWS = 16  # channels per program of the loop that carries states between chunks
_LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _combine(a_first, x_first, a_then, x_then):
    """Two steps of ``h -> a h + x`` composed, the first one first."""
    return a_first * a_then, x_first * a_then + x_then


@triton.jit
def _softplus(x):
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _load_dt(delta_ptr, bias, at, mask, SOFTPLUS: tl.constexpr):
    """dt before and after the softplus; zero outside the sequence (a step that keeps the state)."""
    dt_in = tl.load(delta_ptr + at, mask=mask, other=0.0).to(tl.float32) + bias[:, None]
    dt = _softplus(dt_in) if SOFTPLUS else dt_in
    return dt_in, tl.where(mask, dt, 0.0)


@triton.jit
def _states(dt, dtu, A2_n, B_n, start, first, HAS_START: tl.constexpr):
    """The states of one state index along the chunk, (BLOCK_D, BLOCK_L), from ``start`` (BLOCK_D,) before
    its first step (with HAS_START; else zero), and the input term."""
    a = tl.exp2(dt * A2_n[:, None])
    x = dtu * B_n[None, :]
    if HAS_START:
        _, h = tl.associative_scan((a, x + tl.where(first[None, :], a * start[:, None], 0.0)), 1, _combine)
    else:
        _, h = tl.associative_scan((a, x), axis=1, combine_fn=_combine)
    return h, x


@triton.jit
def _chunk_start(start_ptr, chunk_channel, n_state, n, d_ok, unread, HAS_START: tl.constexpr):
    """The state this program's chunk starts from at state index n (with HAS_START; else ``unread``, which
    :func:`_states` does not read)."""
    start = unread
    if HAS_START:
        start = tl.load(start_ptr + chunk_channel * n_state + n, mask=d_ok, other=0.0)
    return start


@triton.jit
def _program_tile(
    dim, length, n_state, groups, channels_per_group, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr
):
    """This program's channels d and steps t, their masks, the offsets of its (BLOCK_D, BLOCK_L) tile in a
    (batch, dim, length) tensor and of its group's B and C, of its channels in a (batch, chunks, dim)
    one, and which of its steps are the chunk's first and last."""
    batch, chunk, chunks = tl.program_id(0), tl.program_id(2), tl.num_programs(2)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    step = tl.arange(0, BLOCK_L)
    t = chunk * BLOCK_L + step
    d_ok, t_ok = d < dim, t < length
    per_channel = (batch * dim + d).to(tl.int64)
    group = (tl.program_id(1) * BLOCK_D) // channels_per_group
    bc = (batch * groups + group).to(tl.int64) * n_state * length
    return (
        d,
        t,
        d_ok,
        t_ok,
        d_ok[:, None] & t_ok[None, :],
        per_channel[:, None] * length + t[None, :],
        bc,
        ((batch * chunks + chunk) * dim + d).to(tl.int64),
        step == 0,
        step == BLOCK_L - 1,
    )


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, start_ptr, out_ptr, y_ptr,
    dim, length, n_state, groups, channels_per_group,
    SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr, HAS_START: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
):  # fmt: skip
    d, t, d_ok, t_ok, mask, at, bc, chunk_channel, first, _ = _program_tile(
        dim, length, n_state, groups, channels_per_group, BLOCK_D, BLOCK_L
    )
    bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0)
    u = tl.load(u_ptr + at, mask=mask, other=0.0).to(tl.float32)
    _, dt = _load_dt(delta_ptr, bias, at, mask, SOFTPLUS)
    dtu = dt * u
    y = tl.load(D_ptr + d, mask=d_ok, other=0.0)[:, None] * u
    for n in range(n_state):
        A2_n = tl.load(A_ptr + d * n_state + n, mask=d_ok, other=0.0) * _LOG2E
        B_n = tl.load(B_ptr + bc + n * length + t, mask=t_ok, other=0.0).to(tl.float32)
        C_n = tl.load(C_ptr + bc + n * length + t, mask=t_ok, other=0.0).to(tl.float32)
        start = _chunk_start(start_ptr, chunk_channel, n_state, n, d_ok, A2_n, HAS_START)
        h, _ = _states(dt, dtu, A2_n, B_n, start, first, HAS_START)
        y += h * C_n[None, :]
    if HAS_Z:  # y before the gate is kept for the backward
        tl.store(y_ptr + at, y.to(y_ptr.dtype.element_ty), mask=mask)
        z = tl.load(z_ptr + at, mask=mask, other=0.0).to(tl.float32)
        y = y * z * tl.sigmoid(z)
    tl.store(out_ptr + at, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _chunk_ends_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, bias_ptr, end_ptr, dt_sum_ptr,
    dim, length, n_state, groups, channels_per_group,
    SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """Each chunk's state after its last step from a zero start, and the sum of its dt (its decay)."""
    d, t, d_ok, t_ok, mask, at, bc, chunk_channel, first, last = _program_tile(
        dim, length, n_state, groups, channels_per_group, BLOCK_D, BLOCK_L
    )
    bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0)
    _, dt = _load_dt(delta_ptr, bias, at, mask, SOFTPLUS)
    dtu = dt * tl.load(u_ptr + at, mask=mask, other=0.0).to(tl.float32)
    tl.store(dt_sum_ptr + chunk_channel, tl.sum(dt, axis=1), mask=d_ok)
    for n in range(n_state):  # past the sequence's end dt is zero, so the last column holds the end state
        A2_n = tl.load(A_ptr + d * n_state + n, mask=d_ok, other=0.0) * _LOG2E
        B_n = tl.load(B_ptr + bc + n * length + t, mask=t_ok, other=0.0).to(tl.float32)
        h, _ = _states(dt, dtu, A2_n, B_n, A2_n, first, False)
        tl.store(end_ptr + chunk_channel * n_state + n, tl.sum(tl.where(last[None, :], h, 0.0), 1), mask=d_ok)


@triton.jit
def _chunk_heads_kernel(
    delta_ptr, A_ptr, C_ptr, z_ptr, bias_ptr, dout_ptr, head_ptr, dt_sum_ptr,
    dim, length, n_state, groups, channels_per_group,
    SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    """Each chunk's ``a g`` at its first step with a zero carry from the chunk after it (what it passes to
    the chunk before), and the sum of its dt."""
    d, t, d_ok, t_ok, mask, at, bc, chunk_channel, first, _ = _program_tile(
        dim, length, n_state, groups, channels_per_group, BLOCK_D, BLOCK_L
    )
    bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0)
    dy = tl.load(dout_ptr + at, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + at, mask=mask, other=0.0).to(tl.float32)
        dy = dy * z * tl.sigmoid(z)
    _, dt = _load_dt(delta_ptr, bias, at, mask, SOFTPLUS)
    _, dt_next = _load_dt(delta_ptr, bias, at + 1, d_ok[:, None] & (t + 1 < length)[None, :], SOFTPLUS)
    tl.store(dt_sum_ptr + chunk_channel, tl.sum(dt, axis=1), mask=d_ok)
    dt_first = tl.sum(tl.where(first[None, :], dt, 0.0), axis=1)
    for n in range(n_state):
        A2_n = tl.load(A_ptr + d * n_state + n, mask=d_ok, other=0.0) * _LOG2E
        C_n = tl.load(C_ptr + bc + n * length + t, mask=t_ok, other=0.0).to(tl.float32)
        a_next = tl.exp2(dt_next * A2_n[:, None])
        _, g = tl.associative_scan((a_next, dy * C_n[None, :]), axis=1, combine_fn=_combine, reverse=True)
        g_first = tl.sum(tl.where(first[None, :], g, 0.0), axis=1)
        tl.store(head_ptr + chunk_channel * n_state + n, tl.exp2(dt_first * A2_n) * g_first, mask=d_ok)


@triton.jit
def _carry_kernel(
    A_ptr, part_ptr, dt_sum_ptr, carry_ptr, dim, n_state, chunks,
    REVERSE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """``carry`` of each chunk, in order (or in reverse): zero for the first, then ``decay_c carry_c +
    part_c`` of the chunk c before it, with ``decay_c = exp(A dt_sum_c)``; (batch, chunks, dim, n)."""
    batch = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok = d < dim
    ok = d_ok[:, None] & (n < n_state)[None, :]
    A2 = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=ok, other=0.0) * _LOG2E
    carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for i in range(chunks):
        c = i
        if REVERSE:
            c = chunks - 1 - i
        channel = ((batch * chunks + c) * dim + d).to(tl.int64)
        at = channel[:, None] * n_state + n[None, :]
        tl.store(carry_ptr + at, carry, mask=ok)
        decay = tl.exp2(A2 * tl.load(dt_sum_ptr + channel, mask=d_ok, other=0.0)[:, None])
        carry = decay * carry + tl.load(part_ptr + at, mask=ok, other=0.0)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr, dout_ptr, start_ptr, carry_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dim, length, n_state, groups, channels_per_group,
    SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr, HAS_START: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
):  # fmt: skip
    # Few tiles stay live through the loop over n (the registers bound this kernel): what the loop does
    # not need is loaded before or after it.
    d, t, d_ok, t_ok, mask, at, bc, chunk_channel, first, last = _program_tile(
        dim, length, n_state, groups, channels_per_group, BLOCK_D, BLOCK_L
    )
    bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0)
    dy = tl.load(dout_ptr + at, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:  # the gate's gradient needs the output before the gate, saved by the forward
        z = tl.load(z_ptr + at, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + at, mask=mask, other=0.0).to(tl.float32)
        gate = tl.sigmoid(z)
        tl.store(
            dz_ptr + at, (dy * y * gate * (1.0 + z * (1.0 - gate))).to(dz_ptr.dtype.element_ty), mask=mask
        )
        dy = dy * z * gate
    _, dt = _load_dt(delta_ptr, bias, at, mask, SOFTPLUS)
    # a of the next step (past the end: a step that keeps the adjoint, which is zero there)
    _, dt_next = _load_dt(delta_ptr, bias, at + 1, d_ok[:, None] & (t + 1 < length)[None, :], SOFTPLUS)
    dtu = dt * tl.load(u_ptr + at, mask=mask, other=0.0).to(tl.float32)
    gB = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)  # sum over n of g B
    ddt_a = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)  # sum over n of g a h_(t-1) A
    for n in range(n_state):
        A_n = tl.load(A_ptr + d * n_state + n, mask=d_ok, other=0.0)
        A2_n = A_n * _LOG2E
        B_n = tl.load(B_ptr + bc + n * length + t, mask=t_ok, other=0.0).to(tl.float32)
        C_n = tl.load(C_ptr + bc + n * length + t, mask=t_ok, other=0.0).to(tl.float32)
        start = _chunk_start(start_ptr, chunk_channel, n_state, n, d_ok, A2_n, HAS_START)
        h, x = _states(dt, dtu, A2_n, B_n, start, first, HAS_START)
        # The adjoint g_t = a_(t+1) g_(t+1) + C_t dy_t, a scan in reverse time, from the chunk after's carry.
        a_next = tl.exp2(dt_next * A2_n[:, None])
        dyC = dy * C_n[None, :]
        if HAS_START:
            carry = tl.load(carry_ptr + chunk_channel * n_state + n, mask=d_ok, other=0.0)
            dyC += tl.where(last[None, :], carry[:, None], 0.0)
        _, g = tl.associative_scan((a_next, dyC), axis=1, combine_fn=_combine, reverse=True)
        g_ah = g * (h - x)  # g_t a_t h_(t-1): the gradient through a_t = exp(dt_t A)
        gB += g * B_n[None, :]
        ddt_a += g_ah * A_n[:, None]
        tl.store(dA_ptr + chunk_channel * n_state + n, tl.sum(g_ah * dt, axis=1), mask=d_ok)
        tl.atomic_add(dB_ptr + bc + n * length + t, tl.sum(g * dtu, axis=0), mask=t_ok, sem="relaxed")
        tl.atomic_add(dC_ptr + bc + n * length + t, tl.sum(h * dy, axis=0), mask=t_ok, sem="relaxed")
    u = tl.load(u_ptr + at, mask=mask, other=0.0).to(tl.float32)
    D = tl.load(D_ptr + d, mask=d_ok, other=0.0)
    tl.store(du_ptr + at, (dt * gB + D[:, None] * dy).to(du_ptr.dtype.element_ty), mask=mask)
    tl.store(dD_ptr + chunk_channel, tl.sum(dy * u, axis=1), mask=d_ok)
    ddt = u * gB + ddt_a
    if SOFTPLUS:
        dt_in, _ = _load_dt(delta_ptr, bias, at, mask, False)
        ddt = ddt * tl.sigmoid(dt_in)
    ddt = tl.where(mask, ddt, 0.0)
    tl.store(ddelta_ptr + at, ddt.to(ddelta_ptr.dtype.element_ty), mask=mask)
    tl.store(dbias_ptr + chunk_channel, tl.sum(ddt, axis=1), mask=d_ok)


def tile(length: int, per_group: int, rows: int, chunk: int | None = None) -> dict[str, int]:
    """Up to ``chunk`` steps (default :data:`CHUNK`; the whole sequence when shorter) in BLOCK_L; up to
    ``rows`` channels (dividing a group's) and the warps that give each thread ITEMS_PER_THREAD steps of
    each."""
    chunk = chunk or CHUNK
    if chunk & (chunk - 1):
        raise ValueError(f"the Triton scan's chunk must be a power of 2, got {chunk}")
    block_l = min(triton.next_power_of_2(length), chunk)
    block_d = min(rows, per_group & -per_group)
    warps = max(1, min(16, block_d * block_l // (ITEMS_PER_THREAD * 32)))
    return {"BLOCK_D": block_d, "BLOCK_L": block_l, "num_warps": warps}


def _layout(u: Tensor, B: Tensor, block_d: int) -> tuple[int, int, int, int, int, int]:
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], B.shape[2]
    per_group = dim // groups
    if dim % groups or per_group % block_d:
        raise ValueError(
            f"the Triton scan needs channels per group ({dim} / {groups}) divisible by its tile of {block_d}"
        )
    return batch, dim, length, groups, n_state, per_group


def _chunks(length: int) -> int:
    """Chunks of the default tile in a sequence of ``length`` steps."""
    return triton.cdiv(length, tile(length, 1, 1)["BLOCK_L"])


def _fwd_outputs(u: Tensor, B: Tensor, z: Tensor | None, chunks: int) -> tuple[Tensor, Tensor, Tensor]:
    """The forward's outputs, allocated: by the launch and, alike, by the fake that torch.compile and the
    memory planner trace instead of it: the output, the output before the gate (empty without z) and the
    state each chunk starts from (batch, chunks, dim, n), float32, for the backward (empty in one chunk)."""
    out = torch.empty_like(u if z is None else z)
    starts = u.new_empty(
        (u.shape[0], chunks, u.shape[1], B.shape[2]) if chunks > 1 else 0, dtype=torch.float32
    )
    return out, u.new_empty(0) if z is None else torch.empty_like(out), starts


def _carry(A: Tensor, parts: Tensor, dt_sums: Tensor, carry: Tensor, reverse: bool) -> Tensor:
    """:func:`_carry_kernel` into ``carry``, shaped as ``parts`` (batch, chunks, dim, n)."""
    batch, chunks, dim, n_state = parts.shape
    _carry_kernel[(batch, triton.cdiv(dim, CARRY_ROWS))](
        A, parts, dt_sums, carry, dim, n_state, chunks,
        REVERSE=reverse, BLOCK_D=CARRY_ROWS, BLOCK_N=triton.next_power_of_2(n_state),
    )  # fmt: skip
    return carry


def launch_fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor | None,
    delta_bias: Tensor, softplus: bool, tiles: dict[str, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """The output, with z the output before the gate (else empty), and each chunk's start state."""
    tiles = tiles or tile(u.shape[2], u.shape[1] // B.shape[1], FWD_ROWS)
    batch, dim, length, groups, n_state, per_group = _layout(u, B, tiles["BLOCK_D"])
    chunks = triton.cdiv(length, tiles["BLOCK_L"])
    grid = (batch, dim // tiles["BLOCK_D"], chunks)
    out, y, starts = _fwd_outputs(u, B, z, chunks)
    if chunks > 1:
        ends = u.new_empty(batch, chunks, dim, n_state, dtype=torch.float32)
        dt_sums = u.new_empty(batch, chunks, dim, dtype=torch.float32)
        _chunk_ends_kernel[grid](
            u, delta, A, B, delta_bias, ends, dt_sums, dim, length, n_state, groups, per_group,
            SOFTPLUS=softplus, **tiles,
        )  # fmt: skip
        _carry(A, ends, dt_sums, starts, reverse=False)
    _scan_fwd_kernel[grid](
        u, delta, A, B, C, D, u if z is None else z, delta_bias, starts if chunks > 1 else A, out,
        out if z is None else y,
        dim, length, n_state, groups, per_group, SOFTPLUS=softplus, HAS_Z=z is not None, HAS_START=chunks > 1,
        **tiles,
    )  # fmt: skip
    return out, y, starts


def launch_bwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor | None,
    delta_bias: Tensor, y: Tensor, starts: Tensor, dout: Tensor, softplus: bool,
    tiles: dict[str, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:  # fmt: skip
    """The gradients of u, delta, A, B, C, D, delta_bias and z (None without z), from the forward's
    output before the gate and chunk starts, with the tiles of that forward's chunks."""
    tiles = tiles or tile(u.shape[2], u.shape[1] // B.shape[1], BWD_ROWS)
    batch, dim, length, groups, n_state, per_group = _layout(u, B, tiles["BLOCK_D"])
    chunks = triton.cdiv(length, tiles["BLOCK_L"])
    if (starts.numel() > 0) != (chunks > 1) or (chunks > 1 and starts.shape[1] != chunks):
        raise ValueError(f"the forward's chunk starts ({tuple(starts.shape)}) are not of {chunks} chunks")
    grid = (batch, dim // tiles["BLOCK_D"], chunks)
    starts = carries = starts if chunks > 1 else A  # read only with chunk starts
    if chunks > 1:
        heads = torch.empty_like(starts)
        dt_sums = u.new_empty(batch, chunks, dim, dtype=torch.float32)
        _chunk_heads_kernel[grid](
            delta, A, C, u if z is None else z, delta_bias, dout, heads, dt_sums,
            dim, length, n_state, groups, per_group, SOFTPLUS=softplus, HAS_Z=z is not None, **tiles,
        )  # fmt: skip
        carries = _carry(A, heads, dt_sums, torch.empty_like(heads), reverse=True)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = None if z is None else torch.empty_like(z)
    f32 = {"dtype": torch.float32}
    dA = u.new_empty(batch * chunks, dim, n_state, **f32)
    dD, dbias = u.new_empty(batch * chunks, dim, **f32), u.new_empty(batch * chunks, dim, **f32)
    dB, dC = u.new_zeros(B.shape, **f32), u.new_zeros(C.shape, **f32)
    _scan_bwd_kernel[grid](
        u, delta, A, B, C, D, u if z is None else z, delta_bias, u if z is None else y, dout, starts, carries,
        du, ddelta, du if dz is None else dz,
        dA, dB, dC, dD, dbias, dim, length, n_state, groups, per_group,
        SOFTPLUS=softplus, HAS_Z=z is not None, HAS_START=chunks > 1, **tiles,
    )  # fmt: skip
    return (
        du, ddelta, dA.sum(0).to(A.dtype), dB.to(B.dtype), dC.to(C.dtype), dD.sum(0).to(D.dtype),
        dbias.sum(0).to(delta_bias.dtype), dz,
    )  # fmt: skip


@torch.library.custom_op("ginr::scan_fwd", mutates_args=())
def scan_fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor | None,
    delta_bias: Tensor, softplus: bool,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    return launch_fwd(u, delta, A, B, C, D, z, delta_bias, softplus)


@torch.library.custom_op("ginr::scan_bwd", mutates_args=())
def scan_bwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor | None,
    delta_bias: Tensor, y: Tensor, starts: Tensor, dout: Tensor, softplus: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """The gradients of u, delta, A, B, C, D, delta_bias and z (empty without z)."""
    *grads, dz = launch_bwd(u, delta, A, B, C, D, z, delta_bias, y, starts, dout, softplus)
    return (*grads, u.new_empty(0) if dz is None else dz)


@scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, softplus):
    return _fwd_outputs(u, B, z, _chunks(u.shape[2]))


@scan_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, y, starts, dout, softplus):
    grads = (torch.empty_like(t, dtype=t.dtype) for t in (u, delta, A, B, C, D, delta_bias))
    return (*grads, u.new_empty(0) if z is None else torch.empty_like(z))


def _setup_context(ctx, inputs, output) -> None:
    *tensors, ctx.softplus = inputs
    ctx.has_z = tensors[6] is not None
    ctx.save_for_backward(*tensors, output[1], output[2])


def _backward(ctx, dout: Tensor, _dy: Tensor, _starts: Tensor):
    du, ddelta, dA, dB, dC, dD, dbias, dz = scan_bwd(*ctx.saved_tensors, dout.contiguous(), ctx.softplus)
    return du, ddelta, dA, dB, dC, dD, dz if ctx.has_z else None, dbias, None


scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def selective_scan_triton(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
    z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
) -> Tensor:  # fmt: skip
    """The op with :func:`ginr.ops.selective_scan.selective_scan`'s signature, on CUDA tensors, at any length."""
    dim = u.shape[1]
    D = u.new_zeros(dim, dtype=torch.float32) if D is None else D
    delta_bias = u.new_zeros(dim, dtype=torch.float32) if delta_bias is None else delta_bias
    B, C = (t.unsqueeze(1) if t.dim() == 3 else t for t in (B, C))
    u, delta, A, B, C, D, delta_bias = (t.contiguous() for t in (u, delta, A, B, C, D, delta_bias))
    return scan_fwd(u, delta, A, B, C, D, None if z is None else z.contiguous(), delta_bias, delta_softplus)[
        0
    ]
