"""Value constraints written into type hints, so a constructor's signature states what its arguments
allow and the config schema (:mod:`ginr.config.schema`) checks config values against it before any work.

    def __init__(self, *, dim: Positive, processor_depth: Count = 0, locality: NonNegative = 0.0): ...
"""

import operator
from dataclasses import dataclass
from typing import Annotated

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Bound:
    """``value <op> limit``, e.g. ``Bound(">=", 1)``."""

    op: str
    limit: float

    def allows(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)

    def describe(self) -> str:
        return f"{self.op} {self.limit:g}"


Positive = Annotated[int, Bound(">=", 1)]
Count = Annotated[int, Bound(">=", 0)]
PositiveFloat = Annotated[float, Bound(">", 0)]
NonNegative = Annotated[float, Bound(">=", 0)]
Fraction = Annotated[float, Bound(">=", 0), Bound("<=", 1)]
