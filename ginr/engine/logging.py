"""Run outputs: TensorBoard scalars and images, ``status.json``, and a progress bar (main rank only)."""

import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ginr.files import write_atomic


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def effective_state(status: dict[str, Any]) -> str:
    """The state a ``status.json`` records, except that a "running" run whose process is gone from this
    host (a SIGKILL, a crash of the machine's session) reads as "killed"."""
    state = status.get("state") or "unknown"
    here = status.get("host") == socket.gethostname() and status.get("pid")
    return "killed" if state == "running" and here and not process_alive(int(status["pid"])) else state


def read_status(run_dir: Path) -> dict[str, Any]:
    """A run's ``status.json``, or {} where there is none or it cannot be read."""
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def describe_state(status: dict[str, Any]) -> str:
    """:func:`effective_state`, and for a killed run the step it can resume from: "killed (checkpoint at
    step 300)"."""
    state = effective_state(status)
    if state == "killed":
        step = status.get("checkpoint_step")
        return f"killed ({'no checkpoint' if step is None else f'checkpoint at step {step}'})"
    return state


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (a score that does not exist, e.g. at 2x for tiny images) as None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


class RunLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        name: str,
        max_steps: int,
        start_step: int,
        params: int,
        progress: bool,
    ):
        self.enabled, self.run_dir = enabled, run_dir
        self.started = time.time()
        self.status = {"state": "running", "name": name, "step": start_step, "max_steps": max_steps,
                       "checkpoint_step": start_step or None,  # of last.ckpt: where a resume starts
                       "params": params, "wall_time_s": 0.0, "error": None, "pid": os.getpid(),
                       "host": socket.gethostname()}  # fmt: skip
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # only the logging rank needs tensorboard

        # purge_step drops the events a killed run wrote after the checkpoint we resume from.
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        # a bar on a terminal only: in a log file it is a few very long lines (the loop logs a line a window)
        bar = progress and sys.stderr.isatty()
        self.bar = tqdm(total=max_steps, initial=start_step, disable=not bar, dynamic_ncols=True)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.enabled:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def image(self, step: int, tag: str, image: torch.Tensor) -> None:
        if self.enabled:
            self.writer.add_image(tag, image, step)

    def advance(self, steps: int, **postfix: float) -> None:
        if self.enabled:
            self.bar.update(steps)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def set_max_steps(self, steps: int) -> None:
        """The run's length, once fixed after it started (``trainer.train_minutes``)."""
        self.status["max_steps"] = steps
        if self.enabled:
            self.bar.total = steps
            self.bar.refresh()

    def checkpointed(self, step: int) -> None:
        """``last.ckpt`` now holds ``step``: where a resume starts, should this process die."""
        self.status["checkpoint_step"] = step
        self.set_status(self.status["state"], self.status["step"], self.status["error"])

    def set_status(self, state: str, step: int, error: str | None = None, **extra: Any) -> None:
        if self.enabled:
            elapsed = time.time() - self.started
            self.status.update(state=state, step=step, error=error, wall_time_s=round(elapsed, 1),
                               updated=round(time.time(), 1), **extra)  # fmt: skip
            text = json.dumps(_finite(self.status), indent=2, allow_nan=False)  # JSON has no NaN
            write_atomic(self.run_dir / "status.json", text)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        if self.enabled:
            self.writer.add_hparams(
                hparams, {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams"
            )

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.writer.close()
