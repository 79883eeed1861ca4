"""Model family: shapes, gradients, latent read-back, query independence, rendering, mamba_ssm state_dicts."""

import functools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ginr.config import compose, prepare
from ginr.coords import pixel_grid, values_to_image, with_cells
from ginr.engine.build import build_model
from ginr.engine.step import StepQueries
from ginr.models.encoder import PLACEMENTS, BiMambaEncoder, insert_latents, latent_positions
from ginr.models.ginr import GINR
from ginr.models.mamba import BiMamba, MambaMixer
from tests.conftest import (
    DEFAULT_EXPERIMENT,
    EXPERIMENTS,
    MIXING,
    NOT_MIXING,
    PER_DECODER,
    WITH_BLOCKS,
    block_of,
    config_of,
    requires_cuda,
    requires_scan_kernel,
)

DIM = 32
# debug=smoke's sizes (dim 32, 2 heads x 8, 8 Fourier features, 16 latents, 32 px), and for the decoders
# that take them three layers (two blocks a stack) and these bands
SIZES = {"num_layers": 3, "bandwidths": [0.16, 0.64]}


def make_encoder(channels=3, placement="interleave", num_latents=16, **kw):
    return BiMambaEncoder(
        channels=channels, dim=DIM, depth=2, mlp_dim=64, patch_size=4, num_latents=num_latents,
        placement=placement, d_state=4, **kw,
    )  # fmt: skip


@functools.cache
def _smoke(experiment: str):
    return config_of(experiment, "debug=smoke")


LOCAL = [e for e in EXPERIMENTS if "locality" in _smoke(e).decoder]  # decoders with a locality bias
MODULATED = [e for e in EXPERIMENTS if "modulation" in _smoke(e).decoder]  # multi-band: chained scales
# block type -> its factory as a small decoder's config builds it (tests/test_fourier.py takes one)
BLOCKS = {
    block: instantiate(_smoke(next(e for e in WITH_BLOCKS if block_of(e) == block)).decoder.block)
    for block in sorted({block_of(e) for e in WITH_BLOCKS})
}


def make_decoder(experiment, channels=3, **kw):
    """The decoder of ``experiment`` as its config builds it, small; ``kw`` overrides its keys."""
    cfg = _smoke(experiment)
    sizes = {k: v for k, v in SIZES.items() if k in cfg.decoder}
    cfg = OmegaConf.merge(cfg, {"data": {"channels": channels}, "decoder": {**sizes, **kw}})
    assert cfg.decoder.latent_dim == DIM and cfg.decoder.hidden_dim == DIM
    return instantiate(cfg.decoder, _partial_=True)()  # called here: its own errors, not Hydra's


def make_model(experiment=DEFAULT_EXPERIMENT, channels=3, **kw):
    return GINR(encoder=make_encoder(channels), decoder=make_decoder(experiment, channels, **kw))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("channels, size", [(3, (16, 16)), (1, (13, 22)), (3, (20, 9))])
def test_shapes_and_finite(experiment, channels, size):
    model = make_model(experiment, channels)
    images = torch.rand(2, channels, *size)
    out = model(images, pixel_grid(*size))
    assert out.shape == (2, size[0] * size[1], channels)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_parameter_gets_a_gradient(experiment):
    model = make_model(experiment, learnable_bandwidth=True)
    out = model(torch.rand(2, 3, 16, 16), pixel_grid(16, 16))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("num_tokens, num_latents", [(16, 16), (64, 16), (9, 4), (256, 256), (5, 7)])
def test_latents_inserted_and_read_back_at_their_positions(placement, num_tokens, num_latents):
    tokens = torch.randn(2, num_tokens, 3)
    latents = torch.randn(num_latents, 3)
    positions = latent_positions(num_tokens, num_latents, placement)
    sequence = insert_latents(tokens, latents, positions)
    assert sequence.shape == (2, num_tokens + num_latents, 3)
    assert len(set(positions)) == num_latents and all(0 <= p < num_tokens + num_latents for p in positions)
    torch.testing.assert_close(sequence[:, positions], latents.expand(2, -1, -1))
    others = torch.ones(num_tokens + num_latents, dtype=torch.bool)
    others[positions] = False
    torch.testing.assert_close(sequence[:, others], tokens)  # patches keep their order
    if placement == "interleave" and num_tokens == num_latents:
        assert positions == list(range(1, 2 * num_latents, 2))


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("size", [(16, 16), (24, 12), (10, 10)])
def test_encoder_returns_hidden_states_of_the_latent_slots(placement, size):
    """Run the blocks by hand on the inserted sequence: the encoder must return exactly those rows."""
    encoder = make_encoder(placement=placement).eval()
    images = torch.rand(2, 3, *size)
    tokens = encoder.tokenizer(images)
    positions = latent_positions(tokens.shape[1], encoder.num_latents, placement)
    x = insert_latents(tokens, encoder.latents, positions)
    for block in encoder.blocks:
        x = block(x)
    torch.testing.assert_close(encoder(images), encoder.norm(x[:, positions]))


@pytest.mark.parametrize("experiment", NOT_MIXING)
def test_prediction_does_not_depend_on_other_queries(experiment):
    model = make_model(experiment).eval()
    assert not model.decoder.mixes_queries
    latents = model.encode(torch.rand(2, 3, 16, 16))
    coords = torch.rand(2, 50, 2) * 2 - 1
    full = model.decode(latents, coords)
    subset = model.decode(latents, coords[:, 10:17])
    torch.testing.assert_close(subset, full[:, 10:17], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("experiment", MIXING)
def test_query_mixing_decoders_mix_queries(experiment):
    model = make_model(experiment).eval()
    assert model.decoder.mixes_queries
    latents = model.encode(torch.rand(1, 3, 16, 16))
    coords = torch.rand(1, 50, 2) * 2 - 1
    assert not torch.allclose(model.decode(latents, coords[:, :7]), model.decode(latents, coords)[:, :7])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_chunked_render_equals_full_decode(experiment):
    model = make_model(experiment).eval()
    latents = model.encode(torch.rand(2, 3, 16, 16))
    with torch.no_grad():
        full = model.decode(latents, pixel_grid(11, 7)).transpose(1, 2).reshape(2, 3, 11, 7)
    torch.testing.assert_close(model.render(latents, 11, 7, chunk=10), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_activation_checkpointing_gives_same_gradients(experiment):
    images, coords = torch.rand(2, 3, 16, 16), pixel_grid(16, 16)
    plain = make_model(experiment)
    ckpt = make_model(experiment, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    for model in (plain, ckpt):
        model(images, coords).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_naive_attention_equals_sdpa(experiment):
    sdpa = make_model(experiment).eval()
    naive = make_model(experiment, attn_impl="naive").eval()
    naive.load_state_dict(sdpa.state_dict())
    images, coords = torch.rand(2, 3, 16, 16), pixel_grid(16, 16)
    torch.testing.assert_close(naive(images, coords), sdpa(images, coords), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("experiment", LOCAL)
def test_locality_bias_runs_and_changes_output(experiment):
    plain = make_model(experiment).eval()
    local = make_model(experiment, locality=1.0).eval()
    local.load_state_dict(plain.state_dict())
    images, coords = torch.rand(1, 3, 16, 16), pixel_grid(8, 8)
    assert not torch.allclose(local(images, coords), plain(images, coords))


def test_bad_names_fail_before_building():
    with pytest.raises(
        ValueError, match="placement must be one of interleave, append, prepend, got 'middle'"
    ):
        make_encoder(placement="middle")
    with pytest.raises(ValueError, match="attn_impl must be one of sdpa, naive, got 'flash'"):
        make_decoder(DEFAULT_EXPERIMENT, attn_impl="flash")
    with pytest.raises(ValueError, match="3-channel images, got 1"):
        make_encoder()(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("bias", [False, True])
def test_joint_direction_scan_equals_two_separate_mixers(bias):
    mixer = BiMamba(16, direction_scan="joint", backend="torch", bias=bias).double()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.05 * torch.randn_like(p))  # distinct weights per direction, bias included
    x = torch.randn(2, 19, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 19, 16, dtype=torch.float64)
    results = []
    for direction_scan in ("joint", "separate"):
        mixer.direction_scan = direction_scan
        y = mixer(x)
        results.append([y, *torch.autograd.grad((y * weight).sum(), [x, *mixer.parameters()])])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_bad_direction_scan_is_refused():
    with pytest.raises(ValueError, match="direction_scan must be one of joint, separate, got 'both'"):
        make_encoder(direction_scan="both")


def test_default_model_traces_as_one_graph():
    """torch.compile sees the whole model (encoder scans included) as one graph: no graph breaks."""
    cfg = prepare(compose(["hardware=cpu"]))
    model = build_model(cfg)
    explanation = torch._dynamo.explain(model)(torch.rand(2, 3, 32, 32), torch.rand(1, 16, 2) * 2 - 1)
    assert explanation.graph_break_count == 0, [r.reason.splitlines()[0] for r in explanation.break_reasons]


# Parameter names and shapes of mamba_ssm.Mamba(d_model=16, d_state=16, d_conv=4, expand=2), written out
# so the check runs where mamba_ssm cannot be imported.
MAMBA_SSM_SHAPES = {
    "A_log": (32, 16),
    "D": (32,),
    "in_proj.weight": (64, 16),
    "conv1d.weight": (32, 1, 4),
    "conv1d.bias": (32,),
    "x_proj.weight": (33, 32),
    "dt_proj.weight": (32, 1),
    "dt_proj.bias": (32,),
    "out_proj.weight": (16, 32),
}


def test_mamba_ssm_state_dict_loads():
    mixer = MambaMixer(16)
    state = {name: torch.randn(shape) for name, shape in MAMBA_SSM_SHAPES.items()}
    mixer.load_state_dict(state, strict=True)
    torch.testing.assert_close(mixer.A_log, state["A_log"])
    assert mixer(torch.randn(2, 5, 16)).shape == (2, 5, 16)


@requires_cuda
@pytest.mark.cuda
def test_mamba_ssm_module_state_dict_loads_and_matches():
    mamba_ssm = pytest.importorskip("mamba_ssm")
    reference = mamba_ssm.Mamba(d_model=64).cuda()
    mixer = MambaMixer(64, backend="torch").cuda()
    mixer.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 40, 64, device="cuda")
    torch.testing.assert_close(mixer(x), reference(x), rtol=2e-3, atol=2e-3)


@requires_cuda
@requires_scan_kernel
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encoder_same_latents_and_grads_on_both_backends(dtype):
    cuda_enc = make_encoder(backend="cuda").cuda()
    torch_enc = make_encoder(backend="torch").cuda()
    torch_enc.load_state_dict(cuda_enc.state_dict())
    images = torch.rand(4, 3, 32, 32, device="cuda")
    weight = torch.randn(4, 16, DIM, device="cuda")  # a random projection (see the compiled test)
    outs = []
    for enc in (cuda_enc, torch_enc):
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            latents = enc(images)
        (latents.float() * weight).sum().backward()
        outs.append((latents.float(), {n: p.grad for n, p in enc.named_parameters()}))
    limit = 2e-3 if dtype == torch.float32 else 5e-2
    (lat_c, grads_c), (lat_t, grads_t) = outs
    assert ((lat_c - lat_t).norm() / lat_t.norm()).item() < limit
    for name, g in grads_t.items():
        err = ((grads_c[name] - g).norm() / g.norm().clamp_min(1e-12)).item()
        assert err < limit * 5, f"{name}: gradient relative error {err:.2e}"


@pytest.mark.parametrize("experiment", NOT_MIXING)
def test_checkpointed_query_chunks_give_same_outputs_and_gradients(experiment):
    images, coords = torch.rand(2, 3, 16, 16), pixel_grid(16, 16)
    plain = make_model(experiment)
    lean = GINR(encoder=make_encoder(), decoder=make_decoder(experiment), checkpoint_queries=50)
    lean.load_state_dict(plain.state_dict())
    outs = [model(images, coords) for model in (plain, lean)]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    for out in outs:
        out.square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), lean.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("experiment", MIXING)
def test_checkpointed_query_chunks_refuse_query_mixing_blocks(experiment):
    with pytest.raises(ValueError, match="needs a decoder whose blocks do not mix queries") as err:
        GINR(encoder=make_encoder(), decoder=make_decoder(experiment), checkpoint_queries=50)
    assert f"not {block_of(experiment)}" in str(err.value)  # names the block type that mixes them


@pytest.mark.parametrize("experiment", MODULATED)
@pytest.mark.parametrize("modulation", ["additive", "multiplicative"])
def test_multiband_chain_is_not_a_sum_of_per_scale_terms(experiment, modulation):
    # A sum of per-scale terms g0(f0) + g1(f1) has zero mixed second difference in (f0, f1); the carried
    # value through a learned layer and a nonlinearity makes the fine scale depend on the coarse one.
    decoder = make_model(experiment, modulation=modulation).decoder.eval()
    f0, f1, d0, d1 = (torch.randn(1, 5, decoder.bands[0].head.in_features) for _ in range(4))
    out = lambda a, b: decoder.chain([a, b])
    mixed = out(f0 + d0, f1 + d1) - out(f0 + d0, f1) - out(f0, f1 + d1) + out(f0, f1)
    assert mixed.abs().max() > 1e-3


@pytest.mark.parametrize("experiment", MODULATED)
def test_additive_and_multiplicative_modulation_differ_on_the_same_weights(experiment):
    torch.manual_seed(0)
    additive = make_model(experiment, modulation="additive").eval()
    multiplicative = make_model(experiment, modulation="multiplicative").eval()
    multiplicative.load_state_dict(additive.state_dict())
    images, coords = torch.rand(1, 3, 16, 16), torch.rand(1, 7, 2) * 2 - 1
    assert not torch.allclose(additive(images, coords), multiplicative(images, coords))


def test_patch_padding_pads_every_side_and_centres_follow():
    from ginr.models.encoder import PatchTokenizer

    tokenizer = PatchTokenizer(channels=1, dim=4, patch_size=3, padding=1)
    centres = tokenizer.centres(7, 7, torch.device("cpu"))
    assert centres.shape == (9, 2)  # (7 + 2) / 3 = 3 patches a side
    # the first patch covers padded pixels 0..2 = image pixels -1..1: its centre is image pixel 0's
    assert centres[0].tolist() == pytest.approx([2 * 0.5 / 7 - 1] * 2)
    blank, dot = torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 7, 7)
    dot[0, 0, 0, 0] = 1.0  # the top-left pixel lands in the first patch only, one pixel in from its corner
    changed = (tokenizer(dot) - tokenizer(blank)).abs().sum(-1)[0] > 0
    assert tokenizer(blank).shape == (1, 9, 4) and changed.tolist() == [True] + [False] * 8


@pytest.mark.parametrize("experiment, locality", [(e, 0.0) for e in EXPERIMENTS] + [(e, 1.0) for e in LOCAL])
def test_shared_coordinates_give_the_same_outputs_and_gradients_as_per_image_copies(experiment, locality):
    """Coordinates of batch 1 run the coordinate-only work once; copies per image run it B times."""
    torch.manual_seed(0)
    extra = {"locality": locality} if experiment in LOCAL else {}
    model = make_model(experiment, learnable_bandwidth=True, **extra).double()
    images, coords = torch.rand(3, 3, 16, 16, dtype=torch.float64), pixel_grid(8, 8, dtype=torch.float64)
    outputs, grads = [], []
    for c in (coords, coords.expand(3, -1, -1).contiguous()):
        model.zero_grad()
        out = model(images, c)
        out.square().mean().backward()
        outputs.append(out)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(outputs[0], outputs[1])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


@pytest.mark.parametrize("experiment", WITH_BLOCKS)
def test_shared_coordinates_run_the_band_stacks_at_batch_one(experiment):
    """Unless their blocks meet the latents (cross-attention), which makes them per image."""
    model = make_model(experiment)
    block = model.decoder.bands[0].band.blocks[0]
    shared = block(torch.rand(1, 5, DIM), torch.rand(4, 16, DIM)).shape[0]  # 1, or 4 if it reads the latents
    seen = []
    model.decoder.bands[0].band.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    model(torch.rand(4, 3, 16, 16), pixel_grid(8, 8))
    model(torch.rand(4, 3, 16, 16), pixel_grid(8, 8).expand(4, -1, -1))
    assert seen == [shared, 4]
    if experiment == DEFAULT_EXPERIMENT:  # the recommended variant shares its band stacks' work
        assert shared == 1


@requires_cuda
@requires_scan_kernel
@pytest.mark.cuda
def test_compiled_encoder_matches_eager_on_the_kernels():
    encoder = make_encoder(backend="cuda").cuda()
    images = torch.rand(4, 3, 32, 32, device="cuda")
    # a random projection: the mean square of layer-normed latents is nearly constant, its gradient noise
    weight = torch.randn(4, 16, DIM, device="cuda")
    results = []
    for forward in (encoder, torch.compile(encoder, fullgraph=True)):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            latents = forward(images)
        (latents.float() * weight).sum().backward()
        results.append((latents.float(), {n: p.grad.clone() for n, p in encoder.named_parameters()}))
        encoder.zero_grad(set_to_none=True)
    (eager, eager_grads), (compiled, compiled_grads) = results
    assert ((compiled - eager).norm() / eager.norm()).item() < 2e-2
    for name, g in eager_grads.items():
        err = ((compiled_grads[name] - g).norm() / g.norm().clamp_min(1e-12)).item()
        assert err < 1e-1, f"{name}: gradient relative error {err:.2e}"


@pytest.mark.parametrize("experiment", PER_DECODER)
def test_cell_conditioning_reads_each_querys_pixel_size(experiment):
    model = make_model(experiment, cell_conditioning=True).eval()  # make_decoder's resolution: 32 px
    latents = model.encode(torch.rand(2, 3, 16, 16))
    grid = pixel_grid(8, 8)
    native, at_2x, at_4x = (with_cells(grid, r, r) for r in (32, 64, 128))
    with torch.no_grad():
        torch.testing.assert_close(model.decode(latents, grid), model.decode(latents, native))  # the default
        assert torch.equal(model.decode(latents, at_4x), model.decode(latents, grid))  # zero-initialised
        torch.nn.init.normal_(model.decoder.cell.proj.weight)
        assert torch.equal(model.decode(latents, grid), model.decode(latents, native))  # log2 1 = 0
        assert not torch.allclose(model.decode(latents, at_2x), model.decode(latents, grid))
    seen = []
    model.decoder.cell.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    model.render(latents, 64, 64, chunk=512)  # a render's queries are pixels of its own grid
    assert seen and all(torch.equal(cells, torch.full_like(cells, 2 / 64)) for cells in seen)
    with torch.no_grad():
        torch.testing.assert_close(  # cells follow their queries through the render's chunks
            model.render(latents, 64, 64, chunk=512),
            values_to_image(model.decode(latents, with_cells(pixel_grid(64, 64), 64, 64)), 64, 64),
        )
    loss = model(torch.rand(2, 3, 16, 16), at_2x).square().mean()
    loss.backward()
    assert model.decoder.cell.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("experiment", PER_DECODER)
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_an_image_skip_starts_at_its_upscaler_and_learns_the_residual(experiment, mode):
    model = make_model(experiment, image_skip=mode)
    images = torch.rand(2, 3, 16, 16)
    upscaled = torch.nn.functional.interpolate(images, size=(40, 40), mode=mode, align_corners=False)
    with torch.no_grad():
        latents = model.encode(images)
        torch.testing.assert_close(model.render(latents, 40, 40, images=images, chunk=300), upscaled)
        torch.testing.assert_close(model.render(latents, 16, 16, images=images), images)  # exact at 1x
    assert model.reads_images and not make_model(experiment).reads_images
    with pytest.raises(ValueError, match=f"{mode} at each query.*pass images="):
        model.decode(latents, pixel_grid(4, 4))
    model(images, pixel_grid(40, 40)).sub(torch.rand(2, 1600, 3)).square().mean().backward()
    bands = getattr(model.decoder, "bands", None)  # a multi-band decoder: a head per band
    heads = [model.decoder.out[-1]] if bands is None else [band.head for band in bands]
    assert all(head.weight.grad.abs().sum() > 0 for head in heads)
    lean = GINR(encoder=model.encoder, decoder=model.decoder, checkpoint_queries=300)
    for head in heads:
        torch.nn.init.normal_(head.weight, std=0.1)
    coords = pixel_grid(40, 40)
    torch.testing.assert_close(lean(images, coords), model(images, coords))  # chunked: each chunk its skip


def test_step_queries_carry_the_pixel_size_of_each_resolution():
    queries = StepQueries(8, seed=0, target_resolutions=[16], target_queries=5, cells=True)
    images, high = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    coords, targets = queries(3, images, high)
    assert coords.shape == (1, 64 + 5, 4) and targets.shape == (2, 64 + 5, 3)
    assert torch.equal(coords[0, :64, 2:], torch.full((64, 2), 2 / 8))
    assert torch.equal(coords[0, 64:, 2:], torch.full((5, 2), 2 / 16))
    plain, _ = StepQueries(8, seed=0, target_resolutions=[16], target_queries=5)(3, images, high)
    assert torch.equal(coords[..., :2], plain)  # the same pixels, with their sizes
