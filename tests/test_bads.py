"""BADS: gradients against the closed form of the log posterior, the Σw estimate, SGLD sampling."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn
from toys import bce, use_float64

from benchmarks.cli import main
from methods import Batch, Context
from methods.bads import BADS, BADSHparams

_float64 = pytest.fixture(autouse=True)(use_float64)  # closed forms at tight tolerance


class Logistic(nn.Module):
    """out = a·x + b with the identity embedding e = x."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.3, -0.2]]))
            self.head.bias.fill_(0.1)

    def features(self, x):
        return x

    def forward(self, x):
        return self.head(x)


def make_bads(hp: BADSHparams, n_train=20, n_meta=6, lr_theta=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = Logistic()
    xt, xm = torch.randn(n_train, 2, generator=g), torch.randn(n_meta, 2, generator=g)
    yt, ym = (torch.rand(n_train, generator=g) < 0.5).double(), (torch.arange(n_meta) % 2).double()
    ctx = Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=lr_theta),
                  n_train=n_train, n_meta=n_meta, loss=bce, embed=lambda x: x.detach(),
                  device=torch.device("cpu"), num_classes=2,
                  train_set=Batch(xt, yt, torch.arange(n_train)),
                  meta_set=Batch(xm, ym, torch.arange(n_meta)))
    return BADS(ctx, hp), ctx


def closed_form(method: BADS, ctx: Context, bt: Batch, bm: Batch):
    """∇_θ U_θ and ∇_φ U_φ written out by hand for the logistic model and linear weight net."""
    hp = method.hp
    a, b = ctx.model.head.weight.detach()[0], ctx.model.head.bias.detach()[0]
    u, c = method.w.phi.detach()[:-1], method.w.phi.detach()[-1]

    def parts(batch):
        s = torch.sigmoid(batch.x @ a + b)
        loss = -(batch.y * torch.log(s) + (1 - batch.y) * torch.log(1 - s))
        xt = torch.cat([batch.x, torch.ones(len(batch), 1)], dim=1)  # ∂out/∂(a, b)
        return s, loss, xt

    s_t, l_t, x_t = parts(bt)
    s_m, _, x_m = parts(bm)
    w = torch.sigmoid(bt.x @ u + c)
    theta = torch.cat([a, b.reshape(1)])
    g_theta = (hp.prior_precision * theta
               + hp.rho_theta_train * ctx.n_train / len(bt) * ((w * (s_t - bt.y))[:, None] * x_t).sum(0)
               + hp.rho_theta_meta * ctx.n_meta / len(bm) * ((s_m - bm.y)[:, None] * x_m).sum(0))
    s_hat = w.sum() + (ctx.n_train - len(bt)) * w.mean()  # first step: w̄ = this batch's mean
    target = math.floor(hp.beta * ctx.n_train)
    dU_dw = (s_hat - target) / hp.sigma**2 + hp.rho_w * ctx.n_train / len(bt) * l_t
    g_phi = ((dU_dw * w * (1 - w))[:, None] * torch.cat([bt.x, torch.ones(len(bt), 1)], 1)).sum(0)
    return g_theta, g_phi


TERMS = {
    "all": {},
    "prior_theta_only": dict(rho_theta_train=0.0, rho_theta_meta=0.0, rho_w=0.0, sigma=1e6),
    "train_term_only": dict(rho_theta_meta=0.0, prior_precision=0.0, rho_w=0.0, sigma=1e6),
    "meta_term_only": dict(rho_theta_train=0.0, prior_precision=0.0, rho_w=0.0, sigma=1e6),
    "sparsity_prior_only": dict(rho_w=0.0),
    "phi_data_term_only": dict(sigma=1e6),
    "equal_rhos": dict(rho_theta_train=0.9),  # ρ_θᵗ = ρ_w
}


@pytest.mark.parametrize("term", list(TERMS))
def test_step_follows_the_closed_form_gradients(term):
    base = dict(beta=0.25, sigma=3.0, rho_theta_train=0.7, rho_theta_meta=1.3, rho_w=0.9,
                prior_precision=0.2, lr_w=0.05, w_optimizer="sgd", noise="none")
    hp = BADSHparams(**(base | TERMS[term]))
    method, ctx = make_bads(hp)
    bt = Batch(ctx.train_set.x[:8], ctx.train_set.y[:8], torch.arange(8))
    bm = Batch(ctx.meta_set.x[:4], ctx.meta_set.y[:4], torch.arange(4))
    g_theta, g_phi = closed_form(method, ctx, bt, bm)
    theta0 = torch.cat([ctx.model.head.weight[0], ctx.model.head.bias]).detach().clone()
    phi0 = method.w.phi.detach().clone()
    method.step(bt, bm)
    theta1 = torch.cat([ctx.model.head.weight[0], ctx.model.head.bias]).detach()
    phi1 = method.w.phi.detach()
    torch.testing.assert_close(theta0 - theta1, 0.5 * g_theta, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(phi0 - phi1, 0.05 * g_phi, rtol=1e-10, atol=1e-12)
    assert g_theta.abs().sum() > 0 or term == "sparsity_prior_only"


def test_theta_is_flattened_in_place_and_every_parameter_gets_noise():
    hp = BADSHparams(beta=0.25, noise="paper", noise_std=0.1, rho_theta_train=0.0,
                     rho_theta_meta=0.0, rho_w=0.0)
    method, ctx = make_bads(hp, lr_theta=1e-12)
    params = list(ctx.model.parameters())
    before = [torch.tensor([[0.3, -0.2]]), torch.tensor([0.1])]  # Logistic's initial values
    assert all(torch.equal(a, b) for a, b in zip(before, params, strict=True))
    assert len({p.untyped_storage().data_ptr() for p in params}) == 1  # one flat buffer
    bt = Batch(ctx.train_set.x[:8], ctx.train_set.y[:8], torch.arange(8))
    bm = Batch(ctx.meta_set.x[:4], ctx.meta_set.y[:4], torch.arange(4))
    method.step(bt, bm)
    for a, p in zip(before, params, strict=True):
        moved = (p.detach() - a).abs()
        assert (moved > 1e-4).all() and moved.max() < 1.0  # noise of std 0.1 on every entry


def test_phi_shares_thetas_noise_draw_and_gets_its_own_std():
    """φ = [v, b] lives in θ's flat buffer (one draw for both); with noise="sgld" each group's
    std is √(2·lr·T) with its own learning rate."""
    hp = BADSHparams(beta=0.25, noise="sgld", temperature=1.0, lr_w=1e-2, rho_theta_train=0.0,
                     rho_theta_meta=0.0, rho_w=0.0, sigma=1e6, w_optimizer="sgd")
    method, ctx = make_bads(hp, lr_theta=1e-4)
    theta = list(ctx.model.parameters())
    assert method.w.phi.untyped_storage().data_ptr() == theta[0].untyped_storage().data_ptr()
    assert method.noise.common_std is None  # two stds: one draw, two adds
    bt = Batch(ctx.train_set.x[:8], ctx.train_set.y[:8], torch.arange(8))
    bm = Batch(ctx.meta_set.x[:4], ctx.meta_set.y[:4], torch.arange(4))
    theta0 = torch.cat([p.detach().reshape(-1) for p in theta]).clone()
    phi0 = method.w.phi.detach().clone()
    dtheta, dphi = [], []
    for _ in range(400):  # no data terms and a flat prior on Σw: the steps are noise alone
        method.step(bt, bm)
        theta1 = torch.cat([p.detach().reshape(-1) for p in theta])
        dtheta.append(theta1 - theta0)
        dphi.append(method.w.phi.detach() - phi0)
        theta0, phi0 = theta1.clone(), method.w.phi.detach().clone()
    std_theta, std_phi = torch.cat(dtheta).std().item(), torch.cat(dphi).std().item()
    assert std_theta == pytest.approx(math.sqrt(2 * 1e-4), rel=0.1)
    assert std_phi == pytest.approx(math.sqrt(2 * 1e-2), rel=0.1)


@pytest.mark.parametrize("fused", [True, False])
def test_lean_adam_takes_torch_adams_steps(fused):
    from methods.weighting import LeanAdam

    g = torch.Generator().manual_seed(0)
    p_ref = [torch.randn(5, 3, generator=g), torch.randn(3, generator=g)]
    p_lean = [p.clone() for p in p_ref]
    ref = torch.optim.Adam([p.requires_grad_() for p in p_ref], lr=0.01)
    lean = LeanAdam(p_lean, lr=0.01, fused=fused)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in p_ref]
        for opt, params in ((ref, p_ref), (lean, p_lean)):
            opt.zero_grad()
            for p, gr in zip(params, grads, strict=True):
                p.grad = gr.clone()
            opt.step()
    for a, b in zip(p_ref, p_lean, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-14)


def test_running_mean_uses_the_last_s_avg_batches_and_carries_no_gradient():
    method, _ = make_bads(BADSHparams(beta=0.25, s_avg=3))
    method.host_scalars = False  # the accelerator's on-device bookkeeping
    means = [0.1, 0.2, 0.3, 0.4, 0.5]
    for t, m in enumerate(means):
        w_bar = method.running_mean(torch.tensor(m))
        method.t += 1
        assert float(w_bar) == pytest.approx(sum(means[max(0, t - 2): t + 1]) / min(t + 1, 3))
    w = torch.full((4,), 0.3, requires_grad=True)
    s_hat = method.sum_estimate(w)  # Σ_B w + (N_t − |B|)·w̄ with w̄ held constant
    s_hat.backward()
    torch.testing.assert_close(w.grad, torch.ones(4))
    assert float(s_hat.detach()) == pytest.approx(1.2 + 16 * (0.4 + 0.5 + 0.3) / 3)


def test_host_and_device_bookkeeping_take_the_same_steps():
    hp = BADSHparams(beta=0.25, sigma=3.0, s_avg=2, lr_w=0.05, noise="none")
    runs = []
    for host in (True, False):
        torch.manual_seed(0)  # the weight network's initial v
        method, ctx = make_bads(hp)
        method.host_scalars = host
        logs = []
        for k in range(4):
            rows = torch.arange(4 * k, 4 * k + 4) % 20
            bt = Batch(ctx.train_set.x[rows], ctx.train_set.y[rows], rows)
            bm = Batch(ctx.meta_set.x[:3], ctx.meta_set.y[:3], torch.arange(3))
            logs.append({k: float(v) for k, v in method.step(bt, bm).items()})
        runs.append(([p.detach().clone() for p in ctx.model.parameters()], method.w.phi.detach(),
                     logs))
    (theta_h, phi_h, logs_h), (theta_d, phi_d, logs_d) = runs
    for a, b in zip(theta_h, theta_d, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(phi_h, phi_d, rtol=1e-12, atol=1e-14)
    for a, b in zip(logs_h, logs_d, strict=True):
        assert a == pytest.approx(b, rel=1e-12)


def test_weight_net_starts_at_beta_and_weights_cover_every_example():
    method, ctx = make_bads(BADSHparams(beta=0.2))
    w = method.weights()
    assert w.shape == (ctx.n_train,)
    assert float(method.w.phi[-1].detach()) == pytest.approx(math.log(0.2 / 0.8))
    zero, _ = make_bads(BADSHparams(beta=0.2, bias_init="zero"))
    assert float(zero.w.phi[-1].detach()) == 0.0


@pytest.mark.parametrize("storage", ["cpu", "memmap"])
def test_per_sample_weights_update_only_batch_rows_and_storage_does_not_matter(storage):
    hp = dict(beta=0.25, sigma=3.0, weights="per_sample", noise="none", lr_w=0.1)
    on_device, ctx = make_bads(BADSHparams(**hp))
    elsewhere, ctx2 = make_bads(BADSHparams(**hp, weight_storage=storage))
    before = on_device.weights().clone()
    for method, c in ((on_device, ctx), (elsewhere, ctx2)):
        for idx in (torch.tensor([0, 3, 5, 5]), torch.tensor([1, 3, 7, 9])):
            method.step(Batch(c.train_set.x[idx], c.train_set.y[idx], idx),
                        Batch(c.meta_set.x, c.meta_set.y, torch.arange(c.n_meta)))
    after = on_device.weights()
    touched = torch.tensor([0, 1, 3, 5, 7, 9])
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[touched] = False
    assert torch.equal(after[untouched], before[untouched])
    assert (after[touched] != before[touched]).all()
    torch.testing.assert_close(elsewhere.weights().double(), after.double(), rtol=1e-6, atol=1e-7)


class GaussianMean(nn.Module):
    """d independent means θ_k; output θ for every example; embedding a constant feature."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(d))

    def features(self, x):
        return x

    def forward(self, x):
        return self.theta.expand(x.shape[0], -1)


def test_sgld_mode_samples_the_conjugate_gaussian_posterior():
    """x_j ~ N(θ, 1), θ ~ N(0, 1/λ): posterior N(Σx/(λ+N_m), 1/(λ+N_m)) per coordinate.

    With the meta term alone (ρ_θᵗ = 0) and Bm = Dm, U_θ is the exact negative log posterior. The
    Euler-Maruyama chain θ ← θ − η∇U + N(0, 2η) has the stationary variance 1/(A(1 − ηA/2)),
    A = λ + N_m; we compare against that. d = 16 independent coordinates, 3,000 steps after
    500 of burn-in: the autocorrelation time is about 2/(ηA) ≈ 39 steps, so ~1,200 effective
    samples in all (~77 per coordinate); the tolerances are 4 standard errors for each
    coordinate's mean and 15% for the pooled variance (SE ≈ 4%).
    """
    d, n_meta, lam, eta = 16, 50, 1.0, 1e-3
    g = torch.Generator().manual_seed(0)
    data = 1.0 + torch.randn(n_meta, d, generator=g)
    model = GaussianMean(d)
    ctx = Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=eta),
                  n_train=10, n_meta=n_meta,
                  loss=lambda out, y: 0.5 * ((out - y) ** 2).sum(-1),
                  embed=lambda x: x, device=torch.device("cpu"), num_classes=2,
                  train_set=Batch(torch.ones(10, 1), torch.zeros(10, d), torch.arange(10)))
    hp = BADSHparams(beta=0.5, rho_theta_train=0.0, prior_precision=lam, noise="sgld",
                     temperature=1.0, sigma=1.0)
    method = BADS(ctx, hp)
    torch.manual_seed(1)
    bt = Batch(torch.ones(5, 1), torch.zeros(5, d), torch.arange(5))
    bm = Batch(torch.ones(n_meta, 1), data, torch.arange(n_meta))
    samples = []
    for t in range(3500):
        method.step(bt, bm)
        if t >= 500:
            samples.append(model.theta.detach().clone())
    chain = torch.stack(samples)
    a = lam + n_meta
    post_mean = data.sum(0) / a
    stationary_var = 1 / (a * (1 - eta * a / 2))
    ess_per_coordinate = chain.shape[0] / (2 / (eta * a))
    se = math.sqrt(stationary_var / ess_per_coordinate)
    assert (chain.mean(0) - post_mean).abs().max() < 4 * se
    assert abs((chain - post_mean).pow(2).mean() / stationary_var - 1) < 0.15


def test_noise_modes():
    for noise, expected in (("paper", 1e-5), ("none", 0.0), ("sgld", math.sqrt(2 * 0.01 * 2.0))):
        method, _ = make_bads(BADSHparams(beta=0.2, noise=noise, temperature=2.0))
        assert method._noise_std(0.01) == pytest.approx(expected)


def test_bad_hyperparameters_are_rejected():
    for bad in (dict(beta=0.0), dict(noise="hot"), dict(weights="all"), dict(sigma=-1.0),
                dict(noise_std=-1.0), dict(temperature=-1.0), dict(weight_storage="cpu")):
        with pytest.raises(ValueError):
            BADSHparams(**bad)


@pytest.mark.parametrize("seed", [0])
def test_bads_favours_the_minority_and_beats_train_only_on_balancing(tmp_path, seed):
    """Short run on the embedded default (MNIST-1D, quick profile, 1,500 steps)."""
    torch.set_default_dtype(torch.float32)
    out = tmp_path / "r"
    code = main(["run", "--scenario", "balancing", "--methods", "bads,train_only", "--seeds",
                 str(seed), "--out", str(out), "--no-progress"])
    assert code == 0
    runs = pd.read_csv(out / "runs.csv").set_index("method")
    assert runs.loc["bads", "final_metric"] > runs.loc["train_only", "final_metric"] + 0.05
    weights = pd.read_csv(out / "weights" / f"{runs.loc['bads', 'run_id']}.csv")
    means = weights.groupby("group").weight.mean()
    assert means["minority"] > means["majority"]


def split_closed_form(method: BADS, ctx: Context, bt: Batch):
    """∇_φ U_φ's two parts by hand: the prior's Σ_i q_i·(Ŝ − K)/σ²·[x_i, 1] and the data term's
    Σ_i q_i·ρ_w·(N_t/|Bt|)·l_i·[x_i, 1], q_i = w_i(1 − w_i), for the logistic model."""
    hp = method.hp
    a, b = ctx.model.head.weight.detach()[0], ctx.model.head.bias.detach()[0]
    u, c = method.w.phi.detach()[:-1], method.w.phi.detach()[-1]
    s = torch.sigmoid(bt.x @ a + b)
    loss = -(bt.y * torch.log(s) + (1 - bt.y) * torch.log(1 - s))
    w = torch.sigmoid(bt.x @ u + c)
    q = w * (1 - w)
    xt = torch.cat([bt.x, torch.ones(len(bt), 1)], 1)
    gap = float(w.sum() + (ctx.n_train - len(bt)) * w.mean()) - math.floor(hp.beta * ctx.n_train)
    prior = (q * gap / hp.sigma**2)[:, None].mul(xt).sum(0)
    data = (q * hp.rho_w * ctx.n_train / len(bt) * loss)[:, None].mul(xt).sum(0)
    return prior, data, gap


def batches(ctx, k=0):
    rows = torch.arange(8 * k, 8 * k + 8) % ctx.n_train
    return (Batch(ctx.train_set.x[rows], ctx.train_set.y[rows], rows),
            Batch(ctx.meta_set.x[:4], ctx.meta_set.y[:4], torch.arange(4)))


def test_gradient_split_log_matches_the_hand_computed_parts():
    hp = BADSHparams(beta=0.25, sigma=2.0, rho_w=0.7, lr_w=0.05, w_optimizer="sgd", noise="none")
    method, ctx = make_bads(hp)
    with torch.no_grad():
        method.w.phi[:-1] = torch.tensor([0.4, -0.3])  # a weight network that discriminates
    bt, bm = batches(ctx)
    prior, data, gap = split_closed_form(method, ctx, bt)
    phi0 = method.w.phi.detach().clone()
    method.step(bt, bm)
    torch.testing.assert_close(phi0 - method.w.phi.detach(), 0.05 * (prior + data))  # the sum
    logs = method.diagnostics()  # step 0 is sampled
    assert logs["grad_prior"] == pytest.approx(float(prior.norm()), rel=1e-10)
    assert logs["grad_data"] == pytest.approx(float(data.norm()), rel=1e-10)
    share = float(data.norm() / (data.norm() + prior.norm()))
    assert logs["data_share"] == pytest.approx(share, rel=1e-10) and 0.05 < share < 0.95
    assert logs["sum_gap"] == pytest.approx(gap, rel=1e-10)
    assert method.diagnostics() == {}  # averaged since the last call: nothing new yet
    for k in range(1, 12):  # samples again at step 10 only
        method.step(*batches(ctx, k))
    assert set(method.diagnostics()) == {"grad_prior", "grad_data", "data_share", "sum_gap"}


def test_prior_only_control_moves_phi_by_the_prior_alone():
    from methods.bads import BADSPriorOnly

    hp = BADSHparams(beta=0.25, sigma=2.0, rho_w=0.0, lr_w=0.05, w_optimizer="sgd", noise="none")
    _, ctx2 = make_bads(hp)
    control = BADSPriorOnly(ctx2, hp)
    with torch.no_grad():
        control.w.phi[:-1] = torch.tensor([0.4, -0.3])
    bt, bm = batches(ctx2)
    prior, _, _ = split_closed_form(control, ctx2, bt)
    phi0 = control.w.phi.detach().clone()
    control.step(bt, bm)
    torch.testing.assert_close(phi0 - control.w.phi.detach(), 0.05 * prior)
    assert control.diagnostics()["grad_data"] == 0.0
    with pytest.raises(ValueError, match="bads_prior_only is bads"):
        BADSPriorOnly(ctx2, BADSHparams(beta=0.25))  # ρ_w = 1 is not the control


@pytest.mark.parametrize("noise", ["none", "paper", "sgld"])
def test_frozen_control_keeps_every_weight_at_beta_and_trains_on_fixed_weights(noise):
    from methods.bads import BADSFrozen

    hp = BADSHparams(beta=0.25, sigma=2.0, lr_w=0.05, noise=noise, noise_std=0.01,
                     freeze_weights=True)
    _, ctx = make_bads(hp)
    method = BADSFrozen(ctx, hp)
    phi0 = method.w.phi.detach().clone()
    assert torch.equal(method.weights(), torch.full((ctx.n_train,), 0.25, dtype=method.weights().dtype))
    for k in range(5):
        bt, bm = batches(ctx, k)
        theta0 = torch.cat([ctx.model.head.weight[0], ctx.model.head.bias]).detach().clone()
        g_theta, _ = closed_form(method, ctx, bt, bm)  # with w = β for every i
        method.step(bt, bm)
        theta1 = torch.cat([ctx.model.head.weight[0], ctx.model.head.bias]).detach()
        if noise == "none":
            torch.testing.assert_close(theta0 - theta1, 0.5 * g_theta, rtol=1e-10, atol=1e-12)
        else:  # θ gets its noise, φ none
            assert not torch.allclose(theta0 - theta1, 0.5 * g_theta, rtol=1e-10, atol=1e-12)
    assert torch.equal(method.w.phi.detach(), phi0)
    assert torch.allclose(method.weights(), torch.tensor(0.25, dtype=torch.float64))


def test_data_share_is_left_out_where_phis_gradient_is_exactly_zero():
    """Saturated weights (w ∈ {0, 1}: q = 0) give no gradient to split; that is no divergence."""
    hp = BADSHparams(beta=0.25, sigma=2.0, lr_w=0.05, noise="none")
    method, ctx = make_bads(hp)
    with torch.no_grad():
        method.w.phi[-1] = -1e4  # every weight exactly 0 in float64
    method.step(*batches(ctx))
    logs = method.diagnostics()
    assert logs["grad_prior"] == 0.0 and logs["grad_data"] == 0.0 and "data_share" not in logs
    assert all(math.isfinite(v) for v in logs.values())


def test_controls_take_their_methods_scenario_defaults_and_cannot_be_unpinned():
    from benchmarks.config import resolve_hparams
    from benchmarks.errors import ConfigError
    from benchmarks.scenarios import get_scenario

    scenario = get_scenario("balancing")
    full = resolve_hparams(scenario, "bads", {}, "quick", "mnist1d")
    for name, pinned in (("bads_prior_only", {"rho_w": 0.0}),
                         ("bads_frozen", {"freeze_weights": True})):
        hp = resolve_hparams(scenario, name, {}, "quick", "mnist1d")
        assert {**vars(full), **pinned} == vars(hp)  # lr_theta 7e-4, β 0.005, ... as for bads
        key = next(iter(pinned))
        with pytest.raises(ConfigError, match="cannot be set"):
            resolve_hparams(scenario, name, {key: not pinned[key]}, "quick", "mnist1d")
