"""BADS: Bayesian data point selection (Xu, Kim, Lee, Martinez, Hospedales, NeurIPS 2024).

Posterior over the model θ and the per-example weights w_i ∈ [0, 1] of Dt = {z_i}, i = 1..N_t:

    p(θ, w | Dt, Dm) ∝ p(w) · p(θ | w, Dt) · p(Dm | θ)
    p(θ | w, Dt) ∝ N(θ; 0, λ⁻¹I) · ∏_i exp(−w_i · l(z_i; θ))
    p(Dm | θ)    ∝ ∏_j exp(−l(z_j; θ))
    p(w)         ∝ exp(−(Σ_i w_i − ⌊β·N_t⌋)² / (2σ²))

Σ_i w_i is estimated per step as Ŝ = Σ_{i∈Bt} w_i + (N_t − |Bt|)·w̄, where w̄ is the mean of the
minibatch mean weights of the last s_avg steps, this step's included, held constant (no gradient).
The weights are w_i = sigmoid(f_φ(e_i)) with f_φ one linear layer on the model's detached
embedding e_i (concatenated with the one-hot label when ``concat_label``), or one free logit
φ_i per example (``weights="per_sample"``). φ is sampled in place of w.

Each step (SGLD, Bt ⊂ Dt, Bm ⊂ Dm) minimises with the optimisers, in one backward pass,

    U_θ = (λ/2)‖θ‖² + ρ_θᵗ·N_t·mean_{i∈Bt}(w_i·l(z_i; θ)) + ρ_θᵐ·N_m·mean_{j∈Bm} l(z_j; θ)   (w fixed)
    U_φ = (Ŝ − ⌊β·N_t⌋)² / (2σ²) + ρ_w·N_t·mean_{i∈Bt}(w_i(φ)·l(z_i; θ))                  (θ fixed)

i.e. θ ← θ − lr_θ·∇_θU_θ and φ ← φ − lr_w·∇_φU_φ (the paper's (η/2)∇ log-posterior terms, taken by
ordinary optimisers with their own learning rates), then adds noise to θ and φ:
- ``noise="paper"``: ε·N(0, I) with ε = ``noise_std`` (the paper's "η = 1, ε = 1e-5");
- ``noise="sgld"``: N(0, 2·lr·T·I), textbook Langevin dynamics at temperature T, exact as a sampler
  (up to discretisation) with plain SGD optimisers;
- ``noise="none"``: no noise (a MAP point estimate).
The final model is the last iterate (no burn-in, no averaging), as in the paper.

Choices where the paper is silent or its published values do not work (also in the README):
- The θ optimiser is the scenario's model optimiser (SGD, lr 1e-3 in the paper profile); φ gets
  its own (``w_optimizer``, ``lr_w``). The default is Adam on φ: with SGD, σ = 1e-5 makes the prior
  gradient ~1e10·(Ŝ − K) and every weight collapses to ~0 within a few hundred steps, after which
  BADS silently trains on Dm alone. Adam's per-coordinate normalisation makes the step size
  independent of that scale.
- ``bias_init="logit_beta"`` starts the weight network's output bias at logit(β), so every initial
  weight is β and Ŝ starts at the prior's target ⌊β·N_t⌋; a zero bias (weights 0.5, the literal
  setting) starts Ŝ ~100x above it, and the prior then drives all weights down together.
- λ (``prior_precision``) defaults to 0: the paper trains with plain SGD and reports no weight decay.
- θ and φ share one forward pass over Bt ∪ Bm (one batch through the model); the embedding e_i is
  taken from that same pass. Models with batch normalisation would see joint batch statistics.
- Per-sample logits are updated lazily: only the rows of Bt get their gradient step, optimiser
  state update and noise, so per-step cost does not grow with N_t. With ``weight_storage`` =
  ``cpu`` or ``memmap`` the logits and their optimiser state live off the accelerator (in host
  memory, or in a memory-mapped file) and only the minibatch's rows travel to the device.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Batch, Context, Method


@dataclass
class BADSHparams:
    """Symbols as in the paper. Scenario defaults override these (see ``dps-bench list``)."""

    beta: float = 0.05  # β, the fraction of Dt to keep: the prior targets Σw = ⌊β·N_t⌋
    sigma: float = 1e-5  # σ, how firmly the prior holds Σw at ⌊β·N_t⌋
    rho_theta_train: float = 1.0  # ρ_θᵗ
    rho_theta_meta: float = 1.0  # ρ_θᵐ
    rho_w: float = 1.0  # ρ_w
    prior_precision: float = 0.0  # λ of N(θ; 0, λ⁻¹I)
    s_avg: int = 10  # window of the running mean w̄
    lr_w: float = 1e-3  # learning rate of φ
    lr_theta: float = 0.0  # learning rate of θ; 0 keeps the scenario's model learning rate
    w_optimizer: str = "adam"  # adam | sgd
    noise: str = "paper"  # paper | sgld | none
    noise_std: float = 1e-5  # ε, paper mode
    temperature: float = 1.0  # T, sgld mode
    weights: str = "net"  # net (weight network on e_i) | per_sample (one logit per example)
    concat_label: bool = False  # weight network input [e_i, onehot(y_i)] (for noisy labels)
    bias_init: str = "logit_beta"  # logit_beta | zero
    weight_storage: str = "device"  # per_sample only: device | cpu | memmap

    def __post_init__(self) -> None:
        choices = {"w_optimizer": ("adam", "sgd"), "noise": ("paper", "sgld", "none"),
                   "weights": ("net", "per_sample"), "bias_init": ("logit_beta", "zero"),
                   "weight_storage": ("device", "cpu", "memmap")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 < self.beta < 1.0:
            raise ValueError(f"beta must lie in (0, 1), got {self.beta}")
        if self.sigma <= 0 or self.s_avg < 1 or self.lr_w <= 0:
            raise ValueError("sigma and lr_w must be positive and s_avg at least 1")


class RowParams:
    """Per-example logits φ_i with a lazily updated optimiser (Adam or SGD), stored anywhere.

    Only the rows of a minibatch are read, updated (with their own Adam step counts) and written
    back; the storage can be the device, host memory or a memory-mapped file.
    """

    def __init__(self, n: int, init: float, hp: BADSHparams, device: torch.device) -> None:
        self.hp, self.device = hp, device
        where = hp.weight_storage
        cols = 4 if hp.w_optimizer == "adam" else 1  # φ, m, v, step
        if where == "memmap":
            fd, path = tempfile.mkstemp(prefix="bads-phi-", suffix=".f32")
            os.close(fd)
            array = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, cols))
            self.table = torch.from_numpy(array)
            os.unlink(path)  # the mapping stays valid; the file vanishes with it
        else:
            self.table = torch.zeros(n, cols, dtype=torch.float32,
                                     device=device if where == "device" else "cpu")
        self.table.zero_()
        self.table[:, 0] = init
        self.on_device = where == "device"

    def gather(self, index: Tensor) -> Tensor:
        """φ_B as a fresh leaf on the device that requires grad."""
        rows = index if self.on_device else index.cpu()
        return self.table[rows, 0].to(self.device, non_blocking=True).requires_grad_(True)

    @torch.no_grad()
    def update(self, index: Tensor, phi: Tensor, grad: Tensor, noise_std: float) -> None:
        """One optimiser step on the rows ``index`` (duplicates in a batch are summed first)."""
        rows = index if self.on_device else index.cpu()
        uniq, inv = torch.unique(rows, return_inverse=True)
        g = torch.zeros(len(uniq), dtype=self.table.dtype, device=grad.device)
        g.index_add_(0, inv.to(grad.device), grad.to(self.table.dtype))
        state = self.table[uniq].to(self.device)
        p = state[:, 0]
        if self.hp.w_optimizer == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-8
            state[:, 3] += 1
            t = state[:, 3]
            state[:, 1].mul_(b1).add_(g, alpha=1 - b1)
            state[:, 2].mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat = state[:, 1] / (1 - b1**t)
            v_hat = state[:, 2] / (1 - b2**t)
            p.sub_(self.hp.lr_w * m_hat / (v_hat.sqrt() + eps))
        else:
            p.sub_(self.hp.lr_w * g)
        if noise_std > 0:
            p.add_(torch.randn_like(p) * noise_std)
        self.table[uniq] = state.to(self.table.device)

    def all_logits(self) -> Tensor:
        return self.table[:, 0]


class BADS(Method):
    """Bayesian data point selection: SGLD on the joint posterior of θ and the weights w(φ)."""

    Hparams = BADSHparams

    def __init__(self, ctx: Context, hparams: BADSHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        hp = self.hp
        self.target = math.floor(hp.beta * ctx.n_train)  # ⌊β·N_t⌋
        self.model_opt = ctx.make_optimizer(ctx.model.parameters())
        if hp.lr_theta > 0:
            for group in self.model_opt.param_groups:
                group["lr"] = hp.lr_theta
        init = math.log(hp.beta / (1 - hp.beta)) if hp.bias_init == "logit_beta" else 0.0
        if hp.weights == "net":
            emb_dim = self._embedding_dim()
            in_dim = emb_dim + (ctx.num_classes if hp.concat_label else 0)
            self.weight_net = nn.Linear(in_dim, 1).to(ctx.device)
            nn.init.constant_(self.weight_net.bias, init)
            opt = torch.optim.Adam if hp.w_optimizer == "adam" else torch.optim.SGD
            self.weight_opt = opt(self.weight_net.parameters(), lr=hp.lr_w)
            self.rows = None
        else:
            self.weight_net, self.weight_opt = None, None
            self.rows = RowParams(ctx.n_train, init, hp, ctx.device)
        # recent minibatch mean weights; Ŝ is formed in float64 so that Ŝ − ⌊β·N_t⌋ keeps its
        # precision: in float32 its rounding error (~3e-6 at Σw = 25) times 1/σ² = 1e10 would
        # swamp the data term
        self.window = torch.zeros(hp.s_avg, device=ctx.device, dtype=torch.float64)
        self.t = 0

    def _embedding_dim(self) -> int:
        probe = self.ctx.train_set.x[:1] if self.ctx.train_set is not None else None
        if probe is None:
            raise ValueError("BADS with a weight network needs ctx.train_set to size its input")
        with torch.no_grad():
            return int(self.ctx.embed(probe).reshape(1, -1).shape[1])

    def _net_input(self, emb: Tensor, y: Tensor) -> Tensor:
        e = emb.detach().reshape(emb.shape[0], -1)
        if self.hp.concat_label:
            e = torch.cat([e, F.one_hot(y.long(), self.ctx.num_classes).to(e.dtype)], dim=1)
        return e

    def _noise_std(self, lr: float) -> float:
        hp = self.hp
        if hp.noise == "paper":
            return hp.noise_std
        if hp.noise == "sgld":
            return math.sqrt(2.0 * lr * hp.temperature)
        return 0.0

    def running_mean(self, batch_mean: Tensor) -> Tensor:
        """w̄: mean of the last s_avg minibatch mean weights, this one included; no gradient."""
        self.window[self.t % self.hp.s_avg] = batch_mean.detach()
        return self.window[: min(self.t + 1, self.hp.s_avg)].mean()

    def sum_estimate(self, w: Tensor) -> Tensor:
        """Ŝ = Σ_{i∈Bt} w_i + (N_t − |Bt|)·w̄ (gradient flows through the first term only)."""
        w64 = w.double()
        w_bar = self.running_mean(w64.mean())
        return w64.sum() + (self.ctx.n_train - w.shape[0]) * w_bar

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        ctx, hp = self.ctx, self.hp
        assert meta is not None, "BADS needs a meta batch"
        nb = len(train)
        out, emb = ctx.forward_features(torch.cat([train.x, meta.x]))
        losses = ctx.loss(out, torch.cat([train.y, meta.y]))
        loss_t, loss_m = losses[:nb], losses[nb:]

        if self.rows is None:
            phi_b = None
            w = torch.sigmoid(self.weight_net(self._net_input(emb[:nb], train.y))).squeeze(-1)
        else:
            phi_b = self.rows.gather(train.index)
            w = torch.sigmoid(phi_b)
        s_hat = self.sum_estimate(w)

        u_theta = (hp.rho_theta_train * ctx.n_train * (w.detach() * loss_t).mean()
                   + hp.rho_theta_meta * ctx.n_meta * loss_m.mean())
        u_prior = (s_hat - self.target) ** 2 / (2 * hp.sigma**2)
        u_phi = u_prior + hp.rho_w * ctx.n_train * (w * loss_t.detach()).mean()

        self.model_opt.zero_grad(set_to_none=True)
        if self.weight_opt is not None:
            self.weight_opt.zero_grad(set_to_none=True)
        (u_theta + u_phi).backward()
        params = [p for p in ctx.model.parameters() if p.grad is not None]
        if hp.prior_precision:
            torch._foreach_add_([p.grad for p in params], params, alpha=hp.prior_precision)
        self.model_opt.step()
        self._add_noise(self.model_opt)
        if self.weight_opt is not None:
            self.weight_opt.step()
            self._add_noise(self.weight_opt)
        else:
            self.rows.update(train.index, phi_b, phi_b.grad, self._noise_std(hp.lr_w))
        self.t += 1
        return {"loss_train": loss_t.mean().detach(), "loss_meta": loss_m.mean().detach(),
                "w_mean": w.mean().detach(), "sum_w": s_hat.detach()}

    @torch.no_grad()
    def _add_noise(self, opt: torch.optim.Optimizer) -> None:
        for group in opt.param_groups:
            std = self._noise_std(group["lr"])
            if std > 0:
                params = [p for p in group["params"]]
                torch._foreach_add_(params, [torch.randn_like(p) * std for p in params])

    @torch.no_grad()
    def weights(self) -> Tensor:
        """w_i for every example of Dt under the current θ and φ."""
        if self.rows is not None:
            return torch.sigmoid(self.rows.all_logits()).cpu()
        data = self.ctx.train_set
        chunks = []
        was_training = self.ctx.model.training
        self.ctx.model.eval()
        for i in range(0, len(data), 1000):
            emb = self.ctx.embed(data.x[i: i + 1000])
            chunks.append(torch.sigmoid(self.weight_net(self._net_input(emb, data.y[i: i + 1000]))))
        self.ctx.model.train(was_training)
        return torch.cat(chunks).squeeze(-1).cpu()
