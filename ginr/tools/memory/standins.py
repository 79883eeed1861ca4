"""What a fake-tensor run on the CPU needs to allocate as a CUDA training step does (used by :mod:`ginr.tools.memory.simulate`).

- autocast: CPU autocast makes the same bf16 casts of matmuls, with the same weight-cast cache, as CUDA;
  :class:`CudaAutocastPolicy` adds CUDA's float32 list (layer_norm, softmax, exp, ...), which CPU
  autocast leaves in bf16 but CUDA runs, and so saves for backward, in float32 (:func:`cuda_autocast_policy`
  keeps it on in the forwards that activation checkpointing recomputes inside the backward);
- kernels: ``scaled_dot_product_attention`` becomes a stand-in that allocates and saves what the flash
  (bf16/fp16, no mask) or memory-efficient kernel does; the mamba-ssm selective scan and causal-conv1d
  kernels become stand-ins that follow their ``autograd.Function``s (same copies, saved tensors, outputs),
  put into the kernel seam of :mod:`ginr.ops.backend` for the simulation (:func:`cuda_standins`).

Nothing of the model is patched: the policy is a torch-function mode, the kernels go through the seam.
"""

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from ginr.ops import backend

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


GEGLU_ROWS_PER_PROGRAM = 256  # ginr.ops.geglu_triton.ROWS_PER_PROGRAM (that module needs Triton to import)


class _GEGLUKernel(torch.autograd.Function):
    """``ginr.ops.geglu_triton``: saves h and the bias; the backward allocates dh and the float32 column
    sums of each row tile."""

    @staticmethod
    def forward(ctx, h, bias):
        ctx.save_for_backward(h, bias)
        return h.new_empty(*h.shape[:-1], h.shape[-1] // 2)

    @staticmethod
    def backward(ctx, grad):
        h, bias = ctx.saved_tensors
        tiles = math.ceil(h.numel() // h.shape[-1] / GEGLU_ROWS_PER_PROGRAM)
        partial = h.new_empty(tiles, h.shape[-1], dtype=torch.float32)
        return torch.empty_like(h), partial.sum(0).to(bias.dtype)


def geglu_kernel(h, bias):
    return _GEGLUKernel.apply(h.contiguous(), bias)


class _PolicyInBackward:
    """``Tensor.backward`` is itself a torch function, run with the modes popped, so a forward that
    checkpointing recomputes inside the backward would escape the policy: enter a policy again around each
    outermost module forward that runs inside the backward (the models checkpoint modules only; in a plain
    function, ops before its first module would escape). The exit hook is ``always_call``: checkpointing's
    early stop ends a recompute by raising out of the forward."""

    def __init__(self):
        self.owner: nn.Module | None = None
        self.policy = CudaAutocastPolicy()

    def pre(self, module: nn.Module, args) -> None:
        if self.owner is None and torch._C._current_graph_task_id() != -1:
            self.owner = module
            self.policy.__enter__()

    def post(self, module: nn.Module, args, output) -> None:
        if module is self.owner:
            self.owner = None
            self.policy.__exit__(None, None, None)


@contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """:class:`CudaAutocastPolicy` for a whole training step: its forward and the forwards that activation
    checkpointing re-runs inside its backward (``torch.utils.checkpoint`` restores the autocast state
    there, and the policy acts wherever CPU autocast is on)."""
    follow = _PolicyInBackward()
    pre = register_module_forward_pre_hook(follow.pre)
    post = register_module_forward_hook(follow.post, always_call=True)
    try:
        with CudaAutocastPolicy():
            yield
    finally:
        pre.remove()
        post.remove()


def cuda_standins(scan_backend: str, conv_kernel: bool) -> AbstractContextManager:
    """The kernels as the GPU run would have them, in :mod:`ginr.ops.backend`'s seam, with every device
    taking the kernels' path as a GPU does: the GEGLU kernel's stand-in, and on the ``cuda`` scan backend
    the selective-scan stand-in (and the causal-conv1d one when ``conv_kernel``); the ``triton`` backend
    runs ginr's Triton op itself, whose fake implementation allocates what the kernels do. The fused mixer
    (``mamba_inner_fn``, taken where causal-conv1d is installed) is not simulated: the unfused kernels
    stand in for it. Swaps module globals: not thread-safe."""
    cuda = scan_backend == "cuda"
    return simulated_kernels(
        selective_scan=selective_scan_kernel if cuda else None,
        causal_conv1d=causal_conv1d_kernel if cuda and conv_kernel else None,
        geglu=geglu_kernel,
    )


# The seam of ginr.ops.backend that a simulated GPU step fills: its kernel slots and the device test.
SEAM = ("selective_scan_cuda", "causal_conv1d_cuda", "mamba_inner_cuda", "geglu_cuda", "kernels_on")


@contextmanager
def simulated_kernels(
    *, selective_scan: Callable | None, causal_conv1d: Callable | None = None, geglu: Callable | None = None
) -> Iterator[None]:
    """For this scope the kernels of :mod:`ginr.ops.backend` are these callables (None: that kernel is
    absent; the fused mixer always is) and every device takes the kernels' path; restored on exit. Swaps
    module globals: not thread-safe, and meant for the planner's fake-tensor runs."""
    saved = {name: getattr(backend, name) for name in SEAM}
    kernels = (selective_scan, causal_conv1d, None, geglu, lambda _device: True)
    for name, value in zip(SEAM, kernels, strict=True):
        setattr(backend, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(backend, name, value)
