import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from ginr.config import compose, experiments
from ginr.ops import backend

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


EXPERIMENTS = experiments()


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
