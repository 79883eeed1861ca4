"""The one place that imports the GPU kernels (mamba-ssm's, causal-conv1d's and ginr's own Triton
kernels), and picks a backend.

mamba-ssm 2.3.2.post1 raises at import wherever its compiled extension is missing (any CPU machine), so
both imports are guarded here and nowhere else. The encoder's backend is ``cuda`` (mamba-ssm's compiled
kernels), ``triton`` (ginr's Triton scan, :mod:`ginr.ops.scan_triton`: a GPU without mamba-ssm) or
``torch`` (pure PyTorch in :mod:`ginr.ops`); ``auto`` takes the first of those that can run: the kernels
need the tensors on a GPU (:func:`kernels_on`). ginr's GEGLU kernel (:mod:`ginr.ops.geglu_triton`) runs on every CUDA tensor when Triton imports;
``GINR_TRITON=0`` leaves ginr's Triton kernels out (the PyTorch references run instead).
"""

import logging
import os
from collections.abc import Callable
from typing import Literal, get_args

import torch

log = logging.getLogger(__name__)

Backend = Literal["auto", "cuda", "triton", "torch"]
BACKENDS = get_args(Backend)
TRITON_ENV_VAR = "GINR_TRITON"


def _import_kernels() -> tuple[Callable | None, Callable | None, Callable | None, str]:
    try:
        import selective_scan_cuda
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn
    except Exception as err:  # ImportError, or OSError/RuntimeError from a missing CUDA library
        return None, None, None, f"mamba_ssm unavailable ({type(err).__name__}: {err})"
    scan = _scan_op(selective_scan_cuda, selective_scan_fn)
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:  # mamba-ssm alone still gives the scan kernel, not the fused mixer
        return scan, None, None, "mamba_ssm available, causal_conv1d unavailable"
    return scan, causal_conv1d_fn, mamba_inner_fn, "mamba_ssm and causal_conv1d available"


def _scan_op(kernel, fallback: Callable) -> Callable:
    """mamba-ssm's scan kernel (``selective_scan_cuda``) as two torch custom ops, forward and backward,
    with the signature of ``selective_scan_fn``. Unlike mamba-ssm's autograd function, torch.compile
    traces through a custom op, so a compiled encoder stays one graph instead of breaking at every scan.
    Calls without D, z or delta_bias (the mixer always has them) go to mamba-ssm's ``fallback``."""
    Tensor = torch.Tensor

    @torch.library.custom_op("ginr::selective_scan_fwd", mutates_args=())
    def forward(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, delta_bias: Tensor,
        delta_softplus: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        out, states, out_z = kernel.fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return out_z, states, out

    @forward.register_fake
    def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        batch, dim, length = u.shape
        states = u.new_empty(batch, dim, -(-length // 2048), 2 * A.shape[1], dtype=A.dtype)
        return torch.empty_like(z), states, torch.empty_like(delta)

    @torch.library.custom_op("ginr::selective_scan_bwd", mutates_args=())
    def backward(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, delta_bias: Tensor,
        dout: Tensor, states: Tensor, out: Tensor, delta_softplus: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        grads = kernel.bwd(
            u, delta, A, B, C, D, z, delta_bias, dout, states, out, None, delta_softplus, False
        )
        du, ddelta, dA, dB, dC, dD, ddelta_bias, dz = grads[:8]
        return du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, ddelta_bias, dz

    @backward.register_fake
    def _(u, delta, A, B, C, D, z, delta_bias, dout, states, out, delta_softplus):
        return tuple(torch.empty_like(t) for t in (u, delta, A, B, C, D, delta_bias, z))

    def setup_context(ctx, inputs, output):
        *tensors, ctx.delta_softplus = inputs
        ctx.save_for_backward(*tensors, *output[1:])

    def grad(ctx, dout, _dstates, _dout_raw):
        u, delta, A, B, C, D, z, delta_bias, states, out = ctx.saved_tensors
        grads = backward(
            u, delta, A, B, C, D, z, delta_bias, dout.contiguous(), states, out, ctx.delta_softplus
        )
        du, ddelta, dA, dB, dC, dD, ddelta_bias, dz = grads
        return du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, None

    forward.register_autograd(grad, setup_context=setup_context)

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        if D is None or z is None or delta_bias is None:
            return fallback(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        B, C = (t.unsqueeze(1) if t.dim() == 3 else t for t in (B, C))
        u, delta, B, C, z = (t.contiguous() for t in (u, delta, B, C, z))
        return forward(u, delta, A, B, C, D.contiguous(), z, delta_bias, delta_softplus)[0]

    return selective_scan_fn


def _import_triton_kernels() -> tuple[Callable | None, Callable | None, str]:
    if os.environ.get(TRITON_ENV_VAR, "1") == "0":
        return None, None, f"ginr Triton kernels off ({TRITON_ENV_VAR}=0)"
    try:
        from ginr.ops.geglu_triton import geglu_cuda
        from ginr.ops.scan_triton import selective_scan_triton
    except Exception as err:  # no Triton (CPU-only installs), or one too old for torch.library.triton_op
        return None, None, f"ginr Triton kernels unavailable ({type(err).__name__}: {err})"
    return geglu_cuda, selective_scan_triton, "ginr Triton kernels available"


def _import_ssd() -> tuple[Callable | None, str]:
    """mamba-ssm's Mamba-2 scan (its Triton kernels), for :mod:`ginr.ops.ssd`."""
    try:
        import selective_scan_cuda  # noqa: F401  (mamba-ssm's own import of it fails first elsewhere)
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as err:
        return None, f"mamba_ssm's SSD kernel unavailable ({type(err).__name__}: {err})"
    return mamba_chunk_scan_combined, "mamba_ssm's SSD kernel available"


# mamba_inner_cuda fuses conv, projections, scan and gate of a whole mixer in one autograd function.
selective_scan_cuda, causal_conv1d_cuda, mamba_inner_cuda, KERNEL_STATUS = _import_kernels()
ssd_cuda, SSD_STATUS = _import_ssd()
geglu_cuda, selective_scan_triton, TRITON_STATUS = _import_triton_kernels()
_logged: set[tuple[str, str]] = set()


def kernels_on(device: torch.device) -> bool:
    """Whether tensors on ``device`` take the kernels' path: on a GPU. (The memory planner makes this, and
    the kernels above, stand-ins of its own while it simulates a GPU step on fake CPU tensors.)"""
    return device.type == "cuda"


def runs_kernels(t: torch.Tensor) -> bool:
    return kernels_on(t.device)


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"mamba backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


def resolve_backend(requested: str, device: torch.device) -> str:
    """The backend to run on ``device`` for ``requested`` (``encoder.backend``); logged once per choice."""
    requested = check_backend(requested)
    on_gpu = kernels_on(device)
    kernels = {"cuda": (selective_scan_cuda, KERNEL_STATUS), "triton": (selective_scan_triton, TRITON_STATUS)}
    if requested in kernels:
        kernel, status = kernels[requested]
        if kernel is None or not on_gpu:
            why = status if kernel is None else f"tensors are on {device.type}"
            raise RuntimeError(f"mamba backend {requested!r} was requested but cannot run: {why}")
        chosen = requested
    elif requested == "torch":
        chosen = "torch"
    else:
        chosen = next(
            (name for name, (kernel, _) in kernels.items() if kernel is not None and on_gpu), "torch"
        )
    key = (requested, chosen)
    if key not in _logged and not torch.compiler.is_compiling():  # a log breaks a graph
        _logged.add(key)
        log.info("mamba backend: %s (requested %s; %s; %s)", chosen, requested, KERNEL_STATUS, TRITON_STATUS)
    return chosen
