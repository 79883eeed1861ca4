"""A Hydra launcher that runs a multirun's jobs concurrently, each pinned to its own GPU.

``hydra/launcher=gpus`` (set by ``sweep=...`` configs or on the command line): every job of the sweep is
``python -m ginr.train <its overrides>`` in a subprocess with ``CUDA_VISIBLE_DEVICES`` set to one free GPU
slot (``jobs_per_gpu`` slots per GPU, every visible GPU by default; ``cpu_jobs`` slots on a machine with
none). A job that crashes or runs out of memory is recorded, with its exit code and log, in
``<sweep dir>/jobs.json``; the others run on, and the sweep ends normally.
"""

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional  # noqa: UP035 (OmegaConf reads these in structured configs)

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@dataclass
class GPULauncherConf:
    _target_: str = "hydra_plugins.ginr_launcher.gpus.GPULauncher"
    gpus: Optional[List[int]] = None  # noqa: UP006, UP045  GPU indices; null: every visible GPU
    jobs_per_gpu: int = 1
    cpu_jobs: int = 1  # concurrent jobs on a machine without GPUs
    command: List[str] = field(default_factory=lambda: [sys.executable, "-m", "ginr.train"])  # noqa: UP006


ConfigStore.instance().store(group="hydra/launcher", name="gpus", node=GPULauncherConf, provider="ginr")


def visible_gpus() -> list[int]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every one torch counts."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(g) for g in visible.split(",") if g.strip()]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # no torch or no driver: no GPUs
        return []


def slots(gpus: Sequence[int], jobs_per_gpu: int, cpu_jobs: int) -> list[str | None]:
    """One entry per job that may run at once: a GPU index (as CUDA_VISIBLE_DEVICES), or None on CPU."""
    if jobs_per_gpu < 1 or cpu_jobs < 1:
        raise ValueError(f"jobs_per_gpu and cpu_jobs must be >= 1, got {jobs_per_gpu} and {cpu_jobs}")
    if gpus:
        return [str(g) for _ in range(jobs_per_gpu) for g in gpus]  # spread over the GPUs first
    return [None] * cpu_jobs


class GPULauncher(Launcher):
    def __init__(self, gpus: Sequence[int] | None = None, jobs_per_gpu: int = 1, cpu_jobs: int = 1,
                 command: Sequence[str] = (sys.executable, "-m", "ginr.train")) -> None:  # fmt: skip
        self.gpus = list(gpus) if gpus is not None else None
        self.jobs_per_gpu, self.cpu_jobs, self.command = jobs_per_gpu, cpu_jobs, list(command)
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None, "setup() first"
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        free: queue.Queue[str | None] = queue.Queue()
        pool = slots(self.gpus if self.gpus is not None else visible_gpus(), self.jobs_per_gpu, self.cpu_jobs)
        for slot in pool:
            free.put(slot)
        where = f"GPUs {sorted(set(s for s in pool if s is not None))}" if pool[0] is not None else "CPU"
        log.info("launching %d jobs, %d at a time on %s", len(job_overrides), len(pool), where)

        done = threading.Lock()

        def run(idx: int, overrides: Sequence[str]) -> dict[str, Any]:
            slot = free.get()
            try:
                record = self._run_one(idx, list(overrides), slot, sweep_dir)
            finally:
                free.put(slot)
            with done:  # recorded as each job ends, so a sweep stopped midway keeps what finished
                self._record(sweep_dir, [record])
            return record

        with ThreadPoolExecutor(max_workers=len(pool)) as executor:
            jobs = [
                executor.submit(run, initial_job_idx + i, overrides)
                for i, overrides in enumerate(job_overrides)
            ]
            records = [job.result() for job in jobs]
        failed = [r for r in records if r["returncode"] != 0]
        if failed:
            log.warning("%d of %d jobs failed (recorded in %s): %s", len(failed), len(records),
                        sweep_dir / "jobs.json", ", ".join(f"#{r['job']} ({r['log']})" for r in failed))  # fmt: skip
        return [
            JobReturn(
                overrides=r["overrides"],
                working_dir=r["dir"],
                task_name="ginr.train",
                status=JobStatus.COMPLETED,
                _return_value=r,
            )  # fmt: skip
            for r in records
        ]

    def _run_one(self, idx: int, overrides: list[str], slot: str | None, sweep_dir: Path) -> dict[str, Any]:
        job_dir = sweep_dir / str(idx)
        job_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
        cmd = [*self.command, *overrides, "hydra.mode=RUN", f"hydra.run.dir={job_dir}"]
        log.info("job #%d on %s: %s", idx, f"GPU {slot}" if slot is not None else "CPU", " ".join(overrides))
        started = time.time()
        with open(job_dir / "job.log", "w") as out:
            returncode = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        return {"job": idx, "overrides": overrides, "device": slot, "returncode": returncode,
                "wall_s": round(time.time() - started, 1), "dir": str(job_dir), "log": str(job_dir / "job.log")}  # fmt: skip

    @staticmethod
    def _record(sweep_dir: Path, records: list[dict[str, Any]]) -> None:
        """Add ``records`` to ``jobs.json``, in job order (written whole to a temporary file, then renamed)."""
        path = sweep_dir / "jobs.json"
        previous = json.loads(path.read_text()) if path.is_file() else []
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(sorted(previous + records, key=lambda r: r["job"]), indent=1))
        tmp.replace(path)
