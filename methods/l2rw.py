"""``l2rw``: Learning to Reweight Examples (Ren, Zeng, Yang, Urtasun, ICML 2018).

Per step, with perturbation weights ε ∈ R^|Bt| at ε = 0:

    θ'(ε) = θ − α·∇_θ Σ_{i∈Bt} ε_i·l(z_i; θ),      g_i = ∂/∂ε_i mean_{j∈Bm} l(z_j; θ'(ε)) |_{ε=0}
    w̃_i = max(−g_i, 0),    w_i = w̃_i / Σ_k w̃_k  (uniform 1/|Bt| when every w̃_i is 0)

then θ ← opt_step(∇_θ Σ_i w_i·l(z_i; θ)) with w held fixed. No weights persist between steps;
``weights()`` reports, for every training example, |Bt|·w_i from the last step that drew it
(1 = an equal share of its batch; NaN for examples never drawn).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, Context, Method
from .lookahead import check_backend, inner_lr_of, lookahead_meta_loss


@dataclass
class L2RWHparams:
    """inner_lr: α of the look-ahead (0 = the model optimiser's lr); backend: higher | func."""

    inner_lr: float = 0.0
    backend: str = "higher"

    def __post_init__(self) -> None:
        check_backend(self.backend)
        if self.inner_lr < 0:
            raise ValueError(f"inner_lr must be >= 0, got {self.inner_lr}")


class L2RW(Method):
    """Per-minibatch meta-gradient weights, clipped at zero and normalised (Ren et al. 2018)."""

    Hparams = L2RWHparams
    # inner_lr is not searched: the meta-gradient at ε = 0 is linear in α, and the weights are
    # normalised per batch, so α cancels. The model lr is searched (Method's default space).

    def __init__(self, ctx: Context, hparams: L2RWHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.alpha = inner_lr_of(self.opt, self.hp.inner_lr)
        self.last = torch.full((ctx.n_train,), float("nan"), device=ctx.device)

    def batch_weights(self, train: Batch, meta: Batch) -> Tensor:
        """w for the batch: the normalised, clipped negative meta-gradient at ε = 0."""
        ctx = self.ctx
        eps = torch.zeros(len(train), device=train.x.device, requires_grad=True)
        meta_loss = lookahead_meta_loss(
            ctx.model, train.x, lambda out: (eps * ctx.loss(out, train.y)).sum(), meta, ctx.loss,
            steps=1, inner_lr=self.alpha, backend=self.hp.backend)
        (grad,) = torch.autograd.grad(meta_loss, eps)
        w = torch.clamp(-grad, min=0.0)
        total = w.sum()
        uniform = torch.full_like(w, 1.0 / len(w))
        return torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), uniform)

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        assert meta is not None, "l2rw needs a meta batch"
        w = self.batch_weights(train, meta)
        self.opt.zero_grad(set_to_none=True)
        losses = self.ctx.loss(self.ctx.model(train.x), train.y)
        (w * losses).sum().backward()
        self.opt.step()
        self.last[train.index] = w * len(w)
        return {"loss": losses.mean().detach(), "w_zero_frac": (w == 0).float().mean()}

    def weights(self) -> Tensor:
        return self.last.cpu()
