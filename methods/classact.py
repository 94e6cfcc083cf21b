"""``classact``: the paper's ClassAct baseline, as a cross-fitted learnability score.

The BADS paper lists ClassAct as "small proxy models trained on part of Dt give learnability
scores to the rest"; its exact scoring rule could not be retrieved offline, so this file
implements that description with the reducible-loss form of learnability (Mindermann et al.,
2022, "Prioritized training on points that are learnable, worth learning, and not yet learnt"),
using Dm as the holdout set. Offline (``prepare``, timed apart from the steps):

- Dt is cut into F folds D_1..D_F by a seeded permutation. For each fold f a proxy θ_f (a copy
  of the initial model, trained ``proxy_steps`` steps with the model optimiser: small in
  compute, not in width, since methods never see the architecture) is trained on Dt \\ D_f.
- A target proxy θ_m (a copy of the initial model) is trained ``meta_steps`` steps on Dm.
- Each z_i ∈ D_f gets the learnability score

      s_i = l(z_i; θ_f) − l(z_i; θ_m),

  high where the rest of Dt does not explain z_i (not learnt, e.g. a minority-class point) but
  the target model does (learnable and worth learning, unlike a flipped label).

Online the selection is CDS's: each uniform minibatch keeps its top max(β, r_floor) by s_i, and
``weights()`` is the indicator of the global top ⌊β·N_t⌋. It differs from ``cds`` in that no
proxy has seen the point it scores (CDS's Dt model trains on every z_i it scores) and the target
model is trained from the initial weights rather than fine-tuned from the Dt model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .base import Batch
from .cds import CDS, check_selection, losses_of, train_copy


@dataclass
class ClassActHparams:
    """beta: selection ratio; r_floor: least fraction of a minibatch kept; folds: F proxies,
    each trained ``proxy_steps`` on Dt minus its fold; the target proxy trains ``meta_steps``
    on Dm."""

    beta: float = 0.05
    r_floor: float = 0.1
    folds: int = 2
    proxy_steps: int = 500
    meta_steps: int = 200
    batch_size: int = 100

    def __post_init__(self) -> None:
        check_selection(self.beta, self.r_floor, self.batch_size, self.proxy_steps, self.meta_steps)
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2 (each proxy holds one out), got {self.folds}")


class ClassAct(CDS):
    """Select, within each minibatch, the examples of highest cross-fitted learnability.

    The score is the loss under a proxy that never saw the example minus that under a Dm proxy;
    the online step is CDS's."""

    Hparams = ClassActHparams

    def prepare(self) -> None:
        ctx, hp = self.ctx, self.hp
        data = ctx.train_set
        if hp.folds > len(data):
            raise ValueError(f"folds={hp.folds} exceeds the {len(data)} training examples")
        fold_of = torch.randperm(len(data), generator=ctx.generator) % hp.folds
        fold_of = fold_of.to(data.x.device)
        target = train_copy(copy.deepcopy(ctx.model), ctx, ctx.meta_set, hp.meta_steps,
                            hp.batch_size)
        scores = losses_of(target, ctx, data).neg_()
        for f in range(hp.folds):
            held, rest = (fold_of == f).nonzero().squeeze(1), (fold_of != f).nonzero().squeeze(1)
            proxy = train_copy(copy.deepcopy(ctx.model), ctx, subset(data, rest),
                               hp.proxy_steps, hp.batch_size)
            scores[held] += losses_of(proxy, ctx, subset(data, held))
        self.set_scores(scores)


def subset(data: Batch, rows: torch.Tensor) -> Batch:
    return Batch(data.x[rows], data.y[rows], data.index[rows])
