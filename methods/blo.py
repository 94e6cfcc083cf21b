"""``blo``: online bi-level data weighting (Ren et al. 2018; Grangier et al. 2023, "Adaptive
training distributions with scalable online bilevel optimization"), the paper's BLO baseline.

Persistent weights w_i = sigmoid(·) with the same parameterisations as BADS (a linear weight
network on the model's detached embedding, or one logit per example), normalised over the
minibatch: w̃_i = w_i / Σ_{k∈Bt} w_k. Per step, with k inner steps of size α:

    θ'_0 = θ,  θ'_{s+1} = θ'_s − α·∇_θ Σ_{i∈Bt} w̃_i(φ)·l(z_i; θ'_s)
    φ ← opt_step(∇_φ mean_{j∈Bm} l(z_j; θ'_k))                 (hypergradient through the unroll)
    θ ← opt_step(∇_θ Σ_{i∈Bt} w̃_i·l(z_i; θ)) with the updated weights, held fixed.

Normalising by the minibatch sum makes the inner step size independent of the weights' scale,
so the outer problem can only move weight between examples, not shrink the step (Ren et al.
normalise the same way). The initial weights are all 0.5 (v = 0, b = 0). Only the ratios of the
weights matter, so the degenerate-weights test judges them scale-free (``weights_relative``).

The hypergradient's backward pass reaches only φ (``backward(inputs=...)``): the look-ahead
starts from θ (``func``) or from a detached copy of θ that requires grad (``higher``), and a plain
``backward()`` would also run the meta loss's gradient into it (two extra convolution backwards
per step) only to discard it, or leave it in θ's ``.grad``.

``freeze_weights=True`` (the ``blo_frozen`` control) skips the look-ahead: every normalised
weight stays 1/|Bt|, i.e. plain training on Dt with the model optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, Context, Method, SampledMean, control, require_meta
from .lookahead import check_backend, inner_lr_of, lookahead_meta_loss
from .search import MODEL_LR, MODEL_LR_RANGE, Choice, LogUniform
from .weighting import ExampleWeights, check_weights


@dataclass
class BLOHparams:
    """k: inner steps; inner_lr: α (0 = the model optimiser's lr); lr_w, w_optimizer: φ's
    optimiser; weights: net | per_sample; concat_label: the weight network also sees onehot(y);
    weight_storage: device | cpu | memmap (per_sample); backend: higher | func (the unroll);
    freeze_weights: φ never moves (the blo_frozen control)."""

    k: int = 1
    inner_lr: float = 0.0
    lr_w: float = 1e-3
    w_optimizer: str = "adam"
    weights: str = "net"
    concat_label: bool = False
    weight_storage: str = "device"
    backend: str = "func"
    freeze_weights: bool = False

    def __post_init__(self) -> None:
        check_backend(self.backend)
        check_weights(self.weights, self.w_optimizer, self.weight_storage)
        if self.k < 1 or self.lr_w <= 0 or self.inner_lr < 0:
            raise ValueError("k must be at least 1, lr_w positive and inner_lr >= 0")


def normalised(w: Tensor) -> Tensor:
    return w / w.sum()


class BLO(Method):
    """Online bi-level optimisation of persistent example weights through a k-step unroll."""

    Hparams = BLOHparams
    weight_range = (0.0, 1.0)  # w_i = sigmoid(·)
    search_space = {MODEL_LR: MODEL_LR_RANGE, "inner_lr": LogUniform(0.3, 30.0, relative=True),
                    "lr_w": LogUniform(1e-4, 1e-1), "k": Choice(1, 2)}

    def __init__(self, ctx: Context, hparams: BLOHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        hp = self.hp
        self.opt = ctx.make_optimizer(ctx.model.parameters())
        self.alpha = inner_lr_of(self.opt, hp.inner_lr)
        self.w = ExampleWeights(ctx, hp.weights, 0.0, hp.w_optimizer, hp.lr_w,
                                concat_label=hp.concat_label, storage=hp.weight_storage)
        self.grad_size = SampledMean()

    @property
    def weights_relative(self) -> bool:
        return True  # used as w_i / Σ_{k∈Bt} w_k: only ratios matter

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        ctx = self.ctx
        if self.hp.freeze_weights:
            return self._plain_step(train)
        meta = require_meta(meta, "blo")
        with torch.no_grad():  # the weight network's input; no graph kept through the look-ahead
            emb = ctx.embed(train.x) if self.w.phi is not None else train.x
        w = normalised(self.w(emb, train.y, train.index))
        meta_loss = lookahead_meta_loss(
            ctx.model, train.x, lambda fast_out: (w * ctx.loss(fast_out, train.y)).sum(), meta, ctx.loss,
            steps=self.hp.k, inner_lr=self.alpha, backend=self.hp.backend)
        self.w.zero_grad()
        meta_loss.backward(inputs=self.w.grad_inputs())  # φ only, not the look-ahead's θ copy
        if self.grad_size.due():
            self.grad_size.add(self.w.grad_norm_of_last_backward())
        self.w.step()

        with torch.no_grad():
            w_new = normalised(self.w(emb, train.y, train.index))
        self.opt.zero_grad(set_to_none=True)
        # a fresh forward pass: reusing one from before the look-ahead would keep its activations
        # alive through the unroll and raise the peak memory of the step
        losses = ctx.loss(ctx.model(train.x), train.y)
        (w_new * losses).sum().backward()
        self.opt.step()
        return {"loss": losses.mean().detach(), "loss_meta_lookahead": meta_loss.detach()}

    def _plain_step(self, train: Batch) -> dict[str, Tensor]:
        """θ's step with the frozen weights, every w̃_i = 1/|Bt|."""
        self.opt.zero_grad(set_to_none=True)
        losses = self.ctx.loss(self.ctx.model(train.x), train.y)
        losses.mean().backward()
        self.opt.step()
        return {"loss": losses.mean().detach()}

    def diagnostics(self) -> dict[str, float]:
        """``grad_data``: ‖∇_φ L_m(θ'_k)‖, the hypergradient's size, averaged over the steps
        sampled every DIAGNOSTIC_EVERY since the last call (blo's only term: it has no prior)."""
        return self.grad_size.take("grad_data")

    def weights(self) -> Tensor:
        return self.w.all()


BLOFrozen = control(
    BLO, "blo", "blo_frozen", {"freeze_weights": True},
    "Control: blo with its weights frozen at the start (all equal): plain training on Dt.",
    inert=("k", "inner_lr", "lr_w", "w_optimizer", "backend", "weights", "concat_label",
           "weight_storage"), uses_meta_batch=False, qualname="BLOFrozen",
)
