"""Train a GINR model: ``python -m ginr.train experiment=scent_ff [overrides]`` (or ``ginr-train``).

``train(cfg)`` does the work and is what tests and the Python API call; ``main`` is the Hydra entry
point around it, which also picks the ``hardware`` group for this machine unless the command names one.
"""

import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ginr.config import (
    AUTO_RESUME,
    CONFIG_DIR,
    HYDRA_ERRORS,
    ConfigError,
    config_error,
    default_hardware,
    prepare,
    run_dir_of,
)
from ginr.engine import checkpoint as ckpt
from ginr.engine import distributed as dist
from ginr.engine.loop import DataError, Trainer, finished_metrics
from ginr.tools.memory import oom_hint

log = logging.getLogger("ginr.train")


def train(cfg: DictConfig, display_name: str | None = None) -> dict[str, float]:
    """Train as ``cfg`` says; return the last validation's metrics (``val/psnr``, ``val/best_psnr``, ...) and,
    for a complete run, the test split's (``test/psnr``, ...) of the checkpoint selected on val."""
    auto = OmegaConf.select(cfg, "trainer.resume") == AUTO_RESUME
    cfg = prepare(cfg)  # a resumed run's run_dir: the folder it continues in
    run_dir = Path(cfg.run_dir)
    if auto and (done := finished_metrics(run_dir)) is not None:  # a study run again: done is done
        log.info("trainer.resume=auto: %s has finished; not run again", run_dir)
        return done
    trainer = Trainer(cfg, run_dir, display_name or cfg.name, oom_hint=oom_hint)
    if trainer.dist.is_main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    def request_stop(signum, _frame):
        trainer.request_stop(signal.Signals(signum).name)
        log.warning(
            "%s received: finishing the step, then checkpointing and exiting", signal.Signals(signum).name
        )

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        metrics = trainer.run()
        reason = trainer.stop.reason
        state = "finished" if trainer.stop.complete else "interrupted"
        trainer.logger.set_status(state, trainer.step, stop_reason=reason, metrics=metrics)
        trainer.logger.hparams(hparams(cfg), metrics)
    except BaseException as err:
        trainer.logger.set_status("failed", trainer.step, error=f"{type(err).__name__}: {err}")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        trainer.logger.close()
        dist.shutdown(trainer.dist)
    if reason:
        log.info("stopped at step %d (%s); resume with trainer.resume=%s", trainer.step, reason, run_dir)
    log.info("run directory: %s", run_dir)
    return metrics


def hparams(cfg: DictConfig) -> dict[str, bool | int | float | str]:
    """The run's config as flat ``key: scalar`` pairs for TensorBoard's HParams tab (lists as strings)."""
    flat: dict[str, bool | int | float | str] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(node, bool | int | float | str):
            flat[prefix] = node
        elif node is not None:
            flat[prefix] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    overrides = HydraConfig.get().job.override_dirname
    try:
        metrics = train(cfg, f"{cfg.name} {overrides}".strip())  # validates the config, once
    except (ConfigError, ckpt.CheckpointError, DataError) as err:
        _discard_if_unused(Path(HydraConfig.get().runtime.output_dir))
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("val/best_psnr")  # the sweep objective: selection reads val only


def _discard_if_unused(run_dir: Path) -> None:
    """Remove the run folder Hydra made for a run that never started (nothing in it but Hydra's own
    files): a refused config leaves nothing behind. A folder with anything else in it is kept."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    """``python -m ginr.train [overrides]``: Hydra's command line, with ``hardware`` picked for this
    machine unless given, and a resumed run written into its own run directory. Hydra composes the config
    once and :func:`train` validates it once; a bad override, key or value is one line and exit status 2."""
    given = {
        a.lstrip("+~").split("=", 1)[0]: a.split("=", 1)[1] for a in sys.argv[1:] if "=" in a and a[0] != "-"
    }
    if "hardware" not in given:
        choice = default_hardware()
        if choice == "cpu":
            print(
                "No CUDA device: hardware=cpu, a scaled-down model and schedule for a CPU run "
                "(configs/hardware/cpu.yaml); add hardware=gpu to train the full configuration here.",
                file=sys.stderr,
            )
        sys.argv.insert(1, f"hardware={choice}")  # before any --flag, which Hydra parses first
    if given.get("trainer.resume", "null") not in ("null", AUTO_RESUME) and "hydra.run.dir" not in given:
        run_dir = run_dir_of(given["trainer.resume"])  # logs and outputs stay with the run
        sys.argv += [f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra's composition errors reach the line below whole
    try:
        _hydra_main()
    except HYDRA_ERRORS as err:
        print(f"error: {config_error(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
