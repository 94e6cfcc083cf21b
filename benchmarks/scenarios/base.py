"""What a scenario provides: Dt, Dm, a validation and a test set, a model, a loss, a metric, groups.

A scenario never knows which method runs on it. Settings resolve in this order, later wins:
the Settings dataclass defaults, the profile, the source, the user's ``--set``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data import SourceData


@dataclass(frozen=True)
class Split:
    """Inputs, targets and (for Dt) each example's ground-truth group code."""

    x: Tensor
    y: Tensor
    group: Tensor | None = None
    references: tuple[tuple[str, ...], ...] | None = None
    """For a generating scenario: each example's reference texts (scored against all of them)."""

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class ScenarioData:
    """Dt (``train``), Dm (``meta``), ``val`` (for selection only) and ``test``, built once per seed.

    ``group_names[c]`` names group code c of ``train.group``; the first name is the group a good
    DPS method should favour (minority, clean, target).
    """

    train: Split
    meta: Split
    val: Split
    test: Split
    group_names: tuple[str, ...]
    num_classes: int
    tokenizer: Any = None
    """For a scenario on text: the ``tokenizers.Tokenizer`` that made the token ids (decoding)."""
    categories: tuple[str, ...] | None = None
    """Each Dt example's finer category (WebNLG's), if any: stored with the weights, so that the
    mean weight per category can be read from a run's weights file."""
    extras: dict[str, Any] | None = None
    """Whatever the scenario's own ``evaluate`` and ``judge`` need beyond the splits (``ift``:
    the decoding prompts and answer choices per split, AskLLM's prompts)."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


@dataclass
class TrainSettings:
    """Settings every scenario has. The model optimiser is ``optimizer`` with ``lr``, ``momentum``
    and ``weight_decay``; ``meta_batch_size`` is capped at |Dm| and ``batch_size`` at the pool size."""

    steps: int = 1000
    batch_size: int = 100
    meta_batch_size: int = 100
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    eval_every: int = 100
    eval_batch_size: int = 1000

    def validate(self) -> None:
        for name in ("steps", "batch_size", "meta_batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")


class Scenario(ABC):
    """A DPS problem. Subclasses set the class attributes and implement ``build``/``make_model``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Settings: ClassVar[type[TrainSettings]] = TrainSettings
    sources: ClassVar[tuple[str, ...]]
    profiles: ClassVar[dict[str, dict[str, Any]]]
    source_settings: ClassVar[dict[str, dict[str, Any]]] = {}
    method_defaults: ClassVar[dict[str, Any]] = {}
    """Hyperparameter defaults this scenario sets for every method that declares them (e.g. beta)."""
    source_method_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    """Per-source shared defaults: {source: {name: value}} (e.g. beta for a smaller Dt)."""
    method_settings: ClassVar[dict[str, dict[str, Any]]] = {}
    """Per-method hyperparameter defaults: {method: {name: value}}."""
    profile_method_settings: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    """Per-profile, per-method defaults: {profile: {method: {name: value}}}; these win."""
    metric_name: ClassVar[str] = "accuracy"
    profile_notes: ClassVar[dict[str, str]] = {}
    """What a profile is for and what it costs (``dps-bench list`` prints them)."""
    provides: ClassVar[tuple[str, ...]] = ()
    """Optional Context fields this scenario fills (``judge`` for a language model): a method
    whose ``requires`` names one it lacks is refused by the planner."""
    check_settings: ClassVar[dict[str, Any]] = {}
    """Settings that shrink the ``quick`` profile for the method conformance checks
    (``dps-bench check-method``: a few steps of each method on each scenario); never a run's."""

    @property
    def default_source(self) -> str:
        return self.sources[0]

    def resolve_settings(self, source: str, profile: str, overrides: dict[str, Any]) -> TrainSettings:
        merged = {**self.profiles[profile], **self.source_settings.get(source, {}), **overrides}
        settings = self.Settings(**merged)
        settings.validate()
        return settings

    def hparam_defaults(self, method: str, names: set[str], profile: str,
                        source: str) -> dict[str, Any]:
        """This scenario's defaults for ``method``'s hyperparameters ``names``."""
        shared = {**self.method_defaults, **self.source_method_defaults.get(source, {})}
        values = {k: v for k, v in shared.items() if k in names}
        values.update(self.method_settings.get(method, {}))
        values.update(self.profile_method_settings.get(profile, {}).get(method, {}))
        return values

    @abstractmethod
    def build(self, source: SourceData, settings: TrainSettings, seed: int) -> ScenarioData:
        """Draw Dt, Dm, validation and test from the source's pools with RNG seed ``seed``."""

    @abstractmethod
    def make_model(self, data: ScenarioData, settings: TrainSettings) -> nn.Module:
        """A freshly initialised model with ``features(x)`` (the embedding) and ``forward(x)``."""

    def augment(self, data: ScenarioData, settings: TrainSettings
                ) -> Callable[[Tensor, torch.Generator], Tensor] | None:
        """The random transformation of training inputs (Bt and Bm batches, never evaluation
        splits) as ``f(x, generator) -> x'``, or None for none (the default)."""
        return None

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Per-example loss l(z; theta), shape [B]."""

    @abstractmethod
    def metric(self, output: Tensor, target: Tensor) -> float:
        """The target metric (higher is better) of outputs against targets."""

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: ScenarioData, split: Split,
                 settings: TrainSettings, device: torch.device) -> float:
        """The target metric of ``model`` on ``split`` (one of ``data``'s), in eval mode, the
        model's mode restored after. By default a classifier's: outputs in batches of
        ``eval_batch_size``, concatenated, scored once by :meth:`metric`. A scenario whose model
        generates (``efficient``) overrides this to decode and score text."""
        was_training = model.training
        model.eval()
        try:
            batch = settings.eval_batch_size
            outputs = [model(split.x[i: i + batch].to(device)) for i in range(0, len(split), batch)]
        finally:
            model.train(was_training)
        return self.metric(torch.cat(outputs), split.y.to(device))


    def offline_chunk(self, data: ScenarioData, settings: TrainSettings) -> int:
        """Rows per forward pass when a method scores all of Dt or Dm offline
        (``Context.offline_chunk``); 1000 by default."""
        return 1000

    def judge(self, model: nn.Module, data: ScenarioData, settings: TrainSettings,
              device: torch.device) -> Callable[[Tensor], Tensor] | None:
        """For a scenario whose model is a language model: ``f(index) -> p`` giving, for the Dt
        examples at ``index`` ([B] long), the model's probability [B] that the example is
        informative (AskLLM's "yes"); None (the default) when it cannot be asked."""
        return None


def make_optimizer(settings: TrainSettings):
    """Factory for the model optimiser the settings describe."""

    def factory(params) -> torch.optim.Optimizer:
        if settings.optimizer == "adam":
            return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)

    return factory
