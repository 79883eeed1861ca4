"""The training pipeline end to end on CPU: composition, a few real steps, exact resume, evaluation."""

import inspect
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
import torch
from hydra.utils import get_class
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ginr
from ginr.config import ConfigError, mixes_queries, prepare
from ginr.coords import image_to_values, pixel_grid
from ginr.engine.build import WarmupCosine, build_model, warmup_note
from ginr.engine.checkpoint import CheckpointError, load_checkpoint
from ginr.engine.data import prefetched
from ginr.engine.logging import describe_state, read_status
from ginr.engine.loop import Trainer
from ginr.engine.step import select_queries, with_targets_above
from ginr.models.ginr import GINR
from ginr.tools import evaluate
from ginr.tools.compare.runs import load_run
from ginr.train import train
from tests.conftest import BLOCKS, DEFAULT_EXPERIMENT, EXPERIMENTS, block_class, block_of, compose


def test_the_variants_are_the_experiment_files():
    assert EXPERIMENTS and sorted(set(EXPERIMENTS)) == EXPERIMENTS  # discovered, each once
    assert DEFAULT_EXPERIMENT in EXPERIMENTS and compose([]).name == DEFAULT_EXPERIMENT


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment):
    cfg = prepare(compose([f"experiment={experiment}", "run_dir=unused"]))
    model = build_model(cfg)
    assert type(model.decoder) is get_class(cfg.decoder._target_)
    block = block_of(experiment)  # the block file it names; the blocks in the model are of its class only
    if block is None:
        assert "block" not in cfg.decoder
    else:
        assert block in BLOCKS and get_class(cfg.decoder.block._target_) is block_class(block)
    classes = {block_class(b) for b in BLOCKS}
    assert {type(m) for m in model.decoder.modules() if type(m) in classes} == (
        set() if block is None else {block_class(block)}
    )
    assert cfg.name == experiment


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_memory_lean_checkpoints_query_chunks_and_encoder_layers_where_blocks_do_not_mix_queries(experiment):
    overrides = [f"experiment={experiment}", "memory=lean", "run_dir=unused"]
    if mixes_queries(compose(overrides[:1])):
        with pytest.raises(ConfigError, match=r"^trainer.checkpoint_queries=384 is not allowed"):
            prepare(compose(overrides))
        return
    cfg = prepare(compose(overrides))
    model = build_model(cfg)
    assert model.checkpoint_queries == 384 and model.encoder.checkpoint
    assert cfg.trainer.compile_mode == "reduce-overhead"  # CUDA graphs replay the recomputation's kernels


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_arbitrary_scale_targets_compose_with_every_multiband_experiment(experiment):
    overrides = [f"experiment={experiment}", "targets=arbitrary_scale", "run_dir=unused"]
    decoder = get_class(compose(overrides[:1]).decoder._target_)
    if "locality" not in inspect.signature(decoder).parameters:  # no locality bias (plain SCENT): one line
        with pytest.raises(ConfigError, match=f"decoder.locality is not a key of {decoder.__name__}"):
            prepare(compose(overrides))
        return
    model = build_model(prepare(compose(overrides)))
    assert model.reads_images and model.cell_conditioned and model.decoder.locality is not None


def scalars(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


@pytest.mark.slow
def test_few_steps_write_events_checkpoints_and_evaluate(smoke_cfg, tmp_path):
    run_dir = tmp_path / "run"
    metrics = train(smoke_cfg())
    assert {"val/psnr", "val/psnr_x2", "val/best_psnr", "test/psnr", "test/psnr_x2", "test/margin_x2"} <= set(
        metrics
    )
    for tag in ("train/loss", "train/psnr", "val/psnr", "val/psnr_x2", "train/lr", "perf/ms_per_step"):
        assert scalars(run_dir, tag), f"no {tag} events"
    assert [s for s, _ in scalars(run_dir, "val/psnr")] == [3, 6]  # selection reads val
    assert [s for s, _ in scalars(run_dir, "test/psnr")] == [6]  # test once, at the end
    assert [s for s, _ in scalars(run_dir, "val/baseline/bicubic_x2")] == [3]  # baselines logged once
    assert [s for s, _ in scalars(run_dir, "val/margin_x2")] == [3, 6]  # the margin at every evaluation
    ((step, gflop),) = scalars(run_dir, "perf/gflop_per_step")  # the FLOPs of a step, counted once
    assert step == 0 and gflop > 0
    assert metrics["test/images"] == 8 and metrics["val/images"] == 8  # debug=smoke caps both
    assert metrics["test/split_images"] == 354 and metrics["val/split_images"] == 295  # and says of how many
    best = max(scalars(run_dir, "val/psnr"), key=lambda e: e[1])[0]
    assert metrics["test/checkpoint_step"] == best
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 6
    assert (run_dir / "config.yaml").is_file()
    with Image.open(run_dir / "pictures" / "test_reconstructions_x2.png") as picture:  # logger.images rows
        assert picture.size == (4 * 64, 2 * 64)  # input | bicubic | model | truth, at 64 px
    assert [p.name for p in (run_dir / "pictures").iterdir()] == ["test_reconstructions_x2.png"]
    state = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert state["step"] == 6 and {"optimizer", "scheduler", "scaler", "rng", "config"} <= set(state)
    results = evaluate.run(run_dir, out=tmp_path / "eval", max_images=4)
    resolutions = {"", "_64"}
    assert set(results) == {f"{m}{r}" for m in ("psnr", "psnr_clamped", "ssim") for r in resolutions} | {
        f"{m}_64" for m in ("nearest", "bicubic", "lanczos", "images")
    }
    assert (tmp_path / "eval" / "renders.png").stat().st_size > 0
    assert len((tmp_path / "eval" / "per_image.csv").read_text().splitlines()) == 1 + 4
    hparams = EventAccumulator(str(run_dir / "tb" / "hparams"), size_guidance={"scalars": 0})
    hparams.Reload()
    (logged,) = hparams.Scalars("hparam/val/best_psnr")
    assert logged.value == pytest.approx(metrics["val/best_psnr"])


@pytest.mark.slow
def test_load_gives_the_trained_model_ready_to_render(smoke_cfg, tmp_path):
    run_dir = tmp_path / "run"
    train(smoke_cfg("trainer.max_steps=2", "data.eval_resolutions=[]"))
    loaded = ginr.load(run_dir)
    assert loaded.step == 2 and loaded.checkpoint == run_dir / "checkpoints" / "last.ckpt"
    assert not loaded.model.training and loaded.config.encoder.dim == 32
    saved = load_checkpoint(loaded.checkpoint)["model"]
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0, msg=name)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        latents = loaded.model.encode(images)
        assert loaded.model.render(latents, 100, 60).shape == (2, 3, 100, 60)
        assert loaded.model.decode(latents, torch.zeros(5, 2)).shape == (2, 5, 3)
    assert ginr.load(run_dir, which="best").checkpoint.name == "best.ckpt"
    with pytest.raises(ValueError, match="which='first' is not allowed"):
        ginr.load(run_dir, which="first")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        ginr.load(tmp_path / "nowhere")


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_same_weights_and_losses(smoke_cfg, tmp_path, monkeypatch, caplog):
    losses: dict[int, float] = {}
    kill_at = None
    original_step = Trainer.train_step

    def recording_step(self, images):
        out = original_step(self, images)
        losses[self.step + 1] = out.loss.item()
        if self.step + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(Trainer, "train_step", recording_step)
    straight = tmp_path / "straight"
    train(smoke_cfg("trainer.deterministic=true", run_dir=straight))
    straight_losses, losses = dict(losses), {}

    part, kill_at = tmp_path / "part", 3
    train(smoke_cfg("trainer.deterministic=true", run_dir=part))
    status = json.loads((part / "status.json").read_text())
    assert (status["state"], status["step"], status["stop_reason"]) == ("interrupted", 3, "SIGTERM")
    assert load_checkpoint(part / "checkpoints" / "last.ckpt")["step"] == 3 == status["checkpoint_step"]

    # as a SIGKILL after a later log window would leave it: "running", at step 4, by a process now gone
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    killed = {**status, "state": "running", "step": 4, "pid": int(gone.stdout)}
    (part / "status.json").write_text(json.dumps(killed))
    assert describe_state(read_status(part)) == "killed (checkpoint at step 3)"
    assert load_run(part).state == "killed (checkpoint at step 3)"  # as ginr.compare shows it
    kill_at = None
    with caplog.at_level(logging.WARNING, logger="ginr.engine.loop"):
        train(smoke_cfg("trainer.deterministic=true", f"trainer.resume={part}", run_dir=tmp_path / "ignored"))
    assert f"previous process (pid {gone.stdout.strip()}) was killed after step 4: 1 steps" in caplog.text
    assert losses == straight_losses  # steps 1-3 from the killed run, 4-6 from the resumed one
    a = load_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = load_checkpoint(part / "checkpoints" / "last.ckpt")
    assert b["step"] == 6
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_resume_rejects_other_model_config(smoke_cfg, tmp_path):
    run = tmp_path / "run"
    train(smoke_cfg("trainer.max_steps=3", "data.eval_resolutions=[]"))
    with pytest.raises(CheckpointError, match="was trained with another encoder, decoder config"):
        train(smoke_cfg("encoder.dim=48", f"trainer.resume={run}", run_dir=tmp_path / "other"))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(bad)


@pytest.mark.parametrize(
    "override, message",
    [
        ("encoder.dim=0", "encoder.dim=0 is not allowed: expected an integer >= 1"),
        ("encoder.patch_size=64", "encoder.patch_size=64 is not allowed: the patch must fit"),
        (
            "trainer.precision=fp8",
            "trainer.precision='fp8' is not allowed: expected one of auto, bf16, fp16, fp32",
        ),
        ("encoder.placement=middle", "encoder.placement='middle' is not allowed"),
        ("trainer.queries_per_image=5000", "trainer.queries_per_image=5000 is not allowed"),
        ("optim.optimizer.lr=-1", "optim.optimizer.lr=-1 is not allowed"),
        (
            "targets=multiscale targets.resolution=32",
            "targets.resolution=32 is not allowed: null, or distinct resolutions above the input",
        ),
        (
            "trainer.select_on=psnr_x4",
            "trainer.select_on='psnr_x4' is not allowed: one of psnr, psnr_x2 (val PSNR at the input's resolution",
        ),
        (
            "targets=multiscale targets.resolution=[64,64]",
            "targets.resolution=[64, 64] is not allowed: null, or distinct resolutions above",
        ),
        (
            "targets=multiscale targets.resolution=[64,128] targets.queries=1",
            "targets.queries=1 is not allowed: an integer in [2, 20480] (at least one per target resolution)",
        ),
        (
            "targets=multiscale targets.resolution=64 targets.queries=5000",
            "targets.queries=5000 is not allowed",
        ),
    ],
)
def test_bad_values_fail_before_any_work(smoke_cfg, tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(smoke_cfg(*override.split()))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_bad_value_is_one_line_and_exit_code_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ginr.train", f"experiment={DEFAULT_EXPERIMENT}", "decoder.num_layers=-1", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "error: decoder.num_layers=-1 is not allowed: expected an integer >= 1" in proc.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # refused before Hydra made a run folder


@pytest.mark.slow
def test_cli_missing_image_folder_is_one_line_and_exit_code_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ginr.train", f"experiment={DEFAULT_EXPERIMENT}", "data=image_folder",
         f"data.dataset.root={tmp_path / 'nowhere'}", "hardware=gpu", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "error: ImageFolder:" in proc.stderr and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("shared", [False, True])
def test_query_sampling_draws_distinct_pixels_per_image_or_one_set_per_batch(shared):
    from ginr.coords import pixel_grid
    from ginr.engine.data import query_indices
    from ginr.engine.step import select_queries

    images, grid = torch.rand(4, 3, 8, 8), pixel_grid(8, 8)
    index = query_indices(7, 0, 0, 1, 4, 64, 10, shared=shared)
    coords, targets = select_queries(images, grid, index)
    assert coords.shape == ((10, 2) if shared else (4, 10, 2)) and targets.shape == (4, 10, 3)
    rows = index.expand(4, -1) if shared else index
    assert all(len(set(row.tolist())) == 10 for row in rows)  # distinct within an image
    assert (len({tuple(row.tolist()) for row in rows}) == 1) == shared
    # each target is the pixel at its coordinate
    per_image = coords.expand(4, -1, -1) if shared else coords
    ij = ((per_image + 1) * 8 - 1) / 2
    for b in range(4):
        expected = images[b, :, ij[b, :, 0].round().long(), ij[b, :, 1].round().long()].T
        torch.testing.assert_close(targets[b], expected)
    # a rank of a two-process run sees its slice of the same draw (the shared set whole)
    assert torch.equal(query_indices(7, 0, 1, 2, 2, 64, 10, shared=shared), index if shared else index[2:])


@pytest.mark.parametrize("backend_fails", [False, True])
def test_compiled_step_is_timed_once_and_falls_back_to_eager_when_compilation_fails(backend_fails, caplog):
    from ginr.coords import image_to_values, pixel_grid
    from ginr.engine.step import TrainStep

    def backend(graph, inputs):
        if backend_fails:
            raise RuntimeError("no compiler here")
        return graph.forward  # the "eager" backend: compiles nothing, keeps the test fast

    torch._dynamo.reset()
    torch.manual_seed(0)

    class Net(torch.nn.Module):  # (images, coords) -> (B, N, C), the model's calling convention
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 3)

        def forward(self, images, coords):
            return self.lin(coords).expand(images.shape[0], -1, -1) * images.mean()

    net = Net()
    step = TrainStep(net, torch.optim.SGD(net.parameters(), lr=0.1), amp=None, grad_clip=1.0,
                     net=torch.compile(net, backend=backend))  # fmt: skip
    images = torch.rand(2, 3, 2, 2)
    coords, targets = pixel_grid(2, 2), image_to_values(images)  # every pixel, on the shared grid
    assert step.compile_s is None
    first = step(images, coords, targets)
    assert step.compile_s is not None and step.compile_s > 0 and first.ok
    assert ("torch.compile failed" in caplog.text) == backend_fails
    assert (step.net is net) == backend_fails  # eager for good after a failure
    compile_s = step.compile_s
    step(images, coords, targets)
    assert step.compile_s == compile_s  # timed once
    torch._dynamo.reset()


def test_prefetched_batches_keep_their_order_and_stop_with_the_consumer():
    source = (torch.full((2,), float(i)) for i in range(100))
    batches = prefetched(source, torch.device("cpu"), ahead=2)
    assert [next(batches)[0].item() for _ in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    batches.close()
    loaders = [t for t in threading.enumerate() if t.name == "ginr-prefetch"]
    assert not any(t.is_alive() for t in loaders)


def test_prefetched_batches_raise_the_loader_error_at_its_batch():
    def source():
        yield torch.zeros(1)
        raise OSError("image 7 is unreadable")

    batches = prefetched(source(), torch.device("cpu"))
    assert next(batches).shape == (1,)
    with pytest.raises(OSError, match="image 7 is unreadable"):
        next(batches)


def test_targets_above_add_the_high_resolution_pixels_to_shared_queries():
    images = torch.rand(2, 3, 4, 4)
    high = torch.rand(2, 3, 8, 8)
    grid, high_grid = pixel_grid(4, 4), pixel_grid(8, 8)
    index = torch.tensor([0, 9, 63])
    coords, targets = with_targets_above(*select_queries(images, grid), high, high_grid, index)
    assert coords.shape == (1, 16 + 3, 2) and targets.shape == (2, 16 + 3, 3)  # still shared by the batch
    torch.testing.assert_close(coords[0, 16:], high_grid[index])
    for i, (y, x) in enumerate([(0, 0), (1, 1), (7, 7)]):  # pixel 9 of an 8-wide grid is row 1, column 1
        torch.testing.assert_close(targets[:, 16 + i], high[:, :, y, x])
    torch.testing.assert_close(targets[:, :16], image_to_values(images))


@pytest.mark.slow
@pytest.mark.parametrize(("select_on", "best_step"), [("psnr", 6), ("psnr_x2", 3)])
def test_the_best_checkpoint_is_the_best_val_score_of_trainer_select_on(
    smoke_cfg, monkeypatch, tmp_path, select_on, best_step
):
    score = Trainer._score

    def scripted(self, model, split, max_images):  # at the evaluations of steps 3 and 6
        scalars = score(self, model, split, max_images)
        if split == "val":  # 1x rises, 2x falls
            scalars |= {"val/psnr": 10.0 + self.step, "val/psnr_x2": 30.0 - self.step}
        return scalars

    monkeypatch.setattr(Trainer, "_score", scripted)
    metrics = train(smoke_cfg(f"trainer.select_on={select_on}"))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")["step"] == best_step
    assert metrics["val/best_psnr"] == (16.0 if select_on == "psnr" else 27.0)
    assert metrics["test/checkpoint_step"] == best_step  # test reads the checkpoint val selected


@pytest.mark.slow
@pytest.mark.parametrize(("cells", "above"), [(False, [64]), (True, [64]), (True, [48, 64])])
def test_multiscale_targets_train_on_pixels_of_the_larger_image(
    smoke_cfg, monkeypatch, tmp_path, cells, above
):
    seen, decoded = [], []
    step, forward = Trainer.train_step, GINR.forward

    def spy(self, batch):
        seen.append([tuple(t.shape) for t in batch])
        return step(self, batch)

    def spy_forward(self, images, coords):
        decoded.append(coords.detach().clone())
        return forward(self, images, coords)

    monkeypatch.setattr(Trainer, "train_step", spy)
    monkeypatch.setattr(GINR, "forward", spy_forward)
    skip = "bicubic" if len(above) > 1 else "none"  # with the image skip the decoder also reads the input
    metrics = train(smoke_cfg("targets=multiscale", f"targets.resolution=[{','.join(map(str, above))}]",
                              "targets.queries=32", f"decoder.cell_conditioning={str(cells).lower()}",
                              f"decoder.image_skip={skip}"))  # fmt: skip
    assert seen[0] == [(4, 3, 32, 32), *((4, 3, r, r) for r in above)]  # the input and the same at each r
    # every pixel of the input and 32 of the larger images; with cells, each query says its pixel's size
    assert decoded[0].shape == (1, 32 * 32 + 32, 4 if cells else 2)
    if cells:
        expected = [2 / 32] * 1024 + sum(([2 / r] * (32 // len(above)) for r in above), [])
        assert torch.equal(decoded[0][0, :, 2], torch.tensor(expected))
    assert {"val/psnr", "val/psnr_x2", "test/psnr_x2"} <= set(metrics)
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert {"val/reconstructions_x2", "test/reconstructions_x2"} <= set(events.Tags()["images"])


@pytest.mark.slow
@pytest.mark.parametrize(("cap", "expected"), [(1000, 84), (70, 70)])
def test_train_minutes_fix_the_length_from_the_timed_steps_and_the_cosine_ends_there(
    smoke_cfg, monkeypatch, tmp_path, cap, expected
):
    from ginr.engine import budget

    clock = {"now": 0.0}  # every training step takes 50 ms on this clock
    step = Trainer.train_step

    def timed(self, batch):
        clock["now"] += 0.05
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", timed)
    monkeypatch.setattr(
        budget, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock["now"])})
    )
    cfg = smoke_cfg(
        "trainer.train_minutes=0.07", f"trainer.max_steps={cap}", "optim.warmup_steps=60",
        "trainer.eval_every=1000", "data.eval_resolutions=[]",
    )  # fmt: skip
    train(cfg)  # 0.07 min = 4.2 s of 50 ms steps = 84 steps, or the cap
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "status.json").read_text())["max_steps"] == expected
    state = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert state["step"] == expected and state["max_steps"] == expected and state["length_fixed"]
    assert state["scheduler"]["lr_lambdas"][0]["total"] == expected
    (last_lr,) = state["scheduler"]["_last_lr"][:1]
    assert last_lr == pytest.approx(cfg.optim.optimizer.lr * cfg.optim.min_lr_ratio)  # the cosine ended
    assert [v for _, v in scalars(run_dir, "perf/timed_ms_per_step")] == [pytest.approx(50.0)]


@pytest.mark.slow
@pytest.mark.parametrize("stopped_at", [None, 100])
def test_train_minutes_fix_the_length_again_from_later_steps_where_the_warm_up_allows(
    smoke_cfg, monkeypatch, tmp_path, stopped_at
):
    """Steps 1-59 take 80 ms and the rest 50 ms (the first steps after compilation run slower), and an
    evaluation inside the second window takes 10 s: steps 10-60 fix 302 steps (24 s of their 79.4 ms),
    steps 60-260 fix 480 (24 s of 50 ms steps), the evaluation left out. A run stopped at step 100 and
    resumed does the same: it times steps 100-260 and fixes 480."""
    from ginr.engine import budget

    clock = {"now": 0.0}
    step, evaluate = Trainer.train_step, Trainer._evaluate

    def timed(self, batch):
        clock["now"] += 0.08 if self.step < 59 else 0.05
        out = step(self, batch)
        if self.step + 1 == stopped_at:
            os.kill(os.getpid(), signal.SIGTERM)  # the step finishes, checkpoints and stops
        return out

    def slow_evaluation(self):
        clock["now"] += 10.0
        return evaluate(self)

    monkeypatch.setattr(Trainer, "train_step", timed)
    monkeypatch.setattr(Trainer, "_evaluate", slow_evaluation)
    monkeypatch.setattr(
        budget, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock["now"])})
    )
    overrides = (
        "trainer.train_minutes=0.4", "trainer.max_steps=1000", "optim.warmup_steps=300",
        "trainer.eval_every=200", "trainer.eval_max_images=2", "data.eval_resolutions=[]",
    )  # fmt: skip
    train(smoke_cfg(*overrides))
    run_dir = tmp_path / "run"
    if stopped_at is not None:
        assert json.loads((run_dir / "status.json").read_text())["step"] == stopped_at
        stopped_at = None
        train(smoke_cfg(*overrides, f"trainer.resume={run_dir}", run_dir=tmp_path / "ignored"))
    assert json.loads((run_dir / "status.json").read_text())["max_steps"] == 480
    assert [v for _, v in scalars(run_dir, "perf/timed_ms_per_step")] == [
        pytest.approx((49 * 80.0 + 50.0) / 50),  # steps 11-60: 49 of 80 ms, then one of 50
        pytest.approx(50.0),  # steps 61-260, or 101-260 after the resume
    ]
    assert [v for _, v in scalars(run_dir, "perf/fitted_max_steps")] == [302, 480]


def test_train_minutes_need_a_warm_up_that_covers_the_timed_steps(smoke_cfg, tmp_path):
    with pytest.raises(ConfigError, match="optim.warmup_steps=2 is not allowed: at least 60"):
        train(smoke_cfg("trainer.train_minutes=1"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_flop_count_out_of_memory_is_skipped_and_training_goes_on(smoke_cfg, monkeypatch, tmp_path, caplog):
    from ginr.engine import step

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(step, "flop_counter", no_memory)  # the FLOP count's own, not the training step's
    metrics = train(smoke_cfg("trainer.max_steps=2", "data.eval_resolutions=[]"))
    assert "test/psnr" in metrics and not scalars(tmp_path / "run", "perf/gflop_per_step")
    assert "no FLOP count" in caplog.text


@pytest.mark.parametrize("max_steps", [1, 450, 500, 501, 2000])
def test_a_run_that_ends_inside_its_warm_up_is_told_so(max_steps):
    """The trainer warns where the schedule rises until the last step (a 450-step run under a 500-step
    warm-up never reaches its learning rate), and says how far it got."""
    schedule = WarmupCosine(500, max_steps, 0.05)
    factors = [schedule(step) for step in range(max_steps)]
    rising = all(b > a for a, b in itertools.pairwise(factors))
    note = warmup_note(max_steps, 500)
    assert (note is not None) == rising
    if note:
        assert f"reaches {factors[-1]:.1%} of optim.optimizer.lr" in note
