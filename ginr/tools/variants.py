"""The variants the tools measure, from the configs alone: every experiment in ``configs/experiment``
(discovered, never listed here) and, for those whose decoder blocks mix queries, the same with naive
attention. The benchmark's cases and the memory check's points both start from :func:`variants`."""

import functools

from ginr.config import compose, experiments, mixes_queries, prepare


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
