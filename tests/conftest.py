import os
from pathlib import Path

import pytest
import torch
from hydra import compose as compose_hydra
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ginr.ops import backend

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
requires_scan_kernel = pytest.mark.skipif(backend.selective_scan_cuda is None, reason=backend.KERNEL_STATUS)
requires_conv_kernel = pytest.mark.skipif(
    backend.causal_conv1d_cuda is None, reason="causal_conv1d not installed"
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
EXPERIMENTS = sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("*.yaml"))


def compose(overrides: list[str]) -> DictConfig:
    """configs/train.yaml composed with ``overrides``, as ``python -m ginr.train`` would."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose_hydra("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    return cfg


@pytest.fixture(scope="session")
def data_dir() -> str:
    """Where the real datasets are cached; shared across tests and sessions."""
    return os.environ.get("GINR_DATA_DIR", str(Path("~/.cache/ginr").expanduser()))


@pytest.fixture
def smoke_cfg(tmp_path, data_dir):
    def make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return compose(
            ["experiment=scent_ff", "debug=smoke", f"paths.data_dir={data_dir}", f"run_dir={run_dir or tmp_path / 'run'}",
             *overrides]
        )  # fmt: skip

    return make
