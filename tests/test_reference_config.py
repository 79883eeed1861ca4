"""Pin every experiment's composed config to the reference table in experiments/README.md."""

import re
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ginr.config.schema import arguments
from ginr.models.decoder import ScentDecoder
from tests.conftest import EXPERIMENTS, compose

# Keys a decoder class takes with another meaning than the reference decoder's.
OTHER_MEANING = {(ScentDecoder, "decoder.num_layers")}  # the plain SCENT decoder counts feedforwards there
ABSENT = object()
TABLE = Path(__file__).resolve().parents[1] / "experiments" / "README.md"


def reference_rows() -> dict[str, object]:
    text = TABLE.read_text().split("## Reference configuration", 1)[1]
    rows = re.findall(r"^\| ([a-z_.]+) \| (.+?) \| .+ \|$", text, flags=re.M)
    return {key: yaml.safe_load(value) for key, value in rows if key != "key"}


def test_table_is_complete():
    rows = reference_rows()
    assert len(rows) >= 19 and "encoder.dim" in rows and "decoder.bandwidths" in rows


def not_a_parameter(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` does not exist for this config's classes: the class of the nearest section above it
    that names one (``decoder``, ``decoder.block``) takes no such argument (``ff_mult`` of a block without
    feedforwards, ``bandwidths`` or blocks of a decoder with one band)."""
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        section = OmegaConf.select(cfg, ".".join(parts[:end]))
        if isinstance(section, DictConfig) and "_target_" in section:
            named, _, open_ended = arguments(get_class(section._target_))
            return not open_ended and parts[end] not in named
    return False


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_matches_reference_table(experiment):
    cfg = compose([f"experiment={experiment}", "run_dir=unused"])
    decoder = get_class(cfg.decoder._target_)
    for key, expected in reference_rows().items():
        value = OmegaConf.select(cfg, key, default=ABSENT)
        if (decoder, key) in OTHER_MEANING or (value is ABSENT and not_a_parameter(cfg, key)):
            continue
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert value == expected, f"{experiment}: {key} = {value!r}, reference table says {expected!r}"
