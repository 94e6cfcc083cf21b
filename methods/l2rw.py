"""``l2rw``: Learning to Reweight Examples (Ren, Zeng, Yang, Urtasun, ICML 2018).

Per step, with perturbation weights ε ∈ R^|Bt| at ε = 0:

    θ'(ε) = θ − α·∇_θ Σ_{i∈Bt} ε_i·l(z_i; θ),      g_i = ∂/∂ε_i mean_{j∈Bm} l(z_j; θ'(ε)) |_{ε=0}
    w̃_i = max(−g_i, 0),    w_i = w̃_i / Σ_k w̃_k

then θ ← opt_step(∇_θ Σ_i w_i·l(z_i; θ)) with w held fixed. When every w̃_i is 0 the batch
contributes no update (``all_clipped="skip"``, the default): the authors' code divides by
Σ_k w̃_k + [Σ_k w̃_k = 0] (uber-research/learning-to-reweight-examples, ``mnist/reweight.py``
l.149-153, ``models/reweight_model.py`` l.91-96; torchopt's ``examples/L2R/helpers/model.py``
``normalise`` does the same), so every weight stays 0 and the batch's loss gradient is zero; the
optimiser still takes its step (momentum and weight decay act as usual, as in their code).
``all_clipped="uniform"`` instead trains on the batch with weights 1/|Bt|. A non-finite
meta-gradient (NaN or ±inf) becomes NaN weights (never a fallback, never a clipped 0).

Logged per step: ``clipped_frac``, the fraction of the batch with w̃_i = 0 (before any fallback),
and ``all_clipped``, 1 when every weight of the batch was clipped (their mean since the last
evaluation is the fraction of such batches). No weights persist between steps; ``weights()``
reports, for every training example, |Bt|·w_i from the last step that drew it (1 = an equal share
of its batch; NaN for examples never drawn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, Context, Method, require_meta
from .lookahead import check_backend, inner_lr_of, lookahead_meta_loss


@dataclass
class L2RWHparams:
    """inner_lr: α of the look-ahead (0 = the model optimiser's lr); backend: higher | func;
    all_clipped: what a batch whose every weight clips to 0 does (skip: nothing; uniform)."""

    inner_lr: float = 0.0
    backend: str = "func"
    all_clipped: str = "skip"  # skip (the authors': no update from the batch) | uniform

    def __post_init__(self) -> None:
        check_backend(self.backend)
        if self.inner_lr < 0:
            raise ValueError(f"inner_lr must be >= 0, got {self.inner_lr}")
        if self.all_clipped not in ("skip", "uniform"):
            raise ValueError(f"all_clipped must be skip or uniform, got {self.all_clipped!r}")


class L2RW(Method):
    """Per-minibatch meta-gradient weights, clipped at zero and normalised (Ren et al. 2018)."""

    Hparams = L2RWHparams
    weight_range = (0.0, math.inf)  # |Bt|·w_i, w_i ≥ 0 summing to 1 over its batch
    nan_until_drawn = True  # NaN marks an example no step has drawn
    # inner_lr is not searched: the meta-gradient at ε = 0 is linear in α, and the weights are
    # normalised per batch, so α cancels. The model lr is searched (Method's default space).

    def __init__(self, ctx: Context, hparams: L2RWHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.alpha = inner_lr_of(self.opt, self.hp.inner_lr)
        self.last = torch.full((ctx.n_train,), float("nan"), device=ctx.device)

    def batch_weights(self, train: Batch, meta: Batch) -> tuple[Tensor, Tensor]:
        """(w, clipped) for the batch: w the normalised, clipped negative meta-gradient at ε = 0
        (all 0, or uniform, when every entry is clipped), clipped the mask of w̃_i = 0."""
        ctx = self.ctx
        eps = torch.zeros(len(train), device=train.x.device, requires_grad=True)
        meta_loss = lookahead_meta_loss(
            ctx.model, train.x, lambda out: (eps * ctx.loss(out, train.y)).sum(), meta, ctx.loss,
            steps=1, inner_lr=self.alpha, backend=self.hp.backend)
        (grad,) = torch.autograd.grad(meta_loss, eps)
        self._meta_loss = meta_loss.detach()
        # NaN stays NaN through the clamp, but +inf would clip to 0 and pass for "all clipped"
        w = torch.where(torch.isfinite(grad), torch.clamp(-grad, min=0.0), torch.nan)
        clipped = w == 0
        total = w.sum()
        none_left = total == 0
        if self.hp.all_clipped == "uniform":
            return torch.where(none_left, torch.full_like(w, 1.0 / len(w)), w / total), clipped
        return w / (total + none_left.to(w.dtype)), clipped

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        meta = require_meta(meta, "l2rw")
        w, clipped = self.batch_weights(train, meta)
        self.opt.zero_grad(set_to_none=True)
        losses = self.ctx.loss(self.ctx.model(train.x), train.y)
        weighted = (w * losses).sum()
        weighted.backward()
        self.opt.step()
        self.last[train.index] = w.detach() * len(w)
        return {"loss": losses.mean().detach(), "loss_weighted": weighted.detach(),
                "loss_meta_lookahead": self._meta_loss,
                "clipped_frac": clipped.float().mean(), "all_clipped": clipped.all().float()}

    def weights(self) -> Tensor:
        return self.last.to("cpu", copy=True)  # the caller owns it
