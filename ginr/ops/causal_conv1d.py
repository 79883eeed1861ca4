"""Depthwise causal 1-D convolution, three ways with one signature (as in the causal-conv1d package).

``x: (B, D, L)``, ``weight: (D, W)``, ``bias: (D,)``; output ``(B, D, L)``, position ``t`` seeing inputs
``t - W + 1 .. t``; ``activation`` is ``None`` or ``"silu"``.
"""

import torch
import torch.nn.functional as F

from ginr.ops import backend as _backend

ACTIVATIONS = (None, "silu")


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal_conv1d activation must be one of {ACTIVATIONS}, got {activation!r}")
    return F.silu(y) if activation == "silu" else y


def causal_conv1d_torch(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """Grouped ``conv1d`` on the input left-padded by ``W - 1``."""
    y = F.conv1d(F.pad(x, (weight.shape[-1] - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return _activate(y, activation)


def causal_conv1d_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """A sum over the taps of shifted inputs: the test reference, and inside a torch.compile graph the
    fastest version (elementwise, so the compiler fuses it with the activation into one kernel)."""
    width, length = weight.shape[-1], x.shape[-1]
    weight = weight.to(x.dtype)  # in x's dtype, as autocast runs a convolution
    bias = None if bias is None else bias.to(x.dtype)
    padded = F.pad(x, (width - 1, 0))
    y = sum(weight[:, k, None] * padded[..., k : k + length] for k in range(width))
    if bias is not None:
        y = y + bias[:, None]
    return _activate(y, activation)


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Causal depthwise convolution on the backend ``backend`` resolves to for ``x``'s device. Inside a
    torch.compile graph, the sum over taps, which the compiler fuses (the causal-conv1d kernel would break
    the graph, and PyTorch's depthwise convolution is slow in bf16)."""
    if torch.compiler.is_compiling():
        return causal_conv1d_ref(x, weight, bias, activation)
    if _backend.resolve_backend(backend, x.device) == "cuda" and _backend.causal_conv1d_cuda is not None:
        return _backend.causal_conv1d_cuda(x, weight, bias, activation=activation)
    return causal_conv1d_torch(x, weight, bias, activation)
