"""The memory planner: its arithmetic on small configs, batch search, budget parsing, the components it
reads from the module tree, the kernel seam, its accounting (checked against torch's MemTracker), and the
CUDA autocast emulation it relies on (checked against real CUDA autocast on fake CUDA tensors)."""

import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import ginr.tools.memory.simulate as simulate_module
from ginr.config import compose as compose_config
from ginr.config import prepare
from ginr.engine.build import build_model, count_parameters
from ginr.models.decoder import MultiBandDecoder, ScentDecoder
from ginr.models.layers import Attention, FeedForward, PreNorm
from ginr.ops import backend
from ginr.ops.causal_conv1d import causal_conv1d
from ginr.ops.selective_scan import selective_scan
from ginr.tools.memory import check, largest_batch, parse_budget, plan
from ginr.tools.memory.__main__ import main
from ginr.tools.memory.plan import with_inputs
from ginr.tools.memory.simulate import FakeModel, component_of
from ginr.tools.memory.standins import (
    GEGLU_ROWS_PER_PROGRAM,
    CudaAutocastPolicy,
    cuda_standins,
    simulated_kernels,
)
from tests.conftest import (
    DEFAULT_EXPERIMENT,
    EXPERIMENTS,
    MIXING,
    NOT_MIXING,
    WITH_BLOCKS,
    block_class,
    block_of,
    requires_triton_kernels,
    requires_triton_scan,
)

SMALL = ["debug=smoke"]  # encoder dim 32, decoder hidden 32, 2 heads x 8, 16 latents, num_layers 2
DEFAULT = f"experiment={DEFAULT_EXPERIMENT}"  # the planner's arithmetic on one small config


def small(*overrides: str):
    return compose_config([*SMALL, *overrides])


def test_static_components_follow_the_parameter_count():
    cfg = small(DEFAULT)
    numel = count_parameters(build_model(prepare(cfg)))
    result = plan(cfg, batch_size=2, queries=32)
    assert result.components["parameters"] == 4 * numel
    assert result.components["gradients"] == 4 * numel
    assert result.components["adamw_state"] == 8 * numel
    assert sum(result.components.values()) == result.total
    assert result.batch_size == 2 and result.queries == 32


@requires_triton_scan
def test_the_triton_scan_is_planned_with_its_own_op(monkeypatch):
    """encoder.backend=triton is labelled as such and predicted by running the Triton op on fake tensors: it
    saves what mamba-ssm's kernel saves but the chunk states (the output before the gate in place of the
    output), so only the encoder's share differs, by less than those states."""
    result = plan(small(DEFAULT, "encoder.backend=triton"), batch_size=2, queries=32)
    assert result.scan_backend == "triton"
    cuda_cfg = small(DEFAULT, "encoder.backend=cuda")
    on_kernels = plan(cuda_cfg, batch_size=2, queries=32, conv_kernel=False).components
    got = result.components
    assert {k: v for k, v in got.items() if k != "encoder"} == {
        k: v for k, v in on_kernels.items() if k != "encoder"
    }
    enc = prepare(
        cuda_cfg
    ).encoder  # mamba-ssm's states: (batch, both directions' channels, 1 chunk, 2N) floats
    states = 2 * enc.depth * (2 * enc.expand * enc.dim) * 2 * enc.d_state * 4
    assert 0 < on_kernels["encoder"] - got["encoder"] <= states


def _blocks_hold_attention(experiment: str) -> bool:
    """Whether the decoder blocks of ``experiment`` attend (to the other queries or to the latents)."""
    with torch.device("meta"):
        decoder = instantiate(small(f"experiment={experiment}").decoder)
    cls = block_class(block_of(experiment))
    return any(isinstance(m, Attention) for b in decoder.modules() if type(b) is cls for m in b.modules())


PER_QUERY_BLOCKS = [e for e in WITH_BLOCKS if not _blocks_hold_attention(e)]  # feedforwards, residual MLPs


@pytest.mark.parametrize("experiment", PER_QUERY_BLOCKS)
def test_activations_of_attention_free_blocks_are_linear_in_batch_and_queries(experiment):
    cfg = small(f"experiment={experiment}")
    base = plan(cfg, batch_size=2, queries=32).components
    batch2x = plan(cfg, batch_size=4, queries=32).components
    batch3x = plan(cfg, batch_size=6, queries=32).components
    queries2x = plan(cfg, batch_size=2, queries=64).components
    stacks = [k for k in base if re.fullmatch(r"decoder\.bands\.\d+\.(band|modulation)", k)]
    assert len(stacks) == 2 * len(cfg.decoder.bandwidths)  # a band and a modulation stack per scale
    for key in stacks:
        assert batch2x[key] == 2 * base[key]
        assert queries2x[key] == 2 * base[key]
    # the encoder sees images, not queries: linear in the batch (plus constants such as A = -exp(A_log))
    assert queries2x["encoder"] == base["encoder"]
    assert batch3x["encoder"] - batch2x["encoder"] == batch2x["encoder"] - base["encoder"] > 0


def _attention_scores(cfg, batch: int, queries: int) -> int:
    """Elements of the attention score matrices a real forward of ``cfg``'s model makes (every attention
    call: batch x heads x its queries x its keys), with per-image queries as the trainer samples them."""
    assert cfg.trainer.query_sampling == "per_image"
    model, seen = build_model(prepare(cfg)), []

    def count(module, args, kwargs, out):
        x, context = args[0], kwargs.get("context", args[1] if len(args) > 1 else None)
        context = x if context is None else context  # self-attention: the queries are the keys
        seen.append(max(len(x), len(context)) * module.heads * x.shape[1] * context.shape[1])

    for module in model.modules():
        if isinstance(module, Attention):
            module.register_forward_hook(count, with_kwargs=True)
    with torch.no_grad():
        model(torch.rand(batch, cfg.data.channels, cfg.data.resolution, cfg.data.resolution),
              torch.rand(batch, queries, 2) * 2 - 1)  # fmt: skip
    return sum(seen)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize(("precision", "bytes_per_element"), [("bf16", 4 + 2), ("fp32", 4)])
def test_naive_attention_matrices_are_the_score_matrices_quadratic_where_queries_mix(
    experiment, precision, bytes_per_element
):
    # bf16: softmax runs in float32 under CUDA autocast and is saved (4 bytes), and its bf16 copy for the
    # matmul with v is saved too (2 bytes). fp32: the softmax output alone.
    cfg = small(f"experiment={experiment}", "decoder.attn_impl=naive", f"trainer.precision={precision}")
    batch, planned = 2, {}
    for queries in (24, 48):
        expected = _attention_scores(cfg, batch, queries) * bytes_per_element
        planned[queries] = plan(cfg, batch_size=batch, queries=queries).components["attention_matrices"]
        assert planned[queries] == expected
    # blocks that mix queries attend from every query to every other: quadratic; the others linear
    assert (planned[48] > 2 * planned[24]) == (experiment in MIXING)
    assert (planned[48] == 2 * planned[24]) == (experiment in NOT_MIXING)


def test_checkpointing_keeps_only_block_inputs():
    plain = plan(small(DEFAULT), batch_size=4, queries=64)
    ckpt = plan(
        small(DEFAULT, "decoder.checkpoint=true", "encoder.checkpoint=true"),
        batch_size=4,
        queries=64,
    )
    assert ckpt.components["decoder.bands.0.band"] < plain.components["decoder.bands.0.band"] / 2
    assert ckpt.components["encoder"] < plain.components["encoder"]
    assert ckpt.total < plain.total


@pytest.mark.parametrize("experiment", WITH_BLOCKS)
def test_a_checkpointed_block_keeps_only_its_input(experiment):
    """Each block more in a checkpointed stack keeps one (batch, queries, hidden) bf16 tensor: its input."""
    ckpt = [f"experiment={experiment}", "trainer.precision=bf16", "decoder.checkpoint=true"]
    kept = {
        n: plan(small(*ckpt, f"decoder.num_layers={n}"), batch_size=4, queries=64).components
        for n in (1, 2, 3)
    }
    plain = plan(small(*ckpt[:2], "decoder.num_layers=3"), batch_size=4, queries=64).components
    block_input = 4 * 64 * small(*ckpt).decoder.hidden_dim * 2
    stacks = [k for k in kept[1] if re.fullmatch(r"decoder\.bands\.\d+\.(band|modulation)", k)]
    assert stacks
    for key in stacks:
        assert kept[2][key] - kept[1][key] == kept[3][key] - kept[2][key] == block_input
        assert kept[3][key] < plain[key]


def test_largest_batch_is_monotone_and_fits():
    cfg = small(DEFAULT, "trainer.queries_per_image=32")  # the simulations of the tests above
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
    args = [
        *SMALL,
        DEFAULT,
        "trainer.queries_per_image=32",
        "data.batch_size=2",
        "--budget",
        "1GB",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "predicted peak" in out and "decoder scale 1 modulation stack" in out
    assert "largest data.batch_size predicted to fit in 1GB" in out
    assert main(["--budget", "12XB"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --budget '12XB' is not a memory size") and "\n" not in err


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


@pytest.mark.skipif(
    not torch.backends.cuda.is_built(),
    reason="its reference, real CUDA autocast on fake CUDA tensors, needs a CUDA build of torch",
)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("attn_impl", ["sdpa", "naive"])
def test_emulated_autocast_allocates_as_cuda_autocast(experiment, attn_impl):
    cfg = prepare(small(f"experiment={experiment}", f"decoder.attn_impl={attn_impl}"))
    try:
        with FakeTensorMode():
            torch.empty(1, device="cuda")
    except Exception as err:  # a torch build without CUDA cannot fake CUDA tensors
        pytest.skip(f"fake CUDA tensors unavailable: {err}")
    assert _forward_allocations(cfg, "cpu") == _forward_allocations(cfg, "cuda")


class TowerDecoder(nn.Module):
    """A decoder the planner has never heard of: towers of blocks in a ModuleList, a shared attention."""

    def __init__(self, *, latent_dim: int, hidden_dim: int = 32, towers: int = 2):
        super().__init__()
        self.embed = nn.Linear(2, hidden_dim)
        self.look = PreNorm(hidden_dim, Attention(hidden_dim, context_dim=latent_dim, heads=2, dim_head=8),
                            context_dim=latent_dim)  # fmt: skip
        self.towers = nn.ModuleList(
            nn.Sequential(*(PreNorm(hidden_dim, FeedForward(hidden_dim)) for _ in range(2)))
            for _ in range(towers)
        )
        self.out = nn.Linear(hidden_dim, 3)

    def forward(self, latents: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        x = self.embed(coords)
        x = x + self.look(x, context=latents)
        return self.out(sum(tower(x) for tower in self.towers))


def _tower_cfg():
    cfg = small(DEFAULT)
    cfg.decoder = OmegaConf.create(
        {"_target_": f"{__name__}.TowerDecoder", "latent_dim": 32, "hidden_dim": 32}
    )
    return cfg


def test_a_new_decoder_gets_components_from_its_module_tree():
    components = plan(_tower_cfg(), batch_size=2, queries=32).components
    for key in ("decoder.look", "decoder.towers.0", "decoder.towers.1", "decoder", "encoder"):
        assert components[key] > 0, key
    assert components["decoder.towers.0"] == components["decoder.towers.1"]
    assert not any("other" in key for key in components)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_components_of_the_shipped_decoders(experiment):
    model = build_model(prepare(small(f"experiment={experiment}")))
    cases = {
        "decoder.query_proj": "decoder",
        "decoder": "decoder",
        "encoder.blocks.0.mixer.forward_mixer": "encoder",
        "": "model",
    }
    if isinstance(model.decoder, MultiBandDecoder):
        cases |= {
            "decoder.bands.1.modulation.inp.0": "decoder.bands.1.modulation",
            "decoder.bands.1.fourier": "decoder.bands.1",  # single layers belong to their band
            "decoder.modulation.fn.to_q": "decoder.modulation",
        }
        inside_blocks = {  # every module of a block, whatever its type, belongs to the block's stack
            path: ".".join(path.split(".")[:4])
            for path, _ in model.named_modules()
            if re.match(r"decoder\.bands\.\d+\.(band|modulation)\.blocks\.", path)
        }
        assert inside_blocks or block_of(experiment) is None
        cases |= inside_blocks
    if isinstance(model.decoder, ScentDecoder):
        cases |= {
            "decoder.ffs.1.fn.net.2": "decoder.ffs.1",
            "decoder.cross_attn.norm": "decoder.cross_attn",
            "decoder.out.1": "decoder.out",
        }
    for path, component in cases.items():
        assert component_of(model, path) == component, path


def test_kernel_seam_routes_the_ops_and_restores_the_previous_state():
    before = (backend.selective_scan_cuda, backend.causal_conv1d_cuda, backend.mamba_inner_cuda)
    calls = []

    def scan(u, *args):
        calls.append("scan")
        return u

    def conv(x, weight, bias=None, activation=None):
        calls.append("conv")
        return x

    u, delta, z = torch.randn(3, 1, 4, 8).unbind(0)
    A, B, C = -torch.rand(4, 2), torch.randn(1, 2, 8), torch.randn(1, 2, 8)
    with simulated_kernels(selective_scan=scan, causal_conv1d=conv):
        assert backend.resolve_backend("auto", torch.device("cpu")) == "cuda"
        assert backend.resolve_backend("torch", torch.device("cpu")) == "torch"
        assert backend.mamba_inner_cuda is None
        selective_scan(u, delta, A, B, C, z=z)
        causal_conv1d(u, torch.randn(4, 3))
        with pytest.raises(KeyError), simulated_kernels(selective_scan=scan):
            assert backend.causal_conv1d_cuda is None
            raise KeyError  # an error inside restores too
        assert backend.causal_conv1d_cuda is conv
    assert calls == ["scan", "conv"]
    assert (backend.selective_scan_cuda, backend.causal_conv1d_cuda, backend.mamba_inner_cuda) == before
    if backend.selective_scan_cuda is None:
        assert backend.resolve_backend("auto", torch.device("cpu")) == "torch"


def test_the_planner_patches_nothing():
    for path in Path(simulate_module.__file__).parent.glob("*.py"):
        assert "mock" not in path.read_text(), path.name


def _checked() -> dict[str, list[str]]:
    """The steps whose accounting is checked: every experiment plain, checkpointed, and in float32 with
    naive attention, checkpointed; those whose blocks do not mix queries also memory-lean (checkpointed
    query chunks) with naive attention."""
    checked = {}
    for e in EXPERIMENTS:
        checked[f"plain/{e}"] = [f"experiment={e}"]
        checked[f"checkpointing/{e}"] = [
            f"experiment={e}",
            "decoder.checkpoint=true",
            "encoder.checkpoint=true",
        ]
        if e in NOT_MIXING:
            checked[f"lean/{e}"] = [
                f"experiment={e}",
                "decoder.attn_impl=naive",
                "trainer.checkpoint_queries=16",
                "encoder.checkpoint=true",
            ]
        checked[f"fp32/{e}"] = [
            f"experiment={e}",
            "decoder.attn_impl=naive",
            "trainer.precision=fp32",
            "decoder.checkpoint=true",
        ]
    return checked


CHECKED = _checked()


def _simulate(overrides, **kwargs):
    cfg = with_inputs(prepare(small(*overrides)), batch_size=2, queries=32)
    fake = FakeModel(cfg)
    amp = None if "trainer.precision=fp32" in overrides else torch.bfloat16
    return fake, lambda: fake.simulate(cfg, amp=amp, scan_backend="cuda", conv_kernel=True, **kwargs)


class _NoModules:
    """Stands in for the module tracker: no module is ever running."""

    parents = frozenset({"Global"})

    @property
    def is_bw(self) -> bool:
        return torch._C._current_graph_task_id() != -1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


@pytest.mark.parametrize("name", [n for n in CHECKED if n.startswith(("checkpointing/", "lean/"))])
def test_accounting_agrees_with_torch_memtracker(name):
    fake, run = _simulate(CHECKED[name])
    with fake.mode, MemTracker() as tracker:  # MemTracker sees the ops only below the fake mode
        trace = run()
    static = sum(t.untyped_storage().nbytes() for t in [*fake.params, *fake.buffers])
    (peak,) = (snapshot["Total"] for snapshot in tracker.get_tracker_snapshot("peak").values())
    assert trace.peak == peak - static  # the same run: both see what MemTracker's own hooks hold too


@pytest.mark.parametrize("name", CHECKED)
def test_attribution_leaves_the_timeline_unchanged(name, monkeypatch):
    # module tracking must hold no gradients and nothing checkpointing recomputes inside the backward,
    # as torch's ModuleTracker and ModTracker (and so MemTracker) do
    _, run = _simulate(CHECKED[name])
    tracked = run()
    monkeypatch.setattr(simulate_module, "ForwardModuleTracker", _NoModules)
    untracked = run()
    assert tracked.timeline == untracked.timeline and tracked.peak == untracked.peak
    assert set(untracked.end_of_forward) <= {"inputs", "output_loss"}  # nothing attributed to modules


def test_simulation_leaves_no_mode_or_hook_behind():
    from torch.nn.modules import module as module_hooks

    hooks = (len(module_hooks._global_forward_pre_hooks), len(module_hooks._global_forward_hooks))
    _, run = _simulate(next(overrides for name, overrides in CHECKED.items() if name.startswith("lean/")))
    run()
    assert torch._C._len_torch_function_stack() == 0
    assert (len(module_hooks._global_forward_pre_hooks), len(module_hooks._global_forward_hooks)) == hooks


def test_lean_mode_is_modelled(capsys):
    # bf16: the checkpointed decoder chunks re-run under the emulated CUDA autocast inside the backward,
    # else torch.utils.checkpoint would find float32 tensors recomputed as bf16 and raise
    base = [DEFAULT, "trainer.queries_per_image=32", "encoder.checkpoint=true"]
    lean = plan(small(*base, "trainer.checkpoint_queries=16"), batch_size=4)
    full = plan(small(*base), batch_size=4)
    assert not any(key.startswith("decoder") for key in lean.components)  # nothing kept between chunks
    assert lean.total < full.total
    assert main([*SMALL, *base, "trainer.checkpoint_queries=16", "data.batch_size=2"]) == 0
    assert "query chunks of 16 (memory-lean)" in capsys.readouterr().out


def test_check_predicts_the_recorded_steps_of_a_benchmark_run(tmp_path):
    overrides = [
        *SMALL,
        DEFAULT,
        "trainer.precision=bf16",
        "data.batch_size=2",
        "trainer.cpu_overrides=[]",
    ]
    # the recorded machine had mamba-ssm without causal-conv1d: the check predicts for those kernels
    predicted = plan(small(DEFAULT), batch_size=2, queries=32, conv_kernel=False).total
    with_conv = plan(small(DEFAULT), batch_size=2, queries=32, conv_kernel=True).total
    assert with_conv != predicted
    case = {"group": "main", "status": "ok", "overrides": overrides, "batch": 2, "queries": 32}
    cases = [{**case, "name": "close", "peak_bytes": round(predicted * 1.03)}]
    cases += [{**case, "name": "far", "peak_bytes": predicted * 2}, {**case, "name": "oom", "status": "OOM"}]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"meta": {"scan_kernels": "mamba_ssm available"}, "cases": cases}))
    rows = check.check_results(results, deadline=float("inf"))
    assert [(r.name, r.predicted) for r in rows] == [("close", predicted), ("far", predicted)]
    assert abs(rows[0].error) <= check.TOLERANCE < abs(rows[1].error)
    results.write_text(
        json.dumps({"meta": {"scan_kernels": "mamba_ssm and causal_conv1d available"}, "cases": cases})
    )
    assert check.check_results(results, deadline=float("inf"))[0].predicted == with_conv
    results.write_text(json.dumps({"meta": {"scan_kernels": "mamba_ssm available"}, "cases": cases}))
    if not torch.cuda.is_available():
        assert check.main([str(tmp_path / "out"), "--results", str(results)]) == 0
        assert "1 of 2 points within 5%" in (tmp_path / "out" / "memory_check.md").read_text()


@requires_triton_kernels
def test_geglu_standin_sums_the_bias_gradient_in_the_kernels_blocks():
    from ginr.ops import geglu_triton  # needs Triton, which this test requires

    assert GEGLU_ROWS_PER_PROGRAM == geglu_triton.ROWS_PER_PROGRAM


RECORDED = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "speed.json"


def test_predictions_stay_within_tolerance_of_the_recorded_h100_peaks(tmp_path):
    # points behind the accuracy claim (ginr.tools.memory.plan), re-predicted on the CPU: every eager step of
    # the joint direction scan but naive attention, and the memory-lean mode, as the record holds them
    recorded = json.loads(RECORDED.read_text())
    eager = [
        c for c in recorded["cases"]
        if c["status"] == "ok" and c["group"] == "main" and c["precision"] == "bf16" and not c["checkpoint"]
        and "decoder.attn_impl=naive" not in c["overrides"]
    ]  # fmt: skip
    lean = [c for c in recorded["cases"] if c["status"] == "ok" and c["group"] == "lean"]
    assert {c["variant"] for c in eager} <= set(EXPERIMENTS)  # the record is of the current variants
    assert DEFAULT_EXPERIMENT in {c["variant"] for c in eager} and lean
    names = {c["name"] for c in [*eager, *lean]}
    recorded["cases"] = [c for c in recorded["cases"] if c["name"] in names]
    (tmp_path / "results.json").write_text(json.dumps(recorded))
    rows = check.check_results(tmp_path / "results.json", deadline=float("inf"))
    assert {r.name for r in rows} == names
    for row in rows:
        assert abs(row.error) <= check.TOLERANCE, (row.name, row.error)


PROTOCOL = Path(__file__).resolve().parents[1] / "experiments" / "protocol" / "inputs_h100.json"


def test_predictions_stay_within_tolerance_at_the_recorded_protocol_input_sizes():
    """The trainer's own steps at 178 and 256 px (the benchmark's inputs preset on an H100), re-predicted
    on the CPU for the kernels that machine had."""
    rows = check.check_results(PROTOCOL, deadline=float("inf"))
    assert {r.name for r in rows} == {
        f"inputs/{d}/eager" for d in ("emoji3d178", "emoji3d256", "emoji3d256_p2")
    }
    for row in rows:
        assert abs(row.error) <= check.TOLERANCE, (row.name, row.error)
