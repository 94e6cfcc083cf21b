"""Methods that each break one rule of the method contract (tests/test_conformance.py shows that
the conformance suite catches every one). Each is a working method otherwise: plain weighted
training with w_i = 1, like the ``new-method`` template."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.base import Batch, Context, Method, NoHparams, model_dtype


class Plain(Method):
    """Weighted ERM with every w_i = 1 (the base of the broken methods)."""

    uses_meta_batch = True
    weight_range = (0.0, 1.0)

    def __init__(self, ctx: Context, hparams=None) -> None:
        super().__init__(ctx, hparams)
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.w = torch.ones(ctx.n_train, dtype=model_dtype(ctx.model))

    def batch_weights(self, train: Batch, meta: Batch | None) -> Tensor:
        return self.w[train.index]

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor | float]:
        w = self.batch_weights(train, meta)
        loss = (w * self.ctx.loss(self.ctx.model(train.x), train.y)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def weights(self) -> Tensor | None:
        return self.w.clone()


@dataclass
class UndocumentedHparams:
    """A docstring that names none of the fields."""

    alpha: float = 1.0


class Undocumented(Plain):
    """Breaks hparams-documented."""

    Hparams = UndocumentedHparams


@dataclass
class BadDefaultHparams:
    """tau: must be positive, but its default is not."""

    tau: float = -1.0

    def __post_init__(self) -> None:
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")


class BadDefault(Plain):
    """Breaks defaults-validate."""

    Hparams = BadDefaultHparams


class SearchesNothing(Plain):
    """Breaks defaults-validate: its search space names a field it does not have."""

    Hparams = NoHparams
    search_space = {"no_such_field": None}


class VectorLog(Plain):
    """Breaks step-logs-finite: logs a vector."""

    def step(self, train, meta):
        out = super().step(train, meta)
        out["per_example"] = self.w[train.index]
        return out


class WrongLength(Plain):
    """Breaks weights-valid: N_t - 1 weights."""

    def weights(self):
        return self.w[1:].clone()


class OutOfRange(Plain):
    """Breaks weights-valid: weights of 2 against a declared range [0, 1]."""

    def weights(self):
        return 2 * self.w


class SharedWeights(Plain):
    """Breaks weights-valid: weights() hands out its own state."""

    def weights(self):
        return self.w


class SwallowsNaN(Plain):
    """Breaks non-finite-surfaces: a NaN meta loss falls back to uniform weights."""

    def batch_weights(self, train, meta):
        with torch.no_grad():
            meta_loss = self.ctx.loss(self.ctx.model(meta.x), meta.y).mean()
        return torch.nan_to_num(torch.sigmoid(-meta_loss), nan=0.5).expand(len(train))


class Unseeded(Plain):
    """Breaks deterministic: draws from an unseeded source, not ctx.generator."""

    def batch_weights(self, train, meta):
        return torch.tensor([random.SystemRandom().random() for _ in range(len(train))],
                            dtype=self.w.dtype)


class Float32Net(Plain):
    """Breaks batchnorm-and-dtypes: its weight network is float32 whatever the model's dtype."""

    def __init__(self, ctx, hparams=None):
        super().__init__(ctx, hparams)
        self.vnet = nn.Linear(1, 1).float()

    def batch_weights(self, train, meta):
        return self.w[train.index]


class LeakyLookahead(Plain):
    """Breaks no-side-effects: a train-mode pass on Bm updates BatchNorm's statistics."""

    def batch_weights(self, train, meta):
        with torch.no_grad():
            self.ctx.model(meta.x)
        return self.w[train.index]


class MovesFrozen(Plain):
    """Breaks no-side-effects: adds noise to every parameter, frozen or not."""

    def step(self, train, meta):
        out = super().step(train, meta)
        with torch.no_grad():
            for p in self.ctx.model.parameters():
                p.add_(1e-3 * torch.randn(p.shape, generator=self.ctx.generator, dtype=p.dtype))
        return out


class EditsBatch(Plain):
    """Breaks no-side-effects: scales the inputs of its batch in place."""

    def step(self, train, meta):
        train.x.mul_(2)
        return super().step(train, meta)


class FlatFloatInputs(Plain):
    """Breaks scenarios-quick only: assumes inputs are float feature vectors (token ids are not)."""

    def batch_weights(self, train, meta):
        norms = torch.linalg.vector_norm(train.x.flatten(1), dim=1)
        return self.w[train.index] * (norms > -1)
