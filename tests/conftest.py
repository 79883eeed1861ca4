"""Shared fixtures, and the variants as the configs define them: no test lists an experiment or a block by
name. Adding ``configs/experiment/<name>.yaml`` (and a block: one class in ``ginr/models/blocks.py`` and
``configs/decoder/block/<name>.yaml``) puts the new variant under every test parametrized over these."""

import copy
import functools
import importlib
import os
from pathlib import Path

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ginr.config import compose, experiments, mixes_queries
from ginr.ops import backend

config_module = importlib.import_module("ginr.config.compose")  # the package's compose() hides the module

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
requires_scan_kernel = pytest.mark.skipif(backend.selective_scan_cuda is None, reason=backend.KERNEL_STATUS)
requires_triton_kernels = pytest.mark.skipif(backend.geglu_cuda is None, reason=backend.TRITON_STATUS)
requires_triton_scan = pytest.mark.skipif(backend.selective_scan_triton is None, reason=backend.TRITON_STATUS)
requires_conv_kernel = pytest.mark.skipif(
    backend.causal_conv1d_cuda is None, reason="causal_conv1d not installed"
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _config_dir(config_dir: Path | None) -> Path:
    """``config_dir``, else the one ``ginr.config`` composes from now (a test may point it elsewhere)."""
    return Path(config_dir or config_module.CONFIG_DIR)


def blocks(config_dir: Path | None = None) -> list[str]:
    """The decoder block types: every ``configs/decoder/block/*.yaml``, by name."""
    return sorted(p.stem for p in (_config_dir(config_dir) / "decoder" / "block").glob("*.yaml"))


def block_class(block: str, config_dir: Path | None = None) -> type:
    """The class a block file's ``_target_`` names."""
    return get_class(OmegaConf.load(_config_dir(config_dir) / "decoder" / "block" / f"{block}.yaml")._target_)


def default_experiment(config_dir: Path | None = None) -> str:
    """The experiment ``python -m ginr.train`` trains when none is named: the ``experiment`` default of
    ``configs/train.yaml``."""
    defaults = OmegaConf.load(_config_dir(config_dir) / "train.yaml").defaults
    (name,) = [d.experiment for d in defaults if isinstance(d, DictConfig) and "experiment" in d]
    return name


@functools.cache
def _choices(experiment: str, config_dir: Path) -> dict[str, str | None]:
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir), job_name="tests"):
        cfg = hydra_compose("train", [f"experiment={experiment}", "run_dir=unused"], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.runtime.choices)


def block_of(experiment: str, config_dir: Path | None = None) -> str | None:
    """The block file an experiment composes (Hydra's choice for ``decoder/block``); None where its decoder
    takes no blocks."""
    return _choices(experiment, _config_dir(config_dir)).get("decoder/block")


@functools.cache
def _composed(experiment: str, overrides: tuple[str, ...], config_dir: Path) -> DictConfig:
    return compose([f"experiment={experiment}", *overrides])


def config_of(experiment: str, *overrides: str) -> DictConfig:
    """The composed (unresolved) config of ``experiment`` with ``overrides``; a copy, free to change."""
    return copy.deepcopy(_composed(experiment, overrides, _config_dir(None)))


@functools.cache
def _mixes(experiment: str, config_dir: Path) -> bool:
    return mixes_queries(_composed(experiment, ("debug=smoke",), config_dir))


def mixes(experiment: str) -> bool:
    """Whether the decoder of ``experiment`` mixes the queries decoded together (as its blocks declare)."""
    return _mixes(experiment, _config_dir(None))


def decoder_class(experiment: str) -> type:
    return get_class(_composed(experiment, ("debug=smoke",), _config_dir(None)).decoder._target_)


EXPERIMENTS = experiments()
BLOCKS = blocks()
DEFAULT_EXPERIMENT = default_experiment()
MIXING = [e for e in EXPERIMENTS if mixes(e)]  # O(N^2) in queries: no query chunks, naive-attention cases
NOT_MIXING = [e for e in EXPERIMENTS if not mixes(e)]
WITH_BLOCKS = [e for e in EXPERIMENTS if block_of(e) is not None]  # the multi-band decoders: the block axis


def _per_decoder() -> list[str]:
    first: dict[type, str] = {}
    for experiment in [DEFAULT_EXPERIMENT, *EXPERIMENTS]:
        first.setdefault(decoder_class(experiment), experiment)
    return list(first.values())


PER_DECODER = _per_decoder()  # one experiment per decoder class, the default's first: a decoder's structure


@pytest.fixture(scope="session")
def data_dir() -> str:
    """Where the real datasets are cached; shared across tests and sessions."""
    return os.environ.get("GINR_DATA_DIR", str(Path("~/.cache/ginr").expanduser()))


@pytest.fixture
def smoke_cfg(tmp_path, data_dir):
    def make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return compose(
            [f"experiment={DEFAULT_EXPERIMENT}", "debug=smoke", f"paths.data_dir={data_dir}",
             f"run_dir={run_dir or tmp_path / 'run'}", *overrides]
        )  # fmt: skip

    return make
