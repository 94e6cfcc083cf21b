"""Empirical risk minimisation on a fixed pool: the step shared by the non-DPS baselines.

theta <- opt_step( grad_theta mean_{i in B} l(z_i; theta) ), with B drawn uniformly from the
method's pool. The baselines differ only in their pool.
"""

from __future__ import annotations

from torch import Tensor

from .base import Batch, Context, Method


class ERM(Method):
    """Plain training on batches from ``pool()``; never draws a separate meta batch."""

    uses_meta_batch = False

    def __init__(self, ctx: Context, hparams=None) -> None:
        super().__init__(ctx, hparams)
        self.opt = ctx.make_optimizer(ctx.model.parameters())

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        self.opt.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.ctx.model(train.x), train.y).mean()
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}
