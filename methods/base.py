"""The contract between a DPS method and the harness that runs it.

A method never knows which scenario it runs on. Per step it sees a train batch Bt
(drawn from the pool the method declares, Dt by default) and a meta batch Bm drawn
from Dm, each carrying the dataset indices of its examples, and a per-example loss
l(z; theta) that returns a vector. It returns scalars to log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
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
    the pool once per epoch and cuts it into batches of ``round(batch_scale · batch_size)``
    (a method that filters each drawn batch, e.g. ClassAct's super-batch, asks for a larger one).
    """

    train: Tensor | None = None
    meta_copies: int = 0
    batch_scale: float = 1.0


@dataclass
class Context:
    """Everything a method is set up with.

    loss(output, target) -> per-example losses l(z; theta), shape [B].
    embed(x) -> detached embedding e_i of each input, used by weight networks. It runs in the
    model's current mode but leaves the model as it was (Context wraps it in
    :func:`buffers_kept`): an auxiliary pass never trains BatchNorm's running statistics.
    forward_features(x) -> (output, embedding) from one forward pass (embedding not detached):
    by default the model's own ``forward_features`` if it has one, else ``head(features(x))``.
    make_optimizer(params) -> the scenario's model optimiser (for example SGD, lr 1e-3).
    train_set / meta_set: all of Dt / Dm as one Batch each (on ``device``), for methods that
    need offline passes (scoring, exporting every example's weight); never sampled per step.
    generator: the method's own seeded RNG (on the CPU).
    total_steps: the run's number of training steps, for methods with a schedule (None: unknown).
    offline_chunk: rows per forward pass of an offline pass over Dt or Dm (scoring, exporting
    every example's weight: :func:`over_chunks`); the scenario sets it so that one chunk's outputs
    fit in memory (a language model's logits are rows x tokens x vocabulary).
    replicas: data-parallel training over several processes (``methods.replicas.Replicas``):
    each rank gets 1/world of every batch; None in one process. Only methods whose
    ``supports_replicas`` is True are set up with it.
    judge(index) -> the probability [B] that the model, asked whether each Dt example at
    ``index`` ([B] long) is informative, answers yes (AskLLM's score; computed without a graph,
    in eval mode); None when the scenario's model cannot be asked (it is not a language model).
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
    total_steps: int | None = None
    offline_chunk: int = 1000
    judge: Callable[[Tensor], Tensor] | None = None
    replicas: Any = None  # methods.replicas.Replicas | None

    def __post_init__(self) -> None:
        embed = self.embed

        def embed_kept(x: Tensor) -> Tensor:
            with buffers_kept(self.model):
                return embed(x)

        self.embed = embed_kept
        if self.forward_features is None:
            model = self.model
            if callable(getattr(model, "forward_features", None)):  # the model gives both at once
                self.forward_features = model.forward_features
            elif hasattr(model, "head"):  # forward = head(features(x)): one pass gives both
                def both(x: Tensor) -> tuple[Tensor, Tensor]:
                    features = model.features(x)
                    return model.head(features), features

                self.forward_features = both
            else:
                self.forward_features = lambda x: (model(x), model.features(x))


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Run the block, then put every buffer of ``model`` back as it was (BatchNorm's running
    statistics and ``num_batches_tracked``): for auxiliary forward passes that must see the
    model in its current mode (train-mode batch statistics) without training it. Costs one copy
    of the buffers; nothing for a model without buffers."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's floating-point parameters (torch's default when it has none):
    what tensors that meet the model's outputs (weight networks, per-example weights) use."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


@dataclass
class NoHparams:
    """A method without hyperparameters."""


class NonFiniteError(FloatingPointError):
    """A method's meta loss, hypergradient or scores became non-finite (NaN or inf).

    Methods raise it where a non-finite value would otherwise be absorbed silently (e.g. by a
    top-k over scores); the harness records the run as ``diverged``, never as ``ok``."""


def require_meta(meta: Batch | None, who: str) -> Batch:
    """``meta`` itself; a clear error for a missing or empty meta batch (a mean over no examples
    would be NaN, or, worse, a fallback that hides it)."""
    if meta is None or len(meta) == 0:
        raise ValueError(f"{who} needs a non-empty meta batch Bm from Dm, got "
                         f"{'none' if meta is None else 'an empty one'}")
    return meta


def check_finite(value: Tensor, what: str) -> Tensor:
    """``value`` itself, or NonFiniteError naming ``what`` when any entry is NaN or inf (this
    reads the value on the host: use it off the per-step path, e.g. in ``prepare``)."""
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(f"{what} became non-finite (NaN or inf); check Dm and the "
                             "learning rates")
    return value


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
    control_of: ClassVar[str | None] = None
    """For a control (see :func:`control`): the registry name of the method it switches a
    mechanism off in. Its scenario defaults are that method's."""
    fixed: ClassVar[dict[str, Any]] = {}
    """Hyperparameters a control pins (they cannot be set or searched)."""
    inert: ClassVar[tuple[str, ...]] = ()
    """Hyperparameters that change nothing in a control (not searched, not swept)."""
    weight_range: ClassVar[tuple[float, float]] = (0.0, math.inf)
    """The closed interval every finite w_i of ``weights()`` lies in (e.g. (0, 1) for a sigmoid
    or a 0/1 selection); the conformance suite checks it."""
    nan_until_drawn: ClassVar[bool] = False
    """``weights()`` gives NaN for the examples no step has drawn yet (l2rw: its weights exist
    only for the batches it saw); the report's weight statistics leave them out. Any other NaN
    is a bug the conformance suite reports."""
    check_hparams: ClassVar[dict[str, Any]] = {}
    """Hyperparameters that keep the conformance suite's checks short (e.g. CDS's scoring
    steps): used only by ``dps-bench check-method`` and the tests, never in a run."""
    supports_replicas: ClassVar[bool] = False
    """The method trains one run data-parallel over several processes (``--ddp``): it scales its
    losses by the global batch sizes and sums gradients over ``ctx.replicas``."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Optional Context fields the method cannot run without (e.g. ``judge``: askllm_o asks the
    model about each example, so it needs a language model); a scenario that does not provide
    them (``Scenario.provides``) is refused before any run starts."""

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

    @property
    def weights_relative(self) -> bool:
        """True when the weights are used normalised over each minibatch (w_i / Σ_{k∈Bt} w_k), so
        that only their ratios matter and their absolute scale says nothing (blo; mwn's
        class-imbalance form); the degenerate-weights test then ignores the scale."""
        return False

    def diagnostics(self) -> dict[str, float]:
        """Scalars about what drives the weights, averaged since the last call (the harness logs
        them at every evaluation, split ``weights``); none by default. BADS: the sizes of φ's
        gradient from the prior and from the data term, and Ŝ − ⌊β·N_t⌋."""
        return {}


DIAGNOSTIC_EVERY = 10  # steps between two samples of a weight gradient's size (diagnostics)


class SampledMean:
    """The mean of a diagnostic sampled on every DIAGNOSTIC_EVERY-th step since it was last
    taken (blo's and mwn's hypergradient size): ``due()`` once per step says whether to sample
    (so the host read stays off the other steps' path), ``add`` records a sample, ``take(name)``
    returns ``{name: mean}`` (``{}`` with no sample) and starts over."""

    def __init__(self) -> None:
        self.t, self.total, self.count = 0, 0.0, 0

    def due(self) -> bool:
        due = self.t % DIAGNOSTIC_EVERY == 0
        self.t += 1
        return due

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1

    def take(self, name: str) -> dict[str, float]:
        out = {name: self.total / self.count} if self.count else {}
        self.total, self.count = 0.0, 0
        return out

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
    """Name -> default of a method's declared hyperparameters (a control's pinned values)."""
    hp = cls.Hparams(**cls.fixed)
    return {f.name: getattr(hp, f.name) for f in dataclasses.fields(cls.Hparams)}


def control(base: type[Method], base_name: str, name: str, fixed: dict[str, Any], doc: str,
            inert: tuple[str, ...] = (), uses_meta_batch: bool | None = None,
            qualname: str | None = None) -> type[Method]:
    """A control of ``base``: the same method with one mechanism switched off by pinning the
    hyperparameters ``fixed`` (e.g. BADS with ρ_w = 0). A control is a method of its own in the
    registry, so sweeps and ``tune`` take it like any other; its scenario defaults are those of
    ``base_name``, and its search space is the base's without the pinned names and without
    ``inert`` (the names that no longer change anything, e.g. φ's learning rate once φ is frozen).
    ``uses_meta_batch=False`` for a control that no longer reads Bm. ``qualname``: the module
    variable the class is assigned to, so that it pickles (e.g. into worker processes). A result
    of ``base`` counts as selection only where it beats its controls on the same seeds
    (``dps-bench report``).
    """
    unknown = set(fixed) - {f.name for f in dataclasses.fields(base.Hparams)}
    if unknown:
        raise ValueError(f"control {name}: {base.__name__} has no hyperparameters {sorted(unknown)}")
    dropped = set(fixed) | set(inert)
    attrs: dict[str, Any] = {
        "__doc__": doc, "__module__": base.__module__, "control_of": base_name,
        "fixed": dict(fixed), "inert": tuple(inert),
        "search_space": {k: v for k, v in base.search_space.items() if k not in dropped},
    }
    if uses_meta_batch is not None:
        attrs["uses_meta_batch"] = uses_meta_batch
    cls = type(name, (base,), attrs)
    cls.__qualname__ = qualname or name
    original_init = base.__init__

    def __init__(self, ctx: Context, hparams: Any | None = None) -> None:
        hp = hparams if hparams is not None else base.Hparams(**fixed)
        wrong = {k: getattr(hp, k) for k, v in fixed.items() if getattr(hp, k) != v}
        if wrong:
            raise ValueError(f"{name} is {base_name} with {fixed}; it cannot run with {wrong}")
        original_init(self, ctx, hp)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls
