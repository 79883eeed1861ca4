"""The encoder axis: every file of configs/encoder builds an encoder every decoder reads, and the
transformer baseline is what it claims (attention over the whole sequence, latents tied to their places,
BiMamba's parameter count)."""

import pytest
import torch
from hydra.utils import instantiate

from ginr.config import CONFIG_DIR, compose, prepare
from ginr.models.encoder import TransformerBlock, TransformerEncoder
from ginr.train import train
from tests.conftest import EXPERIMENTS

ENCODERS = sorted(p.stem for p in (CONFIG_DIR / "encoder").glob("*.yaml"))
SMALL = {"dim": 32, "depth": 2, "mlp_dim": 64, "patch_size": 4, "num_latents": 16, "heads": 2, "dim_head": 8}


def _encoder(name: str, *overrides: str) -> torch.nn.Module:
    cfg = prepare(compose([f"encoder={name}", *overrides]))
    torch.manual_seed(0)
    return instantiate(cfg.encoder)


def test_the_encoders_are_found():
    assert {"bimamba", "mamba2", "transformer"} <= set(ENCODERS)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_encoder_composes_with_every_experiment(encoder, experiment):
    cfg = prepare(compose([f"experiment={experiment}", f"encoder={encoder}"]))
    assert cfg.decoder.latent_dim == cfg.encoder.dim and cfg.name == experiment


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_gives_one_latent_token_per_slot(encoder):
    model = _encoder(encoder, *(f"encoder.{k}={v}" for k, v in SMALL.items()))
    latents = model(torch.rand(2, 3, 32, 32))
    assert latents.shape == (2, SMALL["num_latents"], SMALL["dim"]) and torch.isfinite(latents).all()
    assert model.latent_coords(32, 32).shape == (SMALL["num_latents"], 2)  # the locality bias's places


def test_the_other_encoders_match_bimamba_in_parameters():
    count = {name: sum(p.numel() for p in _encoder(name).parameters()) for name in ENCODERS}
    assert (count["bimamba"], count["transformer"], count["mamba2"]) == (8_498_688, 8_764_928, 8_426_784)
    assert all(abs(n / count["bimamba"] - 1) < 0.05 for n in count.values())  # as their config files say


def test_transformer_blocks_attend_over_the_whole_sequence_in_no_order():
    """Attention without a mask is permutation-equivariant: permuting the tokens permutes the output. A
    causal or windowed mask, or a block that mixes along the sequence by position, breaks this."""
    torch.manual_seed(0)
    block = TransformerBlock(16, mlp_dim=32, heads=2, dim_head=8, attn_impl="sdpa").double()
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    perm = torch.randperm(40)
    torch.testing.assert_close(block(x[:, perm]), block(x)[:, perm])
    naive = TransformerBlock(16, mlp_dim=32, heads=2, dim_head=8, attn_impl="naive").double()
    naive.load_state_dict(block.state_dict())
    torch.testing.assert_close(naive(x), block(x))


def test_every_latent_of_the_transformer_sees_every_patch():
    encoder = TransformerEncoder(**SMALL).double()
    image = torch.rand(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(SMALL["dim"], dtype=torch.float64)  # not a plain sum: the output is layer-normed
    (encoder(image)[0, 0] @ probe).backward()  # the first latent, placed after the first patches
    far = image.grad[0, :, -4:, -4:]  # the last patch, at the other end of the sequence and the image
    assert far.abs().sum() > 0


@pytest.mark.parametrize(("placement", "tied"), [("interleave", True), ("append", False), ("prepend", False)])
def test_interleaved_latents_carry_their_place_and_others_do_not(placement, tied):
    """With equal latent vectors and a uniform image, only a latent's place can tell the latents apart:
    interleaved latents get the position embedding of their place in the image, as the patches do."""
    encoder = TransformerEncoder(**SMALL, placement=placement).double()
    with torch.no_grad():
        encoder.latents.zero_()
    latents = encoder(torch.full((1, 3, 32, 32), 0.5, dtype=torch.float64))[0]
    spread = (latents - latents[0]).abs().amax()
    assert (spread > 1e-6) == tied


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ENCODERS)
def test_each_encoder_trains_a_few_steps_with_arbitrary_scale_targets(encoder, data_dir, tmp_path):
    """The multi-band decoder with its locality bias reads each encoder's latent places."""
    overrides = [f"encoder={encoder}", "targets=arbitrary_scale", "debug=smoke", "trainer.compile=false"]
    run = [f"paths.data_dir={data_dir}", f"run_dir={tmp_path}", "data.eval_resolutions=[64]"]
    metrics = train(compose([*overrides, *run, "targets.resolution=[64]", "trainer.select_on=psnr_x2"]))
    assert metrics["test/images"] == 8 and "test/margin_x2" in metrics
