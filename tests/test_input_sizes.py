"""The input sizes beyond 32 px (the GINR protocol's 178 px, 256 px at patch 8 and patch 2): each data
preset composes with its own patch layout and trains a few steps of a tiny model on CPU, scored at the
scales its ground truth allows."""

from pathlib import Path

import pytest
import torch

from ginr.config import compose, prepare
from ginr.coords import scale_tag
from ginr.engine.build import build_model
from ginr.tools.variants import input_sizes
from ginr.train import train

PRESETS = input_sizes()  # the data options at other sizes, found from configs/data


def test_the_protocol_presets_are_found():
    assert {"emoji3d178", "emoji3d128_p2", "emoji3d256", "emoji3d256_p2"} <= set(PRESETS)


def _tokens(cfg) -> int:
    side = cfg.data.resolution + 2 * cfg.encoder.patch_padding
    assert side % cfg.encoder.patch_size == 0, "the patches tile the padded image"
    return (side // cfg.encoder.patch_size) ** 2


@pytest.mark.parametrize(
    ("preset", "resolution", "patch", "padding", "tokens", "scored_above"),
    [
        ("emoji3d178", 178, 9, 1, 400, [256]),
        ("emoji3d128_p2", 128, 2, 0, 4096, [256]),
        ("emoji3d256", 256, 8, 0, 1024, []),
        ("emoji3d256_p2", 256, 2, 0, 16384, []),
    ],
)
def test_each_preset_has_its_documented_layout(preset, resolution, patch, padding, tokens, scored_above):
    cfg = prepare(compose([f"data={preset}"]))
    assert (cfg.data.resolution, cfg.encoder.patch_size, cfg.encoder.patch_padding) == (
        resolution,
        patch,
        padding,
    )
    assert _tokens(cfg) == tokens and cfg.encoder.num_latents == 256
    assert (
        list(cfg.data.eval_resolutions) == scored_above
    )  # real truth above the input exists only up to 256 px
    tokenizer = build_model(cfg).encoder.tokenizer
    image = torch.zeros(1, 3, resolution, resolution)
    assert tokenizer(image).shape[1] == tokens


def test_the_178_protocol_takes_the_published_training_settings():
    cfg = prepare(compose(["data=emoji3d178"]))
    assert cfg.data.batch_size == 16 and cfg.trainer.queries_per_image is None  # every pixel, as all three
    assert cfg.optim.optimizer.lr == 1.0e-4 and list(cfg.optim.optimizer.betas) == [0.9, 0.999]


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_trains_a_few_steps_with_its_patch_layout(preset, data_dir, tmp_path):
    full = prepare(compose([f"data={preset}"]))
    layout = [
        f"encoder.patch_size={full.encoder.patch_size}",  # debug=smoke shrinks widths, not the layout
        f"encoder.patch_padding={full.encoder.patch_padding}",
        f"data.eval_resolutions={list(full.data.eval_resolutions)}",
    ]
    small = ["data.batch_size=2", "data.num_workers=0", "trainer.queries_per_image=64", "trainer.max_steps=2"]
    small += ["trainer.compile=false"]  # compiling the CPU scan's step loop over 16k tokens takes minutes
    evals = ["trainer.eval_every=2", "trainer.eval_max_images=2", "trainer.test_max_images=2"]
    cfg = compose(
        [
            f"data={preset}",
            "debug=smoke",
            *layout,
            *small,
            *evals,
            f"paths.data_dir={data_dir}",
            f"run_dir={tmp_path}",
        ]
    )
    metrics = train(cfg)
    assert metrics["test/images"] == 2 and torch.isfinite(torch.tensor(metrics["test/psnr"]))
    above = {f"test/psnr_{scale_tag(r, full.data.resolution)}" for r in full.data.eval_resolutions}
    assert above <= set(metrics) and not {k for k in metrics if k.startswith("test/psnr_x")} - above
    assert (Path(tmp_path) / "checkpoints" / "last.ckpt").is_file()
