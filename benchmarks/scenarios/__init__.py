"""Scenarios by name."""

from __future__ import annotations

from ..errors import ConfigError
from .balancing import Balancing
from .base import Scenario, ScenarioData, Split, TrainSettings, make_optimizer
from .denoising import Denoising
from .efficient import Efficient, EfficientControlled
from .ift import Ift

SCENARIOS: dict[str, type[Scenario]] = {"balancing": Balancing, "denoising": Denoising,
                                         "efficient": Efficient,
                                         "efficient-controlled": EfficientControlled,
                                         "ift": Ift}


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; available: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]()


__all__ = ["SCENARIOS", "Scenario", "ScenarioData", "Split", "TrainSettings", "get_scenario",
           "make_optimizer"]
