"""The Triton kernels of :func:`ginr.ops.geglu.geglu`, as a torch op that ``torch.compile`` traces into.

Imported only through :mod:`ginr.ops.backend` (it needs Triton). Each program reads a tile of rows of
both halves of ``h`` once. A backward program walks ``ROWS_PER_PROGRAM`` rows and writes their column sums
of the gradient to a small float32 buffer, summed afterwards: the bias gradient without atomics, so it
is deterministic.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

# Tiles, from tools/geglu_tiles.py on an H100 (65,536 x 4,096 bf16, the reference decoder's feedforward).
FWD_TILE = {"BLOCK_ROWS": 32, "BLOCK_COLS": 128, "num_warps": 4}
BWD_TILE = {"BLOCK_ROWS": 32, "BLOCK_COLS": 64, "num_warps": 4}
ROWS_PER_PROGRAM = 256  # backward: rows one program walks through, summing the bias gradient as it goes
_SQRT_HALF = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def _load_halves(h_ptr, bias_ptr, r, c, rows, width):
    col_ok = c < width
    mask = (r[:, None] < rows) & col_ok[None, :]
    at = r[:, None].to(tl.int64) * (2 * width) + c[None, :]
    value = tl.load(h_ptr + at, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(h_ptr + at + width, mask=mask, other=0.0).to(tl.float32)
    value += tl.load(bias_ptr + c, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    gate += tl.load(bias_ptr + width + c, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    return mask, value, gate


@triton.jit
def _geglu_fwd_kernel(
    h_ptr, bias_ptr, out_ptr, rows, width, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr
):
    r = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    c = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    mask, value, gate = _load_halves(h_ptr, bias_ptr, r, c, rows, width)
    out = value * gate * 0.5 * (1.0 + tl.erf(gate * _SQRT_HALF))
    tl.store(
        out_ptr + r[:, None].to(tl.int64) * width + c[None, :], out.to(out_ptr.dtype.element_ty), mask=mask
    )


@triton.jit
def _geglu_bwd_kernel(
    h_ptr, bias_ptr, grad_ptr, dh_ptr, dbias_ptr, rows, width,
    ROWS_PER_PROGRAM: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    sum_value = tl.zeros([BLOCK_COLS], dtype=tl.float32)
    sum_gate = tl.zeros([BLOCK_COLS], dtype=tl.float32)
    for start in range(0, ROWS_PER_PROGRAM, BLOCK_ROWS):
        r = tl.program_id(0) * ROWS_PER_PROGRAM + start + tl.arange(0, BLOCK_ROWS)
        mask, value, gate = _load_halves(h_ptr, bias_ptr, r, c, rows, width)
        grad = tl.load(grad_ptr + r[:, None].to(tl.int64) * width + c[None, :], mask=mask, other=0.0)
        grad = grad.to(tl.float32)
        cdf = 0.5 * (1.0 + tl.erf(gate * _SQRT_HALF))
        pdf = tl.exp(-0.5 * gate * gate) * _INV_SQRT_2PI
        d_value = grad * gate * cdf
        d_gate = grad * value * (cdf + gate * pdf)
        at = r[:, None].to(tl.int64) * (2 * width) + c[None, :]
        tl.store(dh_ptr + at, d_value.to(dh_ptr.dtype.element_ty), mask=mask)
        tl.store(dh_ptr + at + width, d_gate.to(dh_ptr.dtype.element_ty), mask=mask)
        sum_value += tl.sum(d_value, axis=0)
        sum_gate += tl.sum(d_gate, axis=0)
    col_ok = c < width
    partial = dbias_ptr + tl.program_id(0).to(tl.int64) * (2 * width)
    tl.store(partial + c, sum_value, mask=col_ok)
    tl.store(partial + width + c, sum_gate, mask=col_ok)


def _shape(h: Tensor) -> tuple[int, int]:
    width = h.shape[-1] // 2
    return h.numel() // (2 * width), width


def launch_fwd(h: Tensor, bias: Tensor, tile: dict[str, int]) -> Tensor:
    rows, width = _shape(h)
    out = h.new_empty(*h.shape[:-1], width)
    grid = (triton.cdiv(rows, tile["BLOCK_ROWS"]), triton.cdiv(width, tile["BLOCK_COLS"]))
    wrap_triton(_geglu_fwd_kernel)[grid](h, bias, out, rows, width, **tile)
    return out


def launch_bwd(h: Tensor, bias: Tensor, grad: Tensor, tile: dict[str, int], rows_per_program: int):
    rows, width = _shape(h)
    dh = torch.empty_like(h)
    partial = h.new_empty(triton.cdiv(rows, rows_per_program), 2 * width, dtype=torch.float32)
    grid = (partial.shape[0], triton.cdiv(width, tile["BLOCK_COLS"]))
    wrap_triton(_geglu_bwd_kernel)[grid](
        h, bias, grad, dh, partial, rows, width, ROWS_PER_PROGRAM=rows_per_program, **tile
    )
    return dh, partial.sum(0).to(bias.dtype)


@triton_op("ginr::geglu_fwd", mutates_args={})
def geglu_fwd(h: Tensor, bias: Tensor) -> Tensor:
    return launch_fwd(h, bias, FWD_TILE)


@triton_op("ginr::geglu_bwd", mutates_args={})
def geglu_bwd(h: Tensor, bias: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    return launch_bwd(h, bias, grad, BWD_TILE, ROWS_PER_PROGRAM)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
    h, bias = ctx.saved_tensors
    return geglu_bwd(h, bias, grad.contiguous())


geglu_fwd.register_autograd(_backward, setup_context=_setup_context)


def geglu_cuda(h: Tensor, bias: Tensor) -> Tensor:
    """The op, on CUDA tensors with at least one row."""
    return geglu_fwd(h.contiguous(), bias.contiguous())
