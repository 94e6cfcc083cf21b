"""Persistent per-example weights w_i ∈ (0, 1), shared by BADS and the online bi-level baseline.

Two parameterisations of φ:
- ``net``: w_i = sigmoid(f_φ(e_i)), f_φ one linear layer on the model's detached embedding e_i
  (concatenated with onehot(y_i) when ``concat_label``), f_φ(e_i) = vᵀe_i + b, kept as one flat
  tensor φ = [v, b] so that φ's optimiser and noise are one op each;
- ``per_sample``: w_i = sigmoid(φ_i), one free logit per training example. Only the rows of a
  minibatch are read and updated (lazy Adam with per-row step counts, or SGD), so a step costs
  O(|Bt|) whatever N_t is, and the table of logits and optimiser state can live on the device,
  in host memory (``storage="cpu"``) or in a memory-mapped file (``storage="memmap"``).
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Batch, Context, model_dtype, over_chunks


def check_weights(kind: str, optimizer: str, storage: str) -> None:
    """Reject settings of the weight parameterisation that would be silently ignored."""
    if kind not in ("net", "per_sample"):
        raise ValueError(f"weights must be net or per_sample, got {kind!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"w_optimizer must be adam or sgd, got {optimizer!r}")
    if storage not in ("device", "cpu", "memmap"):
        raise ValueError(f"weight_storage must be device, cpu or memmap, got {storage!r}")
    if kind == "net" and storage != "device":
        raise ValueError("weight_storage applies to weights=per_sample only (the weight network "
                         "is small and lives on the device)")


class RowParams:
    """Per-example logits φ_i with a lazily updated optimiser, stored anywhere."""

    def __init__(self, n: int, init: float, optimizer: str, lr: float, storage: str,
                 device: torch.device) -> None:
        self.optimizer, self.lr, self.device = optimizer, lr, device
        cols = 4 if optimizer == "adam" else 1  # φ, Adam's m, v and step count
        if storage == "memmap":
            # $DPS_MEMMAP_DIR should be on disk: /tmp is RAM-backed (tmpfs) on many systems
            fd, path = tempfile.mkstemp(prefix="dps-phi-", suffix=".f32",
                                        dir=os.environ.get("DPS_MEMMAP_DIR"))
            os.close(fd)
            array = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, cols))
            self.table = torch.from_numpy(array)
            os.unlink(path)  # the mapping stays valid; the file vanishes with it
        else:
            self.table = torch.zeros(n, cols, dtype=torch.float32,
                                     device=device if storage == "device" else "cpu")
        self.table[:, 0] = init  # the optimiser state starts at zero
        self.on_device = storage == "device"

    def gather(self, index: Tensor) -> Tensor:
        """φ_B as a fresh leaf on the device that requires grad."""
        rows = index if self.on_device else index.cpu()
        return self.table[rows, 0].to(self.device, non_blocking=True).requires_grad_(True)

    @torch.no_grad()
    def update(self, index: Tensor, grad: Tensor, noise_std: float = 0.0) -> None:
        """One optimiser step on the rows ``index`` (duplicate rows' gradients are summed)."""
        rows = index if self.on_device else index.cpu()
        uniq, inv = torch.unique(rows, return_inverse=True)
        g = torch.zeros(len(uniq), dtype=self.table.dtype, device=grad.device)
        g.index_add_(0, inv.to(grad.device), grad.to(self.table.dtype))
        state = self.table[uniq].to(self.device)
        p = state[:, 0]
        if self.optimizer == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-8
            state[:, 3] += 1
            t = state[:, 3]
            state[:, 1].mul_(b1).add_(g, alpha=1 - b1)
            state[:, 2].mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(self.lr * (state[:, 1] / (1 - b1**t)) / ((state[:, 2] / (1 - b2**t)).sqrt() + eps))
        else:
            p.sub_(self.lr * g)
        if noise_std > 0:
            p.add_(torch.randn_like(p) * noise_std)
        self.table[uniq] = state.to(self.table.device)


class ExampleWeights:
    """w(φ) for a minibatch, φ's optimiser step, and every example's current weight.

    Two ways to train φ: autograd (``__call__`` for a differentiable w, a backward pass, then
    ``step``), or in closed form (``value`` for w without a graph, then ``step_from`` with ∂U/∂a_i):
    with a_i the logit of w_i = sigmoid(a_i), ∂U/∂a_i = ∂U/∂w_i · w_i(1 − w_i), and
    ∇_φ U = Σ_i ∂U/∂a_i · [e_i, 1] for the weight network (a_i = vᵀe_i + b) and ∂U/∂a_i for
    per-sample logits (a_i = φ_i). BADS uses the closed form: it needs no graph through φ.
    """

    def __init__(self, ctx: Context, kind: str, init_logit: float, optimizer: str, lr: float,
                 concat_label: bool = False, storage: str = "device") -> None:
        self.ctx, self.kind, self.concat_label = ctx, kind, concat_label
        self._rows: tuple[Tensor, Tensor] | None = None
        self._scale_cache: tuple[tuple, Tensor] | None = None
        self.reduce = None  # set by a data-parallel method: sums ∇_φ U over the ranks
        check_weights(kind, optimizer, storage)
        if kind == "net":
            in_dim = embedding_dim(ctx) + (ctx.num_classes if concat_label else 0)
            # φ = [v, b], the linear weight network a_i = vᵀe_i + b = [e_i, 1]·φ as one flat
            # tensor, starting at v = 0 and b = init_logit: every initial weight is exactly
            # sigmoid(init_logit) (β for BADS), whatever the embedding; v's gradient
            # Σ_i ∂U/∂a_i·e_i is not symmetric in i, so nothing is stuck at this start
            phi = torch.zeros(in_dim + 1, dtype=model_dtype(ctx.model))
            phi[-1] = init_logit
            self.phi = phi.to(ctx.device).requires_grad_()
            self.opt = make_weight_optimizer([self.phi], optimizer, lr)
            self.table = None
            self._input: Tensor | None = None
            self.storage_moved()
        else:
            self.phi, self.opt = None, None
            self.table = RowParams(ctx.n_train, init_logit, optimizer, lr, storage, ctx.device)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights ``value`` returns (φ's, or the logit table's)."""
        return self.phi.dtype if self.phi is not None else self.table.table.dtype

    def parameters(self) -> list[Tensor]:
        """φ as tensors: [v, b] of the weight network; none for per-sample logits (their rows
        are stepped lazily, with their own noise)."""
        return [self.phi] if self.phi is not None else []

    def grad_inputs(self) -> list[Tensor]:
        """The leaves a backward pass through the last ``__call__`` should reach: φ = [v, b], or
        the gathered rows of per-sample logits (``backward(inputs=...)``, so that no gradient
        is computed for anything else, e.g. the look-ahead's copy of θ)."""
        if self.phi is not None:
            return [self.phi]
        return [self._rows[1]]

    @torch.no_grad()
    def grad_norm_of_last_backward(self) -> float:
        """‖∇_φ‖ left by the last backward pass into ``grad_inputs()`` (0 if none reached φ)."""
        (leaf,) = self.grad_inputs()
        return float(leaf.grad.norm()) if leaf.grad is not None else 0.0

    @torch.no_grad()
    def grad_norm(self, da: Tensor) -> float:
        """‖∇_φ U‖ for ∂U/∂a_i = da_i on the batch of the last ``value`` call (before
        ``step_from``): ‖Σ_i da_i·[e_i, 1]‖ for the weight network, ‖da‖ for per-sample logits."""
        if self.phi is None:
            return float(da.norm())
        grad_v = torch.mv(self._input.t(), da)
        return math.hypot(float(grad_v.norm()), float(da.sum()))

    def storage_moved(self) -> None:
        """(Re)make the graph-free views of φ = [v, b] and of its gradient buffer; call this after
        φ's storage moves (for example into the flat buffer of :class:`~methods.langevin.Noise`)."""
        phi = self.phi.detach()
        self._v, self._b = phi[:-1], phi[-1]
        self._grad = torch.zeros_like(phi)  # ∇_φ U, written in place by step_from
        self._grad_v, self._grad_b = self._grad[:-1], self._grad[-1]

    def _net_input(self, emb: Tensor, y: Tensor) -> Tensor:
        """e_i (with onehot(y_i) appended when ``concat_label``) per row, detached."""
        e = emb.detach().reshape(emb.shape[0], -1)
        if self.concat_label:
            e = torch.cat([e, F.one_hot(y.long(), self.ctx.num_classes).to(e.dtype)], dim=1)
        return e

    def __call__(self, emb: Tensor, y: Tensor, index: Tensor) -> Tensor:
        """w_i for the batch (differentiable w.r.t. φ); ``emb`` is detached here."""
        if self.phi is not None:
            return torch.sigmoid(torch.addmv(self.phi[-1], self._net_input(emb, y), self.phi[:-1]))
        phi = self.table.gather(index)
        self._rows = (index, phi)
        return torch.sigmoid(phi)

    @torch.no_grad()
    def value(self, emb: Tensor, y: Tensor, index: Tensor, out: Tensor | None = None) -> Tensor:
        """w_i for the batch without a graph (written into ``out`` when given, which must have
        φ's dtype); remembers what ``step_from`` needs."""
        if self.phi is not None:
            # no graph is recorded here, so a 2-D embedding needs neither detach nor reshape
            plain = emb.dim() == 2 and not self.concat_label
            self._input = emb if plain else self._net_input(emb, y)
            logits = torch.addmv(self._b, self._input, self._v)
        else:
            logits = self.table.gather(index).detach_()
            self._rows = (index, logits)
        return logits.sigmoid_() if out is None else torch.sigmoid(logits, out=out)

    def step_from(self, da: Tensor, noise_std: float = 0.0, scale: float = 1.0) -> None:
        """One optimiser step on φ given ∂U/∂a_i = scale·da_i (a_i the logit of w_i) for the batch
        of the last ``value`` call, then N(0, noise_std²) noise. ``da`` carries no graph."""
        if self.phi is not None:
            # ∇_v U = scale·Σ_i da_i·e_i and ∇_b U = scale·Σ_i da_i, into the persistent buffer
            torch.addmv(self._grad_v, self._input.t(), da, beta=0.0, alpha=scale,
                        out=self._grad_v)
            torch.dot(da, self._scales(da, scale), out=self._grad_b)
            if self.reduce is not None:  # data-parallel: the shards' parts of ∇_φ U, summed
                self.reduce([self._grad])
            self.phi.grad = self._grad
            self._input = None
            self.step(noise_std)
        else:
            index, _ = self._rows
            self.table.update(index, da * scale if scale != 1.0 else da, noise_std)
            self._rows = None

    def _scales(self, like: Tensor, scale: float) -> Tensor:
        """The vector (scale, ..., scale) shaped like ``like``, made once while both hold."""
        cached = self._scale_cache
        key = (like.shape[0], like.dtype, scale)
        if cached is None or cached[0] != key:
            cached = (key, torch.full_like(like, scale))
            self._scale_cache = cached
        return cached[1]

    def zero_grad(self) -> None:
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)

    def step(self, noise_std: float = 0.0) -> None:
        """Apply φ's gradient (from the last backward), then add N(0, noise_std²) noise."""
        if self.opt is not None:
            self.opt.step()
            if noise_std > 0:
                with torch.no_grad():
                    self.phi.add_(torch.randn_like(self.phi), alpha=noise_std)
        else:
            index, phi = self._rows
            self.table.update(index, phi.grad, noise_std)
            self._rows = None

    @torch.no_grad()
    def all(self) -> Tensor:
        """w_i for every example of Dt under the current model and φ (on the CPU)."""
        if self.table is not None:
            return torch.sigmoid(self.table.table[:, 0]).cpu()
        w = over_chunks(self.ctx.model, lambda x, y: torch.sigmoid(
            torch.addmv(self._b, self._net_input(self.ctx.embed(x), y), self._v)), self.ctx.train_set,
            self.ctx.offline_chunk)
        return w.cpu()


def embedding_dim(ctx: Context) -> int:
    """Width of ctx.embed's output, probed on one training example in eval mode (train-mode
    BatchNorm rejects a batch of one; the probe needs the shape only)."""
    if ctx.train_set is None:
        raise ValueError("a weight network needs ctx.train_set to size its input")
    return int(over_chunks(ctx.model, lambda x, y: ctx.embed(x).reshape(1, -1),
                           Batch(ctx.train_set.x[:1], ctx.train_set.y[:1],
                                 ctx.train_set.index[:1])).shape[1])


def make_weight_optimizer(params: list[nn.Parameter], name: str, lr: float
                          ) -> torch.optim.Optimizer | LeanAdam:
    """Adam (:class:`LeanAdam`) or SGD."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return LeanAdam(params, lr=lr)


class LeanAdam:
    """Adam (Kingma & Ba; torch.optim.Adam's defaults and update, no weight decay or amsgrad)
    without torch.optim's per-step Python bookkeeping, which for the weight network's few
    parameters costs more than the update: one fused kernel where this torch has it (CPU and
    CUDA, torch >= 2.4), else five multi-tensor ops.

        m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
        p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + eps)
    """

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, fused: bool = True) -> None:
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.m = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.v = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # the fused kernel's bias corrections 1 − βᵗ read t from tensors; at this t they are 1,
        # and step() folds the true corrections into lr and eps (no tensor op to advance t)
        self.steps = [torch.full((), 1e9, dtype=torch.float32, device=p.device)
                      for p in self.params]
        self.fused = fused and hasattr(torch, "_fused_adam_")
        self.t = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One Adam step from every parameter's ``.grad``."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.step()
        b1, b2 = self.betas
        self.t += 1
        grads = [p.grad for p in self.params]
        # p ← p − step·m/(√v + eps'), step = lr·√(1−β₂ᵗ)/(1−β₁ᵗ), eps' = eps·√(1−β₂ᵗ)
        root = (1 - b2**self.t) ** 0.5
        step, eps = self.lr * root / (1 - b1**self.t), self.eps * root
        if self.fused:
            try:
                torch._fused_adam_(self.params, grads, self.m, self.v, [], self.steps, lr=step,
                                   beta1=b1, beta2=b2, weight_decay=0.0, eps=eps,
                                   amsgrad=False, maximize=False)
                return
            except (RuntimeError, NotImplementedError, TypeError):  # no kernel for this device
                self.fused = False
        torch._foreach_lerp_(self.m, grads, 1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-step)
