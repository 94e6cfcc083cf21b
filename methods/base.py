"""The contract between a DPS method and the harness that runs it.

A method never knows which scenario it runs on. Per step it sees a train batch Bt
(drawn from the pool the method declares, Dt by default) and a meta batch Bm drawn
from Dm, each carrying the dataset indices of its examples, and a per-example loss
l(z; theta) that returns a vector. It returns scalars to log.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .search import MODEL_LR, MODEL_LR_RANGE, Dimension


@dataclass(frozen=True)
class Batch:
    """A minibatch: inputs, targets, and each example's index in its data set.

    ``index`` points into Dt for train examples and into Dm for meta examples. When a
    method's pool mixes Dm into its training batches, ``from_meta`` marks which rows
    came from Dm (their ``index`` then points into Dm); it is None otherwise.
    """

    x: Tensor
    y: Tensor
    index: Tensor
    from_meta: Tensor | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass(frozen=True)
class Pool:
    """The multiset training batches are drawn from: Dt[train] plus ``meta_copies`` copies of Dm.

    ``train=None`` means all of Dt; an empty tensor means none of it. The harness shuffles
    the pool once per epoch and cuts it into batches.
    """

    train: Tensor | None = None
    meta_copies: int = 0


@dataclass
class Context:
    """Everything a method is set up with.

    loss(output, target) -> per-example losses l(z; theta), shape [B].
    embed(x) -> detached embedding e_i of each input, used by weight networks.
    forward_features(x) -> (output, embedding) from one forward pass (embedding not detached).
    make_optimizer(params) -> the scenario's model optimiser (for example SGD, lr 1e-3).
    train_set / meta_set: all of Dt / Dm as one Batch each (on ``device``), for methods that
    need offline passes (scoring, exporting every example's weight); never sampled per step.
    generator: the method's own seeded RNG (on the CPU).
    """

    model: nn.Module
    make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    n_train: int
    n_meta: int
    loss: Callable[[Tensor, Tensor], Tensor]
    embed: Callable[[Tensor], Tensor]
    device: torch.device
    num_classes: int
    generator: torch.Generator = dataclasses.field(default_factory=torch.Generator)
    forward_features: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None
    train_set: Batch | None = None
    meta_set: Batch | None = None

    def __post_init__(self) -> None:
        if self.forward_features is None:
            model = self.model
            if hasattr(model, "head"):  # forward = head(features(x)): one pass gives both
                def both(x: Tensor) -> tuple[Tensor, Tensor]:
                    features = model.features(x)
                    return model.head(features), features

                self.forward_features = both
            else:
                self.forward_features = lambda x: (model(x), model.features(x))


@dataclass
class NoHparams:
    """A method without hyperparameters."""


class Method(ABC):
    """Base class of every method. Subclasses set ``Hparams`` (a dataclass) and ``step``.

    ``uses_meta_batch = False`` tells the harness not to draw Bm (``step`` then gets None),
    so that a method which never reads Dm per step is not charged for sampling it.
    ``search_space`` is what ``dps-bench tune`` searches (see ``methods.search``); by default the
    model learning rate within 0.1x to 10x of the scenario's.
    """

    Hparams: ClassVar[type] = NoHparams
    uses_meta_batch: ClassVar[bool] = True
    search_space: ClassVar[dict[str, Dimension]] = {MODEL_LR: MODEL_LR_RANGE}

    def __init__(self, ctx: Context, hparams: Any | None = None) -> None:
        self.ctx = ctx
        self.hp = hparams if hparams is not None else self.Hparams()
        if not isinstance(self.hp, self.Hparams):
            raise TypeError(f"{type(self).__name__} expects {self.Hparams.__name__}, got {self.hp!r}")

    def prepare(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Offline work before the first step (e.g. scoring Dt); timed apart from the steps."""

    def pool(self) -> Pool:
        """What training batches are drawn from; all of Dt unless overridden."""
        return Pool()

    @abstractmethod
    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor | float]:
        """One training step. Returns scalars (0-d tensors or floats) to log."""

    def weights(self) -> Tensor | None:
        """Current weight w_i of every training example i in Dt (shape [N_t]), or None."""
        return None


def count_of(fraction: float, n: int, ceil: bool = False) -> int:
    """⌊fraction·n⌋ (or ⌈fraction·n⌉), robust to rounding: 0.29·100 = 28.999999999999996 → 29."""
    x = fraction * n
    return math.ceil(x - 1e-9) if ceil else math.floor(x + 1e-9)


@torch.no_grad()
def over_chunks(model: nn.Module, fn: Callable[[Tensor, Tensor], Tensor], data: Batch,
                chunk: int = 1000) -> Tensor:
    """fn(x, y) over ``data`` in chunks, concatenated, with ``model`` in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([fn(data.x[i: i + chunk], data.y[i: i + chunk])
                          for i in range(0, len(data), chunk)])
    finally:
        model.train(was_training)


def hparam_fields(cls: type[Method]) -> dict[str, Any]:
    """Name -> default of a method's declared hyperparameters."""
    return {f.name: getattr(cls.Hparams(), f.name) for f in dataclasses.fields(cls.Hparams)}
