"""Pin every experiment's composed config to the reference table in experiments/README.md."""

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import EXPERIMENTS, compose

# Keys that do not exist, or mean something else, for one experiment's decoder.
NOT_APPLICABLE = {
    ("scent", "decoder.num_layers"),  # the plain SCENT decoder counts feedforwards there
    ("scent", "decoder.bandwidths"),
    ("scent", "decoder.modulation"),
    ("scent", "decoder.block.ff_mult"),
    ("mamba_ginr", "decoder.block.ff_mult"),  # resblock has no feedforward
}
TABLE = Path(__file__).resolve().parents[1] / "experiments" / "README.md"


def reference_rows() -> dict[str, object]:
    text = TABLE.read_text().split("## Reference configuration", 1)[1]
    rows = re.findall(r"^\| ([a-z_.]+) \| (.+?) \| .+ \|$", text, flags=re.M)
    return {key: yaml.safe_load(value) for key, value in rows if key != "key"}


def test_table_is_complete():
    rows = reference_rows()
    assert len(rows) >= 19 and "encoder.dim" in rows and "decoder.bandwidths" in rows


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_matches_reference_table(experiment):
    cfg = compose([f"experiment={experiment}", "run_dir=unused"])
    for key, expected in reference_rows().items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if (experiment, key) in NOT_APPLICABLE:
            continue
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert value == expected, f"{experiment}: {key} = {value!r}, reference table says {expected!r}"
