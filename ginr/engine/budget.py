"""A budget of training minutes that fixes the run's number of steps from the time of its first steps
(``trainer.train_minutes``). (A run's FLOPs: :meth:`ginr.engine.step.TrainStep.count_flops`.)"""

import logging
import time

import torch

from ginr.config.schema import TIMED_STEPS
from ginr.engine import distributed as dist

log = logging.getLogger(__name__)


class MinutesBudget:
    """``trainer.train_minutes``: after each step, :meth:`after_step` times the steps of TIMED_STEPS
    (synchronised, the mean agreed across ranks), then returns the number of steps that take that many
    minutes (at least the steps done, at most ``cap``), once; evaluation, compilation and start-up are
    not counted."""

    def __init__(self, minutes: float, cap: int, device: torch.device, info: dist.DistInfo):
        self.minutes, self.cap, self.device, self.info = minutes, cap, device, info
        self.started: tuple[int, float] | None = None  # (step, clock) where the timing began
        self.ms_per_step: float | None = None

    def after_step(self, step: int) -> int | None:
        if step < TIMED_STEPS[0]:
            return None
        if self.started is not None and step - self.started[0] < TIMED_STEPS[1] - TIMED_STEPS[0]:
            return None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if self.started is None:
            self.started = (step, now)
            return None
        seconds = torch.tensor((now - self.started[1]) / (step - self.started[0]), device=self.device)
        seconds = dist.all_reduce_mean(seconds, self.info).item()
        self.ms_per_step = 1000 * seconds
        steps = min(self.cap, max(step, round(60 * self.minutes / seconds)))
        log.info(
            "trainer.train_minutes=%g: %.1f ms/step over steps %d-%d -> max_steps %d%s",
            self.minutes, self.ms_per_step, self.started[0], step, steps, " (the cap)" if steps == self.cap else "",
        )  # fmt: skip
        return steps
