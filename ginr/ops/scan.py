"""Parallel linear recurrence ``h_t = a_t * h_{t-1} + b_t`` along the first (time) dimension.

Forward and backward are both scans of this form (the backward runs in reverse time), computed without
autograd: time is cut into chunks of ``chunk`` steps, each chunk is scanned by recursive doubling, and
the states carried between chunks come from the same function applied to the chunk ends, so the depth
is logarithmic in the length. Time-major layout keeps every slice contiguous. Autograd keeps only ``a``
and ``h``.
"""

import torch


def _scan(a: torch.Tensor, b: torch.Tensor, chunk: int) -> torch.Tensor:
    length = a.shape[0]
    size = min(chunk, length)
    pad = -length % size
    if pad:
        a = torch.cat([a, a.new_ones((pad, *a.shape[1:]))])
        b = torch.cat([b, b.new_zeros((pad, *b.shape[1:]))])
    # (size, chunks, ...): step within the chunk first, so a[step:] is one contiguous block.
    a = a.unflatten(0, (-1, size)).transpose(0, 1).clone()
    b = b.unflatten(0, (-1, size)).transpose(0, 1).clone()
    step = 1
    while step < size:  # Hillis-Steele: afterwards position t has combined steps t-2*step+1 .. t
        b[step:] += a[step:] * b[:-step]
        a[step:] = a[step:] * a[:-step]
        step *= 2
    if a.shape[1] > 1:  # fold in the state carried from earlier chunks
        carry = _scan(a[-1], b[-1], chunk)
        b[:, 1:] += a[:, 1:] * carry[:-1]
    return b.transpose(0, 1).flatten(0, 1)[:length]


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, chunk: int) -> torch.Tensor:
        h = _scan(a, b, chunk)
        ctx.save_for_backward(a, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        a, h = ctx.saved_tensors
        # grad_b_t = grad_h_t + a_{t+1} grad_b_{t+1} (the same scan, reversed); grad_a_t = grad_b_t h_{t-1}.
        a_next = torch.cat([a[1:], a.new_ones((1, *a.shape[1:]))])
        grad_b = _scan(a_next.flip(0), grad_h.flip(0), ctx.chunk).flip(0)
        grad_a = torch.cat([torch.zeros_like(grad_b[:1]), grad_b[1:] * h[:-1]])
        return grad_a, grad_b, None


def linear_scan(a: torch.Tensor, b: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """All states ``h`` of ``h_t = a_t h_{t-1} + b_t`` (``h_{-1} = 0``) for ``a, b`` of shape (L, ...)."""
    if a.shape != b.shape:
        raise ValueError(f"linear_scan needs a and b of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if chunk < 2:
        raise ValueError(f"linear_scan chunk must be >= 2, got {chunk}")
    return _LinearScan.apply(a, b, chunk)
