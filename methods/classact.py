"""``classact``: ClassAct, online active data selection by learnability (Evans, Pathak, Merzic,
Schwarz, Tanno, Hénaff, 2024, "Bad Students Make Great Teachers: Active Learning Accelerates
Large-Scale Visual Understanding"; the classification variant of their ActiveCLIP).

A reference model θ_ref is trained on the curated data (here Dm: ``ref_steps`` steps from the
initial model with its own optimiser, Adam at ``ref_lr`` = 1e-3 by default, in ``prepare``, timed
apart) and then frozen; its mean loss on Dm is logged (``ref_loss_meta``, split ``weights``). Its
own optimiser because the learner's may barely move a model in a few hundred steps (the paper
profile's SGD at 1e-3), which would leave θ_ref ≈ θ_0 and the score l(θ) − l(θ_0) instead of
Evans et al.'s learnability against a trained reference (``ref_optimizer=model`` restores it).
At every step the harness draws a super-batch of |Bt|/keep examples (``Pool.batch_scale``),
each is scored by its learnability under the current learner θ,

    s_i = l(z_i; θ) − l(z_i; θ_ref),

high for points the learner has not learnt yet but the reference finds easy (not yet learnt, and
learnable and worth learning: a minority-class point in balancing; not a flipped label), and the
learner takes its optimiser step on the mean loss of the kept ⌈keep·|super-batch|⌉ examples.
Evans et al. keep 50% (a super-batch twice the learner's batch), the default here, so the learner
steps on as many examples per step as the other methods. Selection (``selection``):
- ``top`` (default): the kept examples are the top by s_i;
- ``softmax``: they are sampled without replacement with probability ∝ exp(s_i) (Evans et al.'s
  rule, by the Gumbel-top-k trick with the method's RNG).

Both scoring passes run without a graph and in eval mode (no batch-norm statistics move), so a
step costs two forward passes over the super-batch on top of a training step over the kept
examples, and the frozen reference model stays in memory: ClassAct is among the costliest methods
per step, as in the BADS paper's Table 1. Choices where Evans et al. differ: they score with a
small online model co-trained beside a large learner (the cost argument of their paper); here the
learner is small and scores itself, as the BADS paper's description ("the example's loss under the
current learner minus its loss under a reference model trained on Dm") has it.

``weights()`` is the indicator of the ⌊β·N_t⌋ examples of Dt with the highest learnability under
the current learner (β the selection ratio shared with BADS).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, Context, Method, Pool, check_finite, count_of, over_chunks
from .cds import check_optimizer, losses_of, train_copy
from .search import MODEL_LR, MODEL_LR_RANGE, Choice


@dataclass
class ClassActHparams:
    """keep: fraction of each super-batch trained on (its size is |Bt|/keep); selection: top |
    softmax; ref_steps, batch_size, ref_optimizer (adam | model: the scenario's model
    optimiser), ref_lr (adam's): the reference model's training on Dm; beta: size of the exported
    selection ⌊β·N_t⌋."""

    keep: float = 0.5
    selection: str = "top"
    ref_steps: int = 500
    batch_size: int = 100
    beta: float = 0.05
    ref_optimizer: str = "adam"
    ref_lr: float = 1e-3

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1 or not 0 < self.beta <= 1:
            raise ValueError("keep and beta must lie in (0, 1]")
        if self.selection not in ("top", "softmax"):
            raise ValueError(f"selection must be top or softmax, got {self.selection!r}")
        if self.ref_steps < 0 or self.batch_size < 1:
            raise ValueError("ref_steps must be >= 0 and batch_size >= 1")
        check_optimizer(self.ref_optimizer, self.ref_lr)


class ClassAct(Method):
    """Online learnability selection on a super-batch each step (Evans et al. 2024).

    Learnability is the learner's loss minus a Dm-trained reference model's; the learner trains
    on the top (or sampled) fraction of each super-batch."""

    Hparams = ClassActHparams
    weight_range = (0.0, 1.0)  # 1 for the ⌊β·N_t⌋ selected examples, else 0
    check_hparams = {"ref_steps": 3, "batch_size": 8}
    search_space = {MODEL_LR: MODEL_LR_RANGE, "keep": Choice(0.25, 0.5, 0.75)}
    uses_meta_batch = False

    def __init__(self, ctx: Context, hparams: ClassActHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.reference: torch.nn.Module | None = None

    def pool(self) -> Pool:
        return Pool(batch_scale=1.0 / self.hp.keep)

    def prepare(self) -> None:
        ctx, hp = self.ctx, self.hp
        reference = train_copy(copy.deepcopy(ctx.model), ctx, ctx.meta_set, hp.ref_steps,
                               hp.batch_size, hp.ref_optimizer, hp.ref_lr)
        reference.eval().requires_grad_(False)
        ref_loss = check_finite(losses_of(reference, ctx, ctx.meta_set),
                                "classact's reference model's loss on Dm")
        self.ref_loss_meta = ref_loss.mean().item()
        self.reference = reference

    def diagnostics(self) -> dict[str, float]:
        """The reference model's mean loss on Dm (is it trained?)."""
        return {"ref_loss_meta": self.ref_loss_meta} if self.reference is not None else {}

    @torch.no_grad()
    def learnability(self, x: Tensor, y: Tensor) -> Tensor:
        """s_i = l(z_i; θ) − l(z_i; θ_ref), both in eval mode, without a graph."""
        if self.reference is None:
            raise RuntimeError("classact.prepare() must run before the first step")
        model, loss = self.ctx.model, self.ctx.loss
        was_training = model.training
        model.eval()
        try:
            return loss(model(x), y) - loss(self.reference(x), y)
        finally:
            model.train(was_training)

    def select(self, scores: Tensor) -> Tensor:
        """Positions of the kept ⌈keep·|B|⌉ examples: the top scores, or a sample without
        replacement ∝ exp(s_i) (Gumbel-top-k)."""
        k = min(len(scores), max(1, count_of(self.hp.keep, len(scores), ceil=True)))
        if self.hp.selection == "softmax":
            u = torch.rand(len(scores), generator=self.ctx.generator).to(scores)
            scores = scores - torch.log(-torch.log(u.clamp_min(1e-20)))
        return scores.topk(k).indices

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        scores = self.learnability(train.x, train.y)
        kept = self.select(scores)
        self.opt.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.ctx.model(train.x[kept]), train.y[kept]).mean()
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "learnability": scores.mean(),
                "learnability_kept": scores[kept].mean()}

    def weights(self) -> Tensor | None:
        if self.reference is None:
            return None
        scores = over_chunks(self.ctx.model, self.learnability, self.ctx.train_set,
                             self.ctx.offline_chunk)
        selected = torch.zeros(self.ctx.n_train)
        selected[scores.topk(count_of(self.hp.beta, self.ctx.n_train)).indices.cpu()] = 1.0
        return selected
