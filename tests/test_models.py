"""Model family: shapes, gradients, latent read-back, query independence, rendering, mamba_ssm state_dicts."""

import functools
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ginr.config import compose, prepare
from ginr.coords import pixel_grid, values_to_image, with_cells
from ginr.engine.build import build_model
from ginr.engine.step import StepQueries
from ginr.models import mamba as mamba_module
from ginr.models.conditioning import InputWindow, LocalityBias, dct_basis
from ginr.models.encoder import BiMambaEncoder
from ginr.models.ginr import GINR
from ginr.models.layers import ATTN_IMPLS, Attention
from ginr.models.layout import PLACEMENTS, insert_latents, latent_positions
from ginr.models.mamba import DIRECTION_SCANS, BiMamba, MambaMixer
from ginr.ops import backend
from ginr.ops.selective_scan import selective_scan_ref
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
    """The encoder returns, in latent order and normed, the last block's states at the slots where its
    latents went in: the slots found by the latents' own values in the first block's input."""
    encoder = make_encoder(placement=placement).eval()
    images = torch.rand(2, 3, *size)
    seen = {}
    encoder.blocks[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("input", args[0]))
    encoder.blocks[-1].register_forward_hook(lambda m, args, out: seen.__setitem__("output", out))
    with torch.no_grad():
        latents = encoder(images)
    sequence = seen["input"]
    num_tokens = sequence.shape[1] - encoder.num_latents
    assert num_tokens == encoder.tokenizer(images).shape[1]
    slots = []
    for latent in encoder.latents:
        matches = (sequence == latent).all(-1).all(0).nonzero().flatten().tolist()
        assert len(matches) == 1, f"a latent is in {len(matches)} slots"
        slots.append(matches[0])
    assert slots == latent_positions(num_tokens, encoder.num_latents, placement)
    patches = [row for row in range(sequence.shape[1]) if row not in slots]
    torch.testing.assert_close(sequence[:, patches], encoder.tokenizer(images), rtol=0, atol=0)
    torch.testing.assert_close(latents, encoder.norm(seen["output"][:, slots]), rtol=0, atol=0)


@pytest.mark.parametrize("num_tokens, num_latents, positions", [(6, 3, [2, 5, 8]), (2, 4, [0, 2, 3, 5])])
def test_interleaved_latents_follow_their_share_of_patches(num_tokens, num_latents, positions):
    """Worked out by hand: latent i ends the first (i + 1) / M of the sequence: 6 patches, 3 latents ->
    p p L p p L p p L; 2 patches, 4 latents -> L p L L p L."""
    assert latent_positions(num_tokens, num_latents, "interleave") == positions


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


def test_locality_bias_on_values_worked_out_by_hand():
    """-strength * (distance / spacing)^2 with spacing = 2 / sqrt(M): 0 at the query's own latent, the
    largest; four latents at the centres of the quarters of the image (spacing 1)."""
    positions = torch.tensor([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    bias = LocalityBias(positions=positions, strength=0.7)(torch.tensor([[[-0.5, -0.5], [0.5, 0.0]]]))
    want = torch.tensor([[0.0, -0.7, -0.7, -1.4], [-0.7 * 1.25, -0.7 * 1.25, -0.7 * 0.25, -0.7 * 0.25]])
    torch.testing.assert_close(bias, want[None, None])
    with pytest.raises(ValueError, match=r"latent positions of shape \(M, 2\), got \(4,\)"):
        LocalityBias(positions=torch.zeros(4), strength=1.0)


def smoke_latent_grid() -> torch.Tensor:
    """Where debug=smoke's 16 latents sit in a 32 px input: one after each of its 8 px patches, so at the
    patch centres, pixel 8 i + 3.5 of 32 -> (2 i + 1) / 4 - 1 on each axis (``ginr.coords``)."""
    centres = torch.tensor([-0.75, -0.25, 0.25, 0.75])
    return torch.stack(torch.meshgrid(centres, centres, indexing="ij"), dim=-1).reshape(-1, 2)


@pytest.mark.parametrize("experiment", LOCAL)
@pytest.mark.parametrize("strength", [0.5, 2.0])
def test_locality_bias_makes_each_query_attend_most_to_the_latents_near_it(experiment, strength):
    """With every latent alike, the modulation attention's weights are the bias's softmax alone, read as
    the gradient of its output by each latent: exp(-strength (d / spacing)^2), normalised."""
    decoder = make_decoder(experiment, locality=strength).double().eval()
    grid = smoke_latent_grid().double()
    torch.testing.assert_close(decoder.locality.positions.double(), grid)
    latents = torch.randn(1, 1, DIM, dtype=torch.float64).repeat(1, 16, 1).requires_grad_()
    queries = torch.cat([grid, torch.tensor([[0.1, -0.6]], dtype=torch.float64)])[None]
    seen = []
    decoder.modulation.register_forward_hook(lambda m, args, out: seen.append(out))
    decoder(latents, queries)
    direction = torch.randn(DIM, dtype=torch.float64)
    spacing = 2 / 16**0.5
    for n, query in enumerate(queries[0]):
        grad = torch.autograd.grad(seen[0][0, n] @ direction, latents, retain_graph=True)[0][0]
        weights = grad.norm(dim=-1) / grad.norm(dim=-1).sum()
        want = torch.softmax(-strength * ((grid - query).square().sum(-1) / spacing**2), dim=0)
        torch.testing.assert_close(weights, want, rtol=1e-6, atol=1e-9)
        assert weights.argmax() == (grid - query).norm(dim=-1).argmin()
        if n < 16:  # a query at a latent's place: that latent clearly first
            assert weights[n] > 1.5 * weights.sort().values[-2]


CELEBA178 = {"resolution": 178, "patch_size": 9, "patch_padding": 1, "num_latents": 256}


def expected_latent_places(resolution: int, patch_size: int, patch_padding: int, num_latents: int):
    """Each interleaved latent's place, found from the encoder's own sequence: the patches between the
    previous latent and it (its share), the centre of their pixels in ``ginr.coords``'s convention; a
    share that wraps from a row's end to the next row's start: the patch next to the latent. Also the
    wrapping shares."""
    side = -(-(resolution + 2 * patch_padding) // patch_size)
    tokens = torch.arange(side * side, dtype=torch.float64)[None, :, None]
    marks = torch.full((num_latents, 1), -1.0, dtype=torch.float64)
    positions = latent_positions(side * side, num_latents, "interleave")
    sequence = insert_latents(tokens, marks, positions)[0, :, 0]

    def pixel(patch: int) -> float:  # the centre of patch's pixels along an axis
        return (2 * (patch * patch_size - patch_padding + (patch_size - 1) / 2) + 1) / resolution - 1

    places, wraps, share = [], [], []
    for token in sequence.long().tolist():
        if token >= 0:
            share.append(token)
            continue
        rows, cols = [k // side for k in share], [k % side for k in share]
        if len(set(rows)) > 1:
            assert len(share) == 2, "only shares of two patches, one each side of a row's end, are expected"
            wraps.append(share)
            rows, cols = rows[-1:], cols[-1:]
        places.append([sum(pixel(r) for r in rows) / len(rows), sum(pixel(c) for c in cols) / len(cols)])
        share = []
    return torch.tensor(places), wraps


def test_latent_places_follow_the_encoders_placement_at_400_patches_and_256_latents():
    """celeba178: 178 px + 1 px padding = 20 x 20 patches of 9 px, 256 latents among them (shares of one
    or two patches). The encoder's latent_coords and the decoder's locality bias put each latent there."""
    want, wraps = expected_latent_places(**CELEBA178)
    assert wraps == [[79, 80], [179, 180], [279, 280], [379, 380]]
    # by hand: patch j covers image pixels 9 j - 1 .. 9 j + 7, centred on pixel 9 j + 3 -> (18 j + 7) / 178 - 1;
    # the first shares: [0], [1, 2], [3], [4, 5] of row 0
    first = torch.tensor([[7.0, 7.0], [7.0, (25 + 43) / 2], [7.0, 61.0], [7.0, (79 + 97) / 2]]) / 178 - 1
    torch.testing.assert_close(want[:4].float(), first)
    # latent 51's share wraps from the end of row 3 to the start of row 4: [79, 80]; it sits at patch 80
    torch.testing.assert_close(want[51].float(), torch.tensor([18 * 4 + 7, 7.0]) / 178 - 1)
    encoder = BiMambaEncoder(
        channels=3, dim=DIM, depth=1, mlp_dim=8, d_state=2, patch_size=9, patch_padding=1, num_latents=256
    )
    torch.testing.assert_close(encoder.latent_coords(178, 178), want.float())
    sizes = {k: v for k, v in CELEBA178.items() if k != "resolution"}
    decoder = make_decoder(LOCAL[0], locality=1.0, resolution=178, **sizes)
    torch.testing.assert_close(decoder.locality.positions, want.float())
    bias = decoder.locality(want.float()[None])[0, 0]  # a query at each latent's place
    assert torch.equal(bias.argmax(-1), torch.arange(256))


@pytest.mark.parametrize("overrides", [["data=celeba178"], ["data=celeba178", "hardware=cpu"], []])
def test_configs_give_the_decoder_the_encoders_latent_places(overrides):
    """Through the configs (encoder keys interpolated into the decoder's), at any patch and latent count."""
    cfg = config_of(DEFAULT_EXPERIMENT, "targets=arbitrary_scale", *overrides)
    cfg.encoder.update(dim=DIM, depth=1, mlp_dim=8)
    cfg.decoder.update(hidden_dim=DIM, num_layers=1, heads=2, dim_head=8, num_fourier=8)
    encoder, decoder = instantiate(cfg.encoder), instantiate(cfg.decoder)
    size = cfg.data.resolution
    assert decoder.locality.positions.shape == (encoder.num_latents, 2)
    torch.testing.assert_close(decoder.locality.positions, encoder.latent_coords(size, size))


@pytest.mark.parametrize("placement", ["append", "prepend"])
def test_locality_refuses_latents_without_a_place_in_the_image(placement):
    with pytest.raises(ValueError, match=f"only interleaved with the patches .*got placement='{placement}'"):
        make_decoder(LOCAL[0], locality=1.0, placement=placement)


@pytest.mark.parametrize("impl", ATTN_IMPLS)
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_is_the_softmax_of_scaled_dot_products(impl, cross, with_bias):
    """softmax(q k^T / sqrt(dim_head) + bias) v per head, on the module's own weights (q of batch 1
    against a batch of contexts in cross-attention); heads laid out (h d), keys before values."""
    heads, dim_head = 2, 4
    attn = Attention(6, context_dim=5 if cross else None, heads=heads, dim_head=dim_head, impl=impl).double()
    x = 2 * torch.randn(1 if cross else 3, 7, 6, dtype=torch.float64)
    context = 2 * torch.randn(3, 4, 5, dtype=torch.float64) if cross else x
    bias = torch.randn(1, 1, 7, context.shape[1], dtype=torch.float64) if with_bias else None
    inner = heads * dim_head
    w_k, w_v = attn.to_kv.weight[:inner], attn.to_kv.weight[inner:]
    q, k, v = (
        rearrange(t @ w.T, "b n (h d) -> b h n d", h=heads)
        for t, w in ((x, attn.to_q.weight), (context, w_k), (context, w_v))
    )
    logits = einsum(q.expand(k.shape[0], -1, -1, -1), k, "b h n d, b h m d -> b h n m")
    weights = torch.softmax(logits / math.sqrt(dim_head) + (0 if bias is None else bias), dim=-1)
    heads_out = rearrange(einsum(weights, v, "b h n m, b h m d -> b h n d"), "b h n d -> b n (h d)")
    want = heads_out @ attn.to_out.weight.T + attn.to_out.bias
    with torch.no_grad():
        got = attn(x, context=context if cross else None, bias=bias)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


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


@pytest.fixture(params=["torch", "ref"])
def scan(request, monkeypatch) -> Iterator[None]:
    """The scan the mixers run: the PyTorch backend, or the loop reference put in its place (which the
    test must then have reached)."""
    calls = []

    def reference(*args, backend: str, **kwargs) -> torch.Tensor:
        calls.append(backend)
        return selective_scan_ref(*args, **kwargs)

    if request.param == "ref":
        monkeypatch.setattr(mamba_module, "selective_scan", reference)
    yield
    assert request.param == "torch" or calls, "the reference scan never ran"


def distinct_bimamba(direction_scan: str) -> BiMamba:
    torch.manual_seed(0)
    mixer = BiMamba(8, d_state=4, direction_scan=direction_scan, backend="torch").double()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the two directions' weights apart
    return mixer


@pytest.mark.parametrize("direction_scan", DIRECTION_SCANS)
def test_bimamba_is_the_mean_of_a_scan_and_a_scan_of_the_reversed_sequence(direction_scan, scan):
    """(forward_mixer(x) + reversed(backward_mixer(reversed(x)))) / 2, each mixer one causal scan."""
    mixer = distinct_bimamba(direction_scan)
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    with torch.no_grad():
        backward = mixer.backward_mixer(x.flip(1)).flip(1)
        want = 0.5 * (mixer.forward_mixer(x) + backward)
        torch.testing.assert_close(mixer(x), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("direction_scan", DIRECTION_SCANS)
def test_bimamba_outputs_depend_on_tokens_on_both_sides(direction_scan, scan):
    """The first output moves with the last token, the last output with the first, while each mixer
    alone is causal: its output at t ignores the tokens after t."""
    mixer = distinct_bimamba(direction_scan)
    x = torch.randn(1, 11, 8, dtype=torch.float64, requires_grad=True)
    direction = torch.randn(8, dtype=torch.float64)
    y = mixer(x)
    first_on_last = torch.autograd.grad(y[0, 0] @ direction, x, retain_graph=True)[0][0, -1]
    last_on_first = torch.autograd.grad(y[0, -1] @ direction, x)[0][0, 0]
    assert first_on_last.abs().max() > 1e-8 and last_on_first.abs().max() > 1e-8
    causal = mixer.forward_mixer(x)
    for t in (0, 5):
        grad = torch.autograd.grad(causal[0, t] @ direction, x, retain_graph=True)[0][0]
        assert grad[t].abs().max() > 1e-8 and torch.equal(grad[t + 1 :], torch.zeros_like(grad[t + 1 :]))


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_first_and_last_latents_see_both_ends_of_the_image(placement, scan):
    """Whatever the placement, a change in the first patch reaches the last latent and a change in the
    last patch the first latent (through the reversed scan for latents before it)."""
    encoder = make_encoder(placement=placement).double().eval()
    images = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    top_left, bottom_right = images.clone(), images.clone()
    top_left[..., :4, :4] += 0.5  # the first 4 x 4 patch
    bottom_right[..., -4:, -4:] += 0.5  # the last
    with torch.no_grad():
        plain, moved_first, moved_last = (encoder(i) for i in (images, top_left, bottom_right))
    assert (moved_last[:, 0] - plain[:, 0]).abs().max() > 1e-6
    assert (moved_first[:, -1] - plain[:, -1]).abs().max() > 1e-6


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


def mamba_ssm_step_by_step(
    state: dict[str, torch.Tensor], hidden: torch.Tensor, d_state: int
) -> torch.Tensor:
    """mamba_ssm's ``Mamba.step`` (its recurrent decoding without kernels: a rolling convolution state and
    ``ssm_state * exp(dt A) + x dt B``) written out over a sequence, on a mamba_ssm state_dict."""
    dt_rank = state["dt_proj.weight"].shape[1]
    conv_weight = state["conv1d.weight"][:, 0]  # (d_inner, d_conv)
    # A, D and the dt bias in float32 whatever the weights' dtype, as mamba_ssm takes them
    A, D, dt_bias = (
        t.float().to(hidden.dtype)
        for t in (-torch.exp(state["A_log"].float()), state["D"], state["dt_proj.bias"])
    )
    batch, length, _ = hidden.shape
    conv_state = hidden.new_zeros(batch, *conv_weight.shape)
    ssm_state = hidden.new_zeros(batch, conv_weight.shape[0], d_state)
    outs = []
    for t in range(length):
        x, z = (hidden[:, t] @ state["in_proj.weight"].T).chunk(2, dim=-1)
        conv_state = torch.cat([conv_state[..., 1:], x[..., None]], dim=-1)
        x = (conv_state * conv_weight).sum(-1) + state["conv1d.bias"]
        x = x * torch.sigmoid(x)
        dt, B, C = torch.split(x @ state["x_proj.weight"].T, [dt_rank, d_state, d_state], dim=-1)
        dt = torch.log1p(torch.exp(dt @ state["dt_proj.weight"].T + dt_bias))
        ssm_state = ssm_state * torch.exp(dt[..., None] * A) + (x * dt)[..., None] * B[:, None]
        y = (ssm_state * C[:, None]).sum(-1) + D * x
        outs.append((y * z * torch.sigmoid(z)) @ state["out_proj.weight"].T)
    return torch.stack(outs, dim=1)


def test_mamba_ssm_state_dict_gives_mamba_ssms_outputs():
    """A state_dict of mamba_ssm.Mamba's names and shapes loads strictly, and the mixer computes with it
    what mamba_ssm's step-by-step decoding computes (A = -exp(A_log), dt through its bias and softplus,
    x_proj split dt | B | C, a causal convolution, the silu gate, the D skip)."""
    torch.manual_seed(0)
    state = {name: 0.3 * torch.randn(shape, dtype=torch.float64) for name, shape in MAMBA_SSM_SHAPES.items()}
    state["A_log"] = torch.log(torch.arange(1, 17, dtype=torch.float64)).repeat(32, 1) + state["A_log"]
    state["dt_proj.bias"] = state["dt_proj.bias"] - 3.0  # dt about softplus(-3) = 0.05, as initialised
    mixer = MambaMixer(16, backend="torch").double()
    mixer.load_state_dict(state, strict=True)
    hidden = torch.randn(2, 9, 16, dtype=torch.float64)
    with torch.no_grad():
        want = mamba_ssm_step_by_step(state, hidden, 16)
        torch.testing.assert_close(mixer(hidden), want, rtol=1e-9, atol=1e-12)


def relative_errors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: ((got[name] - w).norm() / w.norm().clamp_min(1e-12)).item() for name, w in want.items()}


@requires_cuda
@pytest.mark.cuda
def test_mamba_ssm_module_state_dict_loads_and_matches():
    """mamba_ssm.Mamba's own weights (moved off their initial values) in the mixer, on every backend this
    machine has: the same outputs and the same gradients, of the input and of every parameter by name."""
    mamba_ssm = pytest.importorskip("mamba_ssm")
    torch.manual_seed(0)
    reference = mamba_ssm.Mamba(d_model=64).cuda()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = torch.randn(2, 40, 64, device="cuda", requires_grad=True)
    weight = torch.randn(2, 40, 64, device="cuda")

    def run(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # full float32 convolutions
            out = module(x)
            names, params = zip(*module.named_parameters(), strict=True)
            grads = torch.autograd.grad((out * weight).sum(), [x, *params])
        return {"out": out.detach(), "x.grad": grads[0], **dict(zip(names, grads[1:], strict=True))}

    want = run(reference)
    kernels = {"cuda": backend.selective_scan_cuda, "triton": backend.selective_scan_triton}
    for name in ["torch", *(k for k, kernel in kernels.items() if kernel is not None)]:
        mixer = MambaMixer(64, backend=name).cuda()
        mixer.load_state_dict(reference.state_dict(), strict=True)
        errors = relative_errors(run(mixer), want)
        assert errors["out"] < 2e-3, f"{name}: output relative error {errors['out']:.2e}"
        bad = {k: f"{e:.1e}" for k, e in errors.items() if e > 1e-2}
        assert not bad, f"{name}: gradient relative errors {bad}"


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


def chain_by_hand(decoder, features: list[torch.Tensor]) -> torch.Tensor:
    """The documented chain on the decoder's weights: h = 0; for each band, coarse to fine,
    h = GELU(W_s (f_s + h) + b_s), out += head_s(h)."""
    hidden, out = 0, 0
    for band, feature in zip(decoder.bands, features, strict=True):
        carry = band.carry[0]
        hidden = F.gelu(F.linear(feature + hidden, carry.weight, carry.bias))
        out = out + F.linear(hidden, band.head.weight, band.head.bias)
    return out


def recorded(fn, into: list):
    """``fn``, keeping each result in ``into``."""

    def call(*args):
        into.append(fn(*args))
        return into[-1]

    return call


THREE_BANDS = [0.1, 0.3, 0.9]  # more than two: the order of the bands shows


@pytest.mark.parametrize("experiment", MODULATED)
def test_multiband_chain_carries_a_nonlinear_value_from_coarse_to_fine(experiment):
    """decoder.chain is chain_by_hand, over three bands whose order changes the result."""
    decoder = make_decoder(experiment, bandwidths=THREE_BANDS).double()
    with torch.no_grad():
        for band in decoder.bands:  # a carry layer big enough that GELU bends
            band.carry[0].weight.mul_(4.0)
    features = [torch.randn(2, 5, DIM, dtype=torch.float64) for _ in THREE_BANDS]
    want = chain_by_hand(decoder, features)
    torch.testing.assert_close(decoder.chain(features), want, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(chain_by_hand(decoder, features[::-1]), want)  # the order is seen


@pytest.mark.parametrize("experiment", MODULATED)
def test_multiband_forward_modulates_every_band_and_chains_them_in_order(experiment):
    """Each band's modulation stack reads m = q + CrossAttn(q, latents); the output is the chain over the
    bands' features in band order."""
    decoder = make_decoder(experiment, bandwidths=THREE_BANDS).double().eval()
    seen: dict[str, list[torch.Tensor]] = {"q": [], "attn": [], "m": [], "feature": []}
    decoder.query_proj.register_forward_hook(lambda m, args, out: seen["q"].append(out))
    decoder.modulation.register_forward_hook(lambda m, args, out: seen["attn"].append(out))
    for band in decoder.bands:
        band.modulation.register_forward_pre_hook(lambda m, args: seen["m"].append(args[0]))
        band.feature = recorded(band.feature, seen["feature"])
    latents = torch.randn(2, 16, DIM, dtype=torch.float64)
    with torch.no_grad():
        out = decoder(latents, torch.rand(1, 9, 2, dtype=torch.float64) * 2 - 1)
    (q,), (attn,) = seen["q"], seen["attn"]
    assert len(seen["m"]) == len(THREE_BANDS)
    for m in seen["m"]:
        torch.testing.assert_close(m, q + attn, rtol=0, atol=0)
    torch.testing.assert_close(out, chain_by_hand(decoder, seen["feature"]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("experiment", MODULATED)
@pytest.mark.parametrize("modulation", ["additive", "multiplicative"])
def test_band_features_add_or_multiply_the_modulation_as_named(experiment, modulation):
    """A band's feature: band(g) + mod(m) + skip(g) (additive) or band(g) * mod(m) + skip(g)
    (multiplicative), g the band's Fourier features of the coordinates: a zero modulation leaves
    skip(g) alone in the multiplicative form, band(g) + skip(g) in the additive."""
    band = make_decoder(experiment, modulation=modulation).double().bands[0]
    parts: dict[str, torch.Tensor] = {}
    for name in ("band", "modulation", "skip"):
        getattr(band, name).register_forward_hook(
            lambda m, args, out, name=name: parts.__setitem__(name, out)
        )
    band.band.register_forward_pre_hook(lambda m, args: parts.__setitem__("g", args[0]))
    band.modulation.register_forward_pre_hook(lambda m, args: parts.__setitem__("m", args[0]))
    coords = torch.rand(1, 6, 2, dtype=torch.float64) * 2 - 1
    m, latents = torch.randn(2, 6, DIM, dtype=torch.float64), torch.randn(2, 16, DIM, dtype=torch.float64)
    with torch.no_grad():
        feature = band.feature(coords, m, latents)
    torch.testing.assert_close(parts["g"], band.fourier(coords), rtol=0, atol=0)
    assert parts["m"] is m
    mixed = (
        parts["band"] * parts["modulation"]
        if modulation == "multiplicative"
        else parts["band"] + parts["modulation"]
    )
    torch.testing.assert_close(feature, mixed + parts["skip"], rtol=1e-12, atol=1e-12)
    alone = parts["skip"] if modulation == "multiplicative" else parts["band"] + parts["skip"]
    band.modulation.register_forward_hook(lambda m, args, out: torch.zeros_like(out))
    with torch.no_grad():
        unmodulated = band.feature(coords, m, latents)
    torch.testing.assert_close(unmodulated, alone.expand_as(unmodulated), rtol=1e-12, atol=1e-12)


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


def test_the_input_window_gathers_the_pixels_around_each_query_and_its_offset():
    window = InputWindow(dim=4, channels=2, size=3)
    images = torch.arange(2 * 2 * 5 * 6, dtype=torch.float32).reshape(2, 2, 5, 6)
    seen = []
    window.proj.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    centres = pixel_grid(5, 6).reshape(5, 6, 2)
    # the centre of pixel (2, 3), a quarter pixel right of it, and the corner pixel (0, 0)
    coords = torch.stack([centres[2, 3], centres[2, 3] + torch.tensor([0.0, 0.25 * 2 / 6]), centres[0, 0]])
    window(*window.gather(images, coords.unsqueeze(0)))
    features = seen[0]  # (B, N, C * 3 * 3 + 2)
    assert features.shape == (2, 3, 2 * 9 + 2)
    inner = images[:, :, 1:4, 2:5].flatten(1)  # rows 1-3, columns 2-4, channel by channel
    torch.testing.assert_close(features[:, 0, :18], inner)
    torch.testing.assert_close(features[:, 1, :18], inner)  # the same nearest pixel
    torch.testing.assert_close(features[:, 1, 18:], torch.tensor([0.0, 0.25]).expand(2, 2))
    corner = images[:, :, [0, 0, 1]][:, :, :, [0, 0, 1]].flatten(1)  # the border pixels extend outwards
    torch.testing.assert_close(features[:, 2, :18], corner)
    torch.testing.assert_close(features[:, 0, 18:], torch.zeros(2, 2))
    seen.clear()
    even = InputWindow(dim=4, channels=2, size=2)  # the window spans the query: its pixel and the next
    even.proj.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    past = centres[2, 3] + torch.tensor([0.6 * 2 / 5, 0.75 * 2 / 6])  # 0.6 and 0.75 pixels past (2, 3)
    even(*even.gather(images, past.view(1, 1, 2)))
    torch.testing.assert_close(seen[0][:, 0, :8], images[:, :, 2:4, 3:5].flatten(1))
    torch.testing.assert_close(seen[0][:, 0, 8:], torch.tensor([0.6, 0.75]).expand(2, 2))


@pytest.mark.parametrize("experiment", PER_DECODER)
def test_an_input_window_starts_at_zero_and_learns(experiment):
    plain, model = make_model(experiment), make_model(experiment, input_window=3)
    assert model.reads_images and not plain.reads_images
    assert model.load_state_dict(plain.state_dict(), strict=False).missing_keys == [
        "decoder.window.proj.weight", "decoder.window.proj.bias",
    ]  # fmt: skip
    images, coords = torch.rand(2, 3, 16, 16), pixel_grid(24, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(images, coords), plain(images, coords))  # zero-initialised
        latents = model.encode(images)
    with pytest.raises(ValueError, match="decoder.input_window.*pass images="):
        model.decode(latents, coords)
    model(images, coords).square().mean().backward()
    assert model.decoder.window.proj.weight.grad.abs().sum() > 0
    torch.nn.init.normal_(model.decoder.window.proj.weight, std=0.1)
    with torch.no_grad():
        assert not torch.allclose(model(images, coords), plain(images, coords))
        torch.testing.assert_close(  # a render's chunks each read their own pixels' windows
            model.render(latents, 24, 24, images=images, chunk=100),
            values_to_image(model.decode(latents, coords, images=images), 24, 24),
        )


@pytest.mark.parametrize("experiment", PER_DECODER)
def test_a_window_filter_starts_at_zero_and_weighs_the_window(experiment):
    with pytest.raises(ValueError, match="window_filter=true .*input_window > 0, got 0"):
        make_model(experiment, window_filter=True)
    windowed, model = (
        make_model(experiment, input_window=3),
        make_model(experiment, input_window=3, window_filter=True),
    )
    assert [k for k in model.load_state_dict(windowed.state_dict(), strict=False).missing_keys] == [
        "decoder.filter.norm.weight", "decoder.filter.norm.bias", "decoder.filter.mlp.0.weight",
        "decoder.filter.mlp.0.bias", "decoder.filter.mlp.2.weight", "decoder.filter.mlp.2.bias",
    ]  # fmt: skip
    images, coords = torch.rand(2, 3, 16, 16), pixel_grid(16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images, coords), windowed(images, coords))  # zero-initialised
    model(images, coords).square().mean().backward()
    assert model.decoder.filter.mlp[-1].weight.grad.abs().sum() > 0
    # weights on the window's frequencies that pick its middle row, right column (the DCT is orthonormal:
    # pixel 5 is basis column 5): at each input pixel centre, its right neighbour (the last column's own
    # pixel, the border extending outwards)
    last = model.decoder.filter.mlp[-1]
    with torch.no_grad():
        last.bias.copy_(dct_basis(3)[:, 5])
        added = model(images, coords) - windowed(images, coords)
    right = images[:, :, :, [*range(1, 16), 15]]
    torch.testing.assert_close(added, right.flatten(2).transpose(1, 2))


def test_the_window_dct_is_orthonormal_and_ordered_by_frequency():
    basis = dct_basis(4).double()
    torch.testing.assert_close(basis @ basis.T, torch.eye(16, dtype=torch.float64), atol=1e-6, rtol=0)
    flat, ramp = torch.ones(4, 4), torch.arange(4.0).expand(4, 4)  # ramp: along each row (x)
    torch.testing.assert_close((basis.float() @ flat.flatten())[1:], torch.zeros(15), atol=1e-5, rtol=0)
    coefficients = (basis.float() @ ramp.flatten()).reshape(4, 4)  # (u: y frequency, v: x frequency)
    assert coefficients[0, 1].abs() > 1 and coefficients[1:].abs().max() < 1e-5


def test_step_queries_carry_the_pixel_size_of_each_resolution():
    queries = StepQueries(8, seed=0, target_resolutions=[16], target_queries=5, cells=True)
    images, high = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    coords, targets = queries(3, images, high)
    assert coords.shape == (1, 64 + 5, 4) and targets.shape == (2, 64 + 5, 3)
    assert torch.equal(coords[0, :64, 2:], torch.full((64, 2), 2 / 8))
    assert torch.equal(coords[0, 64:, 2:], torch.full((5, 2), 2 / 16))
    plain, _ = StepQueries(8, seed=0, target_resolutions=[16], target_queries=5)(3, images, high)
    assert torch.equal(coords[..., :2], plain)  # the same pixels, with their sizes


@pytest.mark.parametrize("experiment", PER_DECODER)
def test_local_features_start_at_zero_learn_and_read_the_cnn_around_each_query(experiment):
    plain, model = make_model(experiment), make_model(experiment, local_features=8, local_blocks=2)
    assert model.reads_images and not plain.reads_images
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert {k.split(".")[2] for k in missing} == {"head", "blocks", "tail", "unfold"}
    assert all(k.startswith("decoder.local.") for k in missing)
    images, coords = torch.rand(2, 3, 16, 16), pixel_grid(16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images, coords), plain(images, coords))  # zero-initialised
        latents = model.encode(images)
    with pytest.raises(ValueError, match="decoder.local_features.*pass images="):
        model.decode(latents, coords)
    model(images, coords).square().mean().backward()
    local = model.decoder.local
    assert local.unfold.proj.weight.grad.abs().sum() > 0
    torch.nn.init.normal_(local.unfold.proj.weight, std=0.1)
    with torch.no_grad():
        # at the centre of input pixel (5, 7): the CNN's features at rows 4-6, columns 6-8, offset zero
        x = local.head(images)
        h = x
        for block in local.blocks:
            h = h + block(h)
        features = x + local.tail(h)
        expected = local.unfold.proj(torch.cat([features[:, :, 4:7, 6:9].flatten(1), torch.zeros(2, 2)], 1))
        centre = pixel_grid(16, 16).reshape(16, 16, 2)[5, 7].view(1, 1, 2)
        torch.testing.assert_close(local(local.features(images), centre)[:, 0], expected)
        assert not torch.allclose(model(images, coords), plain(images, coords))
        runs = []
        local.head.register_forward_hook(lambda *_: runs.append(1))
        torch.testing.assert_close(  # a render's chunks each read the features around their own pixels
            model.render(latents, 24, 24, images=images, chunk=100),
            values_to_image(model.decode(latents, pixel_grid(24, 24), images=images), 24, 24),
        )
    assert len(runs) == 2  # the CNN ran once per call, not once per chunk (the render had 12)
