"""The run config: Hydra composition of ``configs/`` (:mod:`ginr.config.compose`) and the one schema every
key is checked against before any work (:mod:`ginr.config.schema`)."""

from ginr.config.compose import (
    AUTO_RESUME,
    CONFIG_DIR,
    HYDRA_ERRORS,
    compose,
    config_error,
    decoding,
    default_hardware,
    experiments,
    mixes_queries,
    prepare,
    run_dir_of,
    validate,
)
from ginr.config.schema import ConfigError

__all__ = [
    "AUTO_RESUME",
    "CONFIG_DIR",
    "ConfigError",
    "HYDRA_ERRORS",
    "compose",
    "config_error",
    "decoding",
    "default_hardware",
    "experiments",
    "mixes_queries",
    "prepare",
    "run_dir_of",
    "validate",
]
