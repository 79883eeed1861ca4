"""A budget of training minutes that fixes the run's number of steps from the time of its steps
(``trainer.train_minutes``). (A run's FLOPs: :meth:`ginr.engine.step.TrainStep.count_flops`.)"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ginr.config.schema import RETIMED_UNTIL, TIMED_STEPS
from ginr.engine import distributed as dist

log = logging.getLogger(__name__)


class MinutesBudget:
    """``trainer.train_minutes``: after each step, :meth:`after_step` times a window of steps (synchronised,
    the mean agreed across ranks) and, when the window ends, returns the number of steps that take that
    many minutes (at least the steps done, at most ``cap``). The first window is TIMED_STEPS; where the
    warm-up lasts long enough, a second one runs from there to RETIMED_UNTIL (or the warm-up's end) and
    fixes the length again, from more steps and further from compilation (whose first steps can run
    slower), before the cosine starts. Evaluation and checkpoints (:meth:`paused`), compilation and
    start-up are not counted."""

    def __init__(
        self, minutes: float, cap: int, device: torch.device, info: dist.DistInfo, warmup_steps: int, *,
        start_step: int = 0, length_fixed: bool = False,
    ) -> None:  # fmt: skip
        """A run resumed at ``start_step`` times what its earlier process had not: the first window (moved
        to start there) unless its length was fixed, and what is left of the second if that is a window's
        worth of steps."""
        self.minutes, self.cap, self.device, self.info = minutes, cap, device, info
        span = TIMED_STEPS[1] - TIMED_STEPS[0]
        self.windows: list[tuple[int, int]] = []
        if not length_fixed:
            first = max(TIMED_STEPS[0], start_step)
            self.windows.append((first, first + span))
        first = max(TIMED_STEPS[1], start_step, *(until for _, until in self.windows))
        until = min(RETIMED_UNTIL, warmup_steps)
        if until - first >= span:
            self.windows.append((first, until))
        self.started: tuple[int, float] | None = None  # (step, clock) where the window's timing began
        self.paused_s = 0.0  # of that window: evaluation and checkpoints
        self.ms_per_step: float | None = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Evaluation or checkpointing: its time is left out of the window being timed."""
        tick = time.perf_counter()
        try:
            yield
        finally:
            if self.started is not None:
                self.paused_s += time.perf_counter() - tick

    def after_step(self, step: int) -> int | None:
        if not self.windows or step < self.windows[0][0]:
            return None
        until, started = self.windows[0][1], self.started
        if started is not None and step < until:
            return None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if started is None:
            self.started, self.paused_s = (step, now), 0.0
            return None
        seconds = torch.tensor((now - started[1] - self.paused_s) / (step - started[0]), device=self.device)
        seconds = dist.all_reduce_mean(seconds, self.info).item()
        self.ms_per_step = 1000 * seconds
        steps = min(self.cap, max(step, round(60 * self.minutes / seconds)))
        self.windows.pop(0)
        log.info(
            "trainer.train_minutes=%g: %.1f ms/step over steps %d-%d -> max_steps %d%s%s",
            self.minutes, self.ms_per_step, started[0], step, steps, " (the cap)" if steps == self.cap else "",
            f"; timed again over steps {step}-{self.windows[0][1]}" if self.windows else "",
        )  # fmt: skip
        self.started, self.paused_s = ((step, now) if self.windows else None), 0.0
        return steps
