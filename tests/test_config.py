"""The config layer: the schema (unknown keys, types and ranges from the constructors' own signatures),
the hardware group, and the variants discovered from configs/experiment."""

import inspect
import shutil
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ginr.config import CONFIG_DIR, ConfigError, compose, experiments, mixes_queries, prepare
from ginr.config.schema import describe
from ginr.constraints import Positive
from ginr.engine.build import build_model
from ginr.tools import variants as tool_variants
from tests.conftest import (
    BLOCKS,
    DEFAULT_EXPERIMENT,
    EXPERIMENTS,
    block_class,
    block_of,
    blocks,
    config_module,
    default_experiment,
)

SMOKE = ["debug=smoke", "run_dir=unused"]
DEFAULT_BLOCK = block_class(block_of(DEFAULT_EXPERIMENT)).__name__  # SMOKE composes the default experiment


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+encoder.dimm=3", "encoder.dimm is not a key of BiMambaEncoder (did you mean dim?)"),
        ("+trainer.max_step=3", "trainer.max_step is not a key of trainer (did you mean max_steps?)"),
        ("+decoder.block.heads=3", f"decoder.block.heads is not a key of {DEFAULT_BLOCK}"),
        ("+data.dataset.size=3", "data.dataset.size is not a key of Emoji3D"),
        ("+optim.optimizer.momentum=0.9", "optim.optimizer.momentum is not a key of AdamW"),
        ("+seeds=3", "seeds is not a key of the config (did you mean seed?)"),
        ("decoder.block.ff_mult=0", "decoder.block.ff_mult=0 is not allowed: expected an integer >= 1"),
        ("decoder.attn_impl=flash", "decoder.attn_impl='flash' is not allowed: expected one of sdpa, naive"),
        ("decoder.locality=-1", "decoder.locality=-1 is not allowed: expected a number >= 0"),
        ("decoder.bandwidths=[4,0]", "decoder.bandwidths=[4, 0] is not allowed: expected a list of items each a number > 0"),
        ("encoder.processor_depth=-1", "encoder.processor_depth=-1 is not allowed: expected an integer >= 0"),
        ("encoder.dim=2.5", "encoder.dim=2.5 is not allowed: expected an integer >= 1"),
        ("trainer.compile=maybe", "trainer.compile='maybe' is not allowed: expected true or false"),
        ("optim.min_lr_ratio=2", "optim.min_lr_ratio=2 is not allowed: expected a number >= 0 and <= 1"),
        ("trainer.eval_max_images=0", "trainer.eval_max_images=0 is not allowed: expected null or an integer >= 1"),
        ("data.eval_resolutions=[64,-1]", "data.eval_resolutions=[64, -1] is not allowed"),
    ],
)  # fmt: skip
def test_schema_names_the_key_the_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        prepare(compose([*SMOKE, override]))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_missing_section_key_is_an_error():
    cfg = compose(SMOKE)
    OmegaConf.set_struct(cfg, False)
    del cfg.trainer["max_bad_steps"]
    with pytest.raises(ConfigError, match="trainer.max_bad_steps is missing: expected an integer >= 1"):
        prepare(cfg)


def test_describe():
    assert describe(Positive) == "an integer >= 1"
    assert describe(Positive | None) == "null or an integer >= 1"


@pytest.mark.parametrize("experiment", experiments())
def test_every_experiment_and_its_cpu_scaling_pass_the_schema(experiment):
    prepare(compose([f"experiment={experiment}"]))
    cpu = prepare(compose([f"experiment={experiment}", "hardware=cpu"]))
    assert cpu.encoder.dim < prepare(compose([f"experiment={experiment}"])).encoder.dim


def test_hardware_group_values_lose_to_the_command_line():
    cfg = compose(["hardware=cpu", "encoder.dim=48", "trainer.max_steps=7"])
    assert (cfg.encoder.dim, cfg.trainer.max_steps, cfg.encoder.depth) == (48, 7, 2)
    assert compose().encoder.dim == 256  # hardware=gpu: the full model


def _block_of_experiment(experiment: str) -> nn.Module:
    """The decoder block an experiment builds, from its composed config (on the meta device)."""
    with torch.device("meta"):
        return instantiate(prepare(compose([f"experiment={experiment}"])).decoder.block)(dim=8)


def test_default_experiment_and_mixing_come_from_the_configs():
    assert (
        compose().name == DEFAULT_EXPERIMENT == default_experiment() and DEFAULT_EXPERIMENT in experiments()
    )
    mixing = {e for e in experiments() if mixes_queries(prepare(compose([f"experiment={e}"])))}
    # a decoder mixes queries exactly where its block says so; the recommended one does not
    assert mixing == {e for e in experiments() if block_of(e) and _block_of_experiment(e).mixes_queries}
    assert DEFAULT_EXPERIMENT not in mixing


@pytest.mark.parametrize("block", BLOCKS)
def test_every_block_file_names_a_block_type_an_experiment_uses(block):
    spec = OmegaConf.load(CONFIG_DIR / "decoder" / "block" / f"{block}.yaml")
    cls = block_class(block)
    assert spec._partial_ is True and "dim" in inspect.signature(cls).parameters  # a stack gives dim=
    users = [e for e in EXPERIMENTS if block_of(e) == block]
    assert users, f"no experiment uses decoder/block={block}"
    assert isinstance(
        _block_of_experiment(users[0]).mixes_queries, bool
    )  # declared, as ginr.models.blocks asks


class _NewBlock(nn.Module):
    """A block type the configs do not ship, for the discovery test."""

    mixes_queries = False

    def __init__(self, *, dim: Positive):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x)


class _NewMixingBlock(_NewBlock):
    mixes_queries = True

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x).mean(dim=1, keepdim=True)


@pytest.mark.parametrize("cls", [_NewBlock, _NewMixingBlock])
def test_a_new_block_and_experiment_are_discovered(tmp_path, monkeypatch, cls):
    """One block file and one experiment file, nothing else: the variant lists the tests and the tools
    parametrize over take them up."""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    (configs / "decoder" / "block" / "zz_block.yaml").write_text(
        f"_target_: {cls.__module__}.{cls.__qualname__}\n_partial_: true\n"
    )
    (configs / "experiment" / "zz_variant.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /decoder/block: zz_block\n\nname: zz_variant\n"
    )
    monkeypatch.setattr(config_module, "CONFIG_DIR", configs)
    assert experiments() == sorted([*EXPERIMENTS, "zz_variant"]) and blocks() == sorted([*BLOCKS, "zz_block"])
    assert block_of("zz_variant") == "zz_block" and block_class("zz_block") is cls
    cfg = prepare(compose(["experiment=zz_variant", *SMOKE]))
    assert cfg.name == "zz_variant" and mixes_queries(cfg) == cls.mixes_queries
    model = build_model(cfg)
    assert {type(m) for m in model.decoder.modules() if isinstance(m, _NewBlock)} == {cls}
    tool_variants.variants.cache_clear()
    try:
        found = tool_variants.variants()
        assert "zz_variant" in found and ("zz_variant_naive" in found) == cls.mixes_queries
    finally:
        tool_variants.variants.cache_clear()


@pytest.mark.slow
def test_cli_picks_cpu_hardware_without_a_gpu_and_says_so(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ginr.train", "--cfg", "job", "--resolve"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    on_cpu = "No CUDA device: hardware=cpu" in proc.stderr
    assert OmegaConf.create(proc.stdout).encoder.dim == (64 if on_cpu else 256)


@pytest.mark.slow
def test_sweep_trains_every_experiment(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ginr.train", "sweep=decoder_blocks", "debug=smoke",
         "hydra.sweeper.params={experiment:'glob(*)',decoder.num_layers:'2'}", "trainer.max_steps=1",
         "trainer.eval_every=1", "trainer.eval_max_images=4", "data.eval_resolutions=[]",
         f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {OmegaConf.load(p).name for p in tmp_path.glob("*/config.yaml")}
    assert names == set(experiments())
