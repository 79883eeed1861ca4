"""The variants the tools measure, from the configs alone: every experiment in ``configs/experiment``
(discovered, never listed here) and, for those whose decoder blocks mix queries, the same with naive
attention. The benchmark's cases and the memory check's points both start from :func:`variants`."""

import functools

from omegaconf import OmegaConf

from ginr.config import CONFIG_DIR, compose, experiments, mixes_queries, prepare


@functools.lru_cache(maxsize=1)
def variants() -> dict[str, tuple[str, ...]]:
    """Variant name -> overrides: every experiment, and for those whose blocks mix queries (attention
    over all queries) also ``<name>_naive``, with attention that materialises its matrix."""
    out = {name: (f"experiment={name}",) for name in experiments()}
    for name in list(out):
        if mixes_queries(prepare(compose([f"experiment={name}"]))):
            out[f"{name}_naive"] = (f"experiment={name}", "decoder.attn_impl=naive")
    return out


def default_variant() -> str:
    """The experiment ``python -m ginr.train`` trains when none is named."""
    return compose().name


@functools.lru_cache(maxsize=1)
def input_sizes() -> tuple[str, ...]:
    """The ``data`` options that train the default dataset at other input sizes (``emoji3d178``,
    ``emoji3d256``, ...), found from ``configs/data``: the data at hand, nothing to download by hand."""
    default = compose()
    options = {name: compose([f"data={name}"]) for name in data_options()}
    return tuple(
        name
        for name, cfg in options.items()
        if OmegaConf.select(cfg, "data.dataset._target_") == default.data.dataset._target_
        and cfg.data.resolution != default.data.resolution
    )


def options(group: str) -> tuple[str, ...]:
    """The options of a config group, found from ``configs/<group>``."""
    return tuple(sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")))


def encoders() -> tuple[str, ...]:
    """The ``encoder`` options."""
    return options("encoder")


def data_options() -> tuple[str, ...]:
    """The ``data`` options."""
    return options("data")
