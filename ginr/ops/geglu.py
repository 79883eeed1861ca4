"""GEGLU with the bias of the projection before it: ``value * gelu(gate)`` for ``[value, gate] = h + bias``.

A feedforward's first Linear runs without its bias and hands it here, so that on a GPU one kernel adds
it, gates, and in the backward gives the gradients of ``h`` and of the bias, reading ``h`` and the
output gradient once (``ops.geglu_triton``). Three ways with one signature, ``h (..., 2F), bias (2F,)
-> (..., F)`` in ``h``'s dtype, exact (erf) GELU:

- :func:`geglu`: dispatch to the Triton kernel (CUDA tensors, ``ops.backend``) or :func:`geglu_torch`;
- :func:`geglu_torch`: PyTorch in ``h``'s dtype, as ``Linear -> chunk -> gelu`` always computed it;
- :func:`geglu_ref`: PyTorch in float32 (float64 for float64 inputs), the reference the other two are
  tested against; the kernel also computes in float32 inside.
"""

import torch
import torch.nn.functional as F

from ginr.ops import backend as _backend


def _gate(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    value, gate = (h + bias.to(h.dtype)).chunk(2, dim=-1)
    return value * F.gelu(gate)


def geglu_torch(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _gate(h, bias)


def geglu_ref(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _gate(h.to(torch.promote_types(h.dtype, torch.float32)), bias).to(h.dtype)


def geglu(h: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``value * gelu(gate)`` of ``[value, gate] = h + bias`` along the last dimension."""
    if h.shape[-1] % 2:
        raise ValueError(f"geglu needs an even last dimension to split in value and gate, got {h.shape[-1]}")
    if bias is None:
        bias = h.new_zeros(h.shape[-1])
    if _backend.geglu_cuda is not None and _backend.runs_kernels(h) and h.numel() > 0:
        return _backend.geglu_cuda(h, bias)
    return geglu_torch(h, bias)
