"""Train a GINR model: ``python -m ginr.train experiment=scent_ff [overrides]``.

``train(cfg)`` does the work and is what tests call; ``main`` is the Hydra entry point around it.
"""

import logging
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ginr.config import ConfigError, prepare
from ginr.engine import checkpoint as ckpt
from ginr.engine import distributed as dist
from ginr.engine.loop import DataError, Trainer

log = logging.getLogger("ginr.train")


def train(
    cfg: DictConfig, display_name: str | None = None, user_keys: Iterable[str] = ()
) -> dict[str, float]:
    """Train as ``cfg`` says; return the last evaluation's metrics (``test/psnr``, ``test/best_psnr``, ...)."""
    cfg = prepare(cfg, user_keys)
    run_dir = Path(cfg.run_dir)
    if cfg.trainer.resume:  # continue in the run directory the checkpoint belongs to
        run_dir = ckpt.resolve_checkpoint(cfg.trainer.resume).parent.parent
    trainer = Trainer(cfg, run_dir, display_name or cfg.name)
    if trainer.dist.is_main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    def request_stop(signum, _frame):
        trainer.stop_reason = signal.Signals(signum).name
        log.warning("%s received: finishing the step, then checkpointing and exiting", trainer.stop_reason)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        metrics = trainer.run()
    except BaseException as err:
        trainer.logger.set_status("failed", trainer.step, error=f"{type(err).__name__}: {err}")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        trainer.logger.close()
        dist.shutdown(trainer.dist)
    reason = trainer.stop_reason
    state = "interrupted" if reason and not reason.startswith("time limit") else "finished"
    trainer.logger.set_status(state, trainer.step, stop_reason=reason, metrics=metrics)
    if reason:
        log.info("stopped at step %d (%s); resume with trainer.resume=%s", trainer.step, reason, run_dir)
    log.info("run directory: %s", run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    user_keys = [o.split("=", 1)[0].lstrip("+~") for o in hydra_cfg.overrides.task]
    try:
        metrics = train(cfg, f"{cfg.name} {hydra_cfg.job.override_dirname}".strip(), user_keys)
    except (ConfigError, ckpt.CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("test/best_psnr")


if __name__ == "__main__":
    main()
