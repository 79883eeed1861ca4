"""The training loop: AMP, clipping, warm-up + cosine, non-finite-loss guard, evaluation, checkpoints,
clean stops on signals or a time limit, and torchrun (DDP)."""

import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from ginr.config.schema import TIMED_STEPS, target_resolutions
from ginr.engine import checkpoint as ckpt
from ginr.engine import distributed as dist
from ginr.engine.budget import MinutesBudget
from ginr.engine.build import (
    WarmupCosine,
    build_dataset,
    build_model,
    build_queries,
    build_train_step,
    count_parameters,
    pick_device,
    warmup_note,
)
from ginr.engine.data import Batch, Resolutions, StepBatchSampler, prefetched, train_loader
from ginr.engine.evaluation import PICTURE_PANELS, evaluate, save_picture, scalar_tags
from ginr.engine.logging import RunLogger, effective_state, read_status
from ginr.engine.metrics import UPSCALERS
from ginr.engine.step import StepResult

log = logging.getLogger(__name__)
# (config, GPU memory in bytes) -> one line on what fits; the entry point passes the memory planner's.
OutOfMemoryHint = Callable[[DictConfig, int], str]


FIRST_CHECKPOINT_MIN = 1.0  # the longest a run goes without last.ckpt (then trainer.ckpt_every_min)


class TrainingDiverged(RuntimeError):
    pass


class Window:
    """The steps between two log lines: their sums on the device (only finite steps add), their finite
    flags until :meth:`Trainer._settle` reads them, and their wall time without evaluation and saving."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, device=device)  # loss, PSNR, gradient norm
        self.n = torch.zeros((), dtype=torch.long, device=device)  # finite steps
        self.flags: list[tuple[int, torch.Tensor]] = []  # (step, ok) not yet read
        self.steps, self.started, self.paused = 0, None, 0.0

    def add(self, step: int, result: StepResult, tick: float) -> None:
        values = torch.stack([result.loss, result.psnr, result.grad_norm]).float()
        self.sums += torch.where(result.ok, values, 0.0)
        self.n += result.ok
        self.flags.append((step, result.ok))
        self.steps += 1
        self.started = tick if self.started is None else self.started

    def pause(self, seconds: float) -> None:
        """Evaluation or saving that took ``seconds`` inside the window; one before its first step is
        outside it already (the window's clock starts at that step)."""
        if self.started is not None:
            self.paused += seconds

    def seconds(self) -> float:
        """Wall time since the window's first step, evaluation and saving excluded (after a sync)."""
        return time.perf_counter() - self.started - self.paused


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: 42s, 4m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def finished_metrics(run_dir: Path) -> dict[str, float] | None:
    """The metrics a run in ``run_dir`` recorded when it finished (its ``status.json``); None for a run
    that has not finished, or no run."""
    status = read_status(run_dir)
    return (status.get("metrics") or {}) if status.get("state") == "finished" else None


class DataError(RuntimeError):
    """The dataset could not be loaded; the message names the file or folder and what to do."""


class Trainer:
    def __init__(
        self, cfg: DictConfig, run_dir: Path, display_name: str, *, oom_hint: OutOfMemoryHint | None = None
    ):
        self.cfg, self.run_dir, self.oom_hint, tcfg = cfg, run_dir, oom_hint, cfg.trainer
        self.device = pick_device(tcfg.device)
        self.dist = dist.init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        torch.manual_seed(cfg.seed)
        if tcfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.step_fn = build_train_step(cfg, self.device, distributed=self.dist)
        self.model, self.amp = self.step_fn.model, self.step_fn.amp
        self.step, self.best_psnr, self.bad_steps, self.consecutive_bad = 0, -math.inf, 0, 0
        self.max_steps, self.length_fixed = tcfg.max_steps, tcfg.train_minutes is None
        if (
            self.length_fixed
            and self.dist.is_main
            and (note := warmup_note(tcfg.max_steps, cfg.optim.warmup_steps))
        ):
            log.warning(note)
        self.eval_amp = self.amp if tcfg.eval_precision == "train" else None
        self.val_baselines: dict[
            str, float
        ] = {}  # the classical upscalers' val scores, from the first evaluation
        if tcfg.resume:
            self._resume(tcfg.resume)
        self.minutes = (
            None if tcfg.train_minutes is None
            else MinutesBudget(
                tcfg.train_minutes, tcfg.max_steps, self.device, self.dist, self._schedule.warmup,
                start_step=self.step, length_fixed=self.length_fixed,
            )
        )  # fmt: skip
        self._load_data()
        self.logger = RunLogger(
            run_dir, enabled=self.dist.is_main, name=display_name, max_steps=self.max_steps,
            start_step=self.step, params=count_parameters(self.model), progress=cfg.logger.progress,
        )  # fmt: skip
        self.stop = dist.StopVote(self.dist, self.device)
        self.first_window = True
        self.saved_at, self.saved_last = time.monotonic(), bool(tcfg.resume)  # a resumed run has a checkpoint

    def _load_data(self) -> None:
        cfg = self.cfg
        with self._main_first():  # the main rank downloads and caches; the others then read the cache
            try:
                self.train_set = build_dataset(cfg, "train")
                # items: (the input, the same image at each target resolution)
                if above := target_resolutions(cfg.targets):
                    self.train_set = Resolutions(
                        self.train_set, *(build_dataset(cfg, "train", r) for r in above)
                    )
                self.held_out = {  # split -> (images at the training resolution, {r: the same at r})
                    split: (
                        build_dataset(cfg, split),
                        {r: build_dataset(cfg, split, r) for r in cfg.data.eval_resolutions},
                    )
                    for split in ("val", "test")
                }
            except (InstantiationException, OSError, ValueError, RuntimeError) as err:
                cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
                raise DataError(f"{cfg.data.dataset._target_.rsplit('.', 1)[-1]}: {cause}") from err
        try:
            sampler = StepBatchSampler(
                len(self.train_set), cfg.data.batch_size, seed=cfg.seed, start_step=self.step,
                rank=self.dist.rank, world_size=self.dist.world_size,
            )  # fmt: skip
        except ValueError as err:  # the batch does not fit the data
            raise DataError(str(err)) from None
        self.loader = train_loader(self.train_set, sampler, cfg.data.num_workers, self.device.type == "cuda")
        self.queries = build_queries(cfg, self.model, self.device, distributed=self.dist)

    @contextmanager
    def _main_first(self):
        if not self.dist.is_main:
            dist.barrier(self.dist)
        yield
        if self.dist.is_main:
            dist.barrier(self.dist)

    def _resume(self, resume: str) -> None:
        path, state = ckpt.load_for_resume(resume, map_location=self.device)
        ckpt.check_compatible(state["config"], self.cfg, path)
        self.step_fn.load_state_dict(state)
        self.step, self.best_psnr, self.bad_steps = (
            state["step"],
            state["best_psnr"],
            state.get("bad_steps", 0),
        )
        if self.cfg.trainer.train_minutes is None:
            self._set_max_steps(self.max_steps)  # the config's: a resumed run may be given more steps
        elif state.get("length_fixed"):
            self._set_max_steps(state["max_steps"])  # the length its timed steps fixed
        ckpt.set_rng_state(state["rng"])
        previous = read_status(self.run_dir)
        if effective_state(previous) == "killed":
            log.warning(
                "this run's previous process (pid %s) was killed after step %s: %d steps since its last "
                "checkpoint are done again", previous["pid"], previous.get("step"),
                (previous.get("step") or self.step) - self.step,
            )  # fmt: skip
        log.info("resumed from %s at step %d", path, self.step)

    def _checkpoint_due(self) -> bool:
        """Whether ``trainer.ckpt_every_min`` minutes have passed since the last checkpoint, or, before the
        run has one, a minute (at most): a kill early in a run loses a minute, not the run. Every rank
        agrees: only the main rank writes, and it reads its own clock."""
        minutes = self.cfg.trainer.ckpt_every_min
        if minutes is None:
            return False
        if not self.saved_last:
            minutes = min(minutes, FIRST_CHECKPOINT_MIN)
        return time.monotonic() - self.saved_at > 60 * minutes

    def save(self, name: str) -> None:
        if name == "last":
            self.saved_at, self.saved_last = time.monotonic(), True
        if not self.dist.is_main:
            return
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            log.error("not writing %s: the weights are not finite; the previous checkpoint is kept", name)
            return
        state = {
            **self.step_fn.state_dict(), "step": self.step, "best_psnr": self.best_psnr,
            "bad_steps": self.bad_steps, "max_steps": self.max_steps, "length_fixed": self.length_fixed,
            "rng": ckpt.rng_state(), "config": OmegaConf.to_container(self.cfg, resolve=True),
        }  # fmt: skip
        ckpt.save_checkpoint(state, self.run_dir / "checkpoints" / f"{name}.ckpt")
        if name == "last":
            self.logger.checkpointed(self.step)

    def train_step(self, batch: Batch) -> StepResult:
        """The training step on one batch of images (with ``targets.resolution``, a tuple: the input and
        the same images at each target resolution): this step's query pixels, then the step."""
        images, coords, targets = self.queries.inputs(self.step, batch)
        first = (
            self.step == 0 and not self.dist.enabled
        )  # its FLOPs: the run's budget is that times its steps
        return self.step_fn(images, coords, targets, count_flops=first)

    def run(self) -> dict[str, float]:
        tcfg, started = self.cfg.trainer, time.time()
        metrics: dict[str, float] = {}
        self.logger.set_status("running", self.step)
        window = Window(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model.train()
        batches = prefetched(iter(self.loader), self.device)
        while self.step < self.max_steps:
            tick = time.perf_counter()
            try:
                result = self.train_step(next(batches))
            except torch.OutOfMemoryError as err:
                raise self._out_of_memory() from err
            self.step += 1
            window.add(self.step, result, tick)
            self._fit_to_minutes()
            self.logger.advance(1)
            if self.step % tcfg.log_every == 0:  # the host waits for the GPU here, once per window
                self._settle(window)
                self._log_window(window)
                window = Window(self.device)
            self._check_time_limit(started)
            last = self.step == self.max_steps or self.stop.agreed(self.step) is not None
            evaluate_now = self.step % tcfg.eval_every == 0 or last
            save_now = self.step % tcfg.ckpt_every == 0 or last or self._checkpoint_due()
            if evaluate_now or save_now:
                self._settle(window)  # a diverged run stops before it writes a checkpoint
                paused = time.perf_counter()
                with self.minutes.paused() if self.minutes is not None else nullcontext():
                    if evaluate_now:
                        metrics = self._evaluate()
                    if save_now:
                        self.save("last")
                window.pause(time.perf_counter() - paused)
            if self.stop.reason is not None:
                break
        batches.close()  # stops the loading thread
        if self.stop.complete:  # every step ran, or the time limit ended the run
            metrics |= self._test()
        return metrics

    def request_stop(self, reason: str) -> None:
        """Finish the step, checkpoint and stop, on every rank at the same step (a signal handler calls this)."""
        self.stop.request(reason, dist.StopVote.SIGNAL)

    @property
    def _schedule(self) -> WarmupCosine:
        return self.step_fn.scheduler.lr_lambdas[0]

    def _set_max_steps(self, steps: int) -> None:
        self.max_steps, self.length_fixed = steps, True
        self._schedule.total = steps  # the cosine now ends at the new length

    def _fit_to_minutes(self) -> None:
        """``trainer.train_minutes``: whenever a window of timed steps ends, the run's length (and its cosine)."""
        if self.minutes is None or (steps := self.minutes.after_step(self.step)) is None:
            return
        self._set_max_steps(steps)
        self.logger.set_max_steps(steps)
        self.logger.scalars(
            self.step, {"perf/timed_ms_per_step": self.minutes.ms_per_step, "perf/fitted_max_steps": steps}
        )

    def _out_of_memory(self) -> RuntimeError:
        self.step_fn.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        budget = torch.cuda.get_device_properties(self.device).total_memory
        hint = "no memory planner was given"
        if self.oom_hint is not None:
            try:
                hint = self.oom_hint(self.cfg, budget)
            except (
                Exception
            ) as err:  # the error must reach the user even if the planner cannot model this config
                hint = f"the memory planner could not model this config ({type(err).__name__})"
        return RuntimeError(
            f"CUDA out of memory at step {self.step + 1} (data.batch_size={self.cfg.data.batch_size}, "
            f"trainer.queries_per_image={self.cfg.trainer.queries_per_image}): {hint}; "
            "memory=lean, trainer.checkpoint_queries=128, decoder.checkpoint=true or fewer queries per image also cut memory"
        )

    def _settle(self, window: Window) -> None:
        """Read the window's finite flags (the host waits for the GPU): a skipped step is counted and
        warned about with its step number; too many in a row stop the run."""
        if not window.flags:
            return
        steps, flags = zip(*window.flags, strict=True)
        window.flags = []
        for step, ok in zip(steps, torch.stack(flags).tolist(), strict=True):
            self._count_bad(step, ok)

    def _count_bad(self, step: int, ok: bool) -> None:
        if ok:
            self.consecutive_bad = 0
            return
        self.bad_steps += 1
        self.consecutive_bad += 1
        log.warning("step %d: non-finite loss or gradient, step skipped (%d so far)", step, self.bad_steps)
        self.logger.scalars(step, {"train/skipped_steps": self.bad_steps})
        if self.consecutive_bad >= self.cfg.trainer.max_bad_steps:
            raise TrainingDiverged(
                f"{self.consecutive_bad} consecutive non-finite steps at step {step}: stopping; "
                f"the last good checkpoint is {self.run_dir / 'checkpoints' / 'last.ckpt'}"
            )

    def _log_window(self, window: Window) -> None:
        sums = dist.all_reduce_mean(window.sums, self.dist)
        n = window.n.item()  # waits for the GPU; every rank skips the same steps, so n agrees
        seconds, steps = window.seconds(), window.steps
        if not n:
            return
        loss, train_psnr, grad_norm = (sums / n).tolist()
        self.logger.advance(0, loss=loss, psnr=train_psnr)
        values = self._once() if self.first_window else {}
        values |= {"train/loss": loss, "train/psnr": train_psnr, "train/grad_norm": grad_norm,
                  "train/lr": self.step_fn.scheduler.get_last_lr()[0],
                  "perf/ms_per_step": 1000 * seconds / steps,
                  "perf/images_per_s": self.cfg.data.batch_size * steps / seconds}  # fmt: skip
        if self.device.type == "cuda":  # the training peak of this window (evaluation is not counted)
            values["perf/peak_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
            torch.cuda.reset_peak_memory_stats(self.device)
        self.logger.scalars(self.step, values)
        self.logger.set_status("running", self.step)
        eta = (  # of the steps left (validation not counted); trainer.train_minutes fixes the length later
            f"training ETA {duration((self.max_steps - self.step) * seconds / steps)}" if self.length_fixed
            else f"the run's length is fixed after step {TIMED_STEPS[1]}"
        )  # fmt: skip
        log.info(
            "step %d/%d: loss %.4g, train PSNR %.2f dB, %.1f ms/step, %.0f images/s, %s", self.step, self.max_steps,
            loss, train_psnr, values["perf/ms_per_step"], values["perf/images_per_s"], eta,
        )  # fmt: skip

    def _once(self) -> dict[str, float]:
        """What the first log window of this process adds: the first step's FLOPs (a run's budget is that
        times its steps) and, when compiled, that step's seconds (compilation included)."""
        values, step, self.first_window = {}, self.step_fn, False
        if step.flops is not None:  # at step 0: a property of the step, not of this window
            self.logger.scalars(0, {"perf/gflop_per_step": step.flops / 1e9})
        if step.compile_s is not None:
            log.info("torch.compile: the first step took %.1f s, compilation included", step.compile_s)
            values["perf/compile_s"] = step.compile_s
        return values

    def _check_time_limit(self, started: float) -> None:
        limit = self.cfg.trainer.time_limit_min
        if limit is not None and time.time() - started > 60 * limit:
            self.stop.request(f"time limit of {limit} min", dist.StopVote.TIME_LIMIT)

    def _score(self, model: torch.nn.Module, split: str, max_images: int | None) -> dict[str, float]:
        """Evaluate ``model`` on ``split``; log its scalars and a picture grid under ``<split>/``."""
        cfg, (dataset, highres) = self.cfg, self.held_out[split]
        result = evaluate(
            model, dataset, highres=highres, batch_size=cfg.data.batch_size, device=self.device,
            amp_dtype=self.eval_amp, chunk=cfg.trainer.render_chunk, max_images=max_images, seed=cfg.seed,
            baselines=split == "test" or not self.val_baselines,  # they do not change during a run
            pictures=cfg.logger.images, trained_on=cfg.trainer.queries_per_image,
        )  # fmt: skip
        if split == "val" and not self.val_baselines:
            self.val_baselines = {k: v for k, v in result.means.items() if k.split("_")[0] in UPSCALERS}
        tags = scalar_tags(result.means, cfg.data.resolution, self.val_baselines if split == "val" else None)
        scalars = {f"{split}/{k}": v for k, v in tags.items()}
        scalars[f"{split}/images"] = result.count
        scalars[f"{split}/split_images"] = len(dataset)
        self.logger.scalars(self.step, scalars)
        for tag, grid in result.grids.items():
            self.logger.image(self.step, f"{split}/{tag}", grid)
        if split == "test" and result.grids:  # the run's pictures, for a person without TensorBoard
            saved = [
                save_picture(grid, self.run_dir / "pictures" / f"test_{tag}.png")
                for tag, grid in result.grids.items()
            ]
            log.info("test pictures (%s): %s", PICTURE_PANELS, ", ".join(str(path) for path in saved))
        headline = ", ".join(  # a scale whose images have no real ground truth has no score, and says so
            f"{k} {v:.2f}" if math.isfinite(v) else f"{k} n/a (no image has ground truth there)"
            for k, v in scalars.items()
            if "/psnr" in k and "clamped" not in k
        )
        log.info("step %d: %s (%d of %d %s images)", self.step, headline, result.count, len(dataset), split)
        if split == "test" and result.note:
            log.info("note: %s", result.note)
        return scalars

    def _evaluate(self) -> dict[str, float]:
        """Validation: selects the best checkpoint on ``trainer.select_on`` (``val/best_psnr``: its best)."""
        if not self.dist.is_main:
            dist.barrier(self.dist)
            return {}
        scalars = self._score(self.model, "val", self.cfg.trainer.eval_max_images)
        selected = scalars[f"val/{self.cfg.trainer.select_on}"]
        if selected > self.best_psnr:
            self.best_psnr = selected
            self.save("best")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        dist.barrier(self.dist)
        return {**scalars, "val/best_psnr": self.best_psnr}

    def _test(self) -> dict[str, float]:
        """The test split, once, at the end of a complete run: the checkpoint selected on val (every image
        unless ``trainer.test_max_images`` says otherwise; ``test/images`` says how many)."""
        if not self.dist.is_main:
            dist.barrier(self.dist)
            return {}
        best = self.run_dir / "checkpoints" / "best.ckpt"
        model, step = self.model, self.step
        if best.is_file():
            state = ckpt.load_checkpoint(best, map_location=self.device)
            model, step = build_model(self.cfg).to(self.device), state["step"]
            model.load_state_dict(state["model"])
        scalars = {
            **self._score(model, "test", self.cfg.trainer.test_max_images),
            "test/checkpoint_step": step,
        }
        self.logger.scalars(self.step, {"test/checkpoint_step": step})
        dist.barrier(self.dist)
        return scalars
