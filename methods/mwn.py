"""``mwn``: Meta-Weight-Net (Shu, Xie, Yi, Zhao, Zhou, Xu, Meng, NeurIPS 2019).

The weight of a training example is a function of its loss: w_i = V(l(z_i; θ); ψ), V an MLP
1 → 100 → 1 with a ReLU hidden layer and a sigmoid output. Per step, with ω(w)_i the weights as
applied (below) and α the model's current learning rate:

    θ'(ψ) = θ − α·∇_θ Σ_{i∈Bt} ω(V(l_i; ψ))_i·l(z_i; θ)           (plain SGD look-ahead)
    ψ ← opt_step(∇_ψ mean_{j∈Bm} l(z_j; θ'(ψ)))
    θ ← opt_step(∇_θ Σ_{i∈Bt} ω(V(l(z_i; θ); ψ))_i·l(z_i; θ))       (weights from the new ψ, fixed)

The authors wrote one script per problem, and they differ; both forms are hyperparameters, and
each scenario takes the form of the matching script:

- **class imbalance** (``normalize=True``, ``detach_input=False``, ``v_optimizer="sgd"``):
  xjtushujun/Meta-weight-net_class-imbalance, ``meta-weight-net-class-imbalance.py``: the weights
  are normalised by their minibatch sum, ω_i = w_i / Σ_k w_k, unless that sum is 0 (then w as is),
  in the look-ahead (l.157-172) and in the real step (l.193-202); V reads the loss without
  detaching it in the look-ahead (``v_lambda = vnet(cost_v)``); V's optimiser is SGD, lr 1e-5,
  momentum 0.9, Nesterov, weight decay 5e-4 (l.112-114, defaults l.38-41). The ``balancing``
  scenario sets these.
- **noisy labels** (the defaults here): xjtushujun/meta-weight-net, ``MW-Net.py`` (the README's
  "stable version"): the plain mean, ω_i = w_i / |Bt| (l.205-211, l.234-237), V reads the loss
  detached (``vnet(cost_v.data)``), and V's optimiser is Adam, lr 1e-3, weight decay 1e-4
  (l.274-275).

In both scripts the look-ahead is one plain SGD step at the model's current learning rate
(``meta_lr``), which ``inner_lr=0`` follows. The meta loss's backward pass reaches only ψ
(``backward(inputs=...)``), not the θ the look-ahead starts from. ``weights()`` gives
V of each training example's current loss (raw, before ω).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Batch, Context, Method, SampledMean, model_dtype, over_chunks, require_meta
from .lookahead import check_backend, inner_lr_of, lookahead_meta_loss
from .search import MODEL_LR, MODEL_LR_RANGE, LogUniform


@dataclass
class MWNHparams:
    """inner_lr: α (0 = the model optimiser's lr); normalize: ω = w/Σ_B w (class-imbalance script)
    instead of the plain mean (noisy-label script); detach_input: V reads the look-ahead's losses
    detached; v_optimizer (adam | sgd), lr_v, v_momentum, v_nesterov, v_weight_decay: V's
    optimiser; hidden: V's width; backend: higher | func."""

    inner_lr: float = 0.0
    normalize: bool = False
    detach_input: bool = True
    v_optimizer: str = "adam"
    lr_v: float = 1e-3
    v_momentum: float = 0.0
    v_nesterov: bool = False
    v_weight_decay: float = 1e-4
    hidden: int = 100
    backend: str = "func"

    def __post_init__(self) -> None:
        check_backend(self.backend)
        if self.v_optimizer not in ("adam", "sgd"):
            raise ValueError(f"v_optimizer must be adam or sgd, got {self.v_optimizer!r}")
        if self.lr_v <= 0 or self.hidden < 1 or self.inner_lr < 0:
            raise ValueError("lr_v must be positive, hidden at least 1 and inner_lr >= 0")
        if self.v_momentum < 0 or self.v_weight_decay < 0:
            raise ValueError("v_momentum and v_weight_decay must be >= 0")
        if self.v_nesterov and (self.v_optimizer != "sgd" or self.v_momentum == 0):
            raise ValueError("v_nesterov needs v_optimizer=sgd and v_momentum > 0")


class MetaWeightNet(nn.Module):
    """V(l; ψ): loss value -> weight in (0, 1)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses: Tensor) -> Tensor:
        return torch.sigmoid(self.net(losses.unsqueeze(-1))).squeeze(-1)


def applied(w: Tensor, normalize: bool) -> Tensor:
    """ω(w): w / Σw unless Σw = 0 (then w), or w / |B|; a NaN sum stays NaN (never a fallback)."""
    if normalize:
        total = w.sum()
        return w / torch.where(total == 0, torch.ones_like(total), total)
    return w / w.shape[0]


class MWN(Method):
    """Meta-Weight-Net: an MLP from loss to weight, trained through a one-step look-ahead."""

    Hparams = MWNHparams
    weight_range = (0.0, 1.0)  # the weight network's sigmoid output
    search_space = {MODEL_LR: MODEL_LR_RANGE, "inner_lr": LogUniform(0.3, 30.0, relative=True),
                    "lr_v": LogUniform(0.1, 100.0, relative=True)}

    def __init__(self, ctx: Context, hparams: MWNHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        hp = self.hp
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.alpha = inner_lr_of(self.opt, hp.inner_lr)
        self.vnet = MetaWeightNet(hp.hidden).to(ctx.device, model_dtype(ctx.model))
        if hp.v_optimizer == "sgd":
            self.vnet_opt: torch.optim.Optimizer = torch.optim.SGD(
                self.vnet.parameters(), lr=hp.lr_v, momentum=hp.v_momentum,
                nesterov=hp.v_nesterov, weight_decay=hp.v_weight_decay)
        else:
            self.vnet_opt = torch.optim.Adam(self.vnet.parameters(), lr=hp.lr_v,
                                             weight_decay=hp.v_weight_decay)
        self.grad_size = SampledMean()

    @property
    def weights_relative(self) -> bool:
        return self.hp.normalize

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        meta = require_meta(meta, "mwn")
        ctx, hp = self.ctx, self.hp

        def weigh(out: Tensor) -> Tensor:
            losses = ctx.loss(out, train.y)
            w = self.vnet(losses.detach() if hp.detach_input else losses)
            return (applied(w, hp.normalize) * losses).sum()

        meta_loss = lookahead_meta_loss(ctx.model, train.x, weigh, meta, ctx.loss, steps=1,
                                        inner_lr=self.alpha, backend=hp.backend)
        self.vnet_opt.zero_grad(set_to_none=True)
        meta_loss.backward(inputs=list(self.vnet.parameters()))  # ψ only, not θ
        if self.grad_size.due():  # the hypergradient's size (reads it on the host)
            self.grad_size.add(float(torch.linalg.vector_norm(torch.cat(
                [p.grad.flatten() for p in self.vnet.parameters() if p.grad is not None]))))
        self.vnet_opt.step()

        self.opt.zero_grad(set_to_none=True)
        losses = ctx.loss(ctx.model(train.x), train.y)
        with torch.no_grad():
            w = self.vnet(losses.detach())
            omega = applied(w, hp.normalize)
        (omega * losses).sum().backward()
        self.opt.step()
        return {"loss": losses.mean().detach(), "loss_meta_lookahead": meta_loss.detach(),
                "w_mean": w.mean()}

    def diagnostics(self) -> dict[str, float]:
        """``grad_data``: ‖∇_ψ L_m(θ')‖, the size of V's hypergradient (its only term: MW-Net has
        no prior on ψ), averaged over the steps sampled every DIAGNOSTIC_EVERY since the last
        call; before weight decay."""
        return self.grad_size.take("grad_data")

    def weights(self) -> Tensor:
        model, loss = self.ctx.model, self.ctx.loss
        return over_chunks(model, lambda x, y: self.vnet(loss(model(x), y)),
                           self.ctx.train_set, self.ctx.offline_chunk).cpu()
