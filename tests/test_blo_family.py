"""The bi-level baselines: hypergradients against closed forms and finite differences, both
backends; l2rw's weights on flipped labels; blo's memory against the number of inner steps."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from toys import Net, bce, use_float64

from benchmarks.metering import peak_memory
from methods import Batch, Context, get_method
from methods.lookahead import BACKENDS, lookahead_meta_loss

_float64 = pytest.fixture(autouse=True)(use_float64)


def squared(out, y):
    return 0.5 * (out.squeeze(-1) - y) ** 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_step_hypergradient_matches_linear_regression_closed_form(backend):
    """f(x) = θᵀx, l = ½(f − y)². At ε = 0, θ' = θ and
    ∂L_m/∂ε_i = −α·(θᵀx_i − y_i)·x_iᵀ·(1/M)·Σ_j (θᵀx_j − y_j)·x_j."""
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    xt, yt = torch.randn(6, 3, generator=g), torch.randn(6, generator=g)
    xm, ym = torch.randn(4, 3, generator=g), torch.randn(4, generator=g)
    eps = torch.zeros(6, requires_grad=True)
    alpha = 0.3
    meta = lookahead_meta_loss(model, xt, lambda out: (eps * squared(out, yt)).sum(),
                               Batch(xm, ym, torch.arange(4)), squared, 1, alpha, backend)
    (grad,) = torch.autograd.grad(meta, eps)
    theta = model.weight.detach()[0]
    meta_grad = ((xm @ theta - ym)[:, None] * xm).mean(0)
    expected = -alpha * (xt @ theta - yt) * (xt @ meta_grad)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    assert model.weight.grad is None  # the real model gets no gradient from the unroll


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("steps", [1, 3])
def test_k_step_hypergradient_matches_finite_differences(backend, steps):
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    xt, yt = torch.randn(7, 3, generator=g), (torch.rand(7, generator=g) < 0.5).double()
    meta = Batch(torch.randn(5, 3, generator=g), torch.rand(5, generator=g).round(), torch.arange(5))

    def meta_loss(w):
        return lookahead_meta_loss(model, xt, lambda out: (w * bce(out, yt)).sum(), meta, bce,
                                   steps, 0.5, backend)

    w0 = torch.rand(7, generator=g)
    w = w0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(meta_loss(w), w)
    h = 1e-6
    fd = torch.stack([(meta_loss(w0 + h * e) - meta_loss(w0 - h * e)) / (2 * h)
                      for e in torch.eye(7)]).detach()
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-9)


def make_ctx(model, n_train=16, n_meta=8, lr=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train, 2, generator=g)
    y = (x[:, 0] > 0).double()
    xm = torch.randn(n_meta, 2, generator=g)
    ym = (xm[:, 0] > 0).double()
    return Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=lr),
                   n_train=n_train, n_meta=n_meta, loss=bce,
                   embed=lambda v: model.features(v).detach(), device=torch.device("cpu"),
                   num_classes=2, train_set=Batch(x, y, torch.arange(n_train)),
                   meta_set=Batch(xm, ym, torch.arange(n_meta)))


@pytest.mark.parametrize("name, hp", [("l2rw", {}), ("mwn", {}), ("blo", {"k": 2}),
                                      ("blo", {"weights": "per_sample"})])
def test_both_backends_take_the_same_step(name, hp):
    torch.manual_seed(0)
    base = Net()
    results = []
    for backend in BACKENDS:
        model = copy.deepcopy(base)
        ctx = make_ctx(model)
        cls = get_method(name)
        torch.manual_seed(1)
        method = cls(ctx, cls.Hparams(backend=backend, **hp))
        for _ in range(3):
            method.step(ctx.train_set, ctx.meta_set)
        results.append((torch.cat([p.detach().flatten() for p in model.parameters()]),
                        method.weights()))
    (p_higher, w_higher), (p_func, w_func) = results
    torch.testing.assert_close(p_higher, p_func, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(w_higher.double(), w_func.double(), rtol=1e-6, atol=1e-8,
                               equal_nan=True)
    assert torch.isfinite(p_higher).all()


def test_l2rw_puts_more_weight_on_the_clean_half_of_a_flipped_batch():
    torch.manual_seed(0)
    model = Net()
    ctx = make_ctx(model, n_train=40, n_meta=20)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(100):  # a model that already knows the task, as after some training
        opt.zero_grad()
        bce(model(ctx.meta_set.x), ctx.meta_set.y).mean().backward()
        opt.step()
    x, y = ctx.train_set.x, ctx.train_set.y.clone()
    y[20:] = 1 - y[20:]  # flip the second half
    method = get_method("l2rw")(ctx)
    w, clipped = method.batch_weights(Batch(x, y, torch.arange(40)), ctx.meta_set)
    assert w.sum() == pytest.approx(1.0)
    assert w[:20].sum() > 3 * w[20:].sum()
    assert torch.equal(clipped, w == 0) and clipped[20:].float().mean() > 0.5


def all_clipped_batch(ctx):
    """One input, label 1 in Bt and 0 in Bm: (σ − 1)·σ < 0, so every example's gradient opposes
    the meta gradient and every −g_i is clipped to 0."""
    x = ctx.train_set.x[:1].repeat(5, 1)
    return Batch(x, torch.ones(5), torch.arange(5)), Batch(x, torch.zeros(5), torch.arange(5))


def test_l2rw_batch_whose_every_weight_clips_leaves_theta_unchanged():
    """Ren et al.'s rule (w / (Σw + [Σw = 0])): the batch contributes no update; the logs say so."""
    model = Net()
    ctx = make_ctx(model)  # plain SGD, no momentum or weight decay: a zero gradient moves nothing
    method = get_method("l2rw")(ctx)
    train, meta = all_clipped_batch(ctx)
    w, clipped = method.batch_weights(train, meta)
    assert (w == 0).all() and clipped.all()
    before = [p.detach().clone() for p in model.parameters()]
    logs = method.step(train, meta)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert float(logs["clipped_frac"]) == 1.0 and float(logs["all_clipped"]) == 1.0
    assert (method.weights()[:5] == 0).all()


def test_l2rw_uniform_fallback_is_an_option():
    model = Net()
    ctx = make_ctx(model)
    cls = get_method("l2rw")
    method = cls(ctx, cls.Hparams(all_clipped="uniform"))
    train, meta = all_clipped_batch(ctx)
    w, clipped = method.batch_weights(train, meta)
    assert clipped.all() and (w == w[0]).all() and w.sum() == pytest.approx(1.0)
    before = [p.detach().clone() for p in model.parameters()]
    assert float(method.step(train, meta)["clipped_frac"]) == 1.0  # counted before the fallback
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_blo_memory_grows_with_the_number_of_inner_steps():
    peaks = []
    for k in (1, 2, 5):
        torch.manual_seed(0)
        model = Net()
        ctx = make_ctx(model, n_train=64, n_meta=32)
        method = get_method("blo")(ctx, get_method("blo").Hparams(k=k))
        method.step(ctx.train_set, ctx.meta_set)
        with peak_memory(torch.device("cpu"), method, exclude=[ctx.train_set.x, ctx.meta_set.x]) as m:
            method.step(ctx.train_set, ctx.meta_set)
        peaks.append(m["peak_bytes"])
    assert peaks[0] < peaks[1] < peaks[2]


@pytest.mark.parametrize("name", ["blo", "l2rw", "mwn"])
def test_every_method_exports_one_weight_per_training_example(name):
    model = Net()
    ctx = make_ctx(model)
    method = get_method(name)(ctx)
    half = Batch(ctx.train_set.x[:8], ctx.train_set.y[:8], torch.arange(8))
    method.step(half, ctx.meta_set)
    w = method.weights()
    assert w.shape == (16,)
    seen = w[:8]
    assert torch.isfinite(seen).all() and (seen >= 0).all()
    if name == "l2rw":
        assert torch.isnan(w[8:]).all()  # never drawn: no weight yet


def hand_written_mwn_step(model, vnet, ctx, train, meta, alpha, lr, lr_v, normalize, detach):
    """One Meta-Weight-Net step written out with autograd, as in the authors' scripts:
    look-ahead θ' = θ − α∇_θ Σ ω_i l_i (ω = w/Σw unless Σw = 0, or w/|B|), ψ ← ψ − lr_v∇_ψ
    mean_j l_j(θ'), then θ ← θ − lr∇_θ Σ ω_i(ψ_new) l_i with the new weights fixed."""
    from torch.func import functional_call

    def omega(w):
        if normalize:
            return w / w.sum() if w.sum() != 0 else w
        return w / len(w)

    theta = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    psi = [p.detach().clone().requires_grad_(True) for p in vnet.parameters()]
    names = [n for n, _ in vnet.named_parameters()]

    def v(losses):  # V(l; ψ) = sigmoid(MLP(l)), with ψ as given
        return functional_call(vnet, dict(zip(names, psi, strict=True)), (losses,))

    losses = ctx.loss(functional_call(model, theta, (train.x,)), train.y)
    inner = (omega(v(losses.detach() if detach else losses)) * losses).sum()
    grads = torch.autograd.grad(inner, list(theta.values()), create_graph=True)
    fast = {n: p - alpha * g for (n, p), g in zip(theta.items(), grads, strict=True)}
    meta_loss = ctx.loss(functional_call(model, fast, (meta.x,)), meta.y).mean()
    psi_grads = torch.autograd.grad(meta_loss, psi)
    psi_new = [p.detach() - lr_v * g for p, g in zip(psi, psi_grads, strict=True)]
    psi = [p.requires_grad_(False) for p in psi_new]
    theta0 = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    losses = ctx.loss(functional_call(model, theta0, (train.x,)), train.y)
    with torch.no_grad():
        w = omega(v(losses.detach()))
    g = torch.autograd.grad((w * losses).sum(), list(theta0.values()))
    theta_new = [p.detach() - lr * gi for p, gi in zip(theta0.values(), g, strict=True)]
    return psi_new, theta_new


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", ["imbalance", "noisy"])
def test_mwn_takes_the_hand_written_step_in_both_forms(backend, form):
    normalize, detach = (True, False) if form == "imbalance" else (False, True)
    torch.manual_seed(0)
    model = Net()
    ctx = make_ctx(model, n_train=16, n_meta=8, lr=0.5)
    cls = get_method("mwn")
    method = cls(ctx, cls.Hparams(normalize=normalize, detach_input=detach, v_optimizer="sgd",
                                  lr_v=0.3, v_weight_decay=0.0, backend=backend))
    train, meta = ctx.train_set, ctx.meta_set
    psi_before = [p.detach().clone() for p in method.vnet.parameters()]
    psi_expected, theta_expected = hand_written_mwn_step(
        model, method.vnet, ctx, train, meta, alpha=0.5, lr=0.5, lr_v=0.3,
        normalize=normalize, detach=detach)
    method.step(train, meta)
    hypergradient = torch.cat([((a - b) / 0.3).flatten()
                               for a, b in zip(psi_before, psi_expected, strict=True)])
    assert method.diagnostics()["grad_data"] == pytest.approx(float(hypergradient.norm()),
                                                             rel=1e-6)
    assert method.diagnostics() == {}  # reset once read
    for a, b in zip(method.vnet.parameters(), psi_expected, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=1e-9, atol=1e-12)
    for a, b in zip(model.parameters(), theta_expected, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=1e-9, atol=1e-12)
    assert method.weights_relative is normalize


def test_mwn_forms_differ_and_balancing_uses_the_class_imbalance_script():
    from benchmarks.config import resolve_hparams
    from benchmarks.scenarios import get_scenario

    hp = resolve_hparams(get_scenario("balancing"), "mwn", {}, "paper", "mnist")
    assert (hp.normalize, hp.detach_input, hp.v_optimizer, hp.lr_v, hp.v_momentum, hp.v_nesterov,
            hp.v_weight_decay) == (True, False, "sgd", 1e-5, 0.9, True, 5e-4)
    default = get_method("mwn").Hparams()  # the noisy-label script, MW-Net.py
    assert (default.normalize, default.v_optimizer, default.lr_v, default.v_weight_decay) == \
        (False, "adam", 1e-3, 1e-4)
    results = []
    for normalize in (False, True):
        torch.manual_seed(0)
        model = Net()
        ctx = make_ctx(model)
        method = get_method("mwn")(ctx, get_method("mwn").Hparams(normalize=normalize))
        method.step(ctx.train_set, ctx.meta_set)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.allclose(results[0], results[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, hp", [("blo", {}), ("blo", {"weights": "per_sample"}), ("mwn", {})])
def test_hypergradient_reaches_only_the_weight_parameters(name, hp, backend, monkeypatch):
    """The meta loss's backward fills the weight parameters' gradient and nothing else (no
    gradient reaches the model: the look-ahead's θ copy was the waste), and that gradient equals
    a full backward's."""
    import methods.lookahead

    torch.manual_seed(0)
    model = Net()
    ctx = make_ctx(model)
    cls = get_method(name)
    method = cls(ctx, cls.Hparams(backend=backend, **hp))
    seen = {}
    unroll = methods.lookahead.lookahead_meta_loss

    def spy(*args, **kwargs):
        loss = unroll(*args, **kwargs)
        leaves = method.w.grad_inputs() if name == "blo" else list(method.vnet.parameters())
        seen["full"] = torch.autograd.grad(loss, leaves, retain_graph=True)
        seen["leaves"] = leaves
        return loss

    monkeypatch.setattr(f"methods.{name}.lookahead_meta_loss", spy)
    opt = method.w if name == "blo" else method.vnet_opt
    step = opt.step

    def check(*args):
        assert all(p.grad is None for p in model.parameters())  # the meta backward left θ alone
        for leaf, full in zip(seen["leaves"], seen["full"], strict=True):
            assert torch.equal(leaf.grad, full)
        seen["checked"] = True
        return step(*args)

    monkeypatch.setattr(opt, "step", check)
    method.step(ctx.train_set, ctx.meta_set)
    assert seen["checked"]


def test_l2rw_turns_an_infinite_meta_gradient_into_nan_weights_not_clipped_zeros(monkeypatch):
    """g_i = +inf would clip to 0 and pass for an all-clipped batch (no update, finite logs)."""
    model = Net()
    ctx = make_ctx(model)
    method = get_method("l2rw")(ctx)
    grad = torch.autograd.grad

    def infinite_for_eps(outputs, inputs, *args, **kwargs):
        out = grad(outputs, inputs, *args, **kwargs)
        if isinstance(inputs, torch.Tensor):  # l2rw's ∂L_m/∂ε (the unroll passes a list)
            return (torch.full_like(out[0], float("inf")),)
        return out

    monkeypatch.setattr(torch.autograd, "grad", infinite_for_eps)
    w, _ = method.batch_weights(ctx.train_set, ctx.meta_set)
    assert torch.isnan(w).all()
    logs = method.step(ctx.train_set, ctx.meta_set)
    assert torch.isnan(logs["loss_weighted"])
