"""Mamba-2's SSD scan and mixers: the chunked form against the step-by-step recurrence (outputs and every
gradient), the recurrence on hand-worked values, one direction causal and the pair bidirectional."""

import math

import pytest
import torch

from ginr.models.mamba2 import BiMamba2, Mamba2Mixer
from ginr.ops import backend
from ginr.ops.ssd import ssd, ssd_ref, ssd_torch
from tests.conftest import requires_cuda

requires_ssd_kernel = pytest.mark.skipif(backend.ssd_cuda is None, reason=backend.SSD_STATUS)


def _inputs(length: int, heads: int = 4, groups: int = 2, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, p, n = 2, 3, 5
    return (
        torch.randn(b, length, heads, p, generator=g, dtype=dtype),
        torch.rand(b, length, heads, generator=g, dtype=dtype) * 0.8 + 0.05,  # dt > 0
        -(torch.rand(heads, generator=g, dtype=dtype) * 2 + 0.1),  # A < 0
        torch.randn(b, length, groups, n, generator=g, dtype=dtype),
        torch.randn(b, length, groups, n, generator=g, dtype=dtype),
        torch.randn(heads, generator=g, dtype=dtype),
    )


def test_the_recurrence_on_hand_worked_values():
    # one head, one channel, one state: state_t = exp(dt_t A) state_{t-1} + dt_t x_t B_t; y = state C + D x
    x, dt, A = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.0]), torch.tensor([-1.0])
    B, C, D = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0]), torch.tensor([0.5])
    y = ssd_ref(x.view(1, 2, 1, 1), dt.view(1, 2, 1), A, B.view(1, 2, 1, 1), C.view(1, 2, 1, 1), D)
    first = 0.5 * 1.0 * 1.0  # the state after step 1
    second = math.exp(-1.0) * first + 1.0 * 2.0 * 3.0
    torch.testing.assert_close(y.flatten(), torch.tensor([first * 2.0 + 0.5, second * 1.0 + 0.5 * 2.0]))


@pytest.mark.parametrize(("length", "chunk"), [(1, 4), (7, 4), (19, 8), (64, 16), (33, 64)])
@pytest.mark.parametrize("groups", [1, 2])
def test_chunked_form_matches_the_recurrence_in_outputs_and_every_gradient(length, chunk, groups):
    inputs = [t.requires_grad_() for t in _inputs(length, groups=groups)]
    probe = torch.randn(2, length, 4, 3, dtype=torch.float64)
    grads = {}
    for name, fn in (("ref", ssd_ref), ("chunked", lambda *a: ssd_torch(*a, chunk=chunk))):
        y = fn(*inputs)
        grads[name] = (y, *torch.autograd.grad((y * probe).sum(), inputs))
    for got, want in zip(grads["chunked"], grads["ref"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_chunked_form_in_float32_and_without_D():
    x, dt, A, B, C, _ = _inputs(37, dtype=torch.float32)
    y = ssd_torch(x, dt, A, B, C, chunk=16)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ssd_ref(x, dt, A, B, C).float(), rtol=1e-4, atol=1e-4)


def test_bad_shapes_and_backends_are_one_line_errors():
    x, dt, A, B, C, D = _inputs(8, heads=4, groups=3)
    with pytest.raises(ValueError, match="multiple of the groups"):
        ssd_torch(x, dt, A, B, C, D)
    x, dt, A, B, C, D = _inputs(8)
    with pytest.raises(ValueError, match="auto, cuda, torch"):
        ssd(x, dt, A, B, C, D, backend="triton")
    if backend.ssd_cuda is None or not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="'cuda' was requested but cannot run"):
            ssd(x, dt, A, B, C, D, backend="cuda")
    torch.testing.assert_close(ssd(x, dt, A, B, C, D), ssd_torch(x, dt, A, B, C, D))  # auto on a CPU


def _grad_of_first_output(mixer: torch.nn.Module, length: int = 12) -> torch.Tensor:
    x = torch.randn(1, length, 16, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(16, dtype=torch.float64)  # not a plain sum of a normalised output
    (mixer(x)[0, 0] @ probe).backward()
    return x.grad[0].abs().sum(-1)  # (length,): how much each input position moves output 0


def test_one_mixer_is_causal_and_the_pair_sees_both_ways():
    torch.manual_seed(0)
    kw = {"d_state": 4, "headdim": 8, "chunk": 4, "backend": "torch"}
    one = _grad_of_first_output(Mamba2Mixer(16, **kw).double())
    assert one[0] > 0 and (one[1:] == 0).all()  # output 0 of a forward scan reads input 0 only
    both = _grad_of_first_output(BiMamba2(16, **kw).double())
    assert (both > 0).all()  # the backward mixer carries every later input to position 0


@requires_cuda
@requires_ssd_kernel
def test_the_kernel_matches_the_chunked_form_on_a_gpu():
    x, dt, A, B, C, D = (t.float().cuda() for t in _inputs(300, heads=8, groups=2))
    torch.testing.assert_close(
        ssd(x, dt, A, B, C, D, backend="cuda"), ssd_torch(x, dt, A, B, C, D), rtol=2e-3, atol=2e-3
    )
