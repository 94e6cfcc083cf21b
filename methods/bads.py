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

Each step (SGLD, Bt ⊂ Dt, Bm ⊂ Dm) minimises with the optimisers, in one forward and one backward
pass of the model over Bt ∪ Bm, where φ's gradient is formed in closed form without autograd:
∂U_φ/∂w_i = (Ŝ − ⌊β·N_t⌋)/σ² + ρ_w·(N_t/|Bt|)·l(z_i; θ), chained through w_i = sigmoid(a_i)
(see ``ExampleWeights.step_from``),

    U_θ = (λ/2)‖θ‖² + ρ_θᵗ·N_t·mean_{i∈Bt}(w_i·l(z_i; θ)) + ρ_θᵐ·N_m·mean_{j∈Bm} l(z_j; θ)   (w fixed)
    U_φ = (Ŝ − ⌊β·N_t⌋)² / (2σ²) + ρ_w·N_t·mean_{i∈Bt}(w_i(φ)·l(z_i; θ))                  (θ fixed)

i.e. θ ← θ − lr_θ·∇_θU_θ and φ ← φ − lr_w·∇_φU_φ (the paper's (η/2)∇ log-posterior terms, taken by
ordinary optimisers with their own learning rates), then adds noise to θ and φ:
- ``noise="paper"``: ε·N(0, I) with ε = ``noise_std`` (the paper's "η = 1, ε = 1e-5");
- ``noise="sgld"``: N(0, 2·lr·T·I), textbook Langevin dynamics at temperature T, exact as a sampler
  (up to discretisation) only with plain SGD optimisers (no momentum, no Adam);
- ``noise="none"``: no noise (a MAP point estimate).
θ and the weight network's φ live in one flat buffer, so each step draws their noise at once.
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
- Ŝ − ⌊β·N_t⌋ is formed in float64: in float32 its rounding error (~3e-6 at Σw = 25) times
  1/σ² = 1e10 swamps the data term and the weights stay frozen at β.
- λ (``prior_precision``) defaults to 0: the paper trains with plain SGD and reports no weight decay.
- ``lr_theta`` (0 = the scenario's model lr) exists because U_θ sums over the data
  (N_t·mean + N_m·mean, ~75x a mean loss in balancing): a profile tuned for mean losses needs a
  smaller θ learning rate for BADS (the balancing quick profile sets 7e-4).
- θ and φ share one forward pass over Bt ∪ Bm (one batch through the model); the embedding e_i is
  taken from that same pass. Models with batch normalisation would see joint batch statistics.
- Per-sample logits are updated lazily: only the rows of Bt get their gradient step, optimiser
  state update and noise, so per-step cost does not grow with N_t. With ``weight_storage`` =
  ``cpu`` or ``memmap`` the logits and their optimiser state live off the accelerator (in host
  memory, or in a memory-mapped file) and only the minibatch's rows travel to the device.
- Data-parallel (``--ddp``, ``ctx.replicas``): each of the world ranks holds 1/world of Bt and
  Bm; the factors N_t/|Bt| and N_m/|Bm| use the global batch sizes, Σ_{i∈Bt} w_i in Ŝ is summed
  over the ranks, and θ's and φ's gradients are summed over the ranks (one all-reduce each), so
  every rank takes the step one process would take on the global batch; the Langevin noise comes
  from torch's global generator, seeded alike on every rank, so the replicas stay identical.
  Weight network only (per-sample logits would be updated by the rank that drew each row);
  BatchNorm statistics are each rank's own (the shards' statistics).

What drives the weights (``diagnostics``; the σ sweep in results/sweeps/bads-sigma/, README):
∂U_φ/∂w_i = (Ŝ − ⌊β·N_t⌋)/σ² + ρ_w·(N_t/|Bt|)·l(z_i; θ). The prior's part is the same for every i;
the data term's lowers the weight of high-loss points. On balancing (MNIST-1D quick; real MNIST
1,500 steps, Dm 25 and 5; σ from 1e-5 to 1e2, lr_w 1e-4, 1e-3, 1e-2; three seeds) at the paper's
lr_w = 1e-3: for σ ≤ 0.1 the data term's share of φ's gradient is at most 0.2% (1e-11 at σ =
1e-5) and the weights separate the rare class (AUROC 0.74-1) as well as with ρ_w = 0
(``bads_prior_only``, AUROC ~1): the separation is the sum constraint acting through the
embedding; at σ = 1 the data term takes 1-25% and ranks the minority *below* the majority (AUROC
0.005-0.07: the minority's points are the high-loss ones); for σ ≥ 10 it takes ≥ 89% and every
weight collapses towards 0 (AUROC 0.37-0.59). With lr_w = 1e-4 the data term separates the
minority at σ ≥ 10 on MNIST-1D (AUROC 0.89-0.92) and at σ = 100 on MNIST Dm 25 (0.88), not on
Dm 5 (0.52-0.59), and beats both controls on validation only on Dm 25; lr_w = 1e-2 mostly
collapses. No
setting has a substantial data share, separated groups and a validation score above both controls
on all three problems, so the balancing defaults stay the paper's (σ = 1e-5, lr_w = 1e-3), where
BADS's balancing result is the prior's. With label noise, where the points to drop are the
high-loss ones, the data term should point the right way (untested: no denoising scenario yet).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import DIAGNOSTIC_EVERY, Batch, Context, Method, control, count_of, require_meta
from .langevin import Noise
from .search import LogUniform
from .weighting import ExampleWeights, check_weights

# ∂L/∂a = g·w(1 − w) for w = sigmoid(a), given g = ∂L/∂w and w: one kernel
_sigmoid_backward = torch.ops.aten.sigmoid_backward.default
DIAGNOSTICS = ("grad_prior", "grad_data", "data_share", "sum_gap")


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
    freeze_weights: bool = False  # φ never moves: every weight stays β (the bads_frozen control)

    def __post_init__(self) -> None:
        choices = {"noise": ("paper", "sgld", "none"), "bias_init": ("logit_beta", "zero")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 < self.beta < 1.0:
            raise ValueError(f"beta must lie in (0, 1), got {self.beta}")
        if self.sigma <= 0 or self.s_avg < 1 or self.lr_w <= 0:
            raise ValueError("sigma and lr_w must be positive and s_avg at least 1")
        if self.noise_std < 0 or self.temperature < 0 or self.lr_theta < 0:
            raise ValueError("noise_std, temperature and lr_theta must be >= 0")
        check_weights(self.weights, self.w_optimizer, self.weight_storage)


class BADS(Method):
    """Bayesian data point selection: SGLD on the joint posterior of θ and the weights w(φ)."""

    Hparams = BADSHparams
    weight_range = (0.0, 1.0)  # w_i = sigmoid(·)
    supports_replicas = True  # --ddp: see the module docstring
    # θ's learning rate is lr_theta (0 follows the model lr), so the model lr itself is not searched
    search_space = {"lr_theta": LogUniform(0.1, 10.0, relative=True),
                    "lr_w": LogUniform(1e-4, 1e-1), "beta": LogUniform(0.5, 4.0, relative=True),
                    "sigma": LogUniform(1e-5, 100.0)}

    def __init__(self, ctx: Context, hparams: BADSHparams | None = None) -> None:
        super().__init__(ctx, hparams)
        hp = self.hp
        self.target = count_of(hp.beta, ctx.n_train)  # ⌊β·N_t⌋
        self.model_opt = ctx.make_optimizer(ctx.model.parameters())
        if hp.lr_theta > 0:
            for group in self.model_opt.param_groups:
                group["lr"] = hp.lr_theta
        init = math.log(hp.beta / (1 - hp.beta)) if hp.bias_init == "logit_beta" else 0.0
        self.w = ExampleWeights(ctx, hp.weights, init, hp.w_optimizer, hp.lr_w,
                                concat_label=hp.concat_label, storage=hp.weight_storage)
        # recent minibatch mean weights; Ŝ is formed in float64 so that Ŝ − ⌊β·N_t⌋ keeps its
        # precision: in float32 its rounding error (~3e-6 at Σw = 25) times 1/σ² = 1e10 would
        # swamp the data term
        self.window = torch.zeros(hp.s_avg, device=ctx.device, dtype=torch.float64)
        # on the CPU the same float64 bookkeeping runs on Python floats (one read of Σ_B w per
        # step instead of a dozen tiny tensor ops); on an accelerator it stays on the device
        self.host_scalars = ctx.device.type == "cpu"
        self.recent: deque[float] = deque(maxlen=hp.s_avg)
        self.t = 0
        self._coef_cache: tuple | None = None
        self._avg_cache: tuple[tuple, Tensor] | None = None
        self._ones_cache: Tensor | None = None
        # θ's and the weight network's φ's noise: one normal draw over one flat buffer holding
        # both (per-sample logits get theirs row by row, in their lazy update). A frozen
        # parameter (requires_grad=False) is not part of θ: it gets no noise either
        phi = self.w.parameters()
        phi_std = 0.0 if hp.freeze_weights else self._noise_std(hp.lr_w)
        self.noise = Noise([([p for p in g["params"] if p.requires_grad], self._noise_std(g["lr"]))
                            for g in self.model_opt.param_groups] + [(phi, phi_std)])
        if phi:
            self.w.storage_moved()
        self._row_noise_std = 0.0 if phi else phi_std
        # data-parallel (--ddp): each rank holds 1/world of Bt and Bm; sizes below that scale the
        # objective are the global ones, and θ's and φ's gradients are summed over the ranks
        self.replicas = ctx.replicas
        self.world = ctx.replicas.world if ctx.replicas is not None else 1
        if ctx.replicas is not None:
            if hp.weights != "net":
                raise ValueError("bads under --ddp supports weights=net only: per-sample logits "
                                 "would be updated by the rank that drew each example and drift "
                                 "apart across ranks")
            self.w.reduce = ctx.replicas.sum_
        self._diag_sums = dict.fromkeys(DIAGNOSTICS, 0.0)
        self._diag_count = self._share_count = 0

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
        if self.t + 1 >= self.hp.s_avg:
            return self.window.mean()
        return self.window[: self.t + 1].mean()

    def sum_estimate(self, w: Tensor) -> Tensor | float:
        """Ŝ = Σ_{i∈Bt} w_i + (N_t − |Bt|)·w̄, in float64 (no gradient: w̄ is held constant); a
        Python float when ``host_scalars``."""
        nb = w.shape[0] * self.world  # the global |Bt|
        if self.host_scalars:
            s = math.fsum(w.tolist())  # exactly rounded; w carries no graph here
            if self.replicas is not None:
                s = self.replicas.sum_scalar(s)
            self.recent.append(s / nb)
            return s + (self.ctx.n_train - nb) * (sum(self.recent) / len(self.recent))
        s = w.sum(dtype=torch.float64)
        if self.replicas is not None:
            self.replicas.sum_([s])
        self._batch_mean = s / nb  # mean_Bt w over the global batch
        w_bar = self.running_mean(self._batch_mean)
        return s + (self.ctx.n_train - nb) * w_bar

    def step(self, train: Batch, meta: Batch | None) -> dict[str, Tensor]:
        ctx, hp = self.ctx, self.hp
        meta = require_meta(meta, "bads")
        nb = len(train)
        out, emb = ctx.forward_features(torch.cat([train.x, meta.x]))
        losses = ctx.loss(out, torch.cat([train.y, meta.y]))
        with torch.no_grad():
            coef, head, seed, direct = self._coefficients(nb, len(meta), losses)
            w = self.w.value(emb[:nb], train.y, train.index, out=head if direct else None)
            if head is not None and not direct:
                head.copy_(w)
            s_hat = self.sum_estimate(w)
            if not hp.freeze_weights:
                da, scale = self._logit_grads(w, losses[:nb], s_hat)
            if self.t % DIAGNOSTIC_EVERY == 0:
                self._record_diagnostics(w, losses[:nb], s_hat)
            loss_train, loss_meta = torch.mv(self._averages(nb, losses), losses).unbind()
        self.model_opt.zero_grad(set_to_none=True)
        # ∇_θ U_θ (minus the Gaussian prior's λθ): U_θ's data terms are seed·(coef · l)
        torch.dot(losses, coef).backward(seed)
        with torch.no_grad():
            if self.replicas is not None:  # each rank's shard of the global-batch gradient
                self.replicas.sum_([p.grad for p in ctx.model.parameters()])
                logged = torch.stack([loss_train, loss_meta])
                self.replicas.sum_([logged])
                loss_train, loss_meta = (logged / self.world).unbind()
            if hp.prior_precision:
                params = [p for p in ctx.model.parameters() if p.grad is not None]
                torch._foreach_add_([p.grad for p in params], params, alpha=hp.prior_precision)
            self.model_opt.step()
            if not hp.freeze_weights:
                self.w.step_from(da, self._row_noise_std, scale)  # ∇_φ U_φ in closed form
            self.noise.add_()  # θ's and φ's (φ's std is 0 when frozen)
        self.t += 1
        if self.host_scalars:
            w_mean = self.recent[-1]  # mean_Bt w (over the global batch under --ddp)
        else:
            w_mean = w.mean() if self.replicas is None else self._batch_mean
        return {"loss_train": loss_train, "loss_meta": loss_meta, "w_mean": w_mean, "sum_w": s_hat}

    def _logit_grads(self, w: Tensor, loss_t: Tensor, s_hat: Tensor | float
                     ) -> tuple[Tensor, float]:
        """(g, c) with ∂U_φ/∂a_i = c·g_i for the logits a_i of w_i = sigmoid(a_i).

        ∂U_φ/∂w_i = (Ŝ − ⌊β·N_t⌋)/σ² + c·l(z_i; θ) with c = ρ_w·N_t/|Bt|: the prior's part is the
        same for every i (w̄ is held constant). Through the sigmoid,
        ∂U_φ/∂a_i = w_i(1 − w_i)·∂U_φ/∂w_i = c·w_i(1 − w_i)·(l_i + (Ŝ − ⌊β·N_t⌋)/(c·σ²)).
        """
        prior_grad = (s_hat - self.target) / self.hp.sigma**2
        c = self.hp.rho_w * self.ctx.n_train / (len(w) * self.world)
        ones = self._ones(w)
        if not c:
            return _sigmoid_backward(ones * prior_grad, w), 1.0
        if isinstance(prior_grad, Tensor):  # on the device: no host sync
            return _sigmoid_backward(torch.add(loss_t, prior_grad / c), w), c
        # l + (prior_grad/c)·1 as a tensor-tensor add, cheaper than adding a wrapped scalar
        return _sigmoid_backward(torch.add(loss_t, ones, alpha=prior_grad / c), w), c

    def _record_diagnostics(self, w: Tensor, loss_t: Tensor, s_hat: Tensor | float) -> None:
        """Add this step's split of ∇_φ U_φ to the sums ``diagnostics`` averages: with
        q_i = w_i(1 − w_i), the prior's part has ∂/∂a_i = q_i·(Ŝ − ⌊β·N_t⌋)/σ² and the data
        term's q_i·ρ_w·(N_t/|Bt|)·l(z_i; θ); each is chained to φ (``ExampleWeights.grad_norm``).
        Taken every DIAGNOSTIC_EVERY steps, after ``value`` and before φ's step."""
        gap = float(s_hat) - self.target
        q = w * (1 - w)
        prior = self.w.grad_norm(q) * abs(gap) / self.hp.sigma**2
        c = self.hp.rho_w * self.ctx.n_train / (len(w) * self.world)
        data = self.w.grad_norm(q * loss_t) * abs(c)
        sums = self._diag_sums
        sums["grad_prior"] += prior
        sums["grad_data"] += data
        sums["sum_gap"] += gap
        self._diag_count += 1
        if prior + data > 0:  # the share is undefined when φ's gradient is exactly 0 (w ∈ {0, 1})
            sums["data_share"] += data / (prior + data)
            self._share_count += 1

    def diagnostics(self) -> dict[str, float]:
        """Averages since the last call, over the steps sampled every DIAGNOSTIC_EVERY:
        ``grad_prior`` = ‖∇_φ (Ŝ − ⌊β·N_t⌋)²/(2σ²)‖, ``grad_data`` = ‖∇_φ ρ_w·N_t·mean_Bt(w·l)‖,
        ``sum_gap`` = Ŝ − ⌊β·N_t⌋, and ``data_share`` = grad_data / (grad_prior + grad_data) per
        step, over the sampled steps where φ's gradient is not exactly 0 (absent if none is).
        With φ frozen they describe the gradient φ would have had."""
        if not self._diag_count:
            return {}
        out = {k: v / self._diag_count for k, v in self._diag_sums.items() if k != "data_share"}
        if self._share_count:
            out["data_share"] = self._diag_sums["data_share"] / self._share_count
        self._diag_sums = dict.fromkeys(DIAGNOSTICS, 0.0)
        self._diag_count = self._share_count = 0
        return out

    def _ones(self, like: Tensor) -> Tensor:
        """A vector of ones shaped like ``like``, made once while its size holds."""
        if self._ones_cache is None or self._ones_cache.shape != like.shape:
            self._ones_cache = torch.ones_like(like)
        return self._ones_cache

    def _averages(self, nb: int, like: Tensor) -> Tensor:
        """The 2 x (|Bt| + |Bm|) matrix whose product with the losses gives their two means."""
        key = (nb, like.shape[0], like.dtype)
        if self._avg_cache is None or self._avg_cache[0] != key:
            avg = torch.zeros(2, key[1], dtype=like.dtype, device=like.device)
            avg[0, :nb], avg[1, nb:] = 1.0 / nb, 1.0 / (key[1] - nb)
            self._avg_cache = (key, avg)
        return self._avg_cache[1]

    def _coefficients(self, nb: int, n_meta_batch: int, losses: Tensor
                      ) -> tuple[Tensor, Tensor | None, Tensor, bool]:
        """(coef, head, s, direct), buffers reused while batch sizes hold, with s·Σ_i coef_i·l_i
        U_θ's data terms: s = ρ_θᵗ·N_t/|Bt| and coef = [w_i for Bt, ρ_θᵐ·(N_m/|Bm|)/s for Bm],
        its Bt part ``head`` to receive the weights (written there directly when they share the
        losses' dtype). With ρ_θᵗ = 0: coef = [0 for Bt, ρ_θᵐ·N_m/|Bm| for Bm], s = 1, no head."""
        key = (nb, n_meta_batch, losses.dtype, losses.device)
        if self._coef_cache is None or self._coef_cache[0] != key:
            hp = self.hp  # scaled by the global batch sizes (world x the shards')
            s = hp.rho_theta_train * self.ctx.n_train / (nb * self.world)
            meta = hp.rho_theta_meta * self.ctx.n_meta / (n_meta_batch * self.world)
            buf = torch.zeros(nb + n_meta_batch, dtype=losses.dtype, device=losses.device)
            buf[nb:] = meta / s if s else meta
            seed = torch.tensor(s if s else 1.0, dtype=losses.dtype, device=losses.device)
            head = buf[:nb] if s else None
            self._coef_cache = (key, buf, head, seed, self.w.dtype == losses.dtype)
        return self._coef_cache[1:]

    def weights(self) -> Tensor:
        """w_i for every example of Dt under the current θ and φ."""
        return self.w.all()


BADSPriorOnly = control(
    BADS, "bads", "bads_prior_only", {"rho_w": 0.0},
    "Control: BADS with ρ_w = 0, so only the sparsity prior moves φ (no data term in U_φ).",
    qualname="BADSPriorOnly",
)
BADSFrozen = control(
    BADS, "bads", "bads_frozen", {"freeze_weights": True, "bias_init": "logit_beta"},
    "Control: BADS with φ frozen at its start, every weight β: weighted training on Dt ∪ Dm.",
    inert=("lr_w", "sigma", "rho_w", "w_optimizer", "s_avg", "weights", "concat_label",
           "weight_storage"),
    qualname="BADSFrozen",
)
