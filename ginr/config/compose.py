"""The run config: composed by Hydra from the YAML groups in ``configs/`` (the repository's root; inside
the package once installed), checked against :mod:`ginr.config.schema` before any work, and the one source of
the variants (``configs/experiment/*.yaml``).

Hardware is a config group: ``hardware=gpu`` is the full schedule, ``hardware=cpu`` a scaled-down model
for a CPU machine; ``python -m ginr.train`` picks it from the machine unless the command line names one.
"""

import difflib
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ginr.config import schema
from ginr.config.schema import TIMED_STEPS, ConfigError
from ginr.coords import scale_tag

log = logging.getLogger(__name__)


def _config_dir() -> Path:
    """``configs/`` beside the package in a checkout (editable installs too); ``ginr/configs`` in a wheel,
    where pyproject.toml maps the folder into the package."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package.parent / "configs", package / "configs"):
        if (folder / "train.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no configs/train.yaml beside or inside {package}: a broken install?")


CONFIG_DIR = _config_dir()


def experiments() -> list[str]:
    """The variants: every ``configs/experiment/*.yaml``, by name."""
    return sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


HYDRA_ERRORS = (MissingConfigException, ConfigCompositionException, OverrideParseException)


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The training config with ``overrides`` (Hydra syntax), outside a Hydra app (tools, tests, the API);
    ``run_dir`` is set so nothing needs Hydra's runtime. A bad override raises a one-line
    :class:`ConfigError` (:func:`config_error`)."""
    overrides = list(overrides)
    if not any(o.lstrip("+~").split("=", 1)[0] == "run_dir" for o in overrides):
        overrides.append("run_dir=unused")  # train.yaml has run_dir: ${hydra:runtime.output_dir}
    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its config search path is ours
            return hydra_compose("train", overrides=overrides)
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="ginr"):
            return hydra_compose("train", overrides=overrides)
    except HYDRA_ERRORS as err:
        raise config_error(err) from None


def config_error(err: Exception) -> ConfigError:
    """Hydra's error for a bad override (an unknown group option, an unknown key, a malformed override)
    as one line naming the nearest valid names."""
    if isinstance(err, MissingConfigException):
        group, _, value = (err.missing_cfg_file or "").rpartition("/")
        options = sorted(err.options or [])
        close = difflib.get_close_matches(value, options, n=1)
        hint = f" (did you mean {group}={close[0]}?)" if close else ""
        return ConfigError(f"{group}={value} is not allowed: {group} is one of {', '.join(options)}{hint}")
    match = re.search(r"override '([^']+)'", str(err))
    if not isinstance(err, ConfigCompositionException) or match is None:
        return ConfigError(str(err).strip().splitlines()[0])
    key = match.group(1).lstrip("+~")
    known = _keys(compose(()))
    parent = key.rpartition(".")[0]
    if parent in known:  # a typo in the last name: compare names within its section
        names = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
        close = [names[n] for n in difflib.get_close_matches(key.rpartition(".")[2], names, n=1)]
    else:
        close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"{key} is not a config key{hint}")


def _keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Every dotted key of ``node``, sections and values."""
    keys = []
    for key in node:
        path = f"{prefix}{key}"
        keys.append(path)
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            keys += _keys(child, f"{path}.")
    return keys


def default_hardware() -> str:
    """The ``hardware`` group for this machine: ``gpu`` with CUDA, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def mixes_queries(cfg: DictConfig) -> bool:
    """Whether the decoder of ``cfg`` mixes the queries decoded together (as its blocks declare), so
    its output for one query depends on the others: no query chunking, O(N^2) in queries."""
    with torch.device("meta"):  # the decoder's own answer, with no weights allocated
        return bool(instantiate(cfg.decoder).mixes_queries)


def decoding(queries: int, resolution: int) -> list[str]:
    """The overrides under which a training step at ``data.resolution=resolution`` decodes ``queries``
    pixels per image, as a run would: a random subset of the input's pixels, every pixel, or every pixel
    plus the rest drawn from the same images at the smallest power-of-two resolution that holds them
    (as ``targets=multiscale`` does). Values only, so they merge onto a composed config. The benchmark's
    and the planner's query sweeps say what they mean with it."""
    pixels = resolution**2
    if queries <= pixels:  # targets above the input stay as configured
        return [f"trainer.queries_per_image={queries if queries < pixels else 'null'}"]
    above = queries - pixels
    side = max(2 * resolution, 1 << math.ceil(math.log2(math.sqrt(above))))
    return ["trainer.queries_per_image=null", f"targets.resolution={side}", f"targets.queries={above}"]


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on the first bad key or value, before any data or model is touched:
    every key against the schema, then the relations between keys."""
    schema.check(cfg)
    resolution, patch = cfg.data.resolution, cfg.encoder.patch_size
    if patch > resolution:
        schema.fail(
            "encoder.patch_size", patch, f"the patch must fit in the image (data.resolution={resolution})"
        )
    queries = cfg.trainer.queries_per_image
    if queries is not None and queries > resolution**2:
        schema.fail(
            "trainer.queries_per_image", queries, f"expected null or an integer in [1, {resolution**2}]"
        )
    above = schema.target_resolutions(cfg.targets)
    if above and (min(above) <= resolution or len(set(above)) < len(above)):
        schema.fail(
            "targets.resolution",
            cfg.targets.resolution,
            f"null, or distinct resolutions above the input's data.resolution={resolution}",
        )
    if above and not len(above) <= cfg.targets.queries <= sum(r * r for r in above):
        schema.fail(
            "targets.queries",
            cfg.targets.queries,
            f"an integer in [{len(above)}, {sum(r * r for r in above)}] (at least one per target resolution)",
        )
    selectable = ["psnr", *(f"psnr_{scale_tag(r, resolution)}" for r in cfg.data.eval_resolutions)]
    if cfg.trainer.select_on not in selectable:
        schema.fail(
            "trainer.select_on",
            cfg.trainer.select_on,
            f"one of {', '.join(selectable)} (val PSNR at the input's resolution or at data.eval_resolutions)",
        )
    chunk = cfg.trainer.checkpoint_queries
    if chunk is not None and mixes_queries(cfg):
        block = OmegaConf.select(cfg, "decoder.block._target_", default=cfg.decoder._target_)
        schema.fail(
            "trainer.checkpoint_queries",
            chunk,
            f"null for {block.rsplit('.', 1)[-1]}, whose blocks mix queries",
        )
    if cfg.trainer.train_minutes is not None and cfg.optim.warmup_steps < TIMED_STEPS[1]:
        schema.fail(
            "optim.warmup_steps",
            cfg.optim.warmup_steps,
            f"at least {TIMED_STEPS[1]} with trainer.train_minutes (steps {TIMED_STEPS[0]}-{TIMED_STEPS[1]} "
            "are timed inside the warm-up)",
        )
    lr = cfg.optim.optimizer.get("lr")
    if not isinstance(lr, int | float) or isinstance(lr, bool) or lr <= 0:
        schema.fail("optim.optimizer.lr", lr, "expected a positive number")
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        schema.fail("trainer.device", "cuda", "no CUDA device is available here (use auto or cpu)")


AUTO_RESUME = "auto"  # trainer.resume=auto: continue in run_dir if it holds a checkpoint, else start there


def prepare(cfg: DictConfig) -> DictConfig:
    """A resolved copy of ``cfg``, validated; a resumed run's ``run_dir`` is the folder it continues in, and
    ``trainer.resume=auto`` becomes ``run_dir`` where that holds a checkpoint, else null (a fresh start)."""
    cfg = cfg.copy()
    for key in sorted(OmegaConf.missing_keys(cfg)):  # a ??? the command line must fill
        raise ConfigError(f"{key} is missing: give it on the command line ({key}=...)")
    OmegaConf.resolve(cfg)
    validate(cfg)
    if cfg.trainer.resume == AUTO_RESUME:  # this run's own folder, where it holds a checkpoint
        checkpoints = Path(cfg.run_dir) / "checkpoints"
        found = any((checkpoints / f"{name}.ckpt").is_file() for name in ("last", "best"))
        cfg.trainer.resume = cfg.run_dir if found else None
    if cfg.trainer.resume:
        cfg.run_dir = str(run_dir_of(cfg.trainer.resume))
    return cfg


def run_dir_of(resume: str | Path) -> Path:
    """The run directory a ``trainer.resume`` value belongs to: the directory itself, or a checkpoint
    file's ``<run>/checkpoints/`` parent's parent."""
    path = Path(resume).expanduser()
    return path if path.is_dir() else path.parent.parent
