"""The memory planner: its arithmetic on small configs, batch search, budget parsing, and the CUDA autocast
emulation it relies on (checked against real CUDA autocast on fake CUDA tensors)."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ginr.config import compose as compose_config
from ginr.config import prepare
from ginr.engine.build import build_model, count_parameters
from ginr.memory import largest_batch, parse_budget, plan
from ginr.memory.__main__ import main
from ginr.memory.standins import CudaAutocastPolicy, cuda_standins

SMALL = ["debug=smoke"]  # encoder dim 32, decoder hidden 32, 2 heads x 8, 16 latents, num_layers 2


def small(*overrides: str):
    return compose_config([*SMALL, *overrides])


def test_static_components_follow_the_parameter_count():
    cfg = small("experiment=scent_ff")
    numel = count_parameters(build_model(prepare(cfg)))
    result = plan(cfg, batch_size=2, queries=32)
    assert result.components["parameters"] == 4 * numel
    assert result.components["gradients"] == 4 * numel
    assert result.components["adamw_state"] == 8 * numel
    assert sum(result.components.values()) == result.total
    assert result.batch_size == 2 and result.queries == 32


def test_ff_ff_activations_are_linear_in_batch_and_queries():
    cfg = small("experiment=scent_ff")
    base = plan(cfg, batch_size=2, queries=32).components
    batch2x = plan(cfg, batch_size=4, queries=32).components
    batch3x = plan(cfg, batch_size=6, queries=32).components
    queries2x = plan(cfg, batch_size=2, queries=64).components
    stacks = [k for k in base if k.startswith("decoder.band")]
    assert len(stacks) == 4  # two scales, a band and a modulation stack each
    for key in stacks:
        assert batch2x[key] == 2 * base[key]
        assert queries2x[key] == 2 * base[key]
    # the encoder sees images, not queries: linear in the batch (plus constants such as A = -exp(A_log))
    assert queries2x["encoder"] == base["encoder"]
    assert batch3x["encoder"] - batch2x["encoder"] == batch2x["encoder"] - base["encoder"] > 0


@pytest.mark.parametrize(("precision", "bytes_per_element"), [("bf16", 4 + 2), ("fp32", 4)])
def test_naive_attention_matrices_are_quadratic_in_queries(precision, bytes_per_element):
    # bf16: softmax runs in float32 under CUDA autocast and is saved (4 bytes), and its bf16 copy for the
    # matmul with v is saved too (2 bytes). fp32: the softmax output alone.
    cfg = small("experiment=scent_attn", "decoder.attn_impl=naive", f"trainer.precision={precision}")
    heads, latents, batch = 2, 16, 2
    self_attention_layers = 1 * 2 * 2  # (num_layers - 1) blocks x 2 stacks x 2 scales
    for queries in (24, 48):
        expected = batch * heads * queries * (self_attention_layers * queries + latents) * bytes_per_element
        assert plan(cfg, batch_size=batch, queries=queries).components["attention_matrices"] == expected


def test_checkpointing_keeps_only_block_inputs():
    plain = plan(small("experiment=scent_ff"), batch_size=4, queries=64)
    ckpt = plan(
        small("experiment=scent_ff", "decoder.checkpoint=true", "encoder.checkpoint=true"),
        batch_size=4,
        queries=64,
    )
    assert ckpt.components["decoder.band0.band"] < plain.components["decoder.band0.band"] / 2
    assert ckpt.components["encoder"] < plain.components["encoder"]
    assert ckpt.total < plain.total


def test_largest_batch_is_monotone_and_fits():
    cfg = small("experiment=scent_ff", "trainer.queries_per_image=32")  # the simulations of the tests above
    budgets = [int(0.08e9), int(0.1e9)]
    fits = [largest_batch(cfg, b) for b in budgets]
    assert 0 < fits[0] < fits[1]
    assert plan(cfg, batch_size=fits[1]).total <= budgets[1] < plan(cfg, batch_size=fits[1] + 1).total
    assert largest_batch(cfg, 10**6) == 0  # less than the parameters and the cuBLAS workspace


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GB", 24 * 10**9),
        ("24GiB", 24 * 2**30),
        ("500MB", 500 * 10**6),
        ("1.5 tb", 15 * 10**11),
        ("512mib", 2**29),
    ],
)
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["24", "GB", "24XB", "-1GB", "0GB", "1e3GB", ""])
def test_parse_budget_rejects_bad_sizes(text):
    with pytest.raises(ValueError, match="is not a memory size") as err:
        parse_budget(text)
    assert "\n" not in str(err.value)


def test_cli_prints_the_table_and_the_largest_batch(capsys):
    args = [*SMALL, "experiment=scent_ff", "trainer.queries_per_image=32", "data.batch_size=2", "budget=1GB"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "predicted peak" in out and "decoder scale 1 modulation stack" in out
    assert "largest data.batch_size predicted to fit in 1GB" in out
    assert main(["budget=12XB"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: budget='12XB'") and "\n" not in err


class _Allocations(TorchDispatchMode):
    """(op, bytes, dtype) of every new storage."""

    def __init__(self):
        super().__init__()
        self.seen, self.keep, self.log = set(), [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and id(t.untyped_storage()) not in self.seen:
                self.seen.add(id(t.untyped_storage()))
                self.keep.append(t.untyped_storage())
                if t.dtype != torch.int64:  # the latent index is copied to the GPU, not on the CPU
                    self.log.append((str(func), t.untyped_storage().nbytes(), t.dtype))
        return out


def _forward_allocations(cfg, device: str) -> list:
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, torch.device(device):
        model = build_model(cfg)
    record = _Allocations()
    with mode, cuda_standins("cuda", True), record:
        images, coords = torch.rand(2, 3, 32, 32, device=device), torch.rand(2, 24, 2, device=device)
        if device == "cpu":
            with torch.autocast("cpu", dtype=torch.bfloat16), CudaAutocastPolicy():
                model(images, coords)
        else:  # real CUDA autocast (torch.autocast refuses without a GPU; the fake tensors do not need one)
            torch.set_autocast_dtype("cuda", torch.bfloat16)
            torch.set_autocast_enabled("cuda", True)
            try:
                with CudaAutocastPolicy(float32_list=False):
                    model(images, coords)
            finally:
                torch.set_autocast_enabled("cuda", False)
                torch.clear_autocast_cache()
    return record.log


@pytest.mark.parametrize(
    "overrides", [["experiment=scent_attn", "decoder.attn_impl=naive"], ["experiment=scent"]]
)
def test_emulated_autocast_allocates_as_cuda_autocast(overrides):
    cfg = prepare(small(*overrides))
    try:
        with FakeTensorMode():
            torch.empty(1, device="cuda")
    except Exception as err:  # a torch build without CUDA cannot fake CUDA tensors
        pytest.skip(f"fake CUDA tensors unavailable: {err}")
    assert _forward_allocations(cfg, "cpu") == _forward_allocations(cfg, "cuda")
