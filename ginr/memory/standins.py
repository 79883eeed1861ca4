"""What a fake-tensor run on the CPU needs to allocate as a CUDA training step does (used by :mod:`ginr.memory.simulate`).

- autocast: CPU autocast makes the same bf16 casts of matmuls, with the same weight-cast cache, as CUDA;
  :class:`CudaAutocastPolicy` adds CUDA's float32 list (layer_norm, softmax, exp, ...), which CPU
  autocast leaves in bf16 but CUDA runs, and so saves for backward, in float32;
- kernels: ``scaled_dot_product_attention`` becomes a stand-in that allocates and saves what the flash
  (bf16/fp16, no mask) or memory-efficient kernel does; the mamba-ssm selective scan and causal-conv1d
  kernels become stand-ins that follow their ``autograd.Function``s (same copies, saved tensors, outputs);
- the encoder's constant latent index, built with boolean masks that fake tensors cannot run, is built
  on real tensors.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map
from torch.utils.checkpoint import checkpoint as torch_checkpoint

import ginr.models.decoder as decoder_module
import ginr.models.encoder as encoder_module
from ginr.ops import backend as scan_backend_module

# CUDA autocast's float32 policies (aten/src/ATen/autocast_mode.h) for the ops these models can reach.
_FP32 = """layer_norm group_norm exp expm1 log log10 log2 log1p pow rsqrt reciprocal softplus acos asin cosh sinh
tan erfinv cdist pdist dist norm renorm logsumexp cosine_similarity mse_loss l1_loss smooth_l1_loss huber_loss
nll_loss kl_div binary_cross_entropy_with_logits"""
CUDA_FP32_OPS = frozenset(_FP32.split())  # inputs cast to float32
# called with dtype=float32 instead: the op converts its input itself (softmax does, into a temporary)
CUDA_FP32_DTYPE_OPS = frozenset({"softmax", "log_softmax", "sum", "prod", "cumsum", "cumprod"})
LOWER = (torch.bfloat16, torch.float16)


def _is_lower(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in LOWER


class CudaAutocastPolicy(TorchFunctionMode):
    """Under CPU autocast, apply what CUDA autocast does and CPU autocast does not; route attention to
    the kernel stand-in. ``float32_list=False`` leaves only the latter (for runs under real CUDA autocast)."""

    def __init__(self, *, float32_list: bool = True):
        super().__init__()
        self.float32_list = float32_list

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "scaled_dot_product_attention":
            return sdpa_standin(*args, **kwargs)
        if self.float32_list and torch.is_autocast_enabled("cpu"):
            first = next((t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)), None)
            if name in CUDA_FP32_DTYPE_OPS and kwargs.get("dtype") is None and _is_lower(first):
                kwargs["dtype"] = torch.float32
            elif name in CUDA_FP32_OPS:
                args, kwargs = tree_map(lambda t: t.float() if _is_lower(t) else t, (args, kwargs))
        return func(*args, **kwargs)


class _AttentionKernel(torch.autograd.Function):
    """Flash / memory-efficient attention: saves q, k, v, out, logsumexp (and the mask); the backward
    allocates dq, dk, dv plus a float32 dq accumulator and softmax row sums."""

    @staticmethod
    def forward(ctx, q, k, v, mask):
        b, h, n, d = q.shape
        out = q.new_empty(b, n, h, v.shape[-1]).transpose(1, 2)
        efficient = mask is not None or q.dtype == torch.float32  # flash takes neither
        rows = math.ceil(n / 32) * 32 if efficient else n  # the efficient kernel pads its logsumexp
        lse = q.new_empty(b, h, rows, dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse, mask)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, mask = ctx.saved_tensors
        if dout.stride(-1) != 1:
            dout = dout.contiguous()
        b, h, n, d = q.shape
        n_round, d_round = math.ceil(n / 128) * 128, math.ceil(d / 32) * 32
        dq_accum = q.new_empty(b, n_round, h, d_round, dtype=torch.float32)  # noqa: F841 (held to the end)
        softmax_d = q.new_empty(b, h, n_round, dtype=torch.float32)  # noqa: F841
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        return dq, dk, dv, None


def sdpa_standin(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    device = query.device.type
    if torch.is_autocast_enabled(device):  # sdpa is on autocast's lower-precision list
        dtype = torch.get_autocast_dtype(device)
        query, key, value = (t.to(dtype) for t in (query, key, value))
    if attn_mask is not None:
        attn_mask = attn_mask.expand(query.shape[0], query.shape[1], -1, -1)
    return _AttentionKernel.apply(query, key, value, attn_mask)


class _SelectiveScanKernel(torch.autograd.Function):
    """mamba_ssm's SelectiveScanFn around ``selective_scan_cuda`` (with z)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        u, delta, B, C = (t if t.stride(-1) == 1 else t.contiguous() for t in (u, delta, B, C))
        D = D.contiguous() if D is not None else None
        z = z.contiguous() if z is not None and z.stride(-1) != 1 else z
        ctx.squeeze = B.dim() == 3
        B, C = (t.unsqueeze(1) if t.dim() == 3 else t for t in (B, C))
        batch, dim, length = u.shape
        out = torch.empty_like(delta)
        states = u.new_zeros(batch, dim, math.ceil(length / 2048), 2 * A.shape[1], dtype=A.dtype)
        out_z = torch.empty_like(z)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, out)
        return out_z

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, _states, _out = ctx.saved_tensors
        if dout.stride(-1) != 1:
            dout = dout.contiguous()
        du, ddelta, dz = torch.empty_like(u), torch.empty_like(delta), torch.empty_like(z)
        dA = torch.zeros_like(A)
        dB = torch.zeros_like(B, dtype=torch.float32).to(B.dtype)
        dC = torch.zeros_like(C, dtype=torch.float32).to(C.dtype)
        if ctx.squeeze:
            dB, dC = dB.squeeze(1), dC.squeeze(1)
        dD = torch.zeros_like(D) if D is not None else None
        ddelta_bias = torch.zeros_like(delta_bias) if delta_bias is not None else None
        return du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, None


def selective_scan_kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    return _SelectiveScanKernel.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


class _CausalConvKernel(torch.autograd.Function):
    """causal_conv1d's CausalConv1dFn: saves x (no copy for channel-last views), weight, bias."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        if x.stride(2) != 1 and x.stride(1) != 1:
            x = x.contiguous()
        ctx.save_for_backward(x, weight, bias)
        return torch.empty_like(x)

    @staticmethod
    def backward(ctx, dout):
        x, weight, bias = ctx.saved_tensors
        if dout.stride(2) != 1 and dout.stride(1) != 1:
            dout = dout.contiguous()
        dweight = torch.zeros_like(weight, dtype=torch.float32).to(weight.dtype)
        dbias = torch.zeros_like(bias, dtype=torch.float32).to(bias.dtype) if bias is not None else None
        return torch.empty_like(x), dweight, dbias


def causal_conv1d_kernel(x, weight, bias=None, activation=None):
    return _CausalConvKernel.apply(x, weight, bias)


def _latent_positions(*args, _original=encoder_module.latent_positions):
    with unset_fake_temporarily():  # a constant index: keep it real
        return _original(*args)


def _insert_latents(tokens, latents, positions, _original=encoder_module.insert_latents):
    # The original builds its index with boolean masks, which fake tensors cannot run: take the index
    # from the original on real stand-ins, then allocate as it does (one cat, one gather).
    num_tokens, num_latents = tokens.shape[1], latents.shape[0]
    with unset_fake_temporarily():
        ids = torch.arange(num_tokens + num_latents, dtype=torch.float64)
        index = _original(ids[:num_tokens].view(1, -1, 1), ids[num_tokens:].view(-1, 1), positions)
        index = index[0, :, 0].long()
    latents = latents.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
    return torch.cat([tokens, latents], dim=1)[:, index]


def _checkpoint(function, *args, _original=torch_checkpoint, **kwargs):
    def run(*inner, **inner_kwargs):
        with CudaAutocastPolicy():  # the recompute in backward needs the policy too
            return function(*inner, **inner_kwargs)

    return _original(run, *args, **kwargs)


@contextmanager
def cuda_standins(scan_backend: str, conv_kernel: bool) -> Iterator[None]:
    """Route the encoder's kernels as they would run on the GPU, for the duration of a fake run."""
    with (
        mock.patch.object(scan_backend_module, "resolve_backend", lambda requested, device: scan_backend),
        mock.patch.object(scan_backend_module, "selective_scan_cuda", selective_scan_kernel),
        mock.patch.object(
            scan_backend_module, "causal_conv1d_cuda", causal_conv1d_kernel if conv_kernel else None
        ),
        mock.patch.object(encoder_module, "latent_positions", _latent_positions),
        mock.patch.object(encoder_module, "insert_latents", _insert_latents),
        mock.patch.object(encoder_module, "checkpoint", _checkpoint),
        mock.patch.object(decoder_module, "checkpoint", _checkpoint),
    ):
        yield
