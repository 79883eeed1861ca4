"""Value constraints written into type hints, so a constructor's signature states what its arguments
allow and the config schema (:mod:`ginr.schema`) checks config values against it before any work.

    def __init__(self, *, dim: Positive, processor_depth: Count = 0, locality: NonNegative = 0.0): ...
"""

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class AtLeast:
    """Inclusive lower bound."""

    bound: float

    def allows(self, value: float) -> bool:
        return value >= self.bound

    def describe(self) -> str:
        return f">= {self.bound:g}"


@dataclass(frozen=True)
class Above:
    """Exclusive lower bound."""

    bound: float

    def allows(self, value: float) -> bool:
        return value > self.bound

    def describe(self) -> str:
        return f"> {self.bound:g}"


@dataclass(frozen=True)
class AtMost:
    """Inclusive upper bound."""

    bound: float

    def allows(self, value: float) -> bool:
        return value <= self.bound

    def describe(self) -> str:
        return f"<= {self.bound:g}"


Positive = Annotated[int, AtLeast(1)]
Count = Annotated[int, AtLeast(0)]
PositiveFloat = Annotated[float, Above(0)]
NonNegative = Annotated[float, AtLeast(0)]
Fraction = Annotated[float, AtLeast(0), AtMost(1)]
