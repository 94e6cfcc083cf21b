"""``cds``: Contrastive Data Selection (Wang, Watanabe, Macherey et al., 2018, "Denoising Neural
Machine Translation Training with Trusted Data and Online Data Selection").

Offline (``prepare``, timed apart from the steps): a copy θ_base of the initial model is trained
on Dt (``pretrain_steps``), a copy of it is fine-tuned on Dm into θ_ft (``finetune_steps``), both
with their own optimiser (Adam at 1e-3 by default, ``score_optimizer``/``score_lr``: with the
learner's optimiser, the paper profile's SGD at 1e-3, a few hundred steps leave the scoring models
near their initialisation and the scores near 0); their mean losses on Dm are logged
(``base_loss_meta``, ``tuned_loss_meta``, split ``weights``). Each training example gets the score

    s_i = l(z_i; θ_base) − l(z_i; θ_ft)    (= log p(z_i; θ_ft) − log p(z_i; θ_base) for NLL losses)

high where the target-tuned model likes z_i better than the Dt model does. Online, Wang et al.
anneal the kept fraction of each batch from 1 down to a floor over training (the BADS paper's
hyperparameter table has a floor r_floor and a half-life for it); here the uniform minibatch Bt
of step t (0-based) keeps its top k_t examples by s_i,

    r_t = max(r_floor, 0.5^(t / H)),   k_t = max(1, ⌈r_t·|Bt|⌉),   H = half_life · T,

with T the run's number of steps (``ctx.total_steps``), so the schedule has the same shape at any
training length (our choice: neither paper's constants could be read here). The defaults, r_floor
= 0.1 and half_life = 0.1, keep all of each batch at first, half of it after a tenth of training,
and the floor's 10% from a third of training on (t ≥ log2(10)·H ≈ 0.33·T). ``half_life=0`` keeps
r_floor from the first step (no annealing). The model takes a plain step on the mean loss of the
kept examples. ``weights()`` is the selection indicator over Dt: 1 for the ⌊β·N_t⌋ best-scored
examples (β the selection ratio shared with BADS), 0 otherwise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Batch, Context, Method, check_finite, count_of, over_chunks
from .search import MODEL_LR, MODEL_LR_RANGE, Choice


@dataclass
class CDSHparams:
    """beta: size of the exported selection, ⌊β·N_t⌋; r_floor: least fraction of a minibatch
    kept; half_life: H as a fraction of the run's steps (0: no annealing); the scoring models
    train ``pretrain_steps`` on Dt and ``finetune_steps`` on Dm in minibatches of ``batch_size``
    with ``score_optimizer`` (adam at ``score_lr``, or ``model``: the scenario's model
    optimiser)."""

    beta: float = 0.05
    r_floor: float = 0.1
    half_life: float = 0.1
    pretrain_steps: int = 1000
    finetune_steps: int = 200
    batch_size: int = 100
    score_optimizer: str = "adam"
    score_lr: float = 1e-3

    def __post_init__(self) -> None:
        check_selection(self.beta, self.r_floor, self.batch_size,
                        self.pretrain_steps, self.finetune_steps)
        if self.half_life < 0:
            raise ValueError(f"half_life must be >= 0, got {self.half_life}")
        check_optimizer(self.score_optimizer, self.score_lr)


def check_optimizer(name: str, lr: float) -> None:
    """A scoring or reference model's optimiser: ``adam`` or ``model``, with a positive lr."""
    if name not in ("adam", "model"):
        raise ValueError(f"the scoring optimiser must be adam or model, got {name!r}")
    if not lr > 0:
        raise ValueError(f"the scoring learning rate must be > 0, got {lr}")


def check_selection(beta: float, r_floor: float, batch_size: int, *step_counts: int) -> None:
    """The checks every offline-scoring selection baseline's hyperparameters share."""
    if not (0 < beta <= 1 and 0 <= r_floor <= 1):
        raise ValueError("beta must lie in (0, 1] and r_floor in [0, 1]")
    if min(step_counts) < 0 or batch_size < 1:
        raise ValueError("step counts must be >= 0 and batch_size >= 1")


def train_copy(model: nn.Module, ctx: Context, data: Batch, steps: int, batch: int,
               optimizer: str = "model", lr: float = 1e-3) -> nn.Module:
    """``steps`` optimiser steps of ``model`` on uniform minibatches of ``data`` (drawn with the
    method's generator), in place; returns ``model``. ``optimizer``: ``model`` (the scenario's
    model optimiser) or ``adam`` (Adam at ``lr``, independent of the learner's settings, so a
    scoring or reference model is trained even where the learner's schedule is slow: the paper
    profile's SGD at 1e-3 barely moves a model in a few hundred steps)."""
    if optimizer == "model":
        opt = ctx.make_optimizer(model.parameters())
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        raise ValueError(f"optimizer must be model or adam, got {optimizer!r}")
    for _ in range(steps):
        idx = torch.randint(len(data), (min(batch, len(data)),), generator=ctx.generator)
        idx = idx.to(data.x.device)
        opt.zero_grad(set_to_none=True)
        ctx.loss(model(data.x[idx]), data.y[idx]).mean().backward()
        opt.step()
    return model


def losses_of(model: nn.Module, ctx: Context, data: Batch) -> Tensor:
    return over_chunks(model, lambda x, y: ctx.loss(model(x), y), data, ctx.offline_chunk)


class CDS(Method):
    """Select, within each minibatch, the examples a Dm-tuned model prefers over a Dt model."""

    Hparams = CDSHparams
    weight_range = (0.0, 1.0)  # 1 for the ⌊β·N_t⌋ selected examples, else 0
    check_hparams = {"pretrain_steps": 3, "finetune_steps": 3, "batch_size": 8}
    search_space = {MODEL_LR: MODEL_LR_RANGE, "r_floor": Choice(0.0, 0.05, 0.1, 0.25, 0.5),
                    "half_life": Choice(0.0, 0.05, 0.1, 0.25)}
    uses_meta_batch = False

    def __init__(self, ctx: Context, hparams: CDSHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        if self.hp.half_life > 0 and not ctx.total_steps:
            raise ValueError("cds anneals its kept fraction over the run's steps: set "
                             "ctx.total_steps, or half_life=0 for a constant r_floor")
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.scores: Tensor | None = None
        self.scoring_losses: dict[str, float] = {}
        self.t = 0

    def prepare(self) -> None:
        ctx, hp = self.ctx, self.hp
        base = train_copy(copy.deepcopy(ctx.model), ctx, ctx.train_set, hp.pretrain_steps,
                          hp.batch_size, hp.score_optimizer, hp.score_lr)
        tuned = train_copy(copy.deepcopy(base), ctx, ctx.meta_set, hp.finetune_steps,
                           hp.batch_size, hp.score_optimizer, hp.score_lr)
        self.scoring_losses = {"base_loss_meta": losses_of(base, ctx, ctx.meta_set).mean().item(),
                               "tuned_loss_meta": losses_of(tuned, ctx, ctx.meta_set).mean().item()}
        scores = losses_of(base, ctx, ctx.train_set) - losses_of(tuned, ctx, ctx.train_set)
        self.set_scores(check_finite(scores, "cds's scores (the Dt and Dm-tuned models' losses)"))

    def diagnostics(self) -> dict[str, float]:
        """The scoring models' mean losses on Dm (θ_base's, θ_ft's): did fine-tuning take?"""
        return dict(self.scoring_losses)

    def set_scores(self, scores: Tensor) -> None:
        """Fix s_i for every example of Dt, and the global top ⌊β·N_t⌋ that weights() exports."""
        self.scores = scores
        self.selected = torch.zeros(self.ctx.n_train)
        self.selected[scores.topk(count_of(self.hp.beta, self.ctx.n_train)).indices.cpu()] = 1.0

    def kept_fraction(self, t: int) -> float:
        """r_t = max(r_floor, 0.5^(t / H)), H = half_life · T (r_floor when half_life is 0)."""
        hp = self.hp
        if hp.half_life == 0:
            return hp.r_floor
        return max(hp.r_floor, 0.5 ** (t / (hp.half_life * self.ctx.total_steps)))

    def keep(self, batch: Batch) -> Tensor:
        """Positions in ``batch`` of its top k_t examples by score, at the current step."""
        if self.scores is None:
            raise RuntimeError("cds.prepare() must run before the first step")
        k = max(1, count_of(self.kept_fraction(self.t), len(batch), ceil=True))
        return self.scores[batch.index].topk(min(k, len(batch))).indices

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor | float]:
        top = self.keep(train)
        self.opt.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.ctx.model(train.x[top]), train.y[top]).mean()
        loss.backward()
        self.opt.step()
        self.t += 1
        return {"loss": loss.detach(), "kept_frac": len(top) / len(train)}

    def weights(self) -> Tensor | None:
        return None if self.scores is None else self.selected.to("cpu", copy=True)
