"""``online_batch``: online batch selection by loss rank (Loshchilov & Hutter, "Online Batch
Selection for Faster Training of Neural Networks", ICLR 2016 workshop, arXiv:1511.06343).

Every example i of Dt keeps its latest known loss l_i. Ranked by it, largest first (r_i = 1 for
the largest), it is selected with probability

    p_i ∝ exp(−log(s_e) · r_i / N_t),

so the most likely example is s_e times as likely as the least (s_e: the selection pressure).
All of Dt is scored in ``prepare``; each step refreshes the l_i of the examples it trains on.

Choices (the harness owns sampling): it draws ``candidates``·B examples uniformly (the pool's
``batch_scale``) and keeps B of them without replacement with probabilities ∝ p_i; with
``candidates`` ≥ N_t / B this is the paper's sampling from all of Dt. The paper's decay of s_e
over epochs is left out (s_e is constant). It never reads Dm: it selects for the training loss,
not for the target. ``weights()``: N_t · p_i, the selection probability relative to uniform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, Context, Method, Pool, control, model_dtype, over_chunks
from .search import MODEL_LR, MODEL_LR_RANGE, LogUniform


@dataclass
class OnlineBatchHparams:
    """Symbols as in Loshchilov & Hutter (2016)."""

    pressure: float = 100.0  # s_e = p(most likely) / p(least likely); 1 = uniform sampling
    candidates: float = 4.0  # uniform draws per kept example (the pool's batch_scale)

    def __post_init__(self) -> None:
        if self.pressure < 1 or self.candidates < 1:
            raise ValueError(f"pressure and candidates must be >= 1, got {self}")


class OnlineBatch(Method):
    """Online batch selection: batches drawn by the rank of each example's latest loss."""

    Hparams = OnlineBatchHparams
    uses_meta_batch = False
    weight_range = (0.0, math.inf)
    search_space = {MODEL_LR: MODEL_LR_RANGE, "pressure": LogUniform(1.0, 1e4)}

    def __init__(self, ctx: Context, hparams: OnlineBatchHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.latest = torch.zeros(ctx.n_train, device=ctx.device, dtype=model_dtype(ctx.model))

    @property
    def weights_relative(self) -> bool:
        return True  # N_t·p_i: only the ratios matter

    def pool(self) -> Pool:
        return Pool(batch_scale=self.hp.candidates)

    def prepare(self) -> None:
        model, loss = self.ctx.model, self.ctx.loss
        self.latest = over_chunks(model, lambda x, y: loss(model(x), y), self.ctx.train_set,
                                  self.ctx.offline_chunk).to(self.latest.dtype)

    def probabilities(self) -> Tensor:
        """p_i of every example of Dt, shape [N_t], summing to 1."""
        n = self.ctx.n_train
        rank = torch.empty(n, device=self.latest.device, dtype=self.latest.dtype)
        rank[self.latest.argsort(descending=True)] = torch.arange(
            1, n + 1, device=rank.device, dtype=rank.dtype)
        return torch.softmax(-math.log(self.hp.pressure) * rank / n, 0)

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor | float]:
        keep = max(1, round(len(train) / self.hp.candidates))
        p = self.probabilities()[train.index].float().cpu()
        pick = torch.multinomial(p, keep, generator=self.ctx.generator).to(train.index.device)
        losses = self.ctx.loss(self.ctx.model(train.x[pick]), train.y[pick])
        loss = losses.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.latest[train.index[pick]] = losses.detach().to(self.latest.dtype)
        return {"loss": loss.detach()}

    def weights(self) -> Tensor:
        return (self.ctx.n_train * self.probabilities()).cpu()


OnlineBatchUniform = control(
    OnlineBatch, "online_batch", "online_batch_uniform", {"pressure": 1.0},
    "Control: online_batch with s_e = 1, every example equally likely (uniform sampling).",
    inert=("candidates",), qualname="OnlineBatchUniform",
)
