"""Search-space dimensions a method declares next to its hyperparameters (``Method.search_space``).

A space maps a name to a dimension. The name is one of the method's hyperparameters, or
``MODEL_LR`` ("lr"): the scenario's model learning rate, which every method's optimiser uses.

- ``LogUniform(low, high)``: log-uniform on [low, high]; its grid is ``points`` log-spaced values.
- ``Choice(a, b, ...)``: uniform over the listed values; its grid is the values.

``relative=True`` makes the drawn value a multiplier of the configuration's default: of the
scenario's default model lr for ``lr``; of the resolved default of a hyperparameter, or, where that
default is 0 (``inner_lr``, ``lr_theta``: "follow the model lr"), of the configuration's model lr.
Learning rates are searched relative to the defaults because their scale depends on the scenario's
optimiser (SGD at 1e-3 in the paper profile, SGD with momentum at 0.05 in the quick profile).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

MODEL_LR = "lr"


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float
    relative: bool = False
    points: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high or self.points < 1:
            raise ValueError(f"LogUniform needs 0 < low <= high and points >= 1, got {self}")

    def draw(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))

    def grid(self) -> list[float]:
        if self.points == 1:
            return [math.sqrt(self.low * self.high)]
        step = (math.log(self.high) - math.log(self.low)) / (self.points - 1)
        return [math.exp(math.log(self.low) + i * step) for i in range(self.points)]

    def describe(self) -> str:
        scale = " x default" if self.relative else ""
        return f"log-uniform [{self.low:g}, {self.high:g}]{scale}"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]
    relative: bool = False

    def __init__(self, *values: Any, relative: bool = False) -> None:
        if not values:
            raise ValueError("Choice needs at least one value")
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "relative", relative)

    def draw(self, rng: random.Random) -> Any:
        return rng.choice(self.values)

    def grid(self) -> list[Any]:
        return list(self.values)

    def describe(self) -> str:
        scale = " x default" if self.relative else ""
        return "one of " + ", ".join(str(v) for v in self.values) + scale


Dimension = LogUniform | Choice
MODEL_LR_RANGE = LogUniform(0.1, 10.0, relative=True)  # every method's default model-lr search

__all__ = ["MODEL_LR", "MODEL_LR_RANGE", "Choice", "Dimension", "LogUniform"]
