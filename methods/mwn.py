"""``mwn``: Meta-Weight-Net (Shu, Xie, Yi, Zhao, Zhou, Xu, Meng, NeurIPS 2019).

The weight of a training example is a function of its loss: w_i = V(l(z_i; θ); ψ), V an MLP
1 → 100 → 1 with a ReLU hidden layer and a sigmoid output. Per step:

    θ'(ψ) = θ − α·∇_θ mean_{i∈Bt} V(l_i; ψ)·l(z_i; θ)     (l_i fed to V detached, as in MW-Net)
    ψ ← opt_step(∇_ψ mean_{j∈Bm} l(z_j; θ'(ψ)))
    θ ← opt_step(∇_θ mean_{i∈Bt} V(l(z_i; θ); ψ)·l(z_i; θ))  (weights from the updated ψ, fixed)

The weighted loss is the plain mean of w_i·l_i over the batch, not normalised by Σw, as in the
authors' code. ψ's optimiser is Adam (``lr_v``). ``weights()`` gives V of each training example's
current loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Batch, Context, Method, over_chunks
from .lookahead import check_backend, inner_lr_of, lookahead_meta_loss
from .search import MODEL_LR, MODEL_LR_RANGE, LogUniform


@dataclass
class MWNHparams:
    """inner_lr: α (0 = the model optimiser's lr); lr_v: Adam lr of V; hidden: V's width."""

    inner_lr: float = 0.0
    lr_v: float = 1e-3
    hidden: int = 100
    backend: str = "higher"

    def __post_init__(self) -> None:
        check_backend(self.backend)
        if self.lr_v <= 0 or self.hidden < 1 or self.inner_lr < 0:
            raise ValueError("lr_v must be positive, hidden at least 1 and inner_lr >= 0")


class MetaWeightNet(nn.Module):
    """V(l; ψ): loss value -> weight in (0, 1)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses: Tensor) -> Tensor:
        return torch.sigmoid(self.net(losses.detach().unsqueeze(-1))).squeeze(-1)


class MWN(Method):
    """Meta-Weight-Net: an MLP from loss to weight, trained through a one-step look-ahead."""

    Hparams = MWNHparams
    search_space = {MODEL_LR: MODEL_LR_RANGE, "inner_lr": LogUniform(0.3, 30.0, relative=True),
                    "lr_v": LogUniform(1e-4, 1e-1)}

    def __init__(self, ctx: Context, hparams: MWNHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.alpha = inner_lr_of(self.opt, self.hp.inner_lr)
        self.vnet = MetaWeightNet(self.hp.hidden).to(ctx.device)
        self.vnet_opt = torch.optim.Adam(self.vnet.parameters(), lr=self.hp.lr_v)

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        assert meta is not None, "mwn needs a meta batch"
        ctx = self.ctx

        def weigh(out: Tensor) -> Tensor:
            losses = ctx.loss(out, train.y)
            return (self.vnet(losses) * losses).mean()

        meta_loss = lookahead_meta_loss(ctx.model, train.x, weigh, meta, ctx.loss, steps=1,
                                        inner_lr=self.alpha, backend=self.hp.backend)
        self.vnet_opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        self.vnet_opt.step()

        self.opt.zero_grad(set_to_none=True)
        losses = ctx.loss(ctx.model(train.x), train.y)
        with torch.no_grad():
            w = self.vnet(losses)
        (w * losses).mean().backward()
        self.opt.step()
        return {"loss": losses.mean().detach(), "loss_meta_lookahead": meta_loss.detach(),
                "w_mean": w.mean()}

    def weights(self) -> Tensor:
        model, loss = self.ctx.model, self.ctx.loss
        return over_chunks(model, lambda x, y: self.vnet(loss(model(x), y)),
                           self.ctx.train_set).cpu()
