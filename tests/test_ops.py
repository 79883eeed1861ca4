"""Fast ops against their references: the PyTorch versions on CPU, the CUDA kernels where a GPU exists,
and ginr's Triton scan in Triton's interpreter wherever Triton is installed."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ginr.ops import backend
from ginr.ops.causal_conv1d import causal_conv1d, causal_conv1d_ref, causal_conv1d_torch
from ginr.ops.geglu import geglu, geglu_ref, geglu_torch
from ginr.ops.scan import linear_scan
from ginr.ops.selective_scan import selective_scan, selective_scan_ref, selective_scan_torch
from tests.conftest import (
    requires_conv_kernel,
    requires_cuda,
    requires_scan_kernel,
    requires_triton_kernels,
    requires_triton_scan,
)


def scan_inputs(batch=2, dim=5, state=3, length=37, dtype=torch.float64, device="cpu"):
    def t(*shape, scale=1.0):
        return (torch.randn(*shape, dtype=dtype, device=device) * scale).requires_grad_()

    A = (-torch.rand(dim, state, dtype=dtype, device=device) * 2 - 0.1).requires_grad_()
    return {
        "u": t(batch, dim, length),
        "delta": t(batch, dim, length, scale=0.5),
        "A": A,
        "B": t(batch, state, length),
        "C": t(batch, state, length),
        "D": t(dim),
        "z": t(batch, dim, length),
        "delta_bias": t(dim, scale=0.5),
    }


def outputs_and_grads(fn, inputs, **kwargs):
    out = fn(**inputs, **kwargs)
    grads = torch.autograd.grad(out, list(inputs.values()), torch.ones_like(out) + 0.1 * out.detach())
    return [out, *grads]


def assert_all_close(got, want, rtol, atol):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "length, chunk", [(1, 4), (5, 16), (37, 4), (200, 8), (513, 16), (1, None), (37, None)]
)
def test_linear_scan_matches_loop(length, chunk):
    a = torch.rand(length, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(length, 3, 2, dtype=torch.float64, requires_grad=True)
    states, state = [], torch.zeros(3, 2, dtype=torch.float64)
    for t in range(length):
        state = a[t] * state + b[t]
        states.append(state)
    want = torch.stack(states)
    got = linear_scan(a, b, chunk)
    grad = torch.randn_like(want)
    assert_all_close(
        [got, *torch.autograd.grad(got, (a, b), grad)],
        [want, *torch.autograd.grad(want, (a, b), grad)],
        1e-10,
        1e-12,
    )


def mamba_equations(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The selective SSM written out from Mamba's equations, one time step after the other, for every
    sequence and channel at once: ``dt = softplus(delta + delta_bias)``, ``h_t = exp(dt_t A) h_(t-1) +
    dt_t B_t u_t``, ``y_t = C_t . h_t + D u_t``, ``out_t = y_t silu(z_t)``; channel d reads the B and C of
    group ``d // (channels / groups)``. Shares nothing with ``ginr.ops``."""
    batch, dim, length = u.shape
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    group_of_channel = torch.arange(dim) // (dim // B.shape[1])
    B_d, C_d = B[:, group_of_channel], C[:, group_of_channel]  # (batch, dim, N, L)
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    dt = torch.log1p(torch.exp(dt)) if delta_softplus else dt
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(dt[..., t, None] * A) * h + (dt[..., t] * u[..., t])[..., None] * B_d[..., t]
        y = (C_d[..., t] * h).sum(-1)
        if D is not None:
            y = y + D * u[..., t]
        if z is not None:
            y = y * z[..., t] * torch.sigmoid(z[..., t])
        ys.append(y)
    return torch.stack(ys, dim=-1)


@pytest.mark.parametrize("scan", [selective_scan_torch, selective_scan_ref])
@pytest.mark.parametrize("length", [1, 16, 37, 100])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("with_optional", [True, False])
def test_selective_scans_follow_the_mamba_equations(scan, length, groups, with_optional):
    """The parallel scan and the loop reference against the equations, outputs and every gradient."""
    inputs = (
        scan_inputs(dim=6, length=length)
        if groups == 1
        else grouped_scan_inputs(groups, dim=6, length=length)
    )
    if not with_optional:
        inputs = {k: v for k, v in inputs.items() if k not in ("D", "z", "delta_bias")}
    got = outputs_and_grads(scan, inputs, delta_softplus=with_optional)
    want = outputs_and_grads(mamba_equations, inputs, delta_softplus=with_optional)
    for name, g, w in zip(["out", *inputs], got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11, msg=name)


def test_mamba_equations_by_hand():
    """The equations above on numbers worked out by hand: one channel, one state, two steps."""
    one = torch.ones(1, 1, 2, dtype=torch.float64)
    u = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 1.0]]], dtype=torch.float64)
    A, D = torch.tensor([[-2.0]], dtype=torch.float64), torch.tensor([0.25], dtype=torch.float64)
    B, C = (
        torch.tensor([[[3.0, -1.0]]], dtype=torch.float64),
        torch.tensor([[[2.0, 0.5]]], dtype=torch.float64),
    )
    # h0 = 0.5 * 3 * 1 = 1.5; h1 = exp(-2) * 1.5 + 1 * -1 * 2; y = C h + D u
    h1 = math.exp(-2.0) * 1.5 - 2.0
    want = torch.tensor([[[2.0 * 1.5 + 0.25, 0.5 * h1 + 0.5]]], dtype=torch.float64)
    for scan in (mamba_equations, selective_scan_torch, selective_scan_ref):
        torch.testing.assert_close(scan(u, delta, A, B, C, D), want, rtol=1e-12, atol=1e-12)
        gated = scan(u, delta, A, B, C, D, z=2 * one)
        torch.testing.assert_close(gated, want * 2 * torch.sigmoid(2 * one), rtol=1e-12, atol=1e-12)
    # dt = softplus(delta + bias): a bias of log(e - 1) - 0.5 makes the first step's dt exactly 1
    bias = torch.tensor([math.log(math.e - 1) - 0.5], dtype=torch.float64)
    for scan in (mamba_equations, selective_scan_torch, selective_scan_ref):
        out = scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
        assert out[0, 0, 0].item() == pytest.approx(2.0 * 3.0 + 0.25, rel=1e-12)


@pytest.mark.parametrize("activation", [None, "silu"])
def test_causal_conv1d_torch_matches_reference(activation):
    x = torch.randn(2, 6, 19, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    inputs = {"x": x, "weight": w, "bias": b}
    got = outputs_and_grads(causal_conv1d_torch, inputs, activation=activation)
    want = outputs_and_grads(causal_conv1d_ref, inputs, activation=activation)
    assert_all_close(got, want, rtol=1e-10, atol=1e-12)


def test_causal_conv1d_is_causal():
    x = torch.randn(1, 3, 10)
    w = torch.randn(3, 4)
    y = causal_conv1d_torch(x, w)
    x2 = x.clone()
    x2[..., 6:] = torch.randn(1, 3, 4)
    torch.testing.assert_close(causal_conv1d_torch(x2, w)[..., :6], y[..., :6])


def test_backend_choice(monkeypatch):
    cpu = torch.device("cpu")
    assert backend.resolve_backend("auto", cpu) == "torch"
    assert backend.resolve_backend("torch", cpu) == "torch"
    with pytest.raises(RuntimeError, match="'cuda' was requested"):
        backend.resolve_backend("cuda", cpu)
    with pytest.raises(RuntimeError, match="'triton' was requested"):
        backend.resolve_backend("triton", cpu)
    with pytest.raises(ValueError, match="must be one of auto, cuda, triton, torch, got 'mamba'"):
        backend.resolve_backend("mamba", cpu)
    monkeypatch.setenv("GINR_MAMBA_BACKEND", "cuda")  # what once overrode encoder.backend: no longer read
    assert backend.resolve_backend("torch", cpu) == "torch"


@requires_triton_scan
def test_auto_takes_the_triton_scan_where_mamba_ssm_is_missing():
    from ginr.tools.memory.standins import simulated_kernels

    cpu = torch.device(
        "cpu"
    )  # in the planner's simulation every device takes the kernels' path, as a GPU does
    with simulated_kernels(selective_scan=None):
        assert backend.resolve_backend("auto", cpu) == "triton"
        assert backend.resolve_backend("triton", cpu) == "triton"
    with simulated_kernels(selective_scan=lambda *args, **kwargs: None):
        assert backend.resolve_backend("auto", cpu) == "cuda"  # mamba-ssm's kernels, the reference, first


def check_triton_scan_kernel() -> None:
    """ginr's Triton scan (the op, through autograd) against the reference in outputs and every gradient:
    B and C shared or in groups, with and without z, D and the dt bias, lengths off the tile sizes, in one
    chunk and in several (the start states and adjoints carried between chunks; a chunk shorter than the
    sequence by a factor of up to 10, the last one part full or full). Run by the next test in Triton's
    interpreter on CPU tensors, where the kernels need no GPU."""
    from ginr.ops import scan_triton
    from ginr.ops.scan_triton import selective_scan_triton

    torch.manual_seed(0)
    cases = [(1, 37, True, None), (2, 16, True, None), (2, 9, False, None), (2, 37, True, 8), (1, 40, True, 4),
             (2, 29, False, 16)]  # fmt: skip
    default = scan_triton.CHUNK
    for groups, length, optional, chunk in cases:
        scan_triton.CHUNK = chunk or default
        inputs = grouped_scan_inputs(groups=groups, batch=2, dim=8, state=4, length=length)
        if groups == 1:
            inputs["B"], inputs["C"] = (inputs[k][:, 0].detach().requires_grad_() for k in ("B", "C"))
        if not optional:
            inputs = {k: v for k, v in inputs.items() if k not in ("D", "z", "delta_bias")}
        inputs = {k: v.detach().float().requires_grad_() for k, v in inputs.items()}
        got = outputs_and_grads(selective_scan_triton, inputs, delta_softplus=optional)
        want = outputs_and_grads(selective_scan_ref, inputs, delta_softplus=optional)
        for name, g, w in zip(["out", *inputs], got, want, strict=True):
            error = relative_error(g, w)
            assert error < 1e-5, (
                f"groups {groups}, length {length}, chunk {scan_triton.CHUNK}, {name}: relative error {error:.2e}"
            )
    scan_triton.CHUNK = default


def check_triton_bimamba_scans_both_ways() -> None:
    """BiMamba on the ``triton`` backend (CPU tensors taken for a GPU's, the kernel in Triton's
    interpreter): the same outputs as on the PyTorch scan, and, in both direction_scan modes, the first
    output changes with the last token and the last output with the first."""
    from ginr.models.mamba import DIRECTION_SCANS, BiMamba

    backend.kernels_on = lambda device: True
    torch.manual_seed(0)
    for direction_scan in DIRECTION_SCANS:
        mixer = BiMamba(8, d_state=4, direction_scan=direction_scan, backend="triton")
        x = torch.randn(1, 12, 8)
        first, last = x.clone(), x.clone()
        first[:, 0] += 1.0
        last[:, -1] += 1.0
        with torch.no_grad():
            y, y_first, y_last = (mixer(t) for t in (x, first, last))
            for m in (mixer.forward_mixer, mixer.backward_mixer):
                m.backend = "torch"
            for got, t in zip((y, y_first, y_last), (x, first, last), strict=True):
                torch.testing.assert_close(got, mixer(t), rtol=1e-4, atol=1e-5)
        assert (y_last[:, 0] - y[:, 0]).abs().max() > 1e-6, f"{direction_scan}: first output blind to the end"
        assert (y_first[:, -1] - y[:, -1]).abs().max() > 1e-6, (
            f"{direction_scan}: last output blind to the start"
        )


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_scan_kernel_in_the_interpreter():
    root = Path(__file__).resolve().parents[1]
    code = (
        "from tests.test_ops import check_triton_bimamba_scans_both_ways, check_triton_scan_kernel; "
        "check_triton_scan_kernel(); check_triton_bimamba_scans_both_ways()"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root)}
    run = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


TOLERANCES = {torch.float32: (2e-3, 2e-3), torch.bfloat16: (5e-2, 5e-2)}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-12)).item()


def grouped_scan_inputs(groups=2, **kwargs):
    """scan_inputs with B and C in ``groups`` groups of channels: (batch, groups, state, length)."""
    inputs = scan_inputs(**kwargs)
    for key in ("B", "C"):
        one = inputs[key].detach()
        inputs[key] = torch.stack([one * (g + 1) + 0.1 * g for g in range(groups)], dim=1).requires_grad_()
    return inputs


@pytest.mark.parametrize("scan", [selective_scan_torch, selective_scan_ref])
def test_grouped_scan_is_one_scan_per_group_of_channels(scan):
    inputs = grouped_scan_inputs(groups=2, dim=6)
    got = outputs_and_grads(scan, inputs, delta_softplus=True)
    halves = []  # each group of three channels scanned on its own, with that group's B and C
    for g, channels in enumerate((slice(0, 3), slice(3, 6))):
        part = {k: v[:, channels] if k in ("u", "delta", "z") else v[channels] for k, v in inputs.items()
                if k not in ("B", "C")}  # fmt: skip
        part.update(B=inputs["B"][:, g], C=inputs["C"][:, g])
        halves.append(scan(**part, delta_softplus=True))
    want = torch.cat(halves, dim=1)
    torch.testing.assert_close(got[0], want, rtol=1e-10, atol=1e-12)
    ones = torch.autograd.grad(want, list(inputs.values()), torch.ones_like(want) + 0.1 * want.detach())
    assert_all_close(got[1:], ones, rtol=1e-9, atol=1e-11)


SCAN_KERNELS = [
    pytest.param("cuda", marks=requires_scan_kernel),
    pytest.param("triton", marks=requires_triton_scan),
]


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kernel", SCAN_KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length", [300, 4500])  # one tile; several (the Triton scan's chunks of 2,048)
def test_selective_scan_kernel_matches_torch(dtype, kernel, length):
    inputs = scan_inputs(batch=4, dim=64, state=16, length=length, dtype=torch.float32, device="cuda")
    inputs = {
        k: (v.detach().to(dtype) if k in ("u", "delta", "B", "C", "z") else v.detach()).requires_grad_()
        for k, v in inputs.items()
    }
    got = outputs_and_grads(selective_scan, inputs, delta_softplus=True, backend=kernel)
    want = outputs_and_grads(selective_scan, inputs, delta_softplus=True, backend="torch")
    limit = TOLERANCES[dtype][0]
    for name, g, w in zip(["out", *inputs], got, want, strict=True):
        assert relative_error(g, w) < limit, f"{name}: relative error {relative_error(g, w):.2e} > {limit}"


@requires_cuda
@requires_conv_kernel
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_conv1d_cuda_matches_torch(dtype):
    x = torch.randn(4, 64, 300, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.randn(64, 4, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(64, device="cuda", dtype=dtype, requires_grad=True)
    inputs = {"x": x, "weight": w, "bias": b}
    got = outputs_and_grads(causal_conv1d, inputs, activation="silu", backend="cuda")
    want = outputs_and_grads(causal_conv1d, inputs, activation="silu", backend="torch")
    limit = TOLERANCES[dtype][0]
    for name, g, w_ in zip(["out", *inputs], got, want, strict=True):
        assert relative_error(g, w_) < limit, f"{name}: relative error {relative_error(g, w_):.2e} > {limit}"


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kernel", SCAN_KERNELS)
def test_grouped_selective_scan_kernel_matches_torch(kernel):
    inputs = grouped_scan_inputs(
        groups=2, batch=3, dim=64, state=16, length=300, dtype=torch.float32, device="cuda"
    )
    got = outputs_and_grads(selective_scan, inputs, delta_softplus=True, backend=kernel)
    want = outputs_and_grads(selective_scan, inputs, delta_softplus=True, backend="torch")
    for name, g, w in zip(["out", *inputs], got, want, strict=True):
        assert relative_error(g, w) < 2e-3, f"{name}: relative error {relative_error(g, w):.2e}"


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kernel", SCAN_KERNELS)
def test_scan_kernel_compiles_into_one_graph(kernel):
    inputs = scan_inputs(batch=2, dim=32, state=16, length=100, dtype=torch.float32, device="cuda")

    def scan_then_more(**kw):
        return selective_scan(**kw, delta_softplus=True, backend=kernel).sin() * 2

    explanation = torch._dynamo.explain(scan_then_more)(**inputs)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(scan_then_more, fullgraph=True)
    got = outputs_and_grads(compiled, inputs)
    want = outputs_and_grads(scan_then_more, inputs)
    for name, g, w in zip(["out", *inputs], got, want, strict=True):
        assert relative_error(g, w) < 1e-5, f"{name}: relative error {relative_error(g, w):.2e}"


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kernel", SCAN_KERNELS)
def test_selective_scan_kernel_without_optional_inputs_matches_torch(kernel):
    inputs = scan_inputs(batch=2, dim=32, state=16, length=100, dtype=torch.float32, device="cuda")
    inputs = {k: v for k, v in inputs.items() if k not in ("D", "z", "delta_bias")}  # mamba-ssm's own path
    got = outputs_and_grads(selective_scan, inputs, backend=kernel)
    want = outputs_and_grads(selective_scan, inputs, backend="torch")
    for name, g, w in zip(["out", *inputs], got, want, strict=True):
        assert relative_error(g, w) < 2e-3, f"{name}: relative error {relative_error(g, w):.2e}"


def geglu_inputs(*shape, dtype=torch.float64, device="cpu"):
    h = torch.randn(*shape, dtype=dtype, device=device).requires_grad_()
    return {
        "h": h,
        "bias": torch.randn(
            shape[-1], dtype=torch.float32 if dtype != torch.float64 else dtype, device=device
        ).requires_grad_(),
    }


# h = [value | gate] + bias: values (1, 3), gates (1, -1) after the bias; exact (erf) GELU:
# gelu(1) = Phi(1) = 0.841344746..., gelu(-1) = -Phi(-1) = -0.158655254...; gelu'(x) = Phi(x) + x phi(x).
GEGLU_H, GEGLU_BIAS = [1.0, 2.0, 0.5, -1.5], [0.0, 1.0, 0.5, 0.5]
GEGLU_OUT = [0.8413447460685429, -0.4759657617943712]  # 1 * gelu(1), 3 * gelu(-1)
GEGLU_GRAD = [0.8413447460685429, -0.15865525393145707, 1.0833154705876864, -0.2499464117630589]


@pytest.mark.parametrize("fn", [geglu, geglu_torch, geglu_ref])
def test_geglu_on_values_worked_out_by_hand(fn):
    """value * gelu(gate) of [value, gate] = h + bias, the value first, the exact GELU; gradients of h and
    of the bias: gelu(gate) for a value, value * gelu'(gate) for a gate."""
    h = torch.tensor([GEGLU_H], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(GEGLU_BIAS, dtype=torch.float64, requires_grad=True)
    out = fn(h, bias)
    torch.testing.assert_close(out, torch.tensor([GEGLU_OUT], dtype=torch.float64), rtol=1e-12, atol=1e-12)
    grad_h, grad_bias = torch.autograd.grad(out.sum(), (h, bias))
    torch.testing.assert_close(
        grad_h, torch.tensor([GEGLU_GRAD], dtype=torch.float64), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        grad_bias, torch.tensor(GEGLU_GRAD, dtype=torch.float64), rtol=1e-12, atol=1e-12
    )


def test_geglu_ref_computes_in_float32_for_bfloat16():
    """bfloat16 in, bfloat16 out, rounded once from a float32 computation (exact GELU, value first)."""
    h = torch.tensor([GEGLU_H], dtype=torch.bfloat16)  # every input is exact in bfloat16
    out = geglu_ref(h, torch.tensor(GEGLU_BIAS))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, torch.tensor([GEGLU_OUT]).to(torch.bfloat16), rtol=0, atol=0)
    low = geglu_inputs(3, 5, 12, dtype=torch.bfloat16)
    value, gate = (low["h"].float() + low["bias"]).chunk(2, dim=-1)
    want = (value * torch.nn.functional.gelu(gate)).to(torch.bfloat16)
    torch.testing.assert_close(geglu_ref(**low), want, rtol=0, atol=0)


def test_geglu_rejects_an_odd_width():
    with pytest.raises(ValueError, match="even last dimension .* got 7"):
        geglu(torch.randn(2, 7), torch.randn(7))


@requires_cuda
@requires_triton_kernels
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 300, 1024), (1, 7, 96), (130, 4096)])  # rows and columns off the tiles
def test_geglu_kernel_matches_reference(dtype, shape):
    inputs = geglu_inputs(*shape, dtype=dtype, device="cuda")
    got = outputs_and_grads(geglu, inputs)
    want = outputs_and_grads(geglu_ref, inputs)
    limit = {torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]  # both compute in float32 inside
    for name, g, w in zip(["out", *inputs], got, want, strict=True):
        assert g.dtype == w.dtype, f"{name}: {g.dtype} vs {w.dtype}"
        assert relative_error(g, w) < limit, f"{name}: relative error {relative_error(g, w):.2e} > {limit}"


@requires_cuda
@requires_triton_kernels
@pytest.mark.cuda
def test_geglu_kernel_compiles_into_one_graph():
    inputs = geglu_inputs(3, 100, 256, dtype=torch.float32, device="cuda")

    def geglu_then_more(h, bias):
        return geglu(h * 2, bias).sin()

    explanation = torch._dynamo.explain(geglu_then_more)(**inputs)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    got = outputs_and_grads(torch.compile(geglu_then_more, fullgraph=True), inputs)
    want = outputs_and_grads(geglu_then_more, inputs)
    for name, g, w in zip(["out", *inputs], got, want, strict=True):
        assert relative_error(g, w) < 1e-5, f"{name}: relative error {relative_error(g, w):.2e}"
