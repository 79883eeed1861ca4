"""Compose ``configs/train.yaml`` with overrides outside a Hydra app (benchmarks, planners, tests)."""

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The training config with ``overrides`` (Hydra syntax), ``run_dir`` set so nothing needs Hydra's runtime."""
    overrides = list(overrides)
    if not any(o.lstrip("+~").split("=", 1)[0] == "run_dir" for o in overrides):
        overrides.append("run_dir=unused")  # train.yaml has run_dir: ${hydra:runtime.output_dir}
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its config search path is ours
        return compose("train", overrides=overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="ginr"):
        return compose("train", overrides=overrides)
