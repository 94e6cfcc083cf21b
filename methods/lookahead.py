"""The k-step look-ahead meta loss that bi-level (BLO) methods differentiate, two backends.

Given per-example train weights w (any differentiable function of the outer variables),

    θ'_0 = θ,   θ'_{s+1} = θ'_s − α·∇_θ L_t(θ'_s; w),   s = 0..k−1,
    L_t(θ; w) = weigh(f_θ(x_Bt)),   L_m(θ'_k) = mean_{j∈Bm} l(z_j; θ'_k),

and returns L_m(θ'_k), whose gradient reaches w through the unrolled inner SGD steps (with
create_graph, i.e. second order). Differentiate it with respect to the outer variables only
(``torch.autograd.grad`` or ``backward(inputs=...)``): ``higher`` starts the unroll from a
detached copy of θ, ``func`` from θ itself (one parameter swap fewer), so a plain ``backward()``
would also fill θ's ``.grad`` there. Backends:
- ``func`` (every method's default): ``torch.func.functional_call`` and an explicit
  ``autograd.grad(create_graph=True)`` unroll, no third-party dependency; maintained with torch,
  and 10-20% faster per step than ``higher`` on the CPU (results/benchmarks/COST.md), which put
  the suite within 5% of torchopt's time for the same algorithm (tests/bench/test_peers.py);
- ``higher``: ``higher.innerloop_ctx`` with a differentiable SGD (the design card's library,
  unmaintained since 2021), kept as ``backend=higher``.
Both compute the same function and hence the same hypergradient (tested to 1e-9 in float64).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .base import Batch

BACKENDS = ("higher", "func")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def inner_lr_of(opt: torch.optim.Optimizer, inner_lr: float) -> float:
    """α: ``inner_lr`` if set (> 0), else the learning rate of the optimiser's first group."""
    return inner_lr if inner_lr > 0 else float(opt.param_groups[0]["lr"])


def lookahead_meta_loss(model: nn.Module, train_x: Tensor, weigh: Callable[[Tensor], Tensor],
                        meta: Batch, loss: Callable[[Tensor, Tensor], Tensor], steps: int,
                        inner_lr: float, backend: str = "func") -> Tensor:
    """L_m(θ'_k) after ``steps`` differentiable SGD steps of size ``inner_lr`` on ``weigh``.

    ``weigh(outputs)`` maps the (fast) model's outputs on ``train_x`` to the scalar weighted train
    loss; the weights it applies are what the returned loss is differentiated against.
    """
    if steps < 1:
        raise ValueError(f"the look-ahead needs at least one inner step, got {steps}")
    check_backend(backend)
    unroll = _higher if backend == "higher" else _func
    return unroll(model, train_x, weigh, meta, loss, steps, inner_lr)


def _higher(model, train_x, weigh, meta, loss, steps, inner_lr) -> Tensor:
    import higher

    inner = torch.optim.SGD(model.parameters(), lr=inner_lr)
    with higher.innerloop_ctx(model, inner, copy_initial_weights=True,
                              track_higher_grads=True) as (fmodel, diffopt):
        for _ in range(steps):
            diffopt.step(weigh(fmodel(train_x)))
        return loss(fmodel(meta.x), meta.y).mean()


def _func(model, train_x, weigh, meta, loss, steps, inner_lr) -> Tensor:
    # θ' is a pure function of θ: the trainable parameters step, frozen ones stay, and every
    # forward pass (train mode, as in the real step: batch statistics) runs on a copy of the
    # buffers, so the real model's running statistics never see the unroll's batches or Bm.
    # Without buffers, the first inner step runs the model itself (no parameter swap) and
    # differentiates with autograd.grad, which fills no .grad; the rest use functional_call.
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    for step in range(steps):
        if step == 0 and not buffers:
            out = model(train_x)
        else:
            out = functional_call(model, (params, buffers), (train_x,))
        grads = torch.autograd.grad(weigh(out), list(params.values()), create_graph=True)
        params = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads, strict=True)}
    return loss(functional_call(model, (params, buffers), (meta.x,)), meta.y).mean()
