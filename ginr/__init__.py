"""ginr: generalizable implicit neural representations (BiMamba encoder, SCENT-style decoders).

``ginr.load(run_dir_or_checkpoint)`` gives a trained model (:mod:`ginr.api`); the command-line entry
points are ``python -m ginr.train``, ``ginr.tools.evaluate``, ``ginr.tools.bench``, ``ginr.tools.memory``, ``ginr.tools.compare``.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load"]


def __getattr__(name: str) -> Any:  # the API pulls in torch and the models: only when asked for
    if name == "load":
        from ginr.api import load

        return load
    raise AttributeError(f"module 'ginr' has no attribute {name!r}")
