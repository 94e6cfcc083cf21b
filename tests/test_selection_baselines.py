"""CDS and ClassAct: scores prefer target-like examples; CDS's annealed in-batch selection;
ClassAct's online learnability selection on a super-batch."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn
from toys import Net, bce

from benchmarks.cli import main
from methods import Batch, Context, get_method


def noisy_problem(n=200, n_meta=40):
    """Dt: first half labelled by x0 > 0, second half with flipped labels; Dm: clean."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] > 0).float()
    y[n // 2:] = 1 - y[n // 2:]
    xm = torch.randn(n_meta, 2, generator=g)
    model = Net(hidden=16)
    return Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
                   n_train=n, n_meta=n_meta, loss=bce, embed=lambda v: model.features(v).detach(),
                   device=torch.device("cpu"), num_classes=2,
                   generator=torch.Generator().manual_seed(1),
                   train_set=Batch(x, y, torch.arange(n)),
                   meta_set=Batch(xm, (xm[:, 0] > 0).float(), torch.arange(n_meta)),
                   total_steps=100)


def test_scores_prefer_the_examples_that_agree_with_the_meta_set():
    torch.manual_seed(0)
    ctx = noisy_problem()
    cls = get_method("cds")
    method = cls(ctx, cls.Hparams(beta=0.25, pretrain_steps=300, finetune_steps=200))
    before = [p.detach().clone() for p in ctx.model.parameters()]
    method.prepare()
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters(), strict=True))
    clean, flipped = method.scores[:100], method.scores[100:]
    assert clean.mean() > flipped.mean()
    w = method.weights()
    assert w.sum() == math.floor(0.25 * 200)
    assert w[:100].sum() > 2 * w[100:].sum()


def test_each_batch_keeps_its_top_examples_on_an_annealed_schedule():
    """r_t = max(r_floor, 0.5^(t/H)), H = half_life·T: all of the batch at t = 0, half at t = H,
    the floor from t ≥ log2(1/r_floor)·H on."""
    ctx = noisy_problem()  # T = 100 steps
    cls = get_method("cds")
    method = cls(ctx, cls.Hparams(beta=0.01, r_floor=0.2, half_life=0.1))  # H = 10 steps
    assert [method.kept_fraction(t) for t in (0, 10, 20)] == [1.0, 0.5, 0.25]
    assert method.kept_fraction(14) == pytest.approx(0.5 ** 1.4)
    assert method.kept_fraction(40) == method.kept_fraction(99) == 0.2
    method.scores = torch.arange(200, dtype=torch.float)
    batch = Batch(ctx.train_set.x[:50], ctx.train_set.y[:50], torch.arange(150, 200))
    assert len(method.keep(batch)) == 50  # step 0: everything
    method.t = 10
    kept = method.keep(batch)
    assert sorted(batch.index[kept].tolist()) == list(range(175, 200))  # the top half by score
    method.t = 60
    assert sorted(batch.index[method.keep(batch)].tolist()) == list(range(190, 200))  # ⌈0.2·50⌉
    constant = cls(ctx, cls.Hparams(beta=0.01, r_floor=0.0, half_life=0.0))
    constant.scores = method.scores
    assert constant.kept_fraction(0) == 0.0 and len(constant.keep(batch)) == 1  # at least one


def test_cds_annealing_needs_the_run_length():
    ctx = noisy_problem()
    ctx.total_steps = None
    cls = get_method("cds")
    with pytest.raises(ValueError, match="total_steps"):
        cls(ctx, cls.Hparams())
    cls(ctx, cls.Hparams(half_life=0.0))  # a constant fraction needs none


def test_offline_scoring_time_is_recorded_apart(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--scenario", "balancing", "--source", "digits", "--methods", "cds",
                 "--steps", "10", "--set", "cds.pretrain_steps=50", "--out", str(out),
                 "--no-progress"]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row.prepare_s > 0 and row.status == "ok"


def imbalanced_problem(n_major=190, n_minor=10, n_meta=40):
    """Dt: class 1 (x0 > 0) is the rare one; Dm: balanced. Both labelled by the sign of x0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_major + n_minor, 2, generator=g)
    x[:, 0] = x[:, 0].abs() * torch.cat([-torch.ones(n_major), torch.ones(n_minor)])
    xm = torch.randn(n_meta, 2, generator=g)
    model = Net(hidden=16)
    n = n_major + n_minor
    return Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
                   n_train=n, n_meta=n_meta, loss=bce, embed=lambda v: model.features(v).detach(),
                   device=torch.device("cpu"), num_classes=2,
                   generator=torch.Generator().manual_seed(1),
                   train_set=Batch(x, (x[:, 0] > 0).float(), torch.arange(n)),
                   meta_set=Batch(xm, (xm[:, 0] > 0).float(), torch.arange(n_meta)),
                   total_steps=100)


def classact(ctx, **hp):
    cls = get_method("classact")
    return cls(ctx, cls.Hparams(**{"ref_steps": 200, **hp}))


class Lookup(nn.Module):
    """out = scale·x₀ (a one-logit classifier whose loss we can write down), embedding x."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale]))

    def features(self, x):
        return x

    def forward(self, x):
        return x[:, :1] * self.scale


def test_classact_keeps_the_examples_of_highest_learnability():
    """Learner out = 0 (every loss log 2), reference out = 3·x₀ with y = 1: s_i = log 2 −
    softplus(−3·x₀,i), increasing in x₀, so the kept half is the half with the largest x₀."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 2, generator=g)
    ctx = Context(model=Lookup(0.0), make_optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                  n_train=20, n_meta=4, loss=bce, embed=lambda v: v, device=torch.device("cpu"),
                  num_classes=2, train_set=Batch(x, torch.ones(20), torch.arange(20)),
                  meta_set=Batch(x[:4], torch.ones(4), torch.arange(4)))
    method = classact(ctx, keep=0.5, beta=0.1)
    assert method.pool().batch_scale == 2.0  # a super-batch of twice the learner's batch
    method.reference = Lookup(3.0).eval().requires_grad_(False)
    batch = Batch(x, torch.ones(20), torch.arange(20))
    scores = method.learnability(batch.x, batch.y)
    expected = math.log(2) - torch.nn.functional.softplus(-3 * x[:, 0])
    torch.testing.assert_close(scores, expected)
    kept = method.select(scores)
    assert set(kept.tolist()) == set(x[:, 0].topk(10).indices.tolist())
    logs = method.step(batch, None)
    assert float(logs["learnability_kept"]) == pytest.approx(float(expected.topk(10).values.mean()))
    assert float(method.ctx.model.scale.detach()) != 0.0  # the learner stepped on the kept half
    w = method.weights()  # indicator of the ⌊β·N_t⌋ = 2 most learnable under the new learner
    assert w.sum() == 2 and set(w.nonzero().flatten().tolist()) <= set(kept.tolist())


def test_classact_softmax_selection_samples_without_replacement_by_score():
    ctx = noisy_problem()
    method = classact(ctx, keep=0.25, selection="softmax")
    scores = torch.linspace(-3, 3, 40)
    counts = torch.zeros(40)
    for _ in range(300):
        kept = method.select(scores)
        assert len(kept) == 10 and len(set(kept.tolist())) == 10
        counts[kept] += 1
    assert counts[30:].sum() > 5 * counts[:10].sum()  # exp(s) favours the high scores
    assert counts[:10].sum() > 0  # but sampling, unlike top-k, reaches the low ones


def test_classact_reference_is_trained_on_dm_and_scoring_moves_no_batchnorm_statistics():
    torch.manual_seed(0)
    ctx = noisy_problem()
    ctx.model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    before = [p.detach().clone() for p in ctx.model.parameters()]
    method = classact(ctx, ref_steps=100)
    method.prepare()
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters(), strict=True))
    meta_loss = bce(method.reference(ctx.meta_set.x), ctx.meta_set.y).mean()
    assert meta_loss < bce(ctx.model.eval()(ctx.meta_set.x), ctx.meta_set.y).mean()
    ctx.model.train()
    stats = ctx.model[1].running_mean.clone()
    method.learnability(ctx.train_set.x[:50], ctx.train_set.y[:50])
    assert torch.equal(stats, ctx.model[1].running_mean) and ctx.model.training


def test_classact_scores_the_minority_above_the_majority_once_the_learner_fits_dt():
    """A learner trained on the 19:1 Dt predicts the majority class; the Dm reference knows both:
    the rare class's points are the learnable ones not yet learnt."""
    torch.manual_seed(0)
    ctx = imbalanced_problem()
    method = classact(ctx)
    method.prepare()
    opt = torch.optim.SGD(ctx.model.parameters(), lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        bce(ctx.model(ctx.train_set.x), ctx.train_set.y).mean().backward()
        opt.step()
    s = method.learnability(ctx.train_set.x, ctx.train_set.y)
    assert s[190:].mean() > s[:190].mean() + 0.1


def test_classact_rejects_bad_settings():
    cls = get_method("classact")
    for bad in (dict(keep=0.0), dict(keep=1.5), dict(selection="random"), dict(ref_steps=-1),
                dict(ref_optimizer="sgd"), dict(ref_lr=0.0)):
        with pytest.raises(ValueError):
            cls.Hparams(**bad)


@pytest.mark.parametrize("name", ["classact", "cds"])
def test_scoring_models_train_with_their_own_optimiser_where_the_learners_barely_moves(name):
    """With a learner optimiser too slow to move a model (SGD at 1e-6), the default Adam still
    trains ClassAct's reference and CDS's Dm-tuned model (their Dm loss, logged as a diagnostic,
    drops well below the initial model's), while ``optimizer=model`` leaves them where they
    started, as the learner's schedule would."""
    cls = get_method(name)
    losses = {}
    for optimiser in ("adam", "model"):
        torch.manual_seed(0)
        ctx = noisy_problem()
        ctx.make_optimizer = lambda p: torch.optim.SGD(p, lr=1e-6)
        initial = bce(ctx.model(ctx.meta_set.x), ctx.meta_set.y).mean().item()
        key = "ref_optimizer" if name == "classact" else "score_optimizer"
        steps = {"ref_steps": 200} if name == "classact" else {"pretrain_steps": 100,
                                                              "finetune_steps": 200}
        method = cls(ctx, cls.Hparams(**{key: optimiser, **steps}))
        method.prepare()
        logged = method.diagnostics()
        losses[optimiser] = logged["ref_loss_meta" if name == "classact" else "tuned_loss_meta"]
    assert losses["adam"] < 0.7 * initial
    assert losses["model"] == pytest.approx(initial, rel=1e-3)
