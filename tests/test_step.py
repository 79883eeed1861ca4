"""The training step's finite check: a non-finite step changes nothing, and a fused optimizer skips it
from the device flag without the host reading it."""

import copy

import pytest
import torch
from torch import nn

from ginr.engine.step import TrainStep, step_if

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA")),
]


def _optimizer(params, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=0.1, weight_decay=0.1, fused=fused, foreach=None if fused else False)


def _stepped_once(fused: bool, device: str = "cpu") -> tuple[nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Linear(3, 2).to(device)
    opt = _optimizer(net.parameters(), fused)
    net(torch.randn(4, 3, device=device)).square().mean().backward()
    opt.step()
    opt.zero_grad()
    return net, opt


def _snapshot(net: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    return copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())


def _assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    for key in a[0]:
        assert torch.equal(a[0][key], b[0][key]), key
    for index, state in a[1]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b[1]["state"][index][key]), (index, key)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [True, False])
def test_a_skipped_step_leaves_weights_and_optimizer_state_as_they_were(fused, device):
    net, opt = _stepped_once(fused, device)
    net(torch.randn(4, 3, device=device)).square().mean().backward()
    before = _snapshot(net, opt)
    step_if(opt, torch.tensor(False, device=device))
    _assert_same(before, _snapshot(net, opt))
    assert not hasattr(opt, "found_inf")
    step_if(opt, torch.tensor(True, device=device))
    after = _snapshot(net, opt)
    assert not torch.equal(before[0]["weight"], after[0]["weight"])
    assert after[1]["state"][0]["step"].item() == 2


@pytest.mark.parametrize("device", DEVICES)
def test_a_fused_step_takes_the_flag_without_reading_it_on_the_host(monkeypatch, device):
    net, opt = _stepped_once(True, device)
    net(torch.randn(4, 3, device=device)).square().mean().backward()
    twin_net, twin_opt = _stepped_once(True, device)
    twin_net(torch.randn(4, 3, device=device)).square().mean().backward()
    flag = torch.tensor(True, device=device)

    def no_host_read(self):
        raise AssertionError("the finite flag was read on the host")

    monkeypatch.setattr(torch.Tensor, "__bool__", no_host_read)
    step_if(opt, flag)
    monkeypatch.undo()
    twin_opt.step()  # the same step taken unconditionally
    _assert_same(_snapshot(twin_net, twin_opt), _snapshot(net, opt))


@pytest.mark.parametrize("fused", [True, False])
def test_train_step_skips_a_non_finite_loss_and_reports_it(fused):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.GELU(), nn.Linear(8, 3))
    model = _CoordNet(net)
    step = TrainStep(model, _optimizer(model.parameters(), fused), amp=None, grad_clip=1.0)
    images, coords = torch.rand(2, 3, 4, 4), torch.rand(16, 2) * 2 - 1
    targets = torch.rand(2, 16, 3)
    first = step(images, coords, targets)
    assert first.ok.dtype == torch.bool and bool(first.ok)
    before = _snapshot(model, step.optimizer)
    bad = step(images, coords, torch.full_like(targets, float("nan")))
    assert not bool(bad.ok)
    _assert_same(before, _snapshot(model, step.optimizer))
    assert bool(step(images, coords, targets).ok)
    assert step.optimizer.state_dict()["state"][0]["step"].item() == 2


class _CoordNet(nn.Module):
    """A stand-in decoder: (images, coords) -> (B, N, 3) from the coordinates alone."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords).expand(len(images), -1, -1)
