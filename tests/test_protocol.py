"""The evaluation protocol, each rule checked where it can break: the scores are per image and averaged over
images; the model's image skip and every classical upscaler see only the low-resolution input; val selects,
test is scored once at the end on the checkpoint val selected; a resumed run continues exactly (RNGs, step,
batches, query pixels); each step decodes fresh query pixels; validation subsets are a seeded sample of the
whole split.

The trainer-level tests run the real :class:`ginr.engine.loop.Trainer` with its training step and its
evaluation replaced by stand-ins that record what they are given: no model is trained, so they take seconds.
"""

import math
import os
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from ginr.config import compose, prepare
from ginr.engine import checkpoint as ckpt
from ginr.engine import loop
from ginr.engine.build import build_model
from ginr.engine.checkpoint import load_checkpoint
from ginr.engine.data import StepBatchSampler, query_indices
from ginr.engine.evaluation import Evaluation, attention_context, evaluate, reconstructions, sample_indices
from ginr.engine.loop import Trainer
from ginr.engine.metrics import UPSCALERS, psnr, upscale
from ginr.engine.step import StepQueries, StepResult
from ginr.train import train
from tests.conftest import DEFAULT_EXPERIMENT, MIXING, NOT_MIXING

# ---------------------------------------------------------------------------------------------------------
# Stand-ins: images whose low- and high-resolution versions are the same picture, and a model that records
# what evaluation hands it.


def picture(index: int, side: int) -> torch.Tensor:
    """Image ``index`` of a synthetic split at ``side`` px: smooth, different per index, values reaching 0
    and 1 (so an out-of-range prediction is possible both ways). (3, side, side) in [0, 1]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    channels = [
        0.5 + 0.9 * torch.sin(3 * x + (index + 1) * y + c) * torch.cos(2 * y - index * x) for c in range(3)
    ]
    return torch.stack(channels).clamp(0, 1)


class Images(Dataset):
    """A list of images as a dataset."""

    def __init__(self, images: list[torch.Tensor]):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def split(count: int, side: int = 8) -> tuple[Images, Images]:
    """(input, 2x ground truth) of ``count`` images: the same pictures, the input area-downsampled from the
    truth, as a real split's resolutions are the same images."""
    high = [picture(i, 2 * side) for i in range(count)]
    low = [F.avg_pool2d(h[None], 2)[0] for h in high]
    return Images(low), Images(high)


class Recorder(nn.Module):
    """A stand-in for GINR that records what it is given (``encoded``: encode's inputs; ``rendered``: each
    render's size and ``images=``) and renders ``images=`` upscaled bilinearly plus an offset per image:
    ``offsets[k]`` for the k-th image it encodes (so its per-image errors are known)."""

    mixes_queries = False  # it decodes each query alone

    def __init__(self, offsets: list[float] | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.offsets, self.seen = offsets, 0
        self.encoded: list[torch.Tensor] = []
        self.rendered: list[tuple[int, int, torch.Tensor | None]] = []

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.encoded.append(images.detach().clone())
        count, self.seen = len(images), self.seen + len(images)
        offsets = self.offsets[self.seen - count : self.seen] if self.offsets else [0.0] * count
        return torch.tensor(offsets, dtype=torch.float32).view(count, 1, 1, 1)  # the "latents"

    def render(self, latents, height, width, *, images=None, chunk=65536):
        self.rendered.append((height, width, None if images is None else images.detach().clone()))
        up = F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False)
        return up + latents


def same_images(recorded: list[torch.Tensor], dataset: Dataset, indices) -> bool:
    """Whether the batches ``recorded`` are exactly the images ``indices`` of ``dataset``, in order."""
    expected = torch.stack([dataset[i] for i in indices])
    return torch.equal(torch.cat(recorded), expected)


# ---------------------------------------------------------------------------------------------------------
# 1. PSNR as the protocol defines it, through the evaluation that reports it.


def test_evaluation_psnr_is_per_image_unclamped_float32_and_averaged_over_images():
    low, high = split(3)
    offsets = [0.1, 0.01, -0.001]  # 20, 40 and 60 dB at the input's resolution; images reach 0 and 1
    model = Recorder(offsets)
    result = evaluate(model, low, highres={16: high}, batch_size=2, device=torch.device("cpu"),
                      amp_dtype=None, chunk=1024, baselines=False)  # fmt: skip
    per_image = [row["psnr"] for row in result.rows]
    assert per_image == pytest.approx([20.0, 40.0, 60.0], abs=0.01)  # hand-computed: -20 log10 |offset|
    assert result.means["psnr"] == pytest.approx(40.0, abs=0.01)  # the mean of per-image PSNR ...
    pooled = -10 * math.log10(sum(o * o for o in offsets) / 3)
    assert abs(result.means["psnr"] - pooled) > 10  # ... not the PSNR of the mean MSE (24.8 dB)
    # predictions leave [0, 1] where the images reach 0 or 1: clamped PSNR is higher, and the headline
    # is unclamped
    lows = torch.stack([low[i] for i in range(3)])
    preds = lows + torch.tensor(offsets).view(3, 1, 1, 1)
    assert (preds > 1).any() and (preds < 0).any()
    clamped = [
        -10 * math.log10((p.clamp(0, 1) - t).square().mean().item()) for p, t in zip(preds, lows, strict=True)
    ]
    assert [row["psnr_clamped"] for row in result.rows] == pytest.approx(clamped, abs=0.01)
    assert all(c > u + 0.5 for c, u in zip(clamped, per_image, strict=True))
    # at 2x: the render against the real 16 px truth, image by image
    highs = torch.stack([high[i] for i in range(3)])
    renders = F.interpolate(lows, size=(16, 16), mode="bilinear", align_corners=False)
    renders = renders + torch.tensor(offsets).view(3, 1, 1, 1)
    expected = [
        -10 * math.log10((r.double() - t.double()).square().mean().item())
        for r, t in zip(renders, highs, strict=True)
    ]
    assert [row["psnr_16"] for row in result.rows] == pytest.approx(expected, abs=1e-3)
    assert result.means["psnr_16"] == pytest.approx(sum(expected) / 3, abs=1e-3)
    assert result.count == 3 and [row["index"] for row in result.rows] == [0, 1, 2]


def test_psnr_of_a_bf16_render_is_computed_in_float32():
    truth = torch.full((1, 3, 8, 8), 0.5 + 2**-10)  # float32; bf16 would round it to 0.5
    render = torch.full((1, 3, 8, 8), 0.5, dtype=torch.bfloat16)  # a render under bf16 autocast
    expected = -10 * math.log10(2**-20)  # 60.2 dB, hand-computed from the error 2^-10
    assert psnr(render, truth).item() == pytest.approx(expected, abs=1e-3)
    # errors of 1e-3 on values between 0.25 and 0.26: below bf16's resolution there (2^-9), not float32's
    fine = torch.full((2, 3, 8, 8), 0.25) + torch.arange(64).view(1, 1, 8, 8) * 1e-4
    assert psnr(fine + 1e-3, fine).tolist() == pytest.approx([60.0, 60.0], abs=0.01)


# ---------------------------------------------------------------------------------------------------------
# 3. The image skip and every baseline see only the low-resolution input.

CPU = torch.device("cpu")


def test_the_model_and_every_upscaler_see_only_the_low_resolution_input():
    low, high = split(4)
    model = Recorder()
    result = evaluate(model, low, highres={16: high}, batch_size=3, device=CPU, amp_dtype=None, chunk=1024,
                      pictures=2)  # fmt: skip
    assert same_images(model.encoded, low, range(4))
    assert sorted({(h, w) for h, w, _ in model.rendered}) == [(8, 8), (16, 16)]
    for size in (8, 16):  # the 1x render and the 2x render both read the input, never the 16 px truth
        given = [images for h, _, images in model.rendered if h == size]
        assert all(images is not None for images in given) and same_images(given, low, range(4))
    lows, highs = torch.stack(low.images), torch.stack(high.images)
    for method in UPSCALERS:  # each baseline: that upscaler of the input, against the truth
        expected = psnr(upscale(lows, 16, 16, method), highs).tolist()
        assert [row[f"{method}_16"] for row in result.rows] == pytest.approx(expected, abs=1e-4)
        assert max(expected) < 40  # upscaling the truth itself would score 100 dB
    # the picture grid: input | bicubic of the input | model | truth, one row per image
    grid = result.grids["reconstructions_x2"]
    assert grid.shape == (3, 2 * 16, 4 * 16)
    first = (slice(None), slice(0, 16))
    torch.testing.assert_close(grid[first][..., :16], F.interpolate(lows[:1], size=(16, 16))[0])
    torch.testing.assert_close(grid[first][..., 16:32], upscale(lows[:1], 16, 16, "bicubic")[0])
    torch.testing.assert_close(grid[first][..., 48:], highs[0])


def test_picture_grids_render_from_the_low_resolution_input():
    low, high = split(2)
    lows, highs = torch.stack(low.images), torch.stack(high.images)
    model = Recorder()
    grid = reconstructions(model, lows, truth=highs, amp_dtype=None, chunk=1024)
    assert [(h, w) for h, w, _ in model.rendered] == [(16, 16)]
    assert torch.equal(model.rendered[0][2], lows) and torch.equal(model.encoded[0], lows)
    torch.testing.assert_close(grid[:, :16, 16:32], upscale(lows[:1], 16, 16, "bicubic")[0])
    model = Recorder()
    reconstructions(model, lows, amp_dtype=None, chunk=1024)  # input | reconstruction | 4x render
    assert [(h, w) for h, w, _ in model.rendered] == [(8, 8), (32, 32)]
    assert all(torch.equal(images, lows) for _, _, images in model.rendered)


def test_an_image_skip_decoder_is_scored_on_its_input_upscaled_not_on_the_truth():
    """A new decoder with the image skip renders its ``images=`` upsampled (its output layers start at
    zero): fed the input, it scores as bicubic upscaling does; fed the 2x truth, it would be near exact."""
    cfg = prepare(compose([f"experiment={DEFAULT_EXPERIMENT}", "debug=smoke", "targets=arbitrary_scale",
                           "data.resolution=16", "data.eval_resolutions=[32]", "run_dir=unused"]))  # fmt: skip
    model = build_model(cfg)
    assert model.reads_images
    low, high = split(2, side=16)
    result = evaluate(model, low, highres={32: high}, batch_size=2, device=CPU, amp_dtype=None, chunk=4096)
    assert result.means["psnr"] > 50  # the skip gives the input's own pixels back at 1x
    lows, highs = torch.stack(low.images), torch.stack(high.images)
    bicubic = psnr(F.interpolate(lows, size=(32, 32), mode="bicubic", align_corners=False), highs)
    assert result.means["psnr_32"] == pytest.approx(bicubic.mean().item(), abs=0.05)
    assert result.means["psnr_32"] < 45


# ---------------------------------------------------------------------------------------------------------
# 4 and 5. The real Trainer, with stand-ins for its training step and its evaluation.


@dataclass
class Scored:
    """One evaluation the trainer asked for: the split (by the dataset object it passed), the step, the
    weights' step (which training step wrote the weights it was given), and its arguments."""

    split: str
    step: int
    weights: int
    max_images: int | None
    seed: int | None
    amp_dtype: torch.dtype | None
    baselines: bool
    highres: bool  # the highres sets are that split's


class Scripted:
    """Replaces ``Trainer.train_step`` and the trainer's ``evaluate``: each step writes its step number into
    the first weight (so a checkpoint's weights say which step wrote them) and records what it draws from
    every RNG, its batch and its query pixels; each evaluation is recorded and returns ``val_psnr(step)``
    (1x) and ``val_psnr_x2(step)`` for val."""

    def __init__(self, monkeypatch, val_psnr=lambda step: 10.0 + step, val_psnr_x2=lambda step: 5.0 + step):
        self.val_psnr, self.val_psnr_x2 = val_psnr, val_psnr_x2
        self.trainers: list[Trainer] = []
        self.scored: list[Scored] = []
        self.steps: dict[int, tuple] = {}  # step -> what it drew and read
        self.stop_at: int | None = None
        run, scripted = Trainer.run, self

        def tracked_run(trainer):
            scripted.trainers.append(trainer)
            return run(trainer)

        monkeypatch.setattr(Trainer, "run", tracked_run)
        monkeypatch.setattr(Trainer, "train_step", self.train_step)
        monkeypatch.setattr(loop, "evaluate", self.evaluate)

    @staticmethod
    def train_step(trainer: Trainer, batch) -> StepResult:
        scripted = trainer._scripted
        images, coords, targets = trainer.queries.inputs(trainer.step, batch)
        draws = (torch.rand(2).tolist(), random.random(), np.random.rand())
        scripted.steps[trainer.step + 1] = (
            draws,
            images.sum().item(),
            coords.sum().item(),
            targets.sum().item(),
        )
        with torch.no_grad():
            next(trainer.model.parameters()).view(-1)[0] = trainer.step + 1
        if trainer.step + 1 == scripted.stop_at:
            trainer.request_stop("SIGTERM")
        one = torch.ones((), device=trainer.device)
        return StepResult(loss=one, psnr=one, grad_norm=one, ok=torch.ones((), dtype=torch.bool))

    def evaluate(self, model, dataset, *, highres, max_images=None, amp_dtype=None, seed=None, baselines=True,
                 **kwargs):  # fmt: skip
        trainer = self.trainers[-1]
        (split,) = [name for name, (images, _) in trainer.held_out.items() if images is dataset]
        weights = round(next(model.parameters()).view(-1)[0].item())
        self.scored.append(Scored(split, trainer.step, weights, max_images, seed, amp_dtype, baselines,
                                  highres is trainer.held_out[split][1]))  # fmt: skip
        val = split == "val"
        means = {"psnr": self.val_psnr(trainer.step) if val else 99.0, "psnr_clamped": 0.0, "ssim": 0.0}
        for r in highres:
            means |= {f"psnr_{r}": self.val_psnr_x2(trainer.step) if val else 99.0, f"bicubic_{r}": 0.0,
                      f"nearest_{r}": 0.0, f"lanczos_{r}": 0.0}  # fmt: skip
        return Evaluation(means, rows=[{}] * 3)


@pytest.fixture
def scripted(monkeypatch):
    made = Scripted(monkeypatch)
    init = Trainer.__init__

    def init_and_attach(trainer, *args, **kwargs):
        trainer._scripted = made
        init(trainer, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", init_and_attach)
    return made


@pytest.mark.parametrize(
    ("select_on", "val_psnr", "val_psnr_x2", "best"),
    [
        ("psnr", lambda s: 20.0 - s, lambda s: 1.0 + s, 3),  # val falls: best is the first evaluation
        ("psnr", lambda s: 10.0 + s, lambda s: 1.0 - s, 6),  # val rises: best is the last
        ("psnr_x2", lambda s: 10.0 + s, lambda s: 30.0 - s, 3),  # selects on the 2x score alone
    ],
)
def test_val_selects_best_ckpt_and_test_is_scored_once_at_the_end_on_it(
    scripted, smoke_cfg, tmp_path, select_on, val_psnr, val_psnr_x2, best
):
    scripted.val_psnr, scripted.val_psnr_x2 = val_psnr, val_psnr_x2
    metrics = train(smoke_cfg(f"trainer.select_on={select_on}", "trainer.eval_max_images=5",
                              "trainer.test_max_images=7", "trainer.precision=bf16"))  # fmt: skip
    val = [s for s in scripted.scored if s.split == "val"]
    test = [s for s in scripted.scored if s.split == "test"]
    assert [(s.step, s.weights) for s in val] == [(3, 3), (6, 6)]  # val: every eval_every steps
    assert len(test) == 1 and scripted.scored[-1] is test[0]  # test: once, after the last val
    assert test[0].step == 6 and test[0].weights == best  # ... on the weights val selected
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")["step"] == best
    assert metrics["test/checkpoint_step"] == best
    selected = {"psnr": val_psnr, "psnr_x2": val_psnr_x2}[select_on]
    assert metrics["val/best_psnr"] == max(selected(3), selected(6))
    assert all(s.highres for s in scripted.scored)  # each split's own higher-resolution truth
    assert [s.max_images for s in scripted.scored] == [5, 5, 7]
    assert all(s.amp_dtype is None for s in scripted.scored)  # float32 even when training in bf16
    assert len({s.seed for s in val}) == 1  # the same val sample at every evaluation
    assert [s.baselines for s in scripted.scored] == [True, False, True]  # val's upscalers once; test's


def test_an_interrupted_run_scores_no_test(scripted, smoke_cfg):
    scripted.stop_at = 4
    metrics = train(smoke_cfg())
    assert [(s.split, s.step) for s in scripted.scored] == [("val", 3), ("val", 4)]
    assert not any(k.startswith("test/") for k in metrics)


def test_a_resumed_run_keeps_its_best_val_score(scripted, smoke_cfg, tmp_path):
    """Val falls after step 3: the run resumed at step 3 keeps best.ckpt (and val/best_psnr) from step 3
    and scores test on it."""
    scripted.val_psnr = lambda step: 20.0 - step
    train(smoke_cfg("trainer.max_steps=3", "trainer.test_max_images=1", run_dir=tmp_path / "run"))
    scripted.scored = []
    metrics = train(smoke_cfg(f"trainer.resume={tmp_path / 'run'}", "trainer.test_max_images=1"))
    assert [(s.split, s.step, s.weights) for s in scripted.scored] == [("val", 6, 6), ("test", 6, 3)]
    assert metrics["val/best_psnr"] == 17.0 and metrics["test/checkpoint_step"] == 3
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")["step"] == 3


def resumed_and_straight(scripted: Scripted, smoke_cfg, tmp_path) -> tuple[dict, dict]:
    """What steps 1-6 drew and read (:class:`Scripted`) in a run stopped after step 3 and resumed from its
    checkpoint, and in a run never stopped. Between the two processes of the first, the first built another
    model for its test (drawing from the torch RNG) and the Python and numpy RNGs were moved on. (The
    trainer seeds torch; nothing in training reads the Python or numpy RNGs, so both runs start them alike
    here.)"""
    overrides = ["trainer.queries_per_image=16", "trainer.eval_every=100", "trainer.test_max_images=1"]
    random.seed(0), np.random.seed(0)
    train(smoke_cfg(*overrides, run_dir=tmp_path / "straight"))
    straight, scripted.steps = scripted.steps, {}
    random.seed(0), np.random.seed(0)
    train(smoke_cfg(*overrides, "trainer.max_steps=3", run_dir=tmp_path / "part"))
    random.random(), np.random.rand(), torch.rand(1)  # whatever else the process does in between
    first, scripted.steps = scripted.steps, {}
    train(smoke_cfg(*overrides, f"trainer.resume={tmp_path / 'part'}", run_dir=tmp_path / "ignored"))
    assert sorted(first) == [1, 2, 3] and sorted(scripted.steps) == [4, 5, 6]  # it goes on at step 4
    assert sorted(straight) == [1, 2, 3, 4, 5, 6]
    return {**first, **scripted.steps}, straight


def test_a_resumed_run_continues_exactly_as_an_uninterrupted_one(scripted, smoke_cfg, tmp_path):
    """The step, the Python and numpy RNGs, the batches and the query pixels of steps 4-6 of a resumed run
    are those of a run never stopped."""
    resumed, straight = resumed_and_straight(scripted, smoke_cfg, tmp_path)
    without_torch = lambda records: {step: (draws[1:], *read) for step, (draws, *read) in records.items()}
    assert without_torch(resumed) == without_torch(straight)
    assert len({draws[1] for draws, *_ in straight.values()}) == 6  # the draws change from step to step
    assert len({coords for _, _, coords, _ in straight.values()}) == 6  # so do the query pixels


def test_a_resumed_run_draws_the_same_torch_numbers_as_an_uninterrupted_one(scripted, smoke_cfg, tmp_path):
    resumed, straight = resumed_and_straight(scripted, smoke_cfg, tmp_path)
    assert {k: v[0][0] for k, v in resumed.items()} == {k: v[0][0] for k, v in straight.items()}


def test_rng_state_round_trips_every_generator_training_reads(tmp_path, monkeypatch):
    """torch, numpy (its cached Gaussian too), Python and, where there is one, every CUDA device's (a
    stand-in here), through a weights-only checkpoint."""
    cuda = {"states": [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4], dtype=torch.uint8)]}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in cuda["states"]])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: cuda.update(states=list(states)))
    random.random(), np.random.randn(1), torch.rand(1)  # numpy now holds a second Gaussian in its state
    state = ckpt.rng_state()
    path = ckpt.save_checkpoint({"model": {}, "config": {}, "step": 7, "rng": state}, tmp_path / "c.ckpt")

    def draws():
        return (random.random(), random.getrandbits(64), np.random.randn(3).tolist(), np.random.rand(),
                torch.rand(3).tolist(), torch.randn(3).tolist())  # fmt: skip

    expected = draws()
    cuda["states"] = [torch.tensor([9], dtype=torch.uint8)]
    loaded = load_checkpoint(path)
    ckpt.set_rng_state(loaded["rng"])
    assert draws() == expected and loaded["step"] == 7
    assert [s.tolist() for s in cuda["states"]] == [[1, 2, 3], [4]]
    assert draws() != expected  # the draws do move the generators on


def test_step_batches_continue_from_the_resumed_step():
    """The batches of steps 5, 6, ... from a sampler started at step 5 (a resumed run's) are those of an
    uninterrupted one, across an epoch boundary, whatever the global RNG."""
    straight = iter(StepBatchSampler(10, 4, seed=3, start_step=0, rank=0, world_size=1))
    uninterrupted = [next(straight) for _ in range(9)]
    torch.manual_seed(123)
    resumed = iter(StepBatchSampler(10, 4, seed=3, start_step=5, rank=0, world_size=1))
    assert [next(resumed) for _ in range(4)] == uninterrupted[5:]
    assert uninterrupted[0] != uninterrupted[2]  # a new permutation each epoch (2 batches of 4 in 10)


# ---------------------------------------------------------------------------------------------------------
# 6. Fresh query pixels every step, the same again at the same step.


def pixel_indices(coords: torch.Tensor, side: int) -> torch.Tensor:
    """Pixel centres (y, x) in (-1, 1) on a side x side grid -> their row-major indices."""
    ij = ((coords[..., :2] + 1) * side - 1) / 2
    return (ij[..., 0].round() * side + ij[..., 1].round()).long()


@pytest.mark.parametrize("shared", [False, True])
def test_each_step_decodes_fresh_pixels_and_the_same_again_at_the_same_step(shared):
    images = torch.rand(4, 3, 8, 8)
    queries = StepQueries(8, seed=3, queries_per_image=10, shared=shared)
    first, targets = queries(5, images)
    torch.manual_seed(99)  # the pixels depend on (seed, step) alone, not on the global RNG
    again, _ = StepQueries(8, seed=3, queries_per_image=10, shared=shared)(5, images)
    assert torch.equal(first, again)
    assert first.shape == ((10, 2) if shared else (4, 10, 2))
    pixels = pixel_indices(first, 8).expand(4, -1)
    assert all(len(set(row.tolist())) == 10 for row in pixels)  # distinct within an image
    assert (len({tuple(row.tolist()) for row in pixels}) == 1) == shared  # per image, or one draw per batch
    values = images.flatten(2).transpose(1, 2)  # (B, 64, C): each target is its query's pixel
    torch.testing.assert_close(targets, values.gather(1, pixels[..., None].expand(-1, -1, 3)))
    draws = [pixel_indices(queries(step, images)[0], 8) for step in range(12)]
    assert all(not torch.equal(a, b) for a, b in zip(draws, draws[1:], strict=False))  # new pixels every step
    assert len(set(torch.cat([d.flatten() for d in draws]).tolist())) > 40  # not a fixed subset of 4 x 10
    other_seed, _ = StepQueries(8, seed=4, queries_per_image=10, shared=shared)(5, images)
    assert not torch.equal(other_seed, first)


def test_the_pixels_of_the_larger_images_are_fresh_every_step_too():
    images, above = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    queries = StepQueries(8, seed=0, target_resolutions=[16], target_queries=6)
    coords = [queries(step, images, above)[0][0, 64:] for step in range(5)]  # after every input pixel
    assert torch.equal(coords[3], queries(3, images, above)[0][0, 64:])
    assert all(not torch.equal(a, b) for a, b in zip(coords, coords[1:], strict=False))
    _, targets = queries(3, images, above)
    pixels = pixel_indices(coords[3], 16)
    torch.testing.assert_close(targets[:, 64:], above.flatten(2)[:, :, pixels].transpose(1, 2))


def test_continuous_scales_draw_each_targets_side_anew_and_supervise_with_that_image_resampled():
    """targets.scales=continuous: a side per target and step in (the side below, its own], the same for
    every process and after a resume; the targets are the higher image resampled to that side, at the
    drawn pixels, and each query's cell is that side's pixel."""
    import torch.nn.functional as F

    images, mid, high = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    queries = StepQueries(
        8, seed=1, target_resolutions=[16, 32], target_queries=6, cells=True, continuous=True
    )
    sides = [queries.target_sides(step) for step in range(40)]
    assert all(8 < a <= 16 < b <= 32 for a, b in sides) and len({tuple(s) for s in sides}) > 10
    assert sides[7] == StepQueries(
        8, seed=1, rank=1, world_size=2, target_resolutions=[16, 32], continuous=True
    ).target_sides(7)
    step = next(i for i, (a, b) in enumerate(sides) if a != 16 and b != 32)  # both resampled
    coords, targets = queries(step, images, mid, high)
    for k, (side, image) in enumerate(zip(sides[step], (mid, high), strict=True)):
        drawn = coords[0, 64 + 3 * k : 64 + 3 * (k + 1)]  # after every input pixel, 3 per target
        torch.testing.assert_close(drawn[:, 2:], torch.full((3, 2), 2 / side))  # the drawn side's cell
        resampled = F.interpolate(image, size=(side, side), mode="bicubic", antialias=True).clamp(0, 1)
        pixels = pixel_indices(drawn, side)
        torch.testing.assert_close(
            targets[:, 64 + 3 * k : 64 + 3 * (k + 1)], resampled.flatten(2)[:, :, pixels].transpose(1, 2)
        )
    fixed = StepQueries(8, seed=1, target_resolutions=[16, 32], target_queries=6)
    assert fixed.target_sides(step) == [16, 32]  # fixed scales: the images' own pixels


def test_the_pixels_of_a_step_are_the_same_in_another_process():
    """A resumed run is another process: the pixels must not hang on anything per process (Python's
    string hashing is salted per process, PYTHONHASHSEED)."""
    import subprocess
    import sys

    code = ("from ginr.engine.data import query_indices; "
            "print(query_indices(5, 3, 0, 1, 2, 64, 6).tolist(), query_indices(5, 3, 0, 1, 2, 64, 6, shared=True).tolist())")  # fmt: skip
    here = f"{query_indices(5, 3, 0, 1, 2, 64, 6).tolist()} {query_indices(5, 3, 0, 1, 2, 64, 6, shared=True).tolist()}"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # this process's salt is random or another
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == here


# ---------------------------------------------------------------------------------------------------------
# 7. The documented downsampling filters, against PIL directly.


def rgba(width: int, height: int) -> np.ndarray:
    """A structured RGBA image (fine stripes, gradients, partial transparency) on which every resampling
    filter gives a different result."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 0.5 + 0.5 * np.sin(1.3 * x) * np.cos(0.7 * y)
    g = (x + 2 * y) / (width + 2 * height)
    b = ((x // 3 + y // 2) % 2) * 0.8 + 0.1
    a = np.clip(0.2 + 0.8 * np.cos(x / width * 3) * (y / height), 0, 1)
    return (np.stack([r, g, b, a], axis=-1) * 255).round().astype(np.uint8)


FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def on_white(array: np.ndarray) -> Image.Image:
    rgba_image = Image.fromarray(array, "RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba_image.size, (255,) * 4), rgba_image).convert("RGB")


def only(name: str, image: Image.Image, size: tuple[int, int], got: np.ndarray) -> None:
    """``got`` is ``image`` resized to ``size`` (width, height) by the filter ``name``, and by no other."""
    results = {f: np.asarray(image.resize(size, resample)) for f, resample in FILTERS.items()}
    assert [f for f, expected in results.items() if np.array_equal(got, expected)] == [name]


def test_emoji3d_composites_onto_white_then_downsamples_with_lanczos(tmp_path, monkeypatch):
    """The module's documented pipeline, through ``preprocess`` (what its cache holds): RGBA renders
    composited onto white, then resized with PIL's Lanczos; the 32 px input and the 64 px ground truth of
    one image alike."""
    import dataclasses
    import hashlib
    import io
    import tarfile

    from ginr.data import emoji3d

    buffer = io.BytesIO()
    Image.fromarray(rgba(96, 96), "RGBA").save(buffer, format="WEBP", lossless=True)
    array = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA"))  # as WebP keeps it
    tarball = tmp_path / "fake.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("package/assets/1f600.webp")
        info.size = len(buffer.getvalue())
        tar.addfile(info, io.BytesIO(buffer.getvalue()))
    monkeypatch.setattr(
        emoji3d,
        "TARBALL",
        dataclasses.replace(emoji3d.TARBALL, sha256=hashlib.sha256(tarball.read_bytes()).hexdigest()),
    )
    for side in (32, 64):
        (served,) = [images[0] for images, names in emoji3d.preprocess(tarball, side).values() if names]
        only("lanczos", on_white(array), (side, side), served)
    # compositing comes first: resizing the RGBA image would bleed the colour of transparent pixels
    resized_first = Image.fromarray(array, "RGBA").resize((32, 32), Image.Resampling.LANCZOS)
    (served,) = [images[0] for images, names in emoji3d.preprocess(tarball, 32).values() if names]
    assert not np.array_equal(np.asarray(on_white(np.asarray(resized_first))), served)


def test_torchvision_sets_resize_bilinear_after_the_centre_crop():
    """CIFAR-10 and CelebA: PIL bilinear, as torchvision's Resize does on PIL images (the module's
    docstring), after CelebA's 178 px centre crop."""
    from ginr.data import torchvision_sets

    array = rgba(40, 48)[..., :3]
    image = Image.fromarray(array)
    got = (torchvision_sets.to_tensor(image, 16) * 255).round().byte().permute(1, 2, 0).numpy()
    only("bilinear", image, (16, 16), got)
    cropped = (torchvision_sets.to_tensor(image, 12, crop=30) * 255).round().byte().permute(1, 2, 0).numpy()
    only("bilinear", image.crop((5, 9, 35, 39)), (12, 12), cropped)


def test_image_files_take_the_centre_square_then_lanczos(tmp_path):
    """``image_folder`` and ``--inputs``: the centre square resized with Lanczos (README, ``render_images``)."""
    from ginr.data.imagefiles import load_image

    array = rgba(60, 44)[..., :3]
    path = tmp_path / "wide.png"
    Image.fromarray(array).save(path)
    got = (load_image(path, size=(16, 16), channels=3, crop="center") * 255).round().byte()
    only("lanczos", Image.fromarray(array).crop((8, 0, 52, 44)), (16, 16), got.permute(1, 2, 0).numpy())
    stretched = (load_image(path, size=(16, 16), channels=3, crop="none") * 255).round().byte()
    only("lanczos", Image.fromarray(array), (16, 16), stretched.permute(1, 2, 0).numpy())


# ---------------------------------------------------------------------------------------------------------
# 8. Validation subsets: a seeded sample of the whole split.


def test_a_capped_evaluation_samples_the_whole_split_by_seed():
    state = torch.get_rng_state()
    chosen = sample_indices(1000, 50, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from the RNG that training reads
    assert len(set(chosen)) == 50 and chosen == sorted(chosen) and min(chosen) >= 0 and max(chosen) < 1000
    assert chosen != list(range(50))  # not the first 50 by name
    assert all(any(q * 250 <= i < (q + 1) * 250 for i in chosen) for q in range(4))  # spread over the split
    assert sample_indices(1000, 50, seed=0) == chosen  # the same every evaluation, and after a resume
    assert sample_indices(1000, 50, seed=1) != chosen  # another run's seed, another sample
    assert set(chosen) <= set(sample_indices(1000, 200, seed=0))  # a larger cap keeps these images
    assert (
        sample_indices(30, None, 0)
        == sample_indices(30, 30, 5)
        == sample_indices(30, 99, 5)
        == list(range(30))
    )


def test_a_capped_evaluation_scores_the_sampled_images_against_their_own_truth():
    low, high = split(12)
    model = Recorder()
    result = evaluate(model, low, highres={16: high}, batch_size=2, device=CPU, amp_dtype=None, chunk=1024,
                      max_images=5, seed=7)  # fmt: skip
    chosen = sample_indices(12, 5, 7)
    assert chosen != [0, 1, 2, 3, 4] and result.count == 5
    assert [row["index"] for row in result.rows] == chosen  # per-image rows name the split's images
    assert same_images(model.encoded, low, chosen)
    for row in result.rows:  # the 2x truth of each row is its own image's
        i = row["index"]
        render = F.interpolate(low[i][None], size=(16, 16), mode="bilinear", align_corners=False)
        assert row["psnr_16"] == pytest.approx(psnr(render, high[i][None]).item(), abs=1e-4)
    again = evaluate(Recorder(), low, highres={}, batch_size=3, device=CPU, amp_dtype=None, chunk=1024,
                     max_images=5, seed=7)  # fmt: skip
    assert [row["index"] for row in again.rows] == chosen  # the same sample at every evaluation


@pytest.mark.parametrize("experiment", [*MIXING[:1], *NOT_MIXING[:1]])
def test_a_query_mixing_decoders_scores_say_what_its_attention_spanned(experiment):
    """``scent_attn`` renders attend over every pixel of the render (4,096 at 64 px) but trained on 1,024 per
    image: the evaluation output says so; a decoder that decodes each query alone has nothing to say."""
    cfg = compose([f"experiment={experiment}", "debug=smoke", "trainer.queries_per_image=256"])
    note = attention_context(build_model(cfg), [32, 64], cfg.trainer.queries_per_image)
    if experiment in NOT_MIXING:
        assert note is None
    else:
        assert "(1,024 at 32 px, 4,096 at 64 px)" in note and "256 pixels per image" in note
        every = attention_context(build_model(cfg), [32], None)
        assert every is not None and "every input pixel" in every
    low, high = split(2)  # the evaluation carries the note of the sides it rendered (8 px input, 16 px truth)
    result = evaluate(build_model(cfg), low, highres={16: high}, batch_size=2, device=CPU, amp_dtype=None,
                      chunk=1024, trained_on=cfg.trainer.queries_per_image)  # fmt: skip
    assert result.note == attention_context(build_model(cfg), [8, 16], cfg.trainer.queries_per_image)
