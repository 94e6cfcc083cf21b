"""``askllm_o``: AskLLM, online (Sachdeva, Coleman, Kang, Ni, Hong, Chi, Caverlee, McAuley,
Cheng, 2024, "How to Train Data-Efficient LLMs"; the online variant is the BADS paper's LLM
baseline, Sec. 5.4).

AskLLM prompts a language model with a training example and asks whether it is informative (the
prompt is the scenario's: ``Context.judge``, e.g. the ``ift`` scenario's, which wraps the example
in ``###`` and asks AskLLM's question with the options yes/no); the example's score is the
probability that the model answers "yes" (the product of the probabilities of the tokens of
"yes", one token for most tokenizers),

    s_i = p_θ("yes" | prompt(z_i)).

Sachdeva et al. score the corpus once with a separate, larger rater model and keep the top
fraction. The online variant asks the model being trained (θ, so no second model is held in
memory and the scores follow training): at every step the harness draws a super-batch of
|Bt|/β examples (``Pool.batch_scale``), each is scored, and the learner takes its optimiser step
on the mean loss of the top ⌈β·|super-batch|⌉ = |Bt| of them, i.e. examples are selected at ratio
β. Scoring runs without a graph and in eval mode, so a step costs a forward pass over the
super-batch's prompts on top of a training step.

``weights()`` is the indicator of the ⌊β·N_t⌋ examples of Dt with the highest score under the
current model (as ClassAct's): a pass over all of Dt's prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, Context, Method, Pool, check_finite, count_of
from .search import MODEL_LR, MODEL_LR_RANGE, Choice


@dataclass
class AskLLMHparams:
    """beta: the selection ratio β (super-batch |Bt|/β, keep the top β of it; also the size of
    the exported selection ⌊β·N_t⌋); chunk: examples scored per forward pass in ``weights``."""

    beta: float = 0.05
    chunk: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise ValueError(f"beta must lie in (0, 1], got {self.beta}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {self.chunk}")


class AskLLMOnline(Method):
    """Online AskLLM: the learner rates each example of a super-batch by p("yes") and trains on
    the top β of it."""

    Hparams = AskLLMHparams
    weight_range = (0.0, 1.0)  # 1 for the ⌊β·N_t⌋ selected examples, else 0
    search_space = {MODEL_LR: MODEL_LR_RANGE, "beta": Choice(0.05, 0.25, 0.5)}
    uses_meta_batch = False
    requires = ("judge",)

    def __init__(self, ctx: Context, hparams: AskLLMHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        if ctx.judge is None:
            raise ValueError("askllm_o asks the model whether an example is informative, which "
                             "needs a scenario whose model is a language model (ift); this one "
                             "has no judge")
        self.opt = ctx.make_optimizer(ctx.model.parameters())

    def pool(self) -> Pool:
        return Pool(batch_scale=1.0 / self.hp.beta)

    def score(self, index: Tensor) -> Tensor:
        """s_i = p_θ("yes" | prompt(z_i)) for the Dt examples at ``index`` (no graph)."""
        return self.ctx.judge(index)

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        scores = self.score(train.index)
        k = min(len(scores), max(1, count_of(self.hp.beta, len(scores), ceil=True)))
        kept = scores.topk(k).indices
        self.opt.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.ctx.model(train.x[kept]), train.y[kept]).mean()
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "p_yes": scores.mean(), "p_yes_kept": scores[kept].mean()}

    def weights(self) -> Tensor | None:
        n = self.ctx.n_train
        scores = torch.cat([self.score(torch.arange(i, min(i + self.hp.chunk, n)))
                            for i in range(0, n, self.hp.chunk)]).cpu()
        check_finite(scores, "askllm_o's scores")
        selected = torch.zeros(n)
        selected[scores.topk(count_of(self.hp.beta, n)).indices] = 1.0
        return selected
